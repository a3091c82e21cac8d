// data/tasks.h — classification tasks with in- and out-of-distribution splits.
//
// A Task is a label set and four splits of labelled examples: train / val /
// test drawn from one distribution (ID), and `ood`, drawn from a shifted one,
// which is what makes the adaptation methods comparable on robustness as well
// as accuracy. An example is one text (`label<TAB>text`) or a pair of texts
// (`label<TAB>text_a<TAB>text_b`, as in NLI). Every split is a deterministic
// function of the data and the seed, and no source document ever appears in
// two splits: splits are cut by document, then duplicates are dropped.
//
// Built-in tasks read the `make data` cache (data/corpus.h):
//   spam  SpamAssassin bodies, ham vs spam; ID = easy-ham-1, easy-ham-2, spam-1;
//         OOD = hard-ham-1 + spam-2 (newsletters that look like spam, later spam)
//   era   SOTU passages, written before 1900 or from 1900 on; OOD = the
//         addresses of the held-out presidents (corpus.h)
//   pair  two SOTU passages: from the same address or not; OOD as for era
// Any other name is a TSV file (see load_tsv_task).
//
// Not here: tokenisation and batching (they turn these strings into ids).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/io.h"

namespace ta::data {

struct Example {
  int label = 0;       // index into Task::label_names
  std::string text_a;
  std::string text_b;  // empty for a single-text task
  // The source document(s): a split never shares one with another split.
  // An example built from two documents lists both, separated by '|'. Built-in
  // tasks name the data set too ("sotu:1861_abraham_lincoln_r",
  // "spam-assassin:spam-1/00001"), the ids pretraining corpora use
  // (data/pretraining.h), so a base's pretraining text can be checked against
  // a task's evaluation splits. Empty for TSV tasks.
  std::string doc;
};

struct Task {
  std::string name;
  std::vector<std::string> label_names;
  std::vector<Example> train, val, test, ood;

  bool is_pair() const;  // examples carry text_b
  // "train", "val", "test" or "ood"; InputError for anything else.
  const std::vector<Example>& split(const std::string& split_name) const;
};

// The seed every command cuts the splits with. Splits are fixed, not drawn
// per run: a pretraining corpus leaves out the evaluation documents of the
// built-in tasks (data/pretraining.h), which it can only do for one split.
inline constexpr uint64_t kSplitSeed = 1337;

// A built-in task name or a TSV path; the same seed gives the same splits.
Task load_task(const std::string& name_or_tsv, uint64_t seed = kSplitSeed);

// A stratified sample of n examples of `split` (the few-label regime): each
// label gets its share of n in proportion to its share of the split (largest
// remainders round, and every label present in the split gets at least one),
// drawn without replacement with `seed`; the sample keeps the split's order.
// InputError when n exceeds the split or is smaller than its number of labels.
std::vector<Example> stratified_sample(const std::vector<Example>& split, size_t n, size_t num_labels, uint64_t seed);

// A task from TSV files. `train_path` holds `label<TAB>text` or
// `label<TAB>text_a<TAB>text_b` lines (one column count per task). Sibling
// files val.tsv / test.tsv / ood.tsv in the same folder are used when present;
// a missing val or test split is instead carved from the train file (10% of
// each label, seeded); ood stays empty without ood.tsv. Labels are the sorted
// label strings of the train file. Bad input throws InputError "file:line: problem".
Task load_tsv_task(const std::string& train_path, uint64_t seed);

// Cuts the test and ood splits to their first `limit` examples (0 = no
// limit): a cheaper evaluation on a uniform sample, since the splits are
// shuffled when loaded. The reference rows and the runs of one comparison
// must use the same limit.
void limit_evaluation(Task& task, size_t limit);

// How many examples of each label a split holds (size = number of labels).
std::vector<size_t> label_counts(const std::vector<Example>& split, size_t num_labels);

// Which split each document goes to: 0 train, 1 val, 2 test. Documents are
// grouped by label and shuffled with `seed`; each label's documents are then
// cut val_fraction / test_fraction / the rest, so every split sees every
// label that has enough documents, and the label balance is the same in each.
std::vector<int> assign_splits(const std::vector<int>& doc_labels, size_t num_labels,
                               double val_fraction, double test_fraction, uint64_t seed);

// The body of a raw e-mail: headers (up to the first blank line) dropped,
// every whitespace run made one space, cut to at most `max_bytes` bytes at a
// UTF-8 character boundary.
std::string email_body(const std::string& raw_message, size_t max_bytes);

// Sentences of paragraph-free prose: a sentence ends at '.', '?' or '!'
// (plus closing quotes or brackets) followed by a space and an upper-case
// letter or an opening quote, unless the word before is a title or an
// abbreviation ("Mr.", "Gen.", "U.S.").
std::vector<std::string> split_sentences(const std::string& text);

// Consecutive sentences grouped into passages of 3 to 5 sentences: a passage
// closes at 5 sentences, or at 3 or more once it is 400 bytes long. A tail of
// fewer than 3 sentences is dropped.
std::vector<std::string> make_passages(const std::string& text);

}  // namespace ta::data
