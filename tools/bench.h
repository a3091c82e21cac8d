// tools/bench.h — what the files of `tinyadapt bench` share (tools/cmd_bench.cpp,
// tools/bench_serve.cpp).
#pragma once
#include <chrono>

#include "nn/config.h"

namespace ta::cli {

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// `tinyadapt bench --serve` (see tools/bench_serve.cpp).
int run_serve_bench(const ModelConfig& c, int min_tokens, int max_tokens, int repeats, bool as_json);

}  // namespace ta::cli
