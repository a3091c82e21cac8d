// nn/checkpoint.cpp — see checkpoint.h.
#include "nn/checkpoint.h"

#include <cstring>
#include <map>

#include "data/io.h"
#include "nn/safetensors.h"

namespace ta {

static const std::string kPrefix = "transformer.";

static std::string shape_string(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); i++) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + ")";
}

static std::vector<int64_t> dims_of(const Shape& shape) {
  return std::vector<int64_t>(shape.dims, shape.dims + shape.rank);
}

// "h.11.attn.bias" and "h.0.attn.masked_bias": the causal-mask buffers old
// transformers versions saved; they hold no weights.
static bool is_mask_buffer(const std::string& key) {
  auto ends_with = [&](const char* suffix) {
    size_t n = std::strlen(suffix);
    return key.size() >= n && key.compare(key.size() - n, n, suffix) == 0;
  };
  return key.rfind("h.", 0) == 0 && (ends_with(".attn.bias") || ends_with(".attn.masked_bias"));
}

// Checks that the file's LM head, if it has one, is its token embedding.
static void check_tied_head(const NamedArray& head, const NamedArray& wte, const std::string& path) {
  if (wte.shape != head.shape)
    throw InputError(path + ": key lm_head.weight: expected shape " + shape_string(wte.shape) + " (tied to wte), got " +
                     shape_string(head.shape));
  if (head.values != wte.values)
    throw InputError(path + ": lm_head.weight differs from transformer.wte.weight; tinyadapt always ties the LM head "
                            "to the token embedding");
}

void load_weights(GPT& model, const std::string& path) {
  std::vector<NamedArray> arrays = read_safetensors(path);
  std::map<std::string, Tensor> expected;  // name without "transformer." -> parameter
  for (auto& [name, tensor] : model.named_parameters()) expected[name.substr(kPrefix.size())] = tensor;

  std::map<std::string, const NamedArray*> found;
  const NamedArray* lm_head = nullptr;
  for (const NamedArray& array : arrays) {
    std::string key = array.name.rfind(kPrefix, 0) == 0 ? array.name.substr(kPrefix.size()) : array.name;
    if (is_mask_buffer(key)) continue;
    if (array.name == "lm_head.weight") {
      lm_head = &array;
      continue;
    }
    auto slot = expected.find(key);
    if (slot == expected.end()) throw InputError(path + ": unknown key " + array.name);
    if (!found.emplace(key, &array).second) throw InputError(path + ": key " + kPrefix + key + " appears twice");
    if (dims_of(slot->second.shape()) != array.shape)
      throw InputError(path + ": key " + array.name + ": expected shape " + slot->second.shape().str() + ", got " +
                       shape_string(array.shape));
  }
  for (const auto& [key, tensor] : expected)
    if (!found.count(key))
      throw InputError(path + ": missing key " + kPrefix + key + " (expected shape " + tensor.shape().str() + ")");
  if (lm_head) check_tied_head(*lm_head, *found.at("wte.weight"), path);
  for (auto& [key, tensor] : expected) {
    const std::vector<float>& values = found.at(key)->values;
    std::memcpy(tensor.data(), values.data(), values.size() * sizeof(float));
  }
}

std::unique_ptr<GPT> load_model(const std::string& dir) {
  auto model = std::make_unique<GPT>(read_config(dir + "/config.json"));
  load_weights(*model, dir + "/model.safetensors");
  return model;
}

void save_model(const GPT& model, const std::string& dir) {
  std::vector<NamedArray> arrays;
  for (const auto& [name, tensor] : model.named_parameters())
    arrays.push_back({name, dims_of(tensor.shape()), tensor.to_vector()});
  make_dirs(dir);
  write_safetensors(dir + "/model.safetensors", arrays);
  write_config(dir + "/config.json", model.config());
}

}  // namespace ta
