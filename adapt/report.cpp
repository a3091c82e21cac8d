// adapt/report.cpp — see report.h.
#include "adapt/report.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <sys/stat.h>

namespace ta::adapt {

TrainableReport trainable_report(const AdaptedModel& a) {
  TrainableReport r;
  std::set<const Node*> seen;  // a tensor listed twice is still trained once
  for (const OptimParam& p : a.trainable_parameters())
    if (seen.insert(p.tensor.node()).second) r.trainable += p.tensor.numel();
  const int64_t head_values = a.head ? a.head->count_parameters() : 0;
  r.all = a.base_parameters + a.method->added_parameters() + head_values;
  return r;
}

std::string with_thousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); i++) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

double Stat::mean() const {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? 0 : sum / static_cast<double>(values.size());
}

double Stat::sd() const {
  if (values.size() < 2) return 0;
  const double m = mean();
  double sum = 0;
  for (double v : values) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(values.size() - 1));
}

std::string Stat::text(int digits, double scale) const {
  char buf[64];
  if (values.size() < 2) std::snprintf(buf, sizeof buf, "%.*f", digits, mean() * scale);
  else std::snprintf(buf, sizeof buf, "%.*f ± %.*f", digits, mean() * scale, digits, sd() * scale);
  return buf;
}

std::string report_line(const TrainableReport& r) {
  char percent[32];
  std::snprintf(percent, sizeof percent, "%.4f", r.percent());
  return "trainable params: " + with_thousands(r.trainable) + " || all params: " + with_thousands(r.all) +
         " || trainable%: " + percent;
}

Evaluation score(const std::vector<int>& predictions, const std::vector<int>& targets,
                 const std::vector<float>& losses, int num_labels) {
  Evaluation e;
  e.n = static_cast<long long>(targets.size());
  if (e.n == 0) return e;
  std::vector<long long> true_pos(num_labels), predicted(num_labels), actual(num_labels);
  double loss_total = 0;
  long long correct = 0;
  for (size_t i = 0; i < targets.size(); i++) {
    predicted[predictions[i]]++;
    actual[targets[i]]++;
    if (predictions[i] == targets[i]) true_pos[targets[i]]++, correct++;
    loss_total += losses[i];
  }
  double f1_total = 0;
  int labels_seen = 0;
  for (int c = 0; c < num_labels; c++) {
    if (predicted[c] + actual[c] == 0) continue;
    f1_total += 2.0 * static_cast<double>(true_pos[c]) / static_cast<double>(predicted[c] + actual[c]);
    labels_seen++;
  }
  e.accuracy = static_cast<double>(correct) / static_cast<double>(e.n);
  e.macro_f1 = f1_total / labels_seen;
  e.loss = loss_total / static_cast<double>(e.n);
  return e;
}

json::Value evaluation_json(const Evaluation& e) {
  json::Value v = json::Value::object();
  v.set("accuracy", e.accuracy);
  v.set("macro_f1", e.macro_f1);
  v.set("loss", e.loss);
  v.set("n", e.n);
  return v;
}

int64_t file_bytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

}  // namespace ta::adapt
