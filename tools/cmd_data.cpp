// tools/cmd_data.cpp — `tinyadapt data stats|export`: look at a task before
// adapting a model to it.
//
//   stats   per split: size, label balance, mean text length, the share of
//           the split's own majority label, and the bag-of-words baseline's
//           accuracy (data/bow.h) — the row every method has to beat.
//   export  the splits as train.tsv / val.tsv / test.tsv / ood.tsv, which
//           load back as the same task (`--task DIR/train.tsv`).
#include <cstdio>

#include "data/bow.h"
#include "data/json.h"
#include "data/tasks.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

const char* const kSplitNames[] = {"train", "val", "test", "ood"};

struct SplitStats {
  std::vector<size_t> label_counts;
  double mean_bytes = 0;      // text_a + text_b
  double majority_share = 0;  // accuracy of always answering the split's most frequent label
  double bow_accuracy = 0;
};

SplitStats split_stats(const data::Task& task, const std::vector<data::Example>& split,
                       const data::BowClassifier& bow) {
  SplitStats s;
  s.label_counts = data::label_counts(split, task.label_names.size());
  if (split.empty()) return s;
  double bytes = 0;
  for (const data::Example& e : split) bytes += e.text_a.size() + e.text_b.size();
  s.mean_bytes = bytes / split.size();
  size_t largest = 0;
  for (size_t c : s.label_counts) largest = std::max(largest, c);
  s.majority_share = static_cast<double>(largest) / split.size();
  s.bow_accuracy = bow.accuracy(split);
  return s;
}

void print_table(const data::Task& task, const std::vector<SplitStats>& stats, size_t vocab_size) {
  std::printf("task %s: %zu labels, %s\n", task.name.c_str(), task.label_names.size(),
              task.is_pair() ? "text pairs" : "single texts");
  std::printf("%-6s %8s", "split", "size");
  for (const std::string& label : task.label_names) std::printf("  %16s", label.c_str());
  std::printf("  %10s  %8s  %7s\n", "mean bytes", "majority", "bow acc");
  for (size_t s = 0; s < 4; s++) {
    const std::vector<data::Example>& split = task.split(kSplitNames[s]);
    std::printf("%-6s %8zu", kSplitNames[s], split.size());
    for (size_t count : stats[s].label_counts)
      std::printf("  %7zu (%5.1f%%)", count, split.empty() ? 0.0 : 100.0 * count / split.size());
    if (split.empty()) {
      std::printf("  %10s  %8s  %7s\n", "-", "-", "-");
      continue;
    }
    std::printf("  %10.0f  %8.3f  %7.3f\n", stats[s].mean_bytes, stats[s].majority_share, stats[s].bow_accuracy);
  }
  std::printf("bow acc: bag-of-words logistic regression trained on train (%zu-word vocabulary)\n", vocab_size);
}

json::Value stats_json(const data::Task& task, const std::vector<SplitStats>& stats, size_t vocab_size) {
  json::Value out = json::Value::object();
  out.set("task", task.name);
  out.set("seed", static_cast<long long>(data::kSplitSeed));
  out.set("pair", task.is_pair());
  json::Value labels = json::Value::array();
  for (const std::string& label : task.label_names) labels.push(label);
  out.set("labels", labels);
  out.set("bow_vocab_size", static_cast<unsigned long>(vocab_size));
  json::Value splits = json::Value::object();
  for (size_t s = 0; s < 4; s++) {
    json::Value split = json::Value::object();
    split.set("size", static_cast<unsigned long>(task.split(kSplitNames[s]).size()));
    json::Value counts = json::Value::object();
    for (size_t l = 0; l < task.label_names.size(); l++)
      counts.set(task.label_names[l], static_cast<unsigned long>(stats[s].label_counts[l]));
    split.set("label_counts", counts);
    split.set("mean_bytes", stats[s].mean_bytes);
    split.set("majority_share", stats[s].majority_share);
    split.set("bow_accuracy", stats[s].bow_accuracy);
    splits.set(kSplitNames[s], split);
  }
  out.set("splits", splits);
  return out;
}

int run_stats(Args& args) {
  const std::string task_name = args.required("task");
  const bool as_json = args.flag("json");
  args.finish();
  data::Task task = data::load_task(task_name);
  data::BowClassifier bow(task);
  std::vector<SplitStats> stats;
  for (const char* name : kSplitNames) stats.push_back(split_stats(task, task.split(name), bow));
  if (as_json) std::printf("%s\n", stats_json(task, stats, bow.vocab_size()).dump(2).c_str());
  else print_table(task, stats, bow.vocab_size());
  return 0;
}

// A TSV field cannot hold a tab or a line break: they become spaces.
std::string tsv_field(const std::string& text) {
  std::string field = text;
  for (char& c : field)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return field;
}

int run_export(Args& args) {
  const std::string task_name = args.required("task");
  const std::string out_dir = args.required("out");
  args.finish();
  data::Task task = data::load_task(task_name);
  make_dirs(out_dir);
  for (const char* name : kSplitNames) {
    const std::vector<data::Example>& split = task.split(name);
    if (split.empty()) continue;  // an empty ood.tsv would not load back; absent means "no such split"
    std::string lines;
    for (const data::Example& e : split) {
      lines += task.label_names[e.label] + '\t' + tsv_field(e.text_a);
      if (task.is_pair()) lines += '\t' + tsv_field(e.text_b);
      lines += '\n';
    }
    write_file_atomic(out_dir + "/" + name + ".tsv", lines);
    std::printf("%s/%s.tsv: %zu examples\n", out_dir.c_str(), name, split.size());
  }
  return 0;
}

int run_data(Args& args) {
  const std::string action = args.positional(0);
  if (action == "stats") return run_stats(args);
  if (action == "export") return run_export(args);
  if (action.empty()) throw InputError("tinyadapt data: say what to do: 'stats' or 'export' (see --help)");
  throw InputError("tinyadapt data: expected 'stats' or 'export', got '" + action + "' (see --help)");
}

}  // namespace

static Command data_cmd{"data", "task statistics and the bag-of-words baseline; export a task as TSV",
                        "usage: tinyadapt data stats --task T [--json]\n"
                        "       tinyadapt data export --task T --out DIR\n"
                        "  --task T     spam | era | pair (after `make data`) or a TSV file\n"
                        "               (label<TAB>text or label<TAB>text_a<TAB>text_b; sibling\n"
                        "               val.tsv / test.tsv / ood.tsv are used when present)\n"
                        "  --json       stats as JSON\n"
                        "  --out DIR    export: where train.tsv, val.tsv, test.tsv, ood.tsv go",
                        run_data};

}  // namespace ta::cli
