// adapt/prefix.cpp — prefix tuning; see prefix.h for the contract and the layout.
#include "adapt/prefix.h"

#include <cmath>

#include "adapt/prompt.h"
#include "data/io.h"

namespace ta::adapt {

PrefixTuning::PrefixTuning(const MethodConfig& config) : config_(config) {
  if (config.num_virtual_tokens <= 0)
    throw InputError("prefix tuning: num_virtual_tokens must be positive, got " +
                     std::to_string(config.num_virtual_tokens));
  if (config.prefix_projection && config.prefix_hidden <= 0)
    throw InputError("prefix tuning: prefix_hidden must be positive, got " + std::to_string(config.prefix_hidden));
}

// A trainable leaf of `shape`, filled by `fill`.
template <typename Fill>
static Tensor trainable_leaf(Shape shape, Fill fill) {
  Tensor t = Tensor::empty(shape);
  fill(t);
  t.set_requires_grad(true);
  return t;
}

void PrefixTuning::attach(GPT& model, const AttachContext& context, Rng& rng) {
  model_ = &model;
  model.freeze_all();
  const int k = config_.num_virtual_tokens, C = model.config().n_embd;
  const int table_width = 2 * model.n_layer() * C, hidden = config_.prefix_hidden;
  auto normal = [&](Tensor& t) { fill_normal(t, rng, 0.0f, 1.0f); };
  if (!config_.prefix_projection) {
    prefix_table_ = trainable_leaf({k, table_width}, normal);
    return;
  }
  // torch.nn.Linear's default init: U(±1/sqrt(fan_in)) for weight and bias.
  auto uniform_for = [&](int fan_in) {
    float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    return [&rng, bound](Tensor& t) { fill_uniform(t, rng, -bound, bound); };
  };
  prefix_input_ = trainable_leaf({k, C}, normal);
  encoder_in_weight_ = trainable_leaf({C, hidden}, uniform_for(C));
  encoder_in_bias_ = trainable_leaf({hidden}, uniform_for(C));
  encoder_out_weight_ = trainable_leaf({hidden, table_width}, uniform_for(hidden));
  encoder_out_bias_ = trainable_leaf({table_width}, uniform_for(hidden));
}

Tensor PrefixTuning::prefix_table() const {
  if (!reparameterised()) return prefix_table_;
  Tensor hidden = tanh(linear(prefix_input_, encoder_in_weight_, encoder_in_bias_));  // (k, hidden)
  return linear(hidden, encoder_out_weight_, encoder_out_bias_);                     // (k, 2LC)
}

// Layer i's keys are columns [2i·C, (2i+1)·C) of P, its values the next C.
void PrefixTuning::prepare(ForwardOptions& options, int batch) const {
  const int C = model_->config().n_embd, L = model_->n_layer();
  Tensor table = prefix_table();  // (k, 2LC)
  options.prefix_keys.clear();
  options.prefix_values.clear();
  for (int i = 0; i < L; i++) {
    options.prefix_keys.push_back(slice(table, 1, 2 * i * C, (2 * i + 1) * C));          // (k, C)
    options.prefix_values.push_back(slice(table, 1, (2 * i + 1) * C, (2 * i + 2) * C));  // (k, C)
  }
}

std::vector<OptimParam> PrefixTuning::trainable_parameters() const {
  if (!reparameterised()) return {{"prompt_embeddings", prefix_table_, false}};
  // PEFT's PrefixEncoder names; the MLP's matrices decay, as nanoGPT's rule.
  return {{"prompt_encoder.embedding.weight", prefix_input_, false},
          {"prompt_encoder.transform.0.weight", encoder_in_weight_, true},
          {"prompt_encoder.transform.0.bias", encoder_in_bias_, false},
          {"prompt_encoder.transform.2.weight", encoder_out_weight_, true},
          {"prompt_encoder.transform.2.bias", encoder_out_bias_, false}};
}

int64_t PrefixTuning::added_parameters() const {
  int64_t count = 0;
  for (const OptimParam& param : trainable_parameters()) count += param.tensor.numel();
  return count;
}

// The folded P: computed once without recording, so the file holds plain values.
std::vector<NamedArray> PrefixTuning::save_tensors() const {
  NoGradGuard no_grad;
  return {to_named_array("prompt_embeddings", prefix_table())};
}

// The file holds a plain P, so a reparameterised method drops its MLP here
// and goes on with the table (as PEFT in inference mode).
void PrefixTuning::load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) {
  const int k = config_.num_virtual_tokens, table_width = 2 * model_->n_layer() * model_->config().n_embd;
  Tensor table = Tensor::zeros({k, table_width});
  copy_into(table, find_array(tensors, "prompt_embeddings", source), source);
  table.set_requires_grad(true);
  prefix_table_ = table;
  prefix_input_ = encoder_in_weight_ = encoder_in_bias_ = encoder_out_weight_ = encoder_out_bias_ = Tensor();
}

// PEFT's PrefixTuningConfig. With inference_mode true PEFT loads
// prompt_embeddings as the plain table whatever prefix_projection says,
// which is what our folded file holds.
json::Value PrefixTuning::peft_config() const {
  json::Value config = prompt_learning_config("PREFIX_TUNING", config_.num_virtual_tokens, model_->config());
  config.set("prefix_projection", config_.prefix_projection);
  config.set("encoder_hidden_size", config_.prefix_hidden);
  return config;
}

static MethodRegistration prefix_registration{
    "prefix", [](const MethodConfig& config) { return std::make_unique<PrefixTuning>(config); }};

}  // namespace ta::adapt
