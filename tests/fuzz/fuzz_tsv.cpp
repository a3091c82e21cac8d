// tests/fuzz/fuzz_tsv.cpp — libFuzzer target for the TSV task reader (issue 8).
// fuzz-sources: data/tsv.cpp data/tasks.cpp data/corpus.cpp data/json.cpp data/io.cpp
//
// The input is written as train.tsv in an empty folder (so val and test are
// carved from it). load_tsv_task must either succeed or throw ta::InputError:
// no crash, no sanitizer report, no other exception. A task that loads must
// be consistent: every label in range, train non-empty, ood empty.
#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "data/io.h"
#include "data/tasks.h"

// One folder per fuzzing process; train.tsv is rewritten for every input.
static const std::string& train_path() {
  static const std::string path = [] {
    std::string pattern = "/tmp/ta_fuzz_tsv_XXXXXX";
    if (!::mkdtemp(pattern.data())) std::abort();
    return pattern + "/train.tsv";
  }();
  return path;
}

static bool labels_in_range(const std::vector<ta::data::Example>& split, size_t num_labels) {
  for (const auto& e : split)
    if (e.label < 0 || static_cast<size_t>(e.label) >= num_labels) return false;
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(train_path(), std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                        static_cast<std::streamsize>(size));
  try {
    ta::data::Task task = ta::data::load_tsv_task(train_path(), 7);
    const size_t n = task.label_names.size();
    if (task.train.empty() || !task.ood.empty()) std::abort();
    if (!labels_in_range(task.train, n) || !labels_in_range(task.val, n) || !labels_in_range(task.test, n))
      std::abort();
  } catch (const ta::InputError&) {
  }
  return 0;
}
