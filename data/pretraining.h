// data/pretraining.h — pretraining corpora: named sources mixed into one list
// of documents, the record of what a base was pretrained on, and the rule
// that keeps every task's evaluation text out of pretraining.
//
// Sources (`tinyadapt pretrain --corpus a,b,...`, mixed in the order given):
//   sotu        State of the Union addresses that no task evaluates on: all but
//               the held-out presidents' (the OOD split of era and pair) and
//               the addresses era and pair cut into val and test
//   brown       the Brown corpus, less the part-of-speech probe's test files
//   task:NAME   the train split of a task (spam, era, pair or a TSV file), one
//               document per example, labels dropped: continued pretraining on
//               a task's own unlabelled text (domain-adaptive pretraining,
//               Gururangan et al. 2020, "Don't Stop Pretraining")
//   FILE        a UTF-8 text file, one document
//
// The leakage rule: a document that an evaluation example of a built-in task
// comes from (its val, test or ood split; data/tasks.h Example::doc) or a
// Brown probe-test file never enters pretraining. The sources above leave
// them out by construction; check_no_leakage checks it again on the mixed
// list (pretrain calls it), and adapt checks a base's manifest against the
// task it adapts to, so a base pretrained on a task's test text is refused.
// A FILE's content cannot be traced to documents: that is the user's call.
//
// The manifest (pretraining.json in the model directory): the corpus spec,
// the ids of every document the base was pretrained on (with those of the
// base it continued from), the token counts of the training stream (prompt
// tuning samples its initial tokens from the most frequent; adapt/prompt.h).
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "data/corpus.h"
#include "data/tasks.h"

namespace ta::data {

// The documents of a comma-separated corpus spec, source by source.
// InputError for an empty spec, a source given twice, an unknown
// "task:" name, or a missing or non-UTF-8 file.
std::vector<Document> corpus_documents(const std::string& spec);

// The documents' texts joined by a blank line (tokenizer training, probes).
std::string corpus_text(const std::string& spec);

// The source documents behind a task's val, test and ood examples (the ids
// of Example::doc, a pair's two split apart). Empty for TSV tasks.
std::set<std::string> evaluation_documents(const Task& task);

// What no pretraining corpus may hold, for the data sets that `document_ids`
// come from (the part of an id before ':'): the evaluation documents of the
// built-in tasks cut from them (sotu: era's and pair's val and test addresses
// and the held-out presidents'; spam-assassin: spam's val, test and ood
// messages; brown: the part-of-speech probe's test files, data/brown.h). Ids of files and TSV tasks name no
// data set we know, and load nothing.
std::set<std::string> forbidden_documents(const std::vector<std::string>& document_ids);

// InputError naming `what` and the first few offending ids when a document
// of `documents` (an id, or one of the '|'-separated ids it lists) is in
// `forbidden`.
void check_no_leakage(const std::vector<std::string>& documents, const std::set<std::string>& forbidden,
                      const std::string& what);

struct PretrainingManifest {
  std::string corpus;                  // the --corpus spec
  std::string init;                    // the model directory training continued from; "" = from scratch
  std::vector<std::string> documents;  // every document id, sorted, incl. the init base's
  long long train_tokens = 0, val_tokens = 0;
  std::vector<long long> token_counts;  // (V) occurrences of each id in the training stream
};

// pretraining.json in `model_dir`: written by pretrain; read is an InputError
// naming the file when it is malformed, std::nullopt-like `false` when absent.
void write_manifest(const std::string& model_dir, const PretrainingManifest& manifest);
bool read_manifest(const std::string& model_dir, PretrainingManifest& manifest);

}  // namespace ta::data
