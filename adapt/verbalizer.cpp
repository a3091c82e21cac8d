// adapt/verbalizer.cpp — see verbalizer.h. In reading order: the text pass
// that keeps its keys, the continuation pass over the label tokens, the sum
// of the picked log-probabilities, the label words as tokens.
#include "adapt/verbalizer.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "autograd/ops.h"
#include "data/io.h"

namespace ta::adapt {

namespace {

// An attention prefix (P,C) shared by the batch, or (B,P,C) per row, as
// (B,P,C): the cache holds one row per text. The shared one is gathered on
// the tape, so the continuation's gradient still reaches the prefix.
Tensor per_row(const Tensor& prefix, int B) {
  if (prefix.rank() == 3) return prefix;
  const int P = prefix.size(0);
  std::vector<int> rows(static_cast<size_t>(B) * P);
  for (size_t i = 0; i < rows.size(); i++) rows[i] = static_cast<int>(i % static_cast<size_t>(P));
  return embedding(prefix, rows, Shape{B, P});  // (B,P,C)
}

// Row b of the key mask (B,S): the prefix mask (B,P+k), else all visible,
// then the padding mask (B,T), else all real.
std::vector<uint8_t> text_key_mask(const ForwardOptions& options, int B, int T, int S) {
  const size_t prefix = static_cast<size_t>(S - T);
  std::vector<uint8_t> mask(static_cast<size_t>(B) * S, 1);
  for (size_t b = 0; b < static_cast<size_t>(B); b++) {
    uint8_t* row = mask.data() + b * S;
    if (!options.prefix_mask.empty()) std::copy_n(options.prefix_mask.data() + b * prefix, prefix, row);
    if (!options.padding_mask.empty()) std::copy_n(options.padding_mask.data() + b * T, T, row + prefix);
  }
  return mask;
}

// The position after each row's last real text token: its own position
// (position_ids, or P + k + column as GPT::forward counts) plus one.
std::vector<int> next_positions(const ForwardOptions& options, int B, int T, int P, int k) {
  std::vector<int> next(static_cast<size_t>(B));
  for (int b = 0; b < B; b++) {
    int last = T - 1;
    if (!options.padding_mask.empty())
      while (last >= 0 && !options.padding_mask[static_cast<size_t>(b) * T + last]) last--;
    if (last < 0) throw std::invalid_argument("forward_keeping_keys: row " + std::to_string(b) + " has no real token");
    const int position = options.position_ids.empty() ? P + k + last
                                                       : options.position_ids[static_cast<size_t>(b) * (k + T) + k + last];
    next[static_cast<size_t>(b)] = position + 1;
  }
  return next;
}

}  // namespace

Tensor forward_keeping_keys(const GPT& model, const std::vector<int>& ids, int B, int T, const ForwardOptions& options,
                            TextKeys& keys) {
  if (options.cache) throw std::invalid_argument("forward_keeping_keys: the options already hold a KV cache");
  if (!options.prefix_keys.empty() && options.prefix_keys.size() != static_cast<size_t>(model.n_layer()))
    throw std::invalid_argument("forward_keeping_keys: prefix_keys need one entry per layer");
  keys = TextKeys{};
  for (size_t i = 0; i < options.prefix_keys.size(); i++) {
    keys.cache.keys.push_back(per_row(options.prefix_keys[i], B));
    keys.cache.values.push_back(per_row(options.prefix_values[i], B));
  }
  // The same pass with the attention prefix moved into a cache: GPT::forward
  // then appends each layer's keys and values of the input prefix and text.
  ForwardOptions caching = options;
  caching.prefix_keys.clear();
  caching.prefix_values.clear();
  caching.cache = &keys.cache;
  Tensor hidden = model.forward(ids, B, T, caching);  // (B,k+T,C)
  const int S = keys.cache.length(), k = hidden.size(1) - T;
  keys.key_mask = text_key_mask(options, B, T, S);
  keys.next_position = next_positions(options, B, T, S - k - T, k);
  keys.row_tags = options.row_tags;
  keys.dropout_rng = options.dropout_rng;
  return hidden;
}

namespace {

// The kept keys of the text rows being scored, one row each.
struct RowKeys {
  std::vector<Tensor> keys, values;  // per layer (R,S,C)
  std::vector<uint8_t> key_mask;     // (R,S)
  std::vector<int> next_position;    // (R)
  std::vector<int> row_tags;         // (R) or empty
};

// Rows `rows` of t (B,S,C) as (R,S,C), gathered on the tape.
Tensor rows_on_tape(const Tensor& t, const std::vector<int>& rows) {
  const int B = t.size(0), S = t.size(1), C = t.size(2), R = static_cast<int>(rows.size());
  std::vector<int> ids(static_cast<size_t>(R) * S);  // (R,S): row r's S keys
  for (size_t i = 0; i < ids.size(); i++) ids[i] = rows[i / static_cast<size_t>(S)] * S + static_cast<int>(i % static_cast<size_t>(S));
  return embedding(reshape(t, {B * S, C}), ids, Shape{R, S});  // (R,S,C)
}

// The keys of text rows `rows`: the cache itself when they are all its rows
// in order (training, evaluation: no copy), else gathered once for every
// word (serving: one user's rows of a mixed batch).
RowKeys keys_of_rows(const TextKeys& keys, const std::vector<int>& rows) {
  RowKeys out;
  const int S = keys.cache.length();
  bool every_row = rows.size() == keys.next_position.size();
  for (size_t r = 0; r < rows.size() && every_row; r++) every_row = rows[r] == static_cast<int>(r);
  for (size_t i = 0; i < keys.cache.keys.size(); i++) {
    out.keys.push_back(every_row ? keys.cache.keys[i] : rows_on_tape(keys.cache.keys[i], rows));
    out.values.push_back(every_row ? keys.cache.values[i] : rows_on_tape(keys.cache.values[i], rows));
  }
  for (int t : rows) {
    const uint8_t* mask = keys.key_mask.data() + static_cast<size_t>(t) * S;
    out.key_mask.insert(out.key_mask.end(), mask, mask + S);
    out.next_position.push_back(keys.next_position[static_cast<size_t>(t)]);
    if (!keys.row_tags.empty()) out.row_tags.push_back(keys.row_tags[static_cast<size_t>(t)]);
  }
  return out;
}

// Σ_{j≥1} log p(w[j] | x, w[<j]) for every row, (R): the LM runs over w's
// tokens but its last, (R, n−1), after each row's text keys (an attention
// prefix of S keys, masked as the text saw them), at the positions after the
// text's last real token. Every row feeds the same tokens: no padding.
Tensor continuation_log_prob(const GPT& model, const RowKeys& keys, const std::vector<int>& word, Rng* dropout_rng) {
  const int R = static_cast<int>(keys.next_position.size()), J = static_cast<int>(word.size()) - 1;
  const int V = model.config().vocab_size;
  ForwardOptions options;
  options.prefix_keys = keys.keys;
  options.prefix_values = keys.values;
  options.prefix_mask = keys.key_mask;
  options.row_tags = keys.row_tags;
  options.dropout_rng = dropout_rng;
  std::vector<int> ids, picks;  // picks: w[j+1], predicted at column j of row r
  for (int r = 0; r < R; r++) {
    const int first = keys.next_position[static_cast<size_t>(r)];
    if (first + J > model.config().n_positions)
      throw InputError("a label word of " + std::to_string(word.size()) + " tokens after a text ending at position " +
                       std::to_string(first - 1) + " exceeds n_positions " + std::to_string(model.config().n_positions) +
                       " (encode texts to AdaptedModel::max_text_tokens())");
    for (int j = 0; j < J; j++) {
      ids.push_back(word[static_cast<size_t>(j)]);
      options.position_ids.push_back(first + j);
      picks.push_back((r * J + j) * V + word[static_cast<size_t>(j) + 1]);
    }
  }
  Tensor log_probs = log_softmax(model.logits(model.forward(ids, R, J, options)));  // (R,J,V)
  Tensor picked = embedding(reshape(log_probs, {R * J * V, 1}), picks, Shape{R, J});  // (R,J,1)
  return sum(reshape(picked, {R, J}), 1);                                             // (R)
}

}  // namespace

Tensor word_log_probs(const GPT& model, const Tensor& last_hidden, const std::vector<std::vector<int>>& words,
                      const TextKeys& keys, const std::vector<int>& rows) {
  const int R = last_hidden.size(0), L = static_cast<int>(words.size()), V = model.config().vocab_size;
  std::vector<int> text_rows = rows;
  if (text_rows.empty()) {
    text_rows.resize(static_cast<size_t>(R));
    std::iota(text_rows.begin(), text_rows.end(), 0);
  }
  if (text_rows.size() != static_cast<size_t>(R))
    throw std::invalid_argument("word_log_probs: need one text row per row of last_hidden");
  // log p(w[0] | x): the next-token distribution at the text's last token.
  std::vector<int> first_tokens;  // (R,L)
  for (int r = 0; r < R; r++)
    for (const std::vector<int>& word : words) first_tokens.push_back(r * V + word[0]);
  Tensor first_log_probs = reshape(log_softmax(model.logits(last_hidden)), {R * V, 1});      // (R·V,1)
  Tensor scores = reshape(embedding(first_log_probs, first_tokens, Shape{R, L}), {R, L});  // (R,L)
  // + the later tokens' log-probabilities, one column per word (0 for a word of one token).
  const RowKeys row_keys = continuation_positions(words) > 0 ? keys_of_rows(keys, text_rows) : RowKeys{};
  Tensor later;  // (R,L)
  for (const std::vector<int>& word : words) {
    Tensor column = word.size() > 1 ? reshape(continuation_log_prob(model, row_keys, word, keys.dropout_rng), {R, 1})
                                    : Tensor::zeros({R, 1});
    later = later.defined() ? concat(later, column, 1) : column;
  }
  return add(scores, later);  // (R,L): Σ_j log p(w[j] | x, w[<j])
}

std::vector<std::vector<int>> label_word_tokens(const std::vector<std::string>& words, const data::Tokenizer& tokenizer,
                                                int n_positions) {
  std::vector<std::vector<int>> tokens;
  for (size_t l = 0; l < words.size(); l++) {
    const std::string& word = words[l];
    std::vector<int> ids = tokenizer.encode(word, {false, "label word '" + word + "'"});
    if (ids.empty() || word == " ")
      throw InputError("label word " + std::to_string(l + 1) + " ('" + word +
                       "') is empty: the verbalizer scores a word after the text (use --label-words)");
    for (size_t m = 0; m < l; m++)
      if (tokens[m] == ids)
        throw InputError("label words '" + words[m] + "' and '" + word +
                         "' are the same tokens: the verbalizer cannot tell them apart (use --label-words)");
    if (static_cast<int>(ids.size()) > n_positions)
      throw InputError("label word '" + word + "' has " + std::to_string(ids.size()) +
                       " tokens: after one text token it does not fit in n_positions " + std::to_string(n_positions));
    tokens.push_back(std::move(ids));
  }
  return tokens;
}

int continuation_positions(const std::vector<std::vector<int>>& words) {
  size_t longest = 1;
  for (const std::vector<int>& word : words) longest = std::max(longest, word.size());
  return static_cast<int>(longest) - 1;
}

}  // namespace ta::adapt
