// adapt/task_data.h — task examples as token ids, and batches of them.
//
// Encoding (the model's own tokenizer, special tokens NOT matched: e-mails
// are untrusted text and may contain "<|endoftext|>"):
//   single text   ids(text_a)
//   pair          ids(text_a) + sep + ids(text_b), where sep is the
//                 tokenizer's "[SEP]" if it has one, else "<|endoftext|>",
//                 else the ids of "\n"
// Truncation keeps the head of each text: a single text is cut to its first
// max_tokens tokens; a pair loses tokens from the end of whichever text is
// longer until it fits (Hugging Face's "longest_first"), so both keep their
// beginnings. max_tokens is n_positions minus the method's prefix length.
//
// Batching pads on the right and marks the real tokens in
// ForwardOptions::padding_mask layout (B,T) (1 = real). Training batches come
// from a seeded shuffle per epoch, so step s of a run always sees the same
// examples (a resumed or repeated run draws the same batches).
#pragma once
#include <cstdint>
#include <vector>

#include "data/bpe.h"
#include "data/tasks.h"

namespace ta::adapt {

struct EncodedExample {
  std::vector<int> ids;  // never empty
  int label = 0;
};

struct Batch {
  int B = 0, T = 0;
  std::vector<int> ids;                // (B,T), right-padded with id 0
  std::vector<uint8_t> padding_mask;   // (B,T), 1 = real token
  std::vector<int> labels;             // (B)
};

// The ids placed between text_a and text_b of a pair.
std::vector<int> pair_separator(const data::Tokenizer& tokenizer);

// Encodes and truncates every example to at most max_tokens ids. `source`
// names the split in errors (invalid UTF-8).
std::vector<EncodedExample> encode_examples(const std::vector<data::Example>& examples,
                                            const data::Tokenizer& tokenizer, int max_tokens,
                                            const std::string& source);

// The examples at `indices` as one right-padded batch.
Batch make_batch(const std::vector<EncodedExample>& examples, const std::vector<size_t>& indices);

// Consecutive runs of `batch_size` indices 0..n-1 (evaluation, feature caching).
std::vector<std::vector<size_t>> sequential_batches(size_t n, int batch_size);

// Batches of examples of similar length (indices sorted by length, stably,
// then cut): less padding where every example is scored once and order does
// not matter (evaluation, feature caching).
std::vector<std::vector<size_t>> length_sorted_batches(const std::vector<EncodedExample>& examples, int batch_size);

// Training batches: epoch e visits a permutation of 0..n-1 drawn from
// (seed, e); step s takes the next batch_size positions of that endless
// stream, wrapping into the next epoch.
class EpochSampler {
 public:
  EpochSampler(size_t n, int batch_size, uint64_t seed);
  std::vector<size_t> indices_for_step(long long step);
  long long steps_per_epoch() const;  // ceil(n / batch_size)

 private:
  const std::vector<size_t>& permutation(long long epoch);
  size_t n_;
  int batch_size_;
  uint64_t seed_;
  long long cached_epoch_ = -1;
  std::vector<size_t> cached_;
};

}  // namespace ta::adapt
