// nn/lm_data.cpp — see lm_data.h.
#include "nn/lm_data.h"

#include "data/io.h"

#include <algorithm>
#include <stdexcept>

namespace ta {

TokenBatch sample_windows(const std::vector<int>& tokens, int B, int T, Rng& rng) {
  if (static_cast<long long>(tokens.size()) < T + 1)
    throw std::invalid_argument("sample_windows: " + std::to_string(tokens.size()) + " tokens cannot fill a window of " +
                                std::to_string(T + 1));
  TokenBatch batch{B, T, {}, {}};
  const int starts = static_cast<int>(tokens.size()) - T;  // offsets 0 .. size-T-1
  for (int b = 0; b < B; b++) {
    const int start = rng.below(starts);
    batch.inputs.insert(batch.inputs.end(), tokens.begin() + start, tokens.begin() + start + T);
    batch.targets.insert(batch.targets.end(), tokens.begin() + start + 1, tokens.begin() + start + T + 1);
  }
  return batch;
}

TokenBatch batch_rows(const TokenBatch& batch, int first, int end) {
  const int64_t from = static_cast<int64_t>(first) * batch.T, to = static_cast<int64_t>(end) * batch.T;
  return TokenBatch{end - first, batch.T, std::vector<int>(batch.inputs.begin() + from, batch.inputs.begin() + to),
                    std::vector<int>(batch.targets.begin() + from, batch.targets.begin() + to)};
}

std::vector<TokenBatch> consecutive_windows(const std::vector<int>& tokens, int T) {
  std::vector<TokenBatch> windows;
  const size_t n = tokens.size();
  for (size_t start = 0; start + 1 < n; start += static_cast<size_t>(T)) {
    const size_t len = std::min(static_cast<size_t>(T), n - 1 - start);
    TokenBatch w{1, static_cast<int>(len), {}, {}};
    w.inputs.assign(tokens.begin() + static_cast<long>(start), tokens.begin() + static_cast<long>(start + len));
    w.targets.assign(tokens.begin() + static_cast<long>(start + 1), tokens.begin() + static_cast<long>(start + len + 1));
    windows.push_back(std::move(w));
  }
  return windows;
}

LMLoss windowed_lm_loss(const GPT& model, const std::vector<int>& tokens, int window,
                        const std::function<ForwardOptions(int B)>& options_for) {
  if (!model.config().is_causal) throw InputError("the model is an encoder (is_causal false): it has no next-token loss");
  NoGradGuard no_grad;
  LMLoss result;
  double total = 0;
  for (const TokenBatch& w : consecutive_windows(tokens, window)) {
    const ForwardOptions options = options_for ? options_for(w.B) : ForwardOptions{};
    total += static_cast<double>(model.loss(w.inputs, w.targets, w.B, w.T, options).item()) * w.T;
    result.tokens += w.T;
  }
  result.loss = result.tokens ? total / static_cast<double>(result.tokens) : 0.0;
  return result;
}

Rng step_rng(uint64_t seed, long long step) {
  return Rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xD1B54A32D192ED03ull + 1);
}

}  // namespace ta
