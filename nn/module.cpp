// nn/module.cpp — see module.h.
#include "nn/module.h"

#include "data/io.h"

namespace ta {

bool name_matches(const std::string& full_name, const std::string& name) {
  if (full_name == name) return true;
  if (name.empty() || full_name.size() <= name.size()) return false;
  size_t start = full_name.size() - name.size();
  return full_name[start - 1] == '.' && full_name.compare(start, name.size(), name) == 0;
}

static std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void Module::register_parameter(const std::string& name, Tensor& slot) { parameters_.emplace_back(name, &slot); }

void Module::register_module(const std::string& name, Module& child) { children_.emplace_back(name, &child); }

Module& Module::add_module(const std::string& name, std::unique_ptr<Module> child) {
  owned_children_.push_back(std::move(child));
  register_module(name, *owned_children_.back());
  return *owned_children_.back();
}

void Module::collect_parameters(const std::string& prefix,
                                std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, slot] : parameters_) out.emplace_back(join(prefix, name), *slot);
  for (const auto& [name, child] : children_) child->collect_parameters(join(prefix, name), out);
}

void Module::collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out) {
  out.emplace_back(prefix, this);
  for (const auto& [name, child] : children_) child->collect_modules(join(prefix, name), out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_parameters("", out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  collect_modules("", out);
  return out;
}

Tensor Module::parameter(const std::string& name) const {
  Tensor found;
  std::string found_name;
  for (const auto& [full_name, tensor] : named_parameters()) {
    if (!name_matches(full_name, name)) continue;
    if (found.defined())
      throw InputError("parameter \"" + name + "\" is ambiguous: " + found_name + ", " + full_name);
    found = tensor;
    found_name = full_name;
  }
  if (!found.defined()) throw InputError("no parameter named \"" + name + "\"");
  return found;
}

void Module::freeze_all() {
  for (auto& [name, tensor] : named_parameters()) tensor.set_requires_grad(false);
}

int64_t Module::count_parameters(bool trainable_only) const {
  int64_t total = 0;
  for (const auto& [name, tensor] : named_parameters())
    if (!trainable_only || tensor.requires_grad()) total += tensor.numel();
  return total;
}

}  // namespace ta
