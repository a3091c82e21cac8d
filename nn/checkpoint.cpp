// nn/checkpoint.cpp — see checkpoint.h.
#include "nn/checkpoint.h"

#include <algorithm>
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

// The file's key for a parameter name without "transformer." (either form is accepted).
static std::string key_of(const std::string& name) {
  return name.rfind(kPrefix, 0) == 0 ? name.substr(kPrefix.size()) : name;
}

// Checks the file's keys and shapes (from its header) against the model's
// parameters: every parameter once with its shape, nothing unknown, an LM
// head only of wte's shape (its values must equal wte's: checked once read).
static void check_keys(const std::vector<SafetensorsEntry>& entries, const std::map<std::string, Tensor>& expected,
                       const std::string& path) {
  std::map<std::string, int> seen;
  for (const SafetensorsEntry& entry : entries) {
    const std::string key = key_of(entry.name);
    if (is_mask_buffer(key)) continue;
    if (entry.name == "lm_head.weight") {
      const Tensor& wte = expected.at("wte.weight");
      if (dims_of(wte.shape()) != entry.shape)
        throw InputError(path + ": key lm_head.weight: expected shape " + wte.shape().str() + " (tied to wte), got " +
                         shape_string(entry.shape));
      continue;
    }
    auto slot = expected.find(key);
    if (slot == expected.end()) throw InputError(path + ": unknown key " + entry.name);
    if (seen[key]++) throw InputError(path + ": key " + kPrefix + key + " appears twice");
    if (dims_of(slot->second.shape()) != entry.shape)
      throw InputError(path + ": key " + entry.name + ": expected shape " + slot->second.shape().str() + ", got " +
                       shape_string(entry.shape) + (key == "wte.weight" ? " (is vocab_size in config.json right?)" : ""));
  }
  for (const auto& [key, tensor] : expected)
    if (!seen.count(key))
      throw InputError(path + ": missing key " + kPrefix + key + " (expected shape " + tensor.shape().str() + ")");
}

// Reads the weights at `path` into the model's parameters. With `in_place`
// each tensor is converted straight into its parameter (a fresh model, which
// the caller drops if this throws: memory is the model and a few MB);
// otherwise into copies first, so that a failure leaves the model as it was.
// With `bf16` (in place only) each matrix GPT::bf16_slots names goes to
// bfloat16 as its values are read, a run at a time: its float32 parameter
// is never written, so it never takes memory.
static void read_weights(GPT& model, const std::string& path, bool in_place, bool bf16 = false) {
  std::map<std::string, Tensor> expected;  // name without "transformer." -> parameter
  for (auto& [name, tensor] : model.named_parameters()) expected[name.substr(kPrefix.size())] = tensor;
  std::map<std::string, GPT::Bf16Slot> slots;
  if (bf16)
    for (const GPT::Bf16Slot& slot : model.bf16_slots()) slots.emplace(slot.key, slot);
  Bf16Matrix matrix;  // the matrix being read into bfloat16
  std::map<std::string, std::vector<float>> copies;
  std::vector<float> lm_head;  // only when the file has one: it must equal wte
  read_safetensors_into(
      path,
      // The header first: a truncated file or one made for another shape is
      // refused before its data (500 MB for GPT-2 small) is read.
      [&](const std::vector<SafetensorsEntry>& entries) { check_keys(entries, expected, path); },
      [&](const SafetensorsEntry& entry) -> SafetensorsDestination {  // shapes as checked: n values fit
        const std::string key = key_of(entry.name);
        if (is_mask_buffer(key)) return {};
        const bool head = entry.name == "lm_head.weight";
        auto slot = slots.find(key);
        if (!head && slot != slots.end()) {
          const Tensor& weight = *slot->second.weight;
          matrix = Bf16Matrix{weight.size(0), weight.size(1), std::vector<uint16_t>(static_cast<size_t>(weight.numel()))};
          return {nullptr, [&, slot](int64_t offset, const float* values, int64_t count) {
                    for (int64_t i = 0; i < count; i++) matrix.values[static_cast<size_t>(offset + i)] = to_bf16(values[i]);
                    if (offset + count == static_cast<int64_t>(matrix.values.size())) slot->second.store(std::move(matrix));
                  }};
        }
        if (!head && in_place) return {expected.at(key).data(), nullptr};
        std::vector<float>& into = head ? lm_head : copies[key];
        into.resize(static_cast<size_t>(expected.at(head ? "wte.weight" : key).numel()));
        return {into.data(), nullptr};
      });
  if (!lm_head.empty()) {  // tied: the same values (in bfloat16 when wte is stored so)
    const bool tied = model.wte.weight_bf16
                          ? std::equal(lm_head.begin(), lm_head.end(), model.wte.weight_bf16->values.begin(),
                                       [](float a, uint16_t b) { return to_bf16(a) == b; })
                          : std::equal(lm_head.begin(), lm_head.end(), in_place ? expected.at("wte.weight").data()
                                                                                : copies.at("wte.weight").data());
    if (!tied)
      throw InputError(path + ": lm_head.weight differs from transformer.wte.weight; tinyadapt always ties the LM head "
                              "to the token embedding");
  }
  if (!in_place)
    for (auto& [key, tensor] : expected)
      std::memcpy(tensor.data(), copies.at(key).data(), copies.at(key).size() * sizeof(float));
}

void load_weights(GPT& model, const std::string& path) { read_weights(model, path, false); }

std::unique_ptr<GPT> load_model(const std::string& dir, bool bf16_matrices) {
  auto model = std::make_unique<GPT>(read_config(dir + "/config.json"), 0, false);  // no init: every value is loaded
  read_weights(*model, dir + "/model.safetensors", true, bf16_matrices);
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
