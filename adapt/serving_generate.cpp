// adapt/serving_generate.cpp — ServingModel::generate: every request's
// continuation from one mixed batch and one KV cache (see serving.h).
#include <algorithm>
#include <stdexcept>

#include "adapt/serving.h"
#include "nn/generate.h"

namespace ta::adapt {

// ---------------------------------------------------------------------------
// Generation with one KV cache for the whole batch.

namespace {

// The logits (B,V) of the last column of hidden (B,L,C).
std::vector<float> last_column_logits(const GPT& model, const Tensor& hidden) {
  const int last = hidden.size(1) - 1;
  return model.logits(slice(hidden, 1, last, last + 1)).to_vector();  // (B,1,V)
}

}  // namespace

std::vector<std::vector<int>> ServingModel::generate(const std::vector<ServeRequest>& requests, float temperature,
                                                     int stop_token) const {
  NoGradGuard no_grad;
  MixedBatch batch = mixed_batch(requests);
  const int B = batch.B, V = model_->config().vocab_size;
  // The cache starts as the gathered attention prefixes, [prefix ; nothing yet].
  KVCache cache;
  cache.grow_in_place = true;
  cache.keys = std::move(batch.options.prefix_keys);
  cache.values = std::move(batch.options.prefix_values);
  batch.options.prefix_keys.clear();
  batch.options.prefix_values.clear();
  batch.options.cache = &cache;
  // Which cached keys each row may see: prefix, then input prefix, then text, then one per step.
  std::vector<std::vector<uint8_t>> key_mask(static_cast<size_t>(B));
  std::vector<int> next_position(static_cast<size_t>(B));
  std::vector<Rng> samplers;
  for (int b = 0; b < B; b++) {
    const ServeRequest& r = requests[static_cast<size_t>(b)];
    const size_t prefix_width = static_cast<size_t>(batch.P + batch.k);
    std::vector<uint8_t>& mask = key_mask[static_cast<size_t>(b)];
    mask.assign(batch.options.prefix_mask.begin() + static_cast<long>(b * prefix_width),
                batch.options.prefix_mask.begin() + static_cast<long>((b + 1) * prefix_width));
    mask.insert(mask.end(), batch.options.padding_mask.begin() + static_cast<long>(b) * batch.T,
                batch.options.padding_mask.begin() + static_cast<long>(b + 1) * batch.T);
    const ServingUser& u = user(r.user);
    next_position[static_cast<size_t>(b)] = u.attention_prefix_length() + u.input_prefix_length() + static_cast<int>(r.ids.size());
    samplers.emplace_back(r.seed);
  }

  std::vector<float> logits = last_column_logits(*model_, model_->forward(batch.ids, B, batch.T, batch.options));  // (B,V)
  std::vector<std::vector<int>> generated(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  while (true) {
    std::vector<int> step_ids(static_cast<size_t>(B), 0);  // a finished row is fed token 0 at position 0; nobody reads it
    ForwardOptions step;
    step.cache = &cache;
    step.row_tags = batch.options.row_tags;
    step.position_ids.assign(static_cast<size_t>(B), 0);
    bool any_running = false;
    for (size_t b = 0; b < static_cast<size_t>(B); b++) {
      if (!done[b]) {
        const std::vector<float> row(logits.begin() + static_cast<long>(b) * V, logits.begin() + static_cast<long>(b + 1) * V);
        const int token = sample_token(row, temperature, 0, samplers[b]);
        if (token != stop_token) generated[b].push_back(token);
        done[b] = token == stop_token || static_cast<int>(generated[b].size()) == requests[b].max_new;
        if (!done[b]) {  // the token is fed back to get the next one
          step_ids[b] = token;
          step.position_ids[b] = next_position[b]++;
        }
      }
      any_running = any_running || !done[b];
      step.prefix_mask.insert(step.prefix_mask.end(), key_mask[b].begin(), key_mask[b].end());
      key_mask[b].push_back(done[b] ? 0 : 1);  // this step's own key, for the steps after it
    }
    if (!any_running) break;
    logits = last_column_logits(*model_, model_->forward(step_ids, B, 1, step));  // (B,V)
  }
  return generated;
}

}  // namespace ta::adapt
