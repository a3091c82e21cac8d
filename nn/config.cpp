// nn/config.cpp — see config.h.
#include "nn/config.h"

namespace ta {

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](const char* name, int value) {
    if (value <= 0) throw InputError(source + ": " + name + " must be positive, got " + std::to_string(value));
  };
  positive("vocab_size", vocab_size);
  positive("n_positions", n_positions);
  positive("n_embd", n_embd);
  positive("n_layer", n_layer);
  positive("n_head", n_head);
  if (n_embd % n_head != 0)
    throw InputError(source + ": n_embd " + std::to_string(n_embd) + " is not divisible by n_head " +
                     std::to_string(n_head));
  if (!(layer_norm_epsilon > 0.0f))
    throw InputError(source + ": layer_norm_epsilon must be positive, got " + std::to_string(layer_norm_epsilon));
  auto probability = [&](const char* name, float p) {
    if (!(p >= 0.0f && p < 1.0f)) throw InputError(source + ": " + name + " must be in [0, 1), got " + std::to_string(p));
  };
  probability("embd_pdrop", embd_pdrop);
  probability("resid_pdrop", resid_pdrop);
}

json::Value config_to_json(const ModelConfig& config) {
  json::Value architectures = json::Value::array();
  architectures.push("GPT2LMHeadModel");
  json::Value v = json::Value::object();
  v.set("architectures", architectures);
  v.set("model_type", "gpt2");
  v.set("vocab_size", config.vocab_size);
  v.set("n_positions", config.n_positions);
  v.set("n_ctx", config.n_positions);
  v.set("n_embd", config.n_embd);
  v.set("n_layer", config.n_layer);
  v.set("n_head", config.n_head);
  v.set("n_inner", json::Value());
  v.set("activation_function", "gelu_new");
  v.set("layer_norm_epsilon", static_cast<double>(config.layer_norm_epsilon));
  v.set("embd_pdrop", static_cast<double>(config.embd_pdrop));
  v.set("resid_pdrop", static_cast<double>(config.resid_pdrop));
  v.set("attn_pdrop", 0.0);
  v.set("initializer_range", 0.02);
  v.set("scale_attn_weights", true);
  v.set("tie_word_embeddings", true);
  v.set("is_causal", config.is_causal);
  return v;
}

// Rejects GPT2Config fields whose value would change the architecture away
// from the one we implement.
static void check_supported(const json::Value& value, const ModelConfig& config, const std::string& source) {
  if (const json::Value* act = value.find("activation_function")) {
    const std::string& name = act->as_string(source + ": activation_function");
    if (name != "gelu_new" && name != "gelu_pytorch_tanh")
      throw InputError(source + ": activation_function \"" + name + "\" is not supported (only GPT-2's gelu_new)");
  }
  if (const json::Value* inner = value.find("n_inner"); inner && !inner->is_null()) {
    long long n_inner = inner->as_int(source + ": n_inner");
    if (n_inner != 4LL * config.n_embd)
      throw InputError(source + ": n_inner " + std::to_string(n_inner) + " is not supported (only 4 * n_embd)");
  }
  const char* must_be[][2] = {{"scale_attn_weights", "true"},
                              {"scale_attn_by_inverse_layer_idx", "false"},
                              {"tie_word_embeddings", "true"}};
  for (auto& [field, expected] : must_be) {
    const json::Value* flag = value.find(field);
    if (flag && flag->as_bool(source + ": " + field) != (std::string(expected) == "true"))
      throw InputError(source + ": " + field + " must be " + expected);
  }
}

ModelConfig config_from_json(const json::Value& value, const std::string& source) {
  if (!value.is_object()) throw InputError(source + ": expected a JSON object");
  ModelConfig config;
  auto size = [&](const char* field) {
    return static_cast<int>(value.at(field, source).as_int(source + ": " + field, INT32_MIN, INT32_MAX));
  };
  auto number = [&](const char* field, double fallback) {
    const json::Value* v = value.find(field);
    return static_cast<float>(v ? v->as_number(source + ": " + field) : fallback);
  };
  config.vocab_size = size("vocab_size");
  config.n_positions = size("n_positions");
  config.n_embd = size("n_embd");
  config.n_layer = size("n_layer");
  config.n_head = size("n_head");
  config.layer_norm_epsilon = number("layer_norm_epsilon", 1e-5);
  config.embd_pdrop = number("embd_pdrop", 0.1);
  config.resid_pdrop = number("resid_pdrop", 0.1);
  const json::Value* causal = value.find("is_causal");
  config.is_causal = causal ? causal->as_bool(source + ": is_causal") : true;
  check_supported(value, config, source);
  return config;
}

ModelConfig read_config(const std::string& path) {
  ModelConfig config = config_from_json(json::parse_file(path), path);
  config.validate(path);
  return config;
}

void write_config(const std::string& path, const ModelConfig& config) {
  write_file_atomic(path, config_to_json(config).dump(2) + "\n");
}

}  // namespace ta
