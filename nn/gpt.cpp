// nn/gpt.cpp — see gpt.h.
#include "nn/gpt.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "data/io.h"

namespace ta {

static const ModelConfig& validated(const ModelConfig& config) {
  config.validate("model config");
  return config;
}

GPT::GPT(const ModelConfig& config, uint64_t seed, bool initialise_weights)
    : wte(validated(config).vocab_size, config.n_embd),
      wpe(config.n_positions, config.n_embd),
      ln_f(config.n_embd, config.layer_norm_epsilon),
      config_(config) {
  register_module("transformer.wte", wte);
  register_module("transformer.wpe", wpe);
  for (int i = 0; i < config.n_layer; i++) {
    auto block = std::make_unique<Block>(config.n_embd, config.n_head, config.layer_norm_epsilon,
                                         config.is_causal, config.resid_pdrop, i);
    blocks_.push_back(block.get());
    add_module("transformer.h." + std::to_string(i), std::move(block));
  }
  register_module("transformer.ln_f", ln_f);
  if (initialise_weights) initialise(seed);
}

// GPT-2 / nanoGPT initialisation. Vectors (biases, LayerNorm weights) keep
// their construction values 0 and 1; every matrix is drawn in name order.
void GPT::initialise(uint64_t seed) {
  Rng rng(seed);
  const float residual_sd = 0.02f / std::sqrt(2.0f * static_cast<float>(config_.n_layer));
  for (auto& [name, tensor] : named_parameters()) {
    if (tensor.rank() < 2) continue;
    bool residual_projection = name_matches(name, "c_proj.weight");
    fill_normal(tensor, rng, 0.0f, residual_projection ? residual_sd : 0.02f);
  }
}

// The length P of the attention prefix (or KV cache) every layer sees.
static int attention_prefix_length(const ForwardOptions& options, int n_layer) {
  if (options.cache) {
    if (!options.prefix_keys.empty())
      throw std::invalid_argument("forward: with a KV cache, put the attention prefix in the cache");
    if (options.cache->keys.empty()) {
      options.cache->keys.resize(static_cast<size_t>(n_layer));
      options.cache->values.resize(static_cast<size_t>(n_layer));
    }
    return options.cache->length();
  }
  if (options.prefix_keys.empty() && options.prefix_values.empty()) return 0;
  if (options.prefix_keys.size() != static_cast<size_t>(n_layer) ||
      options.prefix_values.size() != static_cast<size_t>(n_layer))
    throw std::invalid_argument("forward: prefix_keys and prefix_values need one entry per layer");
  return options.prefix_keys[0].size(-2);
}

// Explicit positions (ForwardOptions::position_ids), when given: B*(k+T) of
// them, each a row of wpe.
static void check_position_ids(const std::vector<int>& position_ids, size_t expected, int n_positions) {
  if (position_ids.empty()) return;
  if (position_ids.size() != expected)
    throw std::invalid_argument("forward: position_ids must hold B*(k+T) = " + std::to_string(expected) + " values");
  for (int position : position_ids)
    if (position < 0 || position >= n_positions)
      throw InputError("position " + std::to_string(position) + " is outside [0, n_positions " +
                       std::to_string(n_positions) + ")");
}

// Token embeddings, the input prefix before them, plus position embeddings
// from `first_position` on: (B, k+T, C).
Tensor GPT::embed(const std::vector<int>& ids, int B, int T, int first_position,
                  const ForwardOptions& options) const {
  Tensor x = wte.forward(ids, {B, T});  // (B,T,C)
  const Tensor& prefix = options.input_prefix;
  int k = prefix.defined() ? prefix.size(-2) : 0;
  if (k > 0) {
    Tensor prefix_rows = prefix;  // (B,k,C)
    if (prefix.rank() == 2) {     // (k,C) shared: gather rows 0..k-1 for every batch row
      std::vector<int> rows(static_cast<size_t>(B) * k);
      for (size_t i = 0; i < rows.size(); i++) rows[i] = static_cast<int>(i % static_cast<size_t>(k));
      prefix_rows = embedding(prefix, rows, {B, k});
    }
    x = concat(prefix_rows, x, 1);  // (B,k+T,C)
  }
  if (!options.position_ids.empty()) {  // one row of positions per batch row
    x = add(x, wpe.forward(options.position_ids, {B, k + T}));  // (B,k+T,C) + (B,k+T,C)
  } else {
    std::vector<int> positions(static_cast<size_t>(k + T));
    for (int t = 0; t < k + T; t++) positions[static_cast<size_t>(t)] = first_position + t;
    x = add(x, wpe.forward(positions, {k + T}));  // (B,k+T,C) + (k+T,C)
  }
  return dropout_if_training(x, config_.embd_pdrop, options);
}

// Attention settings every layer shares: heads, causality and the key mask
// (B, P+k+T) assembled from prefix_mask (B, P+k) and padding_mask (B, T).
AttentionOptions GPT::shared_attention_options(int B, int T, int P, int k, const ForwardOptions& options) const {
  AttentionOptions base;
  base.n_head = config_.n_head;
  base.causal = config_.is_causal;
  const auto& prefix_mask = options.prefix_mask;
  const auto& padding_mask = options.padding_mask;
  if (prefix_mask.empty() && padding_mask.empty()) return base;
  size_t prefix_len = static_cast<size_t>(P + k), text_len = static_cast<size_t>(T), rows = static_cast<size_t>(B);
  if (!prefix_mask.empty() && prefix_mask.size() != rows * prefix_len)
    throw std::invalid_argument("forward: prefix_mask must hold B*(P+k) = " + std::to_string(rows * prefix_len) + " values");
  if (!padding_mask.empty() && padding_mask.size() != rows * text_len)
    throw std::invalid_argument("forward: padding_mask must hold B*T = " + std::to_string(rows * text_len) + " values");
  base.key_mask.assign(rows * (prefix_len + text_len), 1);
  for (size_t b = 0; b < rows; b++) {
    uint8_t* row = base.key_mask.data() + b * (prefix_len + text_len);
    if (!prefix_mask.empty()) std::copy_n(prefix_mask.data() + b * prefix_len, prefix_len, row);
    if (!padding_mask.empty()) std::copy_n(padding_mask.data() + b * text_len, text_len, row + prefix_len);
  }
  return base;
}

// One block under gradient checkpointing. Its recomputation in the backward
// must draw the dropout masks of the forward: both runs start from a copy of
// the Rng as it was before the block, and the caller's Rng then moves on to
// where the forward left it, as it would without checkpointing. The closure
// outlives this call, so it holds copies of the options, not references.
static Tensor checkpointed(const Block& block, const Tensor& x, const ForwardOptions& options,
                           const AttentionOptions& base) {
  struct Dropout {
    bool on;
    Rng start, after;
  };
  auto dropout = std::make_shared<Dropout>(
      Dropout{options.dropout_rng != nullptr, options.dropout_rng ? *options.dropout_rng : Rng(0), Rng(0)});
  ForwardOptions copied = options;
  copied.layer_outputs = nullptr;
  const Block* b = &block;
  Tensor y = checkpoint(
      [b, copied, base, dropout](const Tensor& input) {
        ForwardOptions o = copied;
        Rng rng = dropout->start;
        o.dropout_rng = dropout->on ? &rng : nullptr;
        Tensor out = b->forward(input, o, base);
        dropout->after = rng;
        return out;
      },
      x);
  if (dropout->on) *options.dropout_rng = dropout->after;
  return y;
}

Tensor GPT::forward(const std::vector<int>& ids, int B, int T, const ForwardOptions& options) const {
  if (B <= 0 || T <= 0 || ids.size() != static_cast<size_t>(B) * static_cast<size_t>(T))
    throw std::invalid_argument("forward: need B*T ids with B, T > 0");
  int P = attention_prefix_length(options, config_.n_layer);
  int k = options.input_prefix.defined() ? options.input_prefix.size(-2) : 0;
  if (options.position_ids.empty() && P + k + T > config_.n_positions)
    throw InputError("sequence of " + std::to_string(P + k + T) + " positions (prefix " + std::to_string(P + k) +
                     " + text " + std::to_string(T) + ") exceeds n_positions " + std::to_string(config_.n_positions));
  check_position_ids(options.position_ids, static_cast<size_t>(B) * (k + T), config_.n_positions);
  for (int id : ids)
    if (id < 0 || id >= config_.vocab_size)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(config_.vocab_size) + ")");
  Tensor x = embed(ids, B, T, P, options);  // (B,k+T,C)
  if (options.layer_outputs) options.layer_outputs->assign(1, x);
  AttentionOptions base = shared_attention_options(B, T, P, k, options);
  for (const Block* block : blocks_) {
    x = gradient_checkpointing && grad_enabled() && !options.cache ? checkpointed(*block, x, options, base)
                                                                   : block->forward(x, options, base);
    if (options.layer_outputs) options.layer_outputs->push_back(x);
  }
  return ln_f.forward(x);  // (B,k+T,C)
}

