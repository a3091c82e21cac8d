// tools/compare_report.cpp — see compare_report.h.
#include "tools/compare_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "adapt/report.h"

namespace ta::cli {
namespace {

double split_accuracy(const json::Value& metrics, const char* split) {
  const json::Value* s = metrics.find(split);
  return s ? s->at("accuracy").as_number() : NAN;
}

std::string format(const char* pattern, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, x);
  return buf;
}

// The curve's series (its runs' labels, in plan order) and sizes (ascending).
struct CurvePlan {
  std::vector<std::string> series;
  std::vector<long long> sizes;  // refs.all for the whole train split
};

CurvePlan curve_plan(const std::vector<Run>& runs, const References& refs) {
  CurvePlan plan;
  for (const Run& r : runs)
    if (r.train_size > 0) {
      if (std::find(plan.series.begin(), plan.series.end(), r.label) == plan.series.end()) plan.series.push_back(r.label);
      if (std::find(plan.sizes.begin(), plan.sizes.end(), r.train_size) == plan.sizes.end()) plan.sizes.push_back(r.train_size);
    }
  for (const std::string& label : plan.series)
    if (find_run(runs, label, 0) >= 0 && std::find(plan.sizes.begin(), plan.sizes.end(), refs.all) == plan.sizes.end())
      plan.sizes.push_back(refs.all);
  std::sort(plan.sizes.begin(), plan.sizes.end());
  return plan;
}

// A curve point of a method: its runs at `size` (the whole split: the table's run).
const std::vector<Outcome>* curve_point(const std::vector<Run>& runs, const std::vector<std::vector<Outcome>>& outcomes,
                                        const std::string& label, long long size, long long all) {
  const int i = find_run(runs, label, size == all ? 0 : size);
  return i < 0 ? nullptr : &outcomes[static_cast<size_t>(i)];
}

References::Accuracies accuracies_of(const std::vector<Outcome>& seeds) {
  References::Accuracies a;
  for (const Outcome& o : seeds) {
    a.id.add(split_accuracy(o.metrics, "test"));
    a.ood.add(split_accuracy(o.metrics, "ood"));
  }
  return a;
}

}  // namespace

int find_run(const std::vector<Run>& runs, const std::string& label, long long train_size) {
  for (size_t i = 0; i < runs.size(); i++)
    if (runs[i].label == label && runs[i].train_size == train_size) return static_cast<int>(i);
  return -1;
}

References::Accuracies majority_accuracy(const data::Task& sample, const data::Task& task) {
  const std::vector<size_t> counts = data::label_counts(sample.train, sample.label_names.size());
  const int commonest = static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin());
  auto share = [&](const std::vector<data::Example>& split) {
    if (split.empty()) return static_cast<double>(NAN);
    return static_cast<double>(std::count_if(split.begin(), split.end(), [&](const data::Example& e) { return e.label == commonest; })) /
           static_cast<double>(split.size());
  };
  References::Accuracies a;
  a.id.add(share(task.test));
  a.ood.add(share(task.ood));
  return a;
}

std::string runs_tsv(const std::vector<Run>& runs, const std::vector<std::vector<Outcome>>& outcomes) {
  std::string tsv = "run\tseed\tmethod\ttrain_size\ttrainable_params\ttrainable_percent\tid_accuracy\tood_accuracy\t"
                    "train_seconds\tpeak_rss_mb\tadapter_bytes\tdir\tinit_head\n";
  for (size_t i = 0; i < runs.size(); i++)
    for (const Outcome& o : outcomes[i]) {
      const json::Value& m = o.metrics;
      char line[2048];
      std::snprintf(line, sizeof line, "%s\t%d\t%s\t%lld\t%lld\t%.6f\t%.4f\t%.4f\t%.2f\t%.1f\t%lld\t%s\t%s\n",
                    runs[i].label.c_str(), o.seed, runs[i].method.c_str(), m.at("train_size").as_int(),
                    m.at("trainable_params").as_int(), m.at("trainable_percent").as_number(), split_accuracy(m, "test"),
                    split_accuracy(m, "ood"), o.train_seconds, o.peak_rss_mb, m.at("adapter_bytes").as_int(), o.dir.c_str(),
                    o.init_head.empty() ? "-" : o.init_head.c_str());
      tsv += line;
    }
  return tsv;
}

