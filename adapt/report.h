// adapt/report.h — the numbers every adaptation run reports: how many values
// it trains out of how many (PEFT's print_trainable_parameters line), how
// well it classifies (accuracy, macro-F1, loss), and what it costs on disk.
//
//   trainable params: 12,288 || all params: 1,234,567 || trainable%: 0.9953
//
// "all" counts the base model, the values the method adds, and the head, so
// the share is of everything the adapted model holds. trainable% is
// 100 · trainable / all, four decimals, as PEFT prints it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "data/json.h"

namespace ta::adapt {

struct TrainableReport {
  int64_t trainable = 0;  // values the optimiser updates
  int64_t all = 0;        // base + method-added + head
  double percent() const { return all ? 100.0 * static_cast<double>(trainable) / static_cast<double>(all) : 0.0; }
};

TrainableReport trainable_report(const AdaptedModel& adapted);
std::string report_line(const TrainableReport& report);

// 1234567 -> "1,234,567".
std::string with_thousands(int64_t n);

// Classification quality over one split.
struct Evaluation {
  double accuracy = 0;
  double macro_f1 = 0;  // mean F1 over the labels that occur in the targets or the predictions (scikit-learn's default)
  double loss = 0;      // mean cross-entropy, nats
  long long n = 0;
};

// Scores predictions against targets; `losses` holds one cross-entropy per example.
Evaluation score(const std::vector<int>& predictions, const std::vector<int>& targets,
                 const std::vector<float>& losses, int num_labels);

json::Value evaluation_json(const Evaluation& e);  // {"accuracy":…, "macro_f1":…, "loss":…, "n":…}

// One number over repeated runs (seeds): mean, sample sd, and "0.912 ± 0.004"
// (just "0.912" for a single run).
struct Stat {
  std::vector<double> values;
  void add(double v) { values.push_back(v); }
  double mean() const;
  double sd() const;  // 0 for fewer than two values
  std::string text(int digits, double scale = 1.0) const;
};

// Bytes of the file at `path` (0 when absent).
int64_t file_bytes(const std::string& path);

}  // namespace ta::adapt
