// nn/layers.cpp — see layers.h.
#include "nn/layers.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "data/io.h"

namespace ta {

Tensor dropout_if_training(const Tensor& x, float p, const ForwardOptions& options) {
  if (!options.dropout_rng || p == 0.0f) return x;
  return dropout(x, p, *options.dropout_rng);
}

// Parameters start as zeros and trainable; the model's init fills them.
// A trainable parameter: vectors (biases) start at 0; matrices uninitialised,
// as GPT::initialise or a checkpoint writes every value of them. (Untouched,
// a matrix takes no memory yet: a checkpoint read into bfloat16 never
// touches its float32 storage at all.)
static Tensor new_parameter(Shape shape) {
  Tensor t = shape.rank >= 2 ? Tensor::empty(shape) : Tensor::zeros(shape);
  t.set_requires_grad(true);
  return t;
}

Linear::Linear(int in_features, int out_features)
    : weight(new_parameter({in_features, out_features})), bias(new_parameter({out_features})) {
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor Linear::forward(const Tensor& x, const ForwardOptions& options) const {
  // (..., out); the update is summed inside the op (see autograd/ops.h: linear, lora_linear).
  if (weight_bf16) return linear_bf16(x, weight_bf16, false, bias, output_delta ? output_delta(x, options) : Tensor());
  if (low_rank) return lora_linear(x, weight, bias, low_rank->A, low_rank->B, low_rank->scale);
  return linear(x, weight, bias, output_delta ? output_delta(x, options) : Tensor());
}

Embedding::Embedding(int num_embeddings, int dim) : weight(new_parameter({num_embeddings, dim})) {
  register_parameter("weight", weight);
}

Tensor Embedding::forward(const std::vector<int>& ids, Shape ids_shape) const {
  return weight_bf16 ? embedding_bf16(*weight_bf16, ids, ids_shape) : embedding(weight, ids, ids_shape);
}

LayerNorm::LayerNorm(int dim, float eps)
    : weight(Tensor::full({dim}, 1.0f)), bias(new_parameter({dim})), eps(eps) {
  weight.set_requires_grad(true);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor LayerNorm::forward(const Tensor& x) const { return layernorm(x, weight, bias, eps); }

MLP::MLP(int n_embd) : c_fc(n_embd, 4 * n_embd), c_proj(4 * n_embd, n_embd) {
  register_module("c_fc", c_fc);
  register_module("c_proj", c_proj);
}

Tensor MLP::forward(const Tensor& x, const ForwardOptions& options) const {
  Tensor hidden = gelu(c_fc.forward(x, options));  // (B,T,4C)
  return c_proj.forward(hidden, options);          // (B,T,C)
}

Attention::Attention(int n_embd, int n_head, bool causal, int layer_index)
    : c_attn(n_embd, 3 * n_embd), c_proj(n_embd, n_embd), n_embd(n_embd), n_head(n_head),
      causal(causal), layer_index(layer_index) {
  register_module("c_attn", c_attn);
  register_module("c_proj", c_proj);
}

// Appends this step's keys and values (the K and V thirds of qkv) to the cache.
static void append_to_cache(KVCache& cache, int layer, const Tensor& qkv, int C) {
  Tensor& past_keys = cache.keys[layer];
  Tensor& past_values = cache.values[layer];
  if (!cache.grow_in_place || needs_grad({&qkv, &past_keys, &past_values})) {
    if (!cache.rows_used.empty())  // its tensors hold spare rows: concatenating would put them in the keys
      throw std::invalid_argument("forward: a KV cache grown in place cannot go on with a tape recording");
    Tensor keys = slice(qkv, 2, C, 2 * C);        // (B,T,C)
    Tensor values = slice(qkv, 2, 2 * C, 3 * C);  // (B,T,C)
    past_keys = past_keys.defined() ? concat(past_keys, keys, 1) : keys;  // (B,P+T,C)
    past_values = past_values.defined() ? concat(past_values, values, 1) : values;
    return;
  }
  // In place: rows [P, P+T) of a (B, capacity, C) buffer, moved to one twice
  // as large when full (a (P, C) prefix shared by every row is copied to each).
  const int B = qkv.size(0), T = qkv.size(1), P = cache.rows(layer);
  if (cache.rows_used.empty()) {  // from now on rows_used, not the tensors' sizes, says how many rows hold keys
    std::vector<int> used;
    for (size_t i = 0; i < cache.keys.size(); i++) used.push_back(cache.rows(i));
    cache.rows_used = used;
  }
  const int capacity = past_keys.defined() && past_keys.rank() == 3 ? past_keys.size(1) : 0;
  if (P + T > capacity) {
    const int grown = std::max(64, 2 * (P + T));
    for (Tensor* past : {&past_keys, &past_values}) {
      Tensor bigger = Tensor::empty({B, grown, C});
      for (int b = 0; b < B && P > 0; b++) {
        const float* from = past->data() + (past->rank() == 2 ? 0 : static_cast<int64_t>(b) * past->size(-2) * C);
        std::memcpy(bigger.data() + static_cast<int64_t>(b) * grown * C, from, static_cast<size_t>(P) * C * sizeof(float));
      }
      *past = bigger;
    }
  }
  const int rows = past_keys.size(1);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float* row = qkv.data() + (static_cast<int64_t>(b) * T + t) * 3 * C;
      const int64_t at = (static_cast<int64_t>(b) * rows + P + t) * C;
      std::memcpy(past_keys.data() + at, row + C, static_cast<size_t>(C) * sizeof(float));
      std::memcpy(past_values.data() + at, row + 2 * C, static_cast<size_t>(C) * sizeof(float));
    }
  cache.rows_used[static_cast<size_t>(layer)] = P + T;
}

Tensor Attention::forward(const Tensor& x, const ForwardOptions& options, const AttentionOptions& base) const {
  Tensor qkv = c_attn.forward(x, options);  // (B,T,3C)
  AttentionOptions layer_options = base;
  if (options.cache) {
    KVCache& cache = *options.cache;
    layer_options.prefix_keys = cache.keys[layer_index];
    layer_options.prefix_values = cache.values[layer_index];
    if (!cache.rows_used.empty()) layer_options.prefix_len = cache.rows(layer_index);
    append_to_cache(cache, layer_index, qkv, n_embd);
  } else if (!options.prefix_keys.empty()) {
    layer_options.prefix_keys = options.prefix_keys[layer_index];
    layer_options.prefix_values = options.prefix_values[layer_index];
  }
  Tensor heads = attention(qkv, layer_options);  // (B,T,C)
  return c_proj.forward(heads, options);         // (B,T,C)
}

Block::Block(int n_embd, int n_head, float eps, bool causal, float resid_pdrop, int layer_index)
    : ln_1(n_embd, eps), attn(n_embd, n_head, causal, layer_index), ln_2(n_embd, eps), mlp(n_embd),
      resid_pdrop(resid_pdrop) {
  register_module("ln_1", ln_1);
  register_module("attn", attn);
  register_module("ln_2", ln_2);
  register_module("mlp", mlp);
}

Tensor Block::forward(const Tensor& x, const ForwardOptions& options, const AttentionOptions& base) const {
  Tensor attn_out = dropout_if_training(attn.forward(ln_1.forward(x), options, base), resid_pdrop, options);
  if (attention_output_hook) attn_out = attention_output_hook(attn_out, options);
  Tensor h = add(x, attn_out);  // (B,T,C)
  Tensor mlp_out = dropout_if_training(mlp.forward(ln_2.forward(h), options), resid_pdrop, options);
  if (mlp_output_hook) mlp_out = mlp_output_hook(mlp_out, options);
  return add(h, mlp_out);  // (B,T,C)
}

std::vector<std::pair<std::string, Linear*>> find_linears(Module& root, const std::string& name) {
  std::vector<std::pair<std::string, Linear*>> found;
  for (auto& [full_name, module] : root.named_modules())
    if (auto* linear_module = dynamic_cast<Linear*>(module); linear_module && name_matches(full_name, name))
      found.emplace_back(full_name, linear_module);
  return found;
}

Linear& find_linear(Module& root, const std::string& name) {
  auto found = find_linears(root, name);
  if (found.empty())
    throw InputError("no Linear layer named \"" + name + "\" (names look like transformer.h.0.attn.c_attn)");
  if (found.size() > 1)
    throw InputError("Linear name \"" + name + "\" is ambiguous: " + found[0].first + ", " + found[1].first + ", ...");
  return *found[0].second;
}

}  // namespace ta
