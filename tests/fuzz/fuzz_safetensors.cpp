// tests/fuzz/fuzz_safetensors.cpp — libFuzzer target for the safetensors reader (issue 8).
// fuzz-sources: nn/safetensors.cpp data/json.cpp data/io.cpp
//
// Any byte string must either read or throw ta::InputError: no crash, no
// sanitizer report, no allocation past libFuzzer's -rss_limit_mb driven by a
// lying header. What reads must survive our writer: writing the arrays and
// reading them back gives the same names, shapes and float bits.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "data/io.h"
#include "nn/safetensors.h"

static bool same_arrays(std::vector<ta::NamedArray> a, std::vector<ta::NamedArray> b) {
  auto by_name = [](const ta::NamedArray& x, const ta::NamedArray& y) { return x.name < y.name; };
  std::sort(a.begin(), a.end(), by_name);  // the writer sorts by name
  std::sort(b.begin(), b.end(), by_name);
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (a[i].name != b[i].name || a[i].shape != b[i].shape || a[i].values.size() != b[i].values.size())
      return false;
    if (!a[i].values.empty() &&
        std::memcmp(a[i].values.data(), b[i].values.data(), a[i].values.size() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  std::vector<ta::NamedArray> arrays;
  try {
    arrays = ta::read_safetensors_bytes(bytes, "fuzz.safetensors");
  } catch (const ta::InputError&) {
    return 0;  // rejected with the project's error: fine
  }
  std::string rewritten = ta::safetensors_bytes(arrays);
  if (!same_arrays(arrays, ta::read_safetensors_bytes(rewritten, "rewritten.safetensors"))) std::abort();
  return 0;
}
