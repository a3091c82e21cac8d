// nn/lm_data.cpp — see lm_data.h.
#include "nn/lm_data.h"

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

Rng step_rng(uint64_t seed, long long step) {
  return Rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xD1B54A32D192ED03ull + 1);
}

}  // namespace ta
