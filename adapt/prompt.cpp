// adapt/prompt.cpp — prompt tuning; see prompt.h for the contract.
#include "adapt/prompt.h"

#include <algorithm>

#include "data/io.h"

namespace ta::adapt {

PromptTuning::PromptTuning(const MethodConfig& config) : config_(config) {
  if (config.num_virtual_tokens <= 0)
    throw InputError("prompt tuning: num_virtual_tokens must be positive, got " +
                     std::to_string(config.num_virtual_tokens));
  if (config.prompt_init != "vocab" && config.prompt_init != "label" && config.prompt_init != "random")
    throw InputError("prompt tuning: prompt_init must be vocab, label or random, got \"" + config.prompt_init + "\"");
}

// One token id for a vocab-init row: uniform over the pool (every row of
// wte when the pool is empty).
static int sample_token(const std::vector<int>& pool, int V, Rng& rng) {
  return pool.empty() ? rng.below(V) : pool[static_cast<size_t>(rng.below(static_cast<int>(pool.size())))];
}

// The tokens each row starts from: with the label init, one label word per
// row in label order (cut to k); every other row one sampled token.
static std::vector<std::vector<int>> init_token_lists(int k, bool labels_first, const AttachContext& context, int V,
                                                      Rng& rng) {
  std::vector<std::vector<int>> rows;
  if (labels_first)
    for (const std::vector<int>& word : context.label_word_ids)
      if (static_cast<int>(rows.size()) < k) rows.push_back(word);
  while (static_cast<int>(rows.size()) < k) rows.push_back({sample_token(context.vocab_sample_ids, V, rng)});
  return rows;
}

// prompt row j = the mean of wte's rows for `tokens` (1, or a word's tokens),
// read through the Embedding, so that a table stored in bfloat16 works too.
static void set_mean_embedding(Tensor& prompt, int j, const Embedding& wte, const std::vector<int>& tokens) {
  const int C = prompt.size(1), V = wte.weight.size(0);
  if (tokens.empty()) throw InputError("prompt tuning: a label word without tokens cannot initialise a prompt row");
  for (int id : tokens)
    if (id < 0 || id >= V) throw InputError("prompt tuning: token id " + std::to_string(id) + " is outside the vocabulary");
  NoGradGuard no_grad;
  const Tensor rows = wte.forward(tokens, Shape{static_cast<int>(tokens.size())});  // (n, C)
  float* row = prompt.data() + static_cast<size_t>(j) * C;
  std::fill(row, row + C, 0.0f);
  for (size_t i = 0; i < tokens.size(); i++)
    for (int c = 0; c < C; c++) row[c] += rows.data()[i * C + c];
  for (int c = 0; c < C; c++) row[c] /= static_cast<float>(tokens.size());
}

void PromptTuning::attach(GPT& model, const AttachContext& context, Rng& rng) {
  model_ = &model;
  model.freeze_all();
  const int k = config_.num_virtual_tokens, C = model.config().n_embd;
  prompt_embeddings_ = Tensor::empty({k, C});
  init_tokens_.clear();
  if (config_.prompt_init == "random") {
    fill_uniform(prompt_embeddings_, rng, -0.5f, 0.5f);
  } else {
    init_tokens_ = init_token_lists(k, config_.prompt_init == "label", context, model.config().vocab_size, rng);
    for (int j = 0; j < k; j++) set_mean_embedding(prompt_embeddings_, j, model.wte, init_tokens_[static_cast<size_t>(j)]);
  }
  prompt_embeddings_.set_requires_grad(true);
}

std::vector<int> most_frequent_tokens(const std::vector<int64_t>& counts, int n) {
  std::vector<int> ids;
  for (size_t id = 0; id < counts.size(); id++)
    if (counts[id] > 0) ids.push_back(static_cast<int>(id));
  const auto more_frequent = [&](int a, int b) {
    return counts[static_cast<size_t>(a)] != counts[static_cast<size_t>(b)] ? counts[static_cast<size_t>(a)] > counts[static_cast<size_t>(b)]
                                                                            : a < b;
  };
  const size_t keep = std::min(ids.size(), static_cast<size_t>(std::max(n, 0)));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<long>(keep), ids.end(), more_frequent);
  ids.resize(keep);
  return ids;
}

std::vector<int64_t> read_token_counts(const std::string& model_dir, int vocab_size) {
  const std::string path = model_dir + "/pretraining.json";
  if (!file_exists(path)) return {};
  const json::Value file = json::parse(read_file(path), path);
  if (!file.is_object()) throw InputError(path + ": expected a JSON object");
  const json::Value* counts = file.find("token_counts");
  if (!counts) return {};
  const std::string what = path + ": token_counts";
  const std::vector<json::Value>& items = counts->items(what);
  if (items.size() != static_cast<size_t>(vocab_size))
    throw InputError(what + " has " + std::to_string(items.size()) + " counts; the tokenizer has " +
                     std::to_string(vocab_size) + " tokens");
  std::vector<int64_t> values;
  values.reserve(items.size());
  for (const json::Value& count : items) values.push_back(count.as_int(what, 0));
  return values;
}

std::vector<int> prompt_init_vocabulary(const std::string& model_dir, const data::Tokenizer& tokenizer) {
  std::vector<int64_t> counts = read_token_counts(model_dir, tokenizer.vocab_size());
  const bool counted = !counts.empty();
  if (!counted) counts.assign(static_cast<size_t>(tokenizer.vocab_size()), 1);  // every token alike
  for (const std::string& special : tokenizer.specials()) counts[static_cast<size_t>(tokenizer.special_id(special))] = 0;
  std::vector<int> pool = most_frequent_tokens(counts, counted ? kPromptInitCommonTokens : tokenizer.vocab_size());
  if (pool.empty()) throw InputError(model_dir + "/pretraining.json: token_counts counts no ordinary token");
  return pool;
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
