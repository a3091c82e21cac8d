// nn/module.h — a Module: a tree of named parameters, as libtorch's nn::Module.
//
// A module registers its parameters (leaf Tensors it owns as members) and its
// child modules under names; named_parameters() walks the tree and joins the
// names with dots, in registration order, giving Hugging Face GPT-2's keys:
// "transformer.h.3.attn.c_attn.weight". Checkpoints, the optimiser, freezing
// and the adaptation methods all find parameters through these names.
//
// A parameter is trainable exactly when its Tensor has requires_grad set; a
// frozen one (requires_grad false) never gets a gradient buffer, and ops on it
// alone are not recorded on the tape.
//
// Names are matched by whole dotted components: "h.3.attn.c_attn" names
// "transformer.h.3.attn.c_attn" (a suffix that starts at a dot) but not
// "transformer.h.13.attn.c_attn". This is PEFT's target_modules rule.
//
// Modules hold pointers to their members, so a Module is neither copied nor
// moved: build it in place (or behind a unique_ptr) and keep it there.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace ta {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of the tree as (dotted name, handle), in registration order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // Every module of the tree, this one first (named ""), parents before children.
  std::vector<std::pair<std::string, Module*>> named_modules();

  // The one parameter whose dotted name is `name` or ends with "." + name.
  // Throws InputError when none or several match.
  Tensor parameter(const std::string& name) const;

  // Attaches a child this module owns, e.g. the blocks "transformer.h.0", or
  // a module an adaptation method adds. `name` may contain dots.
  Module& add_module(const std::string& name, std::unique_ptr<Module> child);

  void freeze_all();  // every parameter frozen (requires_grad false)
  int64_t count_parameters(bool trainable_only = false) const;

 protected:
  // `slot` must be a member of this module: the module keeps its address.
  void register_parameter(const std::string& name, Tensor& slot);
  void register_module(const std::string& name, Module& child);

 private:
  void collect_parameters(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out);

  std::vector<std::pair<std::string, Tensor*>> parameters_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::vector<std::unique_ptr<Module>> owned_children_;
};

// True when the dotted `full_name` is `name` or ends with "." + name.
bool name_matches(const std::string& full_name, const std::string& name);

}  // namespace ta