Tensor GPT::logits(const Tensor& hidden) const {
  if (wte.weight_bf16) return linear_bf16(hidden, wte.weight_bf16, true, Tensor());
  return matmul(hidden, wte.weight, false, true);
}

std::vector<GPT::Bf16Slot> GPT::bf16_slots() {
  std::vector<Bf16Slot> slots{{"wte.weight", &wte.weight, &wte.weight_bf16}};
  for (size_t i = 0; i < blocks_.size(); i++) {
    Block& b = *blocks_[i];
    const std::string h = "h." + std::to_string(i) + ".";
    for (auto& [name, linear] : {std::pair<const char*, Linear*>{"attn.c_attn", &b.attn.c_attn}, {"attn.c_proj", &b.attn.c_proj},
                                 {"mlp.c_fc", &b.mlp.c_fc}, {"mlp.c_proj", &b.mlp.c_proj}})
      slots.push_back({h + name + ".weight", &linear->weight, &linear->weight_bf16});
  }
  return slots;
}

void GPT::Bf16Slot::store(Bf16Matrix matrix) const {
  *bf16 = std::make_shared<const Bf16Matrix>(std::move(matrix));
  weight->set_requires_grad(false);
  weight->release_values();
  pool_release_cached();  // back to the system, not kept for reuse
}

