// adapt/head.cpp — see head.h.
#include "adapt/head.h"

#include "adapt/method.h"
#include "autograd/ops.h"
#include "data/io.h"

namespace ta::adapt {

std::string pooling_name(Pooling pooling) {
  switch (pooling) {
    case Pooling::LastToken: return "last";
    case Pooling::FirstToken: return "first";
    case Pooling::Mean: return "mean";
  }
  return "last";
}

Pooling pooling_from_name(const std::string& name, const std::string& source) {
  if (name == "last") return Pooling::LastToken;
  if (name == "first") return Pooling::FirstToken;
  if (name == "mean") return Pooling::Mean;
  throw InputError(source + ": pooling must be last, first or mean, got '" + name + "'");
}

json::Value head_config_to_json(const HeadConfig& c) {
  json::Value v = json::Value::object();
  v.set("type", c.type);
  v.set("pooling", pooling_name(c.pooling));
  if (c.type == "mlp") {
    v.set("hidden", c.hidden);
    v.set("activation", c.activation);
  }
  json::Value names = json::Value::array(), words = json::Value::array();
  for (const std::string& n : c.label_names) names.push(n);
  for (const std::string& w : c.label_words) words.push(w);
  v.set("label_names", names);
  v.set("label_words", words);
  if (!c.initialized_from.empty()) v.set("initialized_from", c.initialized_from);
  return v;
}

HeadConfig head_config_from_json(const json::Value& v, const std::string& source) {
  HeadConfig c;
  c.type = v.at("type", source).as_string(source + ": head.type");
  if (c.type != "linear" && c.type != "mlp" && c.type != "verbalizer")
    throw InputError(source + ": head.type must be linear, mlp or verbalizer, got '" + c.type + "'");
  c.pooling = pooling_from_name(v.at("pooling", source).as_string(source + ": head.pooling"), source);
  if (c.type == "mlp") {
    c.hidden = static_cast<int>(v.at("hidden", source).as_int(source + ": head.hidden", 1, 1 << 20));
    c.activation = v.at("activation", source).as_string(source + ": head.activation");
  }
  for (const json::Value& n : v.at("label_names", source).items(source + ": head.label_names"))
    c.label_names.push_back(n.as_string(source + ": head.label_names"));
  for (const json::Value& w : v.at("label_words", source).items(source + ": head.label_words"))
    c.label_words.push_back(w.as_string(source + ": head.label_words"));
  if (const json::Value* from = v.find("initialized_from")) c.initialized_from = from->as_string(source + ": head.initialized_from");
  if (c.label_names.size() < 2) throw InputError(source + ": head.label_names needs at least 2 labels");
  return c;
}

namespace {

Tensor trainable_normal(Shape shape, Rng& rng) {
  Tensor t = Tensor::empty(shape);
  fill_normal(t, rng, 0.0f, 0.02f);
  t.set_requires_grad(true);
  return t;
}

Tensor trainable_zeros(Shape shape) {
  Tensor t = Tensor::zeros(shape);
  t.set_requires_grad(true);
  return t;
}

}  // namespace

Head::Head(const HeadConfig& config, int n_embd, std::vector<std::vector<int>> label_tokens, Rng& rng)
    : config_(config), label_tokens_(std::move(label_tokens)) {
  const int L = num_labels();
  if (config_.type == "linear") {
    weight = trainable_normal({n_embd, L}, rng);
    bias = trainable_zeros({L});
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  } else if (config_.type == "mlp") {
    if (config_.activation != "relu" && config_.activation != "gelu")
      throw InputError("head: activation must be relu or gelu, got '" + config_.activation + "'");
    weight = trainable_normal({n_embd, config_.hidden}, rng);
    bias = trainable_zeros({config_.hidden});
    out_weight = trainable_normal({config_.hidden, L}, rng);
    out_bias = trainable_zeros({L});
    register_parameter("hidden.weight", weight);
    register_parameter("hidden.bias", bias);
    register_parameter("out.weight", out_weight);
    register_parameter("out.bias", out_bias);
  } else if (config_.type == "verbalizer") {
    if (static_cast<int>(label_tokens_.size()) != L)
      throw std::invalid_argument("Head: the verbalizer needs one word of tokens per label");
  } else {
    throw InputError("head: type must be linear, mlp or verbalizer, got '" + config_.type + "'");
  }
}

Tensor Head::features(const GPT& model, const Tensor& hidden, int B, int T, const ForwardOptions& options) const {
  return model.pool(hidden, B, T, pooling(), options);  // (B,C)
}

Tensor Head::logits(const GPT& model, const Tensor& features, const TextKeys* keys, const std::vector<int>& rows) const {
  if (config_.type == "linear") return linear(features, weight, bias);  // (R,L)
  if (config_.type == "mlp") {
    Tensor h = linear(features, weight, bias);  // (R,H)
    h = config_.activation == "relu" ? relu(h) : gelu(h);
    return linear(h, out_weight, out_bias);  // (R,L)
  }
  if (needs_text_keys()) {
    if (!keys) throw std::invalid_argument("Head::logits: multi-token label words need the text pass's keys");
    return word_log_probs(model, features, label_tokens_, *keys, rows);  // (R,L)
  }
  // Every word one token: log p(w_l | x) = z[w_l] − logsumexp(z), z = f Eᵀ
  // the LM's logits. The logsumexp is the same for every label of a row, and
  // softmax, cross-entropy and argmax over the labels do not see a per-row
  // constant: so the L dot products f E[w_l]ᵀ give the same training and
  // predictions as the whole-word scores, without the (R,V) logits.
  std::vector<int> first_tokens;
  for (const std::vector<int>& word : label_tokens_) first_tokens.push_back(word[0]);
  Tensor label_rows = model.wte.forward(first_tokens, Shape{num_labels()});  // (L,C)
  return matmul(features, label_rows, false, true);  // (R,C) @ (C,L) -> (R,L)
}

std::vector<OptimParam> Head::trainable_parameters() const {
  std::vector<OptimParam> params;
  for (auto& [name, t] : named_parameters()) params.push_back({"head." + name, t, t.rank() == 2});
  return params;
}

namespace {

// head.label_tokens: the words' ids as floats, (L) when every word is one
// token (the format from before whole-word scoring), else (L,M) with each
// row padded by −1 to the longest word's M tokens.
NamedArray label_tokens_array(const std::vector<std::vector<int>>& words) {
  const int64_t L = static_cast<int64_t>(words.size()), M = continuation_positions(words) + 1;
  NamedArray array{"head.label_tokens", M == 1 ? std::vector<int64_t>{L} : std::vector<int64_t>{L, M}, {}};
  for (const std::vector<int>& word : words)
    for (int64_t j = 0; j < M; j++) array.values.push_back(j < static_cast<int64_t>(word.size()) ? static_cast<float>(word[j]) : -1.0f);
  return array;
}

}  // namespace

std::vector<NamedArray> Head::save_tensors() const {
  std::vector<NamedArray> arrays;
  for (auto& [name, t] : named_parameters()) arrays.push_back(to_named_array("head." + name, t));
  if (config_.type == "verbalizer") arrays.push_back(label_tokens_array(label_tokens_));
  return arrays;
}

void Head::load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) {
  for (auto& [name, t] : named_parameters()) {
    Tensor slot = t;
    copy_into(slot, find_array(tensors, "head." + name, source), source);
  }
  if (config_.type != "verbalizer") return;
  const NamedArray& saved = find_array(tensors, "head.label_tokens", source);
  const NamedArray expected = label_tokens_array(label_tokens_);
  if (saved.shape.size() == 1 && expected.shape.size() == 2) {
    size_t l = 0;
    while (label_tokens_[l].size() == 1) l++;
    throw InputError(source + ": head.label_tokens holds one token per label, but label word '" + config_.label_words[l] +
                     "' has " + std::to_string(label_tokens_[l].size()) + " tokens: the adapter was saved by a " +
                     "tinyadapt that scored only each word's first token; train it again");
  }
  if (saved.shape != expected.shape || saved.values != expected.values)
    throw InputError(source + ": head.label_tokens differ from the tokens of the label words under this tokenizer");
}

}  // namespace ta::adapt
