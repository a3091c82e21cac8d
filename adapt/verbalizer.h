// adapt/verbalizer.h — the verbalizer's label scores: the log-probability of
// each label word's whole token sequence after the text.
//
// lm-eval-harness's rule for multiple choice (Gao et al., "A framework for
// few-shot language model evaluation"; the scoring of Brown et al. 2020,
// §2.4): the score of label l for text x is
//
//     s_l(x) = log p(w_l | x) = Σ_j log p(w_l[j] | x, w_l[<j])
//
// where w_l is label l's word as tokens (" spam", " not spam"). The scores are
// the label logits: cross-entropy over them trains, their argmax predicts.
// They are not length-normalised (lm-eval's `acc`, not `acc_norm`): a word
// that is a proper prefix of another (" good", " goodness") always scores at
// least as high as the longer one, so such a pair can never predict the
// longer word. It is scored all the same, as lm-eval does.
//
// How: w_l[0] is read off the LM's next-token distribution at the text's
// last real token, as the single-token verbalizer always did. The later
// tokens depend on the text, so the text pass keeps every layer's keys and
// values (TextKeys), and for each word of two or more tokens the LM runs
// once more over that word's tokens but the last, (R, n_l − 1) with no
// padding, every row attending to its own text's keys as an attention
// prefix (masked as the text saw them), at the positions after the text's
// last real token. The text is computed once, not once per label, and the
// kept keys are the cache itself, not a copy per label (serving gathers one
// user's rows once). Gradients flow through the kept keys into the text
// pass, so a prompt (input prefix) or a prefix (attention prefix) learns
// from every token of the words.
//
// Cost: one forward of n_l − 1 tokens per row for each multi-token word,
// plus the kept keys, 2 · n_layer · B · S · C floats for a batch (the text
// pass's K and V, which a plain forward frees layer by layer). On era with
// a 4-layer C=128 base, 50 prompt-tuning steps took 25% longer with the
// default words (4 and 3 tokens) than with single-token ones.
//
// What this is not: a head with parameters (the head file, adapt/head.h,
// holds the words and picks the single-token fast path), or a decoder of
// free text — only the given words are scored.
#pragma once
#include <string>
#include <vector>

#include "data/bpe.h"
#include "nn/gpt.h"

namespace ta::adapt {

// What a text pass leaves so that its rows can be continued: per layer the
// keys and values every text token could see, and where each row ends.
struct TextKeys {
  KVCache cache;                   // per layer (B,S,C), S = P+k+T: attention prefix, input prefix, text
  std::vector<uint8_t> key_mask;   // (B,S): 1 = a key the row's text saw (its prefixes, its real tokens)
  std::vector<int> next_position;  // (B): the position after the row's last real text token
  std::vector<int> row_tags;       // (B) or empty: copied to the continuation rows (serving's users)
  Rng* dropout_rng = nullptr;      // the text pass's dropout, applied to the continuation too
};

// model.forward(ids, B, T, options) — the same hidden states (B,k+T,C) — that
// also fills `keys`. options.prefix_keys/values (P,C) or (B,P,C) become the
// start of the cache; options.cache must be unset.
Tensor forward_keeping_keys(const GPT& model, const std::vector<int>& ids, int B, int T, const ForwardOptions& options,
                            TextKeys& keys);

// s_l(x) for the text rows `rows` of `keys` (all rows when empty) and every
// word: (R,L). last_hidden (R,C) holds those rows' hidden states at their
// last real token (GPT::pool, Pooling::LastToken).
Tensor word_log_probs(const GPT& model, const Tensor& last_hidden, const std::vector<std::vector<int>>& words,
                      const TextKeys& keys, const std::vector<int>& rows);

// The label words as tokens under `tokenizer` (special tokens not matched).
// InputError naming the words for an empty word (nothing after its leading
// space), two words with the same tokens, or a word that leaves no position
// for the text in n_positions.
std::vector<std::vector<int>> label_word_tokens(const std::vector<std::string>& words, const data::Tokenizer& tokenizer,
                                                int n_positions);

// Positions a text must leave free after it for `words`: the longest word's
// tokens minus one (its last token is predicted, never fed); 0 when every
// word is a single token.
int continuation_positions(const std::vector<std::vector<int>>& words);

}  // namespace ta::adapt