// Each frozen matrix moves to bfloat16: its values are rounded once into
// weight_bf16 and the float32 ones freed, one matrix at a time, so that
// memory never holds more than the float32 model and one matrix's copy.
// Biases, layer norms and wpe stay float32 (small); a weight that trains is
// never cast.
int64_t GPT::store_frozen_in_bf16() {
  int64_t stored = 0;
  for (const Bf16Slot& slot : bf16_slots()) {
    if (!*slot.bf16 && !slot.weight->requires_grad())
      slot.store(Bf16Matrix::from_float(slot.weight->data(), slot.weight->size(0), slot.weight->size(1)));
    if (*slot.bf16) stored += slot.weight->numel();
  }
  return stored;
}

Tensor GPT::loss(const std::vector<int>& ids, const std::vector<int>& targets, int B, int T,
                 const ForwardOptions& options) const {
  if (targets.size() != ids.size()) throw std::invalid_argument("loss: need one target per id");
  Tensor hidden = forward(ids, B, T, options);  // (B,k+T,C)
  int k = hidden.size(1) - T;
  if (k > 0) hidden = slice(hidden, 1, k, k + T);  // (B,T,C): the prefix rows predict nothing
  // cross_entropy(logits(hidden), targets) without the (B,T,V) logits (ops.h).
  if (wte.weight_bf16) return linear_cross_entropy_bf16(hidden, wte.weight_bf16, targets);
  return linear_cross_entropy(hidden, wte.weight, targets);
}

// The (B,1,k+T) weights that pool the text rows of one sequence each.
static std::vector<float> pooling_weights(int B, int T, int k, Pooling pooling, const std::vector<uint8_t>& padding_mask) {
  std::vector<float> weights(static_cast<size_t>(B) * (k + T), 0.0f);
  for (int b = 0; b < B; b++) {
    float* row = weights.data() + static_cast<size_t>(b) * (k + T) + k;  // this row's text positions
    auto real = [&](int t) { return padding_mask.empty() || padding_mask[static_cast<size_t>(b) * T + t] != 0; };
    int count = 0, first = -1, last = -1;
    for (int t = 0; t < T; t++)
      if (real(t)) {
        count++;
        last = t;
        if (first < 0) first = t;
      }
    if (count == 0) throw std::invalid_argument("pool: row " + std::to_string(b) + " has no real token");
    if (pooling == Pooling::LastToken) row[last] = 1.0f;
    if (pooling == Pooling::FirstToken) row[first] = 1.0f;
    if (pooling == Pooling::Mean)
      for (int t = 0; t < T; t++) row[t] = real(t) ? 1.0f / static_cast<float>(count) : 0.0f;
  }
  return weights;
}

Tensor GPT::pool(const Tensor& hidden, int B, int T, Pooling pooling, const ForwardOptions& options) const {
  int k = hidden.size(1) - T;
  if (hidden.rank() != 3 || hidden.size(0) != B || k < 0)
    throw std::invalid_argument("pool: hidden must be (B, k+T, C), got " + hidden.shape().str());
  if (!options.padding_mask.empty() && options.padding_mask.size() != static_cast<size_t>(B) * T)
    throw std::invalid_argument("pool: padding_mask must hold B*T values");
  Tensor weights = Tensor::from({B, 1, k + T}, pooling_weights(B, T, k, pooling, options.padding_mask));
  Tensor pooled = matmul(weights, hidden);  // (B,1,k+T) @ (B,k+T,C) -> (B,1,C)
  return reshape(pooled, {B, config_.n_embd});  // (B,C)
}

MaskedTokens mask_tokens(const std::vector<int>& ids, int vocab_size, int mask_id,
                         const std::vector<int>& special_ids, Rng& rng, float mask_probability) {
  MaskedTokens out{ids, std::vector<int>(ids.size(), -100)};
  for (size_t i = 0; i < ids.size(); i++) {
    bool special = std::find(special_ids.begin(), special_ids.end(), ids[i]) != special_ids.end();
    if (special || rng.uniform() >= mask_probability) continue;
    out.targets[i] = ids[i];
    float choice = rng.uniform();
    if (choice < 0.8f) out.inputs[i] = mask_id;
    else if (choice < 0.9f) out.inputs[i] = rng.below(vocab_size);
  }
  return out;
}

}  // namespace ta
