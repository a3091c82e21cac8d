// tools/compare_report.h — what `tinyadapt compare` ran and how it reports
// it: the runs, their outcomes over seeds, the reference rows (majority class,
// bag of words), and the tables and TSV files written from them.
//
// Every cell over seeds is mean ± sd (the sample standard deviation, n − 1);
// one seed shows the value alone.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "adapt/report.h"
#include "data/json.h"
#include "data/tasks.h"

namespace ta::cli {

using adapt::Stat;

struct Run {
  std::string label;                 // table row or curve line: "lora", "lora r=4", "lora (DAPT base)"
  std::string method;                // `tinyadapt adapt --method`
  std::vector<std::string> options;  // extra `tinyadapt adapt` options
  std::string model_dir;             // the base this run adapts
  int head_from = -1;                // LP-FT: the run whose adapter (same seed) gives the head; -1: none
  long long train_size = 0;          // labelled examples (a stratified sample); 0 = the whole train split
  long long steps = 0;               // 0 = the method's default
};

// One run with one seed, as `tinyadapt adapt` left it.
struct Outcome {
  int seed = 0;
  std::string dir;        // its --out
  std::string init_head;  // its --init-head ("" = a fresh head)
  json::Value metrics;    // its metrics.json
  double train_seconds = 0;
  double peak_rss_mb = 0;
};

// The reference rows, per number of training examples.
struct References {
  struct Accuracies {
    Stat id, ood;
  };
  std::map<long long, Accuracies> bow;       // the bag of words, one value per sample
  std::map<long long, Accuracies> majority;  // the train sample's commonest label, always
  long long all = 0;                         // the size of the whole train split
};

// The index of the run labelled `label` with `train_size`, or -1.
int find_run(const std::vector<Run>& runs, const std::string& label, long long train_size);

// Accuracy on task's test and ood of always answering `sample`'s commonest label.
References::Accuracies majority_accuracy(const data::Task& sample, const data::Task& task);

// runs.tsv: one line per run and seed (tools/plots.sh reads it).
std::string runs_tsv(const std::vector<Run>& runs, const std::vector<std::vector<Outcome>>& outcomes);

// The table of the runs on the whole train split, reference rows first.
std::string table_markdown(const std::string& task, const std::vector<Run>& runs,
                           const std::vector<std::vector<Outcome>>& outcomes, const References& refs);

// The learning curve: ID and OOD accuracy per method and train size.
std::string curve_markdown(const std::string& task, const std::vector<Run>& runs,
                           const std::vector<std::vector<Outcome>>& outcomes, const References& refs);
// curve.tsv: series, train_size, id_mean, id_sd, ood_mean, ood_sd, seeds; the
// reference rows at every size (at least the whole split), then the curve's.
std::string curve_tsv(const std::vector<Run>& runs, const std::vector<std::vector<Outcome>>& outcomes,
                      const References& refs);

}  // namespace ta::cli
