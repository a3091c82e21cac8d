// adapt/prompt.cpp — prompt tuning; see prompt.h for the contract.
#include "adapt/prompt.h"

#include <algorithm>
#include <cstring>

#include "data/io.h"

namespace ta::adapt {

PromptTuning::PromptTuning(const MethodConfig& config) : config_(config) {
  if (config.num_virtual_tokens <= 0)
    throw InputError("prompt tuning: num_virtual_tokens must be positive, got " +
                     std::to_string(config.num_virtual_tokens));
  if (config.prompt_init != "vocab" && config.prompt_init != "label" && config.prompt_init != "random")
    throw InputError("prompt tuning: prompt_init must be vocab, label or random, got \"" + config.prompt_init + "\"");
}

// k token ids drawn uniformly, with replacement, from the real tokens [0, vocab_size).
static std::vector<int> sample_vocabulary(int k, int vocab_size, Rng& rng) {
  std::vector<int> ids(static_cast<size_t>(k));
  for (int& id : ids) id = rng.below(vocab_size);
  return ids;
}

// Lester's class-label init: the label words' tokens in label order, cut to
// k, then vocab samples for the rows the labels do not fill.
static std::vector<int> label_then_vocabulary(int k, const AttachContext& context, int vocab_size, Rng& rng) {
  std::vector<int> ids;
  for (const std::vector<int>& word : context.label_word_ids)
    for (int id : word)
      if (static_cast<int>(ids.size()) < k) ids.push_back(id);
  std::vector<int> padding = sample_vocabulary(k - static_cast<int>(ids.size()), vocab_size, rng);
  ids.insert(ids.end(), padding.begin(), padding.end());
  return ids;
}

void PromptTuning::attach(GPT& model, const AttachContext& context, Rng& rng) {
  model_ = &model;
  model.freeze_all();
  const int k = config_.num_virtual_tokens, C = model.config().n_embd, V = model.config().vocab_size;
  const int real_vocab = context.vocab_size > 0 ? std::min(context.vocab_size, V) : V;
  prompt_embeddings_ = Tensor::empty({k, C});
  if (config_.prompt_init == "random") {
    fill_uniform(prompt_embeddings_, rng, -0.5f, 0.5f);
  } else {
    init_token_ids_ = config_.prompt_init == "label" ? label_then_vocabulary(k, context, real_vocab, rng)
                                                     : sample_vocabulary(k, real_vocab, rng);
    for (int j = 0; j < k; j++) {
      int id = init_token_ids_[static_cast<size_t>(j)];
      if (id < 0 || id >= V)
        throw InputError("prompt tuning: label token id " + std::to_string(id) + " is outside the vocabulary");
      std::memcpy(prompt_embeddings_.data() + static_cast<size_t>(j) * C,
                  model.wte.weight.data() + static_cast<size_t>(id) * C, sizeof(float) * C);
    }
  }
  prompt_embeddings_.set_requires_grad(true);
}

void PromptTuning::prepare(ForwardOptions& options, int batch) const { options.input_prefix = prompt_embeddings_; }

// The prompt is an embedding table: no weight decay (nanoGPT's rule for wte).
std::vector<OptimParam> PromptTuning::trainable_parameters() const {
  return {{"prompt_embeddings", prompt_embeddings_, false}};
}

int64_t PromptTuning::added_parameters() const { return prompt_embeddings_.numel(); }

std::vector<NamedArray> PromptTuning::save_tensors() const {
  return {to_named_array("prompt_embeddings", prompt_embeddings_)};
}

void PromptTuning::load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) {
  copy_into(prompt_embeddings_, find_array(tensors, "prompt_embeddings", source), source);
}

json::Value prompt_learning_config(const std::string& peft_type, int num_virtual_tokens, const ModelConfig& model) {
  json::Value config = json::Value::object();
  config.set("peft_type", peft_type);
  config.set("task_type", "CAUSAL_LM");
  config.set("num_virtual_tokens", num_virtual_tokens);
  config.set("token_dim", model.n_embd);
  config.set("num_transformer_submodules", 1);
  config.set("num_attention_heads", model.n_head);
  config.set("num_layers", model.n_layer);
  config.set("inference_mode", true);
  return config;
}

// PEFT's PromptTuningConfig. The init is written as PEFT would run it before
// loading our weights: "TEXT" would make PEFT load a tokenizer by name, so
// the label init (whose weights the file carries anyway) is written as
// SAMPLE_VOCAB; our own prompt_init field keeps "label".
json::Value PromptTuning::peft_config() const {
  json::Value config = prompt_learning_config("PROMPT_TUNING", config_.num_virtual_tokens, model_->config());
  config.set("prompt_tuning_init", config_.prompt_init == "random" ? "RANDOM" : "SAMPLE_VOCAB");
  config.set("prompt_tuning_init_text", json::Value());
  config.set("tokenizer_name_or_path", json::Value());
  return config;
}

static MethodRegistration prompt_registration{
    "prompt", [](const MethodConfig& config) { return std::make_unique<PromptTuning>(config); }};

}  // namespace ta::adapt
