// tests/helpers.h — small things several test files need.
#pragma once
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace ta::testing {

// A fresh folder under /tmp, removed with its files when the test ends.
struct ScratchDir {
  std::string path;
  explicit ScratchDir(const std::string& tag = "test") {
    std::string pattern = "/tmp/ta_" + tag + "_XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~ScratchDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// max |ours - theirs| / max |theirs|: the parity measure (1e-4 means agreement
// to four digits of the largest value).
inline float max_relative_diff(const std::vector<float>& ours, const std::vector<float>& theirs) {
  REQUIRE(ours.size() == theirs.size());
  float diff = 0, scale = 0;
  for (size_t i = 0; i < ours.size(); i++) {
    diff = std::max(diff, std::fabs(ours[i] - theirs[i]));
    scale = std::max(scale, std::fabs(theirs[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// Whether Debian's PyTorch answers, so parity tests can run live (else they
// use committed fixtures). Asked once per run.
inline bool torch_available() {
  static const bool available = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return available;
}

// The command-line binary the end-to-end tests run: $TINYADAPT_BIN, else
// ./tinyadapt (`make test` builds it and runs the suite from the repository root).
inline std::string tinyadapt_binary() {
  const char* bin = std::getenv("TINYADAPT_BIN");
  return bin ? bin : "./tinyadapt";
}

}  // namespace ta::testing