std::string table_markdown(const std::string& task, const std::vector<Run>& runs,
                           const std::vector<std::vector<Outcome>>& outcomes, const References& refs) {
  std::string md = "| method | trainable params | trainable% | ID accuracy | OOD accuracy | train time (s) | peak memory (MiB) | adapter file (bytes) |\n";
  md += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  char buf[512];
  const References::Accuracies& majority = refs.majority.at(refs.all);
  const References::Accuracies& bow = refs.bow.at(refs.all);
  std::snprintf(buf, sizeof buf, "| majority class | – | – | %s | %s | – | – | – |\n", majority.id.text(3).c_str(), majority.ood.text(3).c_str());
  md += buf;
  std::snprintf(buf, sizeof buf, "| bag-of-words baseline | – | – | %s | %s | – | – | – |\n", bow.id.text(3).c_str(), bow.ood.text(3).c_str());
  md += buf;
  for (size_t i = 0; i < runs.size(); i++) {
    if (runs[i].train_size > 0) continue;
    Stat id, ood, seconds, rss;
    const json::Value& m = outcomes[i].front().metrics;
    for (const Outcome& o : outcomes[i]) {
      id.add(split_accuracy(o.metrics, "test"));
      ood.add(split_accuracy(o.metrics, "ood"));
      seconds.add(o.train_seconds);
      rss.add(o.peak_rss_mb);
    }
    std::snprintf(buf, sizeof buf, "| %s | %s | %.4f | %s | %s | %s | %s | %s |\n", runs[i].label.c_str(),
                  adapt::with_thousands(m.at("trainable_params").as_int()).c_str(), m.at("trainable_percent").as_number(),
                  id.text(3).c_str(), ood.text(3).c_str(), seconds.text(1).c_str(), rss.text(0).c_str(),
                  adapt::with_thousands(m.at("adapter_bytes").as_int()).c_str());
    md += buf;
  }
  return "### " + task + "\n\n" + md;
}

std::string curve_markdown(const std::string& task, const std::vector<Run>& runs,
                           const std::vector<std::vector<Outcome>>& outcomes, const References& refs) {
  const CurvePlan plan = curve_plan(runs, refs);
  std::string md;
  for (const bool ood : {false, true}) {
    md += "### " + task + ": learning curve, " + (ood ? "OOD" : "ID") + " accuracy by labelled training examples\n\n| method |";
    std::string rule = "|---|";
    for (long long n : plan.sizes) md += " " + (n == refs.all ? "all (" + std::to_string(n) + ")" : std::to_string(n)) + " |", rule += "---:|";
    md += "\n" + rule + "\n";
    auto row = [&](const std::string& name, auto cell) {
      md += "| " + name + " |";
      for (long long n : plan.sizes) md += " " + cell(n) + " |";
      md += "\n";
    };
    auto reference = [&](const std::map<long long, References::Accuracies>& series) {
      return [&, ood](long long n) { return series.count(n) ? (ood ? series.at(n).ood : series.at(n).id).text(3) : "–"; };
    };
    row("majority class", reference(refs.majority));
    row("bag-of-words", reference(refs.bow));
    for (const std::string& label : plan.series)
      row(label, [&](long long n) {
        const std::vector<Outcome>* point = curve_point(runs, outcomes, label, n, refs.all);
        if (!point) return std::string("–");
        const References::Accuracies a = accuracies_of(*point);
        return (ood ? a.ood : a.id).text(3);
      });
    md += "\n";
  }
  return md;
}

std::string curve_tsv(const std::vector<Run>& runs, const std::vector<std::vector<Outcome>>& outcomes,
                      const References& refs) {
  CurvePlan plan = curve_plan(runs, refs);
  if (std::find(plan.sizes.begin(), plan.sizes.end(), refs.all) == plan.sizes.end()) plan.sizes.push_back(refs.all);
  std::string tsv = "series\ttrain_size\tid_mean\tid_sd\tood_mean\tood_sd\tseeds\n";
  auto line = [&](const std::string& series, long long n, const References::Accuracies& a) {
    tsv += series + "\t" + std::to_string(n) + "\t" + format("%.4f", a.id.mean()) + "\t" + format("%.4f", a.id.sd()) + "\t" +
           format("%.4f", a.ood.mean()) + "\t" + format("%.4f", a.ood.sd()) + "\t" + std::to_string(a.id.values.size()) + "\n";
  };
  for (long long n : plan.sizes) {
    if (refs.majority.count(n)) line("majority class", n, refs.majority.at(n));
    if (refs.bow.count(n)) line("bag-of-words", n, refs.bow.at(n));
  }
  for (const std::string& label : plan.series)
    for (long long n : plan.sizes)
      if (const std::vector<Outcome>* point = curve_point(runs, outcomes, label, n, refs.all)) line(label, n, accuracies_of(*point));
  return tsv;
}

}  // namespace ta::cli
