// adapt/method.cpp — the method registry, MethodConfig <-> adapter_config.json,
// and the NamedArray helpers every method's save/load_tensors uses.
//
// The registry is a name -> factory map filled by static MethodRegistration
// objects, one in each method's file, before main() runs. So adding a method
// is adding a file: nothing here names a method.
//
// adapter_config.json keeps PEFT's field names where PEFT has the option
// (num_virtual_tokens, prefix_projection, encoder_hidden_size, r, lora_alpha,
// lora_dropout, target_modules) and ours elsewhere (adapt/README.md lists
// them). A PEFT file without our "tinyadapt_method" field is read by its
// peft_type (LORA, PROMPT_TUNING, PREFIX_TUNING), so adapters written by PEFT
// load too.
#include "adapt/method.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "data/io.h"

namespace ta::adapt {

namespace {

std::map<std::string, MethodFactory>& registry() {
  static std::map<std::string, MethodFactory> factories;
  return factories;
}

// PEFT's peft_type for the methods PEFT has, for reading PEFT's own files.
std::string method_of_peft_type(const std::string& peft_type) {
  if (peft_type == "LORA") return "lora";
  if (peft_type == "PROMPT_TUNING") return "prompt";
  if (peft_type == "PREFIX_TUNING") return "prefix";
  return "";
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The shortest decimal that reads back as `x`, so 0.01f is written 0.01,
// not 0.009999999776482582.
double shortest_decimal(float x) {
  for (int digits = 6; digits < 9; digits++) {
    char text[32];
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(x));
    if (std::strtof(text, nullptr) == x) return std::strtod(text, nullptr);
  }
  return static_cast<double>(x);
}

// "[2, 3]", as PyTorch prints a size.
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); i++) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

MethodRegistration::MethodRegistration(const char* name, MethodFactory factory) {
  registry()[name] = std::move(factory);
}

std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : registry()) names.push_back(name);
  return names;
}

std::unique_ptr<Method> make_method(const MethodConfig& config) {
  auto it = registry().find(config.method);
  if (it == registry().end())
    throw InputError("unknown method '" + config.method + "' (known: " + joined(method_names()) + ")");
  return it->second(config);
}

json::Value method_config_to_json(const MethodConfig& c) {
  json::Value v = json::Value::object();
  v.set("tinyadapt_method", c.method);
  v.set("num_virtual_tokens", c.num_virtual_tokens);
  v.set("prompt_init", c.prompt_init);
  v.set("prefix_projection", c.prefix_projection);
  v.set("encoder_hidden_size", c.prefix_hidden);
  v.set("bottleneck", c.bottleneck);
  v.set("adapter_init_std", shortest_decimal(c.adapter_init_std));
  v.set("train_layernorm", c.train_layernorm);
  v.set("r", c.lora_rank);
  v.set("lora_alpha", shortest_decimal(c.lora_alpha));
  v.set("lora_dropout", shortest_decimal(c.lora_dropout));
  json::Value targets = json::Value::array();
  for (const std::string& t : c.target_modules) targets.push(t);
  v.set("target_modules", targets);
  v.set("probe_hidden", c.probe_hidden);
  return v;
}

MethodConfig method_config_from_json(const json::Value& v, const std::string& source) {
  MethodConfig c;
  if (!v.is_object()) throw InputError(source + ": expected a JSON object");
  if (const json::Value* m = v.find("tinyadapt_method")) {
    c.method = m->as_string(source + ": tinyadapt_method");
  } else if (const json::Value* t = v.find("peft_type")) {
    c.method = method_of_peft_type(t->as_string(source + ": peft_type"));
    if (c.method.empty()) throw InputError(source + ": peft_type '" + t->as_string() + "' is not one tinyadapt reads");
  } else {
    throw InputError(source + ": neither tinyadapt_method nor peft_type says which method this is");
  }
  auto integer = [&](const char* key, int& field, int lo) {
    if (const json::Value* x = v.find(key)) field = static_cast<int>(x->as_int(source + ": " + key, lo, 1 << 24));
  };
  auto real = [&](const char* key, float& field) {
    if (const json::Value* x = v.find(key)) field = static_cast<float>(x->as_number(source + ": " + key));
  };
  auto boolean = [&](const char* key, bool& field) {
    if (const json::Value* x = v.find(key)) field = x->as_bool(source + ": " + key);
  };
  integer("num_virtual_tokens", c.num_virtual_tokens, 1);
  if (const json::Value* x = v.find("prompt_init")) c.prompt_init = x->as_string(source + ": prompt_init");
  boolean("prefix_projection", c.prefix_projection);
  integer("encoder_hidden_size", c.prefix_hidden, 1);
  integer("bottleneck", c.bottleneck, 1);
  real("adapter_init_std", c.adapter_init_std);
  boolean("train_layernorm", c.train_layernorm);
  integer("r", c.lora_rank, 1);
  real("lora_alpha", c.lora_alpha);
  real("lora_dropout", c.lora_dropout);
  if (const json::Value* x = v.find("target_modules")) {
    c.target_modules.clear();
    if (x->is_string()) c.target_modules.push_back(x->as_string());  // PEFT also allows one name
    else
      for (const json::Value& t : x->items(source + ": target_modules")) c.target_modules.push_back(t.as_string(source + ": target_modules"));
  }
  integer("probe_hidden", c.probe_hidden, 1);
  return c;
}

NamedArray to_named_array(const std::string& name, const Tensor& t) {
  NamedArray a;
  a.name = name;
  for (int i = 0; i < t.rank(); i++) a.shape.push_back(t.size(i));
  a.values.assign(t.data(), t.data() + t.numel());
  return a;
}

void copy_into(Tensor& t, const NamedArray& array, const std::string& source) {
  std::vector<int64_t> expected;
  for (int i = 0; i < t.rank(); i++) expected.push_back(t.size(i));
  if (array.shape != expected) {
    throw InputError(source + ": tensor " + array.name + " has shape " + shape_text(array.shape) +
                     " but the model expects " + shape_text(expected));
  }
  std::copy(array.values.begin(), array.values.end(), t.data());
}

const NamedArray& find_array(const std::vector<NamedArray>& arrays, const std::string& name, const std::string& source) {
  for (const NamedArray& a : arrays)
    if (a.name == name) return a;
  throw InputError(source + ": tensor " + name + " is missing");
}

}  // namespace ta::adapt
