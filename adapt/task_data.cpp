// adapt/task_data.cpp — see task_data.h.
#include "adapt/task_data.h"

#include <algorithm>
#include <numeric>

#include "nn/lm_data.h"

namespace ta::adapt {

std::vector<int> pair_separator(const data::Tokenizer& tokenizer) {
  if (tokenizer.has_special("[SEP]")) return {tokenizer.special_id("[SEP]")};
  if (tokenizer.has_special("<|endoftext|>")) return {tokenizer.special_id("<|endoftext|>")};
  return tokenizer.encode("\n", {false, "separator"});
}

namespace {

// Longest-first truncation: drop tokens from the end of the longer text until
// both fit in `budget` together (each keeps its beginning).
void truncate_pair(std::vector<int>& a, std::vector<int>& b, size_t budget) {
  while (a.size() + b.size() > budget) {
    if (a.size() >= b.size()) a.pop_back();
    else b.pop_back();
  }
}

EncodedExample encode_one(const data::Example& e, const data::Tokenizer& tokenizer, const std::vector<int>& sep,
                          int max_tokens, const std::string& source) {
  const data::EncodeOptions untrusted{false, source};
  EncodedExample out;
  out.label = e.label;
  out.ids = tokenizer.encode(e.text_a, untrusted);
  if (!e.text_b.empty()) {
    std::vector<int> b = tokenizer.encode(e.text_b, untrusted);
    const size_t budget = static_cast<size_t>(std::max(0, max_tokens - static_cast<int>(sep.size())));
    truncate_pair(out.ids, b, budget);
    out.ids.insert(out.ids.end(), sep.begin(), sep.end());
    out.ids.insert(out.ids.end(), b.begin(), b.end());
  }
  if (out.ids.size() > static_cast<size_t>(max_tokens)) out.ids.resize(static_cast<size_t>(max_tokens));
  // An empty text still needs one real position for pooling to read.
  if (out.ids.empty()) out.ids.push_back(sep.front());
  return out;
}

}  // namespace

std::vector<EncodedExample> encode_examples(const std::vector<data::Example>& examples,
                                            const data::Tokenizer& tokenizer, int max_tokens,
                                            const std::string& source) {
  if (max_tokens < 1) throw InputError(source + ": no room for text (the method's prefix fills the context)");
  const std::vector<int> sep = pair_separator(tokenizer);
  std::vector<EncodedExample> out;
  out.reserve(examples.size());
  for (const data::Example& e : examples) out.push_back(encode_one(e, tokenizer, sep, max_tokens, source));
  return out;
}

Batch make_batch(const std::vector<EncodedExample>& examples, const std::vector<size_t>& indices) {
  Batch batch;
  batch.B = static_cast<int>(indices.size());
  for (size_t i : indices) batch.T = std::max(batch.T, static_cast<int>(examples[i].ids.size()));
  const size_t T = static_cast<size_t>(batch.T);
  batch.ids.assign(indices.size() * T, 0);
  batch.padding_mask.assign(indices.size() * T, 0);
  for (size_t row = 0; row < indices.size(); row++) {
    const EncodedExample& e = examples[indices[row]];
    std::copy(e.ids.begin(), e.ids.end(), batch.ids.begin() + static_cast<long>(row * T));
    std::fill_n(batch.padding_mask.begin() + static_cast<long>(row * T), e.ids.size(), 1);
    batch.labels.push_back(e.label);
  }
  return batch;
}

std::vector<std::vector<size_t>> sequential_batches(size_t n, int batch_size) {
  std::vector<std::vector<size_t>> batches;
  for (size_t start = 0; start < n; start += static_cast<size_t>(batch_size)) {
    batches.emplace_back();
    for (size_t i = start; i < std::min(n, start + static_cast<size_t>(batch_size)); i++) batches.back().push_back(i);
  }
  return batches;
}

std::vector<std::vector<size_t>> length_sorted_batches(const std::vector<EncodedExample>& examples, int batch_size) {
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return examples[i].ids.size() < examples[j].ids.size(); });
  std::vector<std::vector<size_t>> batches;
  for (const std::vector<size_t>& positions : sequential_batches(order.size(), batch_size)) {
    batches.emplace_back();
    for (size_t p : positions) batches.back().push_back(order[p]);
  }
  return batches;
}

EpochSampler::EpochSampler(size_t n, int batch_size, uint64_t seed) : n_(n), batch_size_(batch_size), seed_(seed) {
  if (n == 0) throw InputError("training split is empty");
  if (batch_size < 1) throw InputError("--batch must be at least 1");
}

long long EpochSampler::steps_per_epoch() const {
  return static_cast<long long>((n_ + static_cast<size_t>(batch_size_) - 1) / static_cast<size_t>(batch_size_));
}

const std::vector<size_t>& EpochSampler::permutation(long long epoch) {
  if (epoch != cached_epoch_) {
    cached_.resize(n_);
    std::iota(cached_.begin(), cached_.end(), size_t{0});
    Rng rng = step_rng(seed_ ^ 0xE90C4ull, epoch);
    for (size_t i = n_ - 1; i > 0; i--) std::swap(cached_[i], cached_[static_cast<size_t>(rng.below(static_cast<int>(i + 1)))]);
    cached_epoch_ = epoch;
  }
  return cached_;
}

std::vector<size_t> EpochSampler::indices_for_step(long long step) {
  std::vector<size_t> indices;
  const long long first = step * batch_size_;
  for (long long position = first; position < first + batch_size_; position++) {
    const long long epoch = position / static_cast<long long>(n_);
    indices.push_back(permutation(epoch)[static_cast<size_t>(position % static_cast<long long>(n_))]);
  }
  return indices;
}

}  // namespace ta::adapt
