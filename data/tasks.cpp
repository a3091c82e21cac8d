// data/tasks.cpp — see tasks.h. The split machinery, then the three built-in
// tasks: spam (SpamAssassin), era and pair (State of the Union passages).
// TSV tasks are in data/tsv.cpp.
#include "data/tasks.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <random>
#include <unordered_set>

#include "data/corpus.h"
#include "data/json.h"

namespace ta::data {

bool Task::is_pair() const { return !train.empty() && !train.front().text_b.empty(); }

const std::vector<Example>& Task::split(const std::string& split_name) const {
  if (split_name == "train") return train;
  if (split_name == "val") return val;
  if (split_name == "test") return test;
  if (split_name == "ood") return ood;
  throw InputError("split '" + split_name + "': expected train, val, test or ood");
}

void limit_evaluation(Task& task, size_t limit) {
  if (limit == 0) return;
  for (auto* split : {&task.test, &task.ood})
    if (split->size() > limit) split->resize(limit);
}

std::vector<size_t> label_counts(const std::vector<Example>& split, size_t num_labels) {
  std::vector<size_t> counts(num_labels, 0);
  for (const Example& e : split) counts.at(static_cast<size_t>(e.label))++;
  return counts;
}

// Fisher-Yates with our own index draw: std::shuffle's algorithm is left to
// the library, and the splits must be the same on every platform for a seed.
template <typename T>
static void shuffle_seeded(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; i--) std::swap(items[i - 1], items[rng() % i]);
}

std::vector<int> assign_splits(const std::vector<int>& doc_labels, size_t num_labels,
                               double val_fraction, double test_fraction, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> split_of_doc(doc_labels.size(), 0);
  for (size_t label = 0; label < num_labels; label++) {
    std::vector<size_t> docs;
    for (size_t d = 0; d < doc_labels.size(); d++)
      if (doc_labels[d] == static_cast<int>(label)) docs.push_back(d);
    shuffle_seeded(docs, rng);
    size_t num_val = static_cast<size_t>(std::lround(docs.size() * val_fraction));
    size_t num_test = static_cast<size_t>(std::lround(docs.size() * test_fraction));
    for (size_t k = 0; k < docs.size() && k < num_val + num_test; k++) split_of_doc[docs[k]] = k < num_val ? 1 : 2;
  }
  return split_of_doc;
}

// Removes every example whose text was seen before (here or in an earlier
// call with the same `seen`), so identical texts never sit in two splits
// even when they come from two different source documents.
static void drop_seen_texts(std::vector<Example>& examples, std::unordered_set<std::string>& seen) {
  std::vector<Example> kept;
  for (Example& e : examples)
    if (seen.insert(e.text_a + '\t' + e.text_b).second) kept.push_back(std::move(e));
  examples = std::move(kept);
}

// Split files come out grouped by source (all ham, then all spam); a seeded
// shuffle means the first N examples of a split are a fair sample of it.
static void shuffle_splits(Task& task, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eed5eedULL);
  for (auto* split : {&task.train, &task.val, &task.test, &task.ood}) shuffle_seeded(*split, rng);
}

std::vector<Example> stratified_sample(const std::vector<Example>& split, size_t n, size_t num_labels, uint64_t seed) {
  const std::vector<size_t> counts = label_counts(split, num_labels);
  const size_t present = static_cast<size_t>(std::count_if(counts.begin(), counts.end(), [](size_t c) { return c > 0; }));
  if (n > split.size() || n < present)
    throw InputError("--train-size " + std::to_string(n) + ": the train split has " + std::to_string(split.size()) +
                     " examples of " + std::to_string(present) + " labels; give a size from " + std::to_string(present) +
                     " to " + std::to_string(split.size()));
  // Each label's quota: one for every label present, the rest of n shared in
  // proportion to the label counts, floors first, then the largest remainders.
  std::vector<size_t> quota(num_labels, 0);
  std::vector<std::pair<double, size_t>> remainders;
  size_t given = 0;
  for (size_t label = 0; label < num_labels; label++) {
    if (counts[label] == 0) continue;
    const double share = static_cast<double>(n - present) * static_cast<double>(counts[label] - 1) /
                         static_cast<double>(split.size() - present);
    quota[label] = 1 + static_cast<size_t>(share);
    given += quota[label];
    remainders.push_back({share - std::floor(share), label});
  }
  std::stable_sort(remainders.begin(), remainders.end(), [](auto& a, auto& b) { return a.first > b.first; });
  for (size_t i = 0; given < n; i++, given++) quota[remainders[i % remainders.size()].second]++;
  // Draw each label's examples by a seeded shuffle of its positions.
  std::mt19937_64 rng(seed ^ 0x5A3B1Eull);
  std::vector<bool> chosen(split.size(), false);
  for (size_t label = 0; label < num_labels; label++) {
    std::vector<size_t> positions;
    for (size_t i = 0; i < split.size(); i++)
      if (split[i].label == static_cast<int>(label)) positions.push_back(i);
    shuffle_seeded(positions, rng);
    for (size_t k = 0; k < quota[label]; k++) chosen[positions[k]] = true;
  }
  std::vector<Example> sample;
  for (size_t i = 0; i < split.size(); i++)
    if (chosen[i]) sample.push_back(split[i]);
  return sample;
}

// ---------------------------------------------------------------- spam

std::string email_body(const std::string& raw_message, size_t max_bytes) {
  size_t header_end = raw_message.find("\n\n");
  size_t crlf_end = raw_message.find("\r\n\r\n");
  size_t start = std::string::npos;
  if (header_end != std::string::npos) start = header_end + 2;
  if (crlf_end != std::string::npos && (start == std::string::npos || crlf_end + 4 < start)) start = crlf_end + 4;
  std::string body;
  if (start == std::string::npos) return body;  // headers only
  bool pending_space = false;
  for (size_t i = start; i < raw_message.size(); i++) {
    char c = raw_message[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      pending_space = !body.empty();
      continue;
    }
    if (pending_space) body += ' ';
    pending_space = false;
    body += c;
    if (body.size() >= max_bytes + 4) break;  // enough to cut at a character boundary below
  }
  if (body.size() > max_bytes) {
    size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(body[cut]) & 0xC0) == 0x80) cut--;  // not mid-character
    body.resize(cut);
    while (!body.empty() && body.back() == ' ') body.pop_back();
  }
  return body;
}

// The first 1000 bytes of a body carry what a reader sees first; it keeps a
// passage-sized input (~250 tokens) for a small model's context.
constexpr size_t kSpamBodyBytes = 1000;

// One group folder of the package, e.g. data/spam-1/00001.<md5>.json.
static std::vector<Example> load_spam_group(const std::string& root, const std::string& group, int label) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(root + "/data/" + group))
    if (entry.path().extension() == ".json") paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  std::vector<Example> examples;
  for (const std::string& path : paths) {
    json::Value message = json::parse_file(path);
    Example e;
    e.label = label;
    e.text_a = email_body(message.at("text", path).as_string(path + ": text"), kSpamBodyBytes);
    e.doc = "spam-assassin:" + group + "/" + message.at("id", path).as_string(path + ": id");
    if (!e.text_a.empty()) examples.push_back(std::move(e));
  }
  return examples;
}

static Task load_spam(uint64_t seed) {
  std::string root = dataset_dir("spam-assassin");
  enum { kHam = 0, kSpam = 1 };
  Task task;
  task.name = "spam";
  task.label_names = {"ham", "spam"};
  std::vector<Example> in_distribution;
  for (auto [group, label] : {std::pair{"easy-ham-1", kHam}, {"easy-ham-2", kHam}, {"spam-1", kSpam}}) {
    std::vector<Example> part = load_spam_group(root, group, label);
    in_distribution.insert(in_distribution.end(), part.begin(), part.end());
  }
  for (auto [group, label] : {std::pair{"hard-ham-1", kHam}, {"spam-2", kSpam}}) {
    std::vector<Example> part = load_spam_group(root, group, label);
    task.ood.insert(task.ood.end(), part.begin(), part.end());
  }
  // Bodies repeat (list digests, spam campaigns resent; spam-1 and spam-2
  // share messages): only the first copy is kept, an ID copy before an OOD one.
  // Of 4400 ID messages 4290 remain, of 1646 OOD messages 1367.
  std::unordered_set<std::string> seen;
  drop_seen_texts(in_distribution, seen);
  drop_seen_texts(task.ood, seen);
  std::vector<int> labels;
  for (const Example& e : in_distribution) labels.push_back(e.label);
  std::vector<int> split_of = assign_splits(labels, 2, 0.1, 0.1, seed);
  for (size_t i = 0; i < in_distribution.size(); i++) {
    auto& split = split_of[i] == 0 ? task.train : split_of[i] == 1 ? task.val : task.test;
    split.push_back(std::move(in_distribution[i]));
  }
  shuffle_splits(task, seed);
  return task;
}

// ---------------------------------------------------------------- SOTU passages

// Words whose period does not end a sentence in the addresses ("Mr. Speaker",
// "St. Louis", "Gen. Grant"); initials and dotted abbreviations ("U.S.") are
// recognised by their shape instead.
static bool is_abbreviation(const std::string& word) {
  static const char* const titles[] = {"Mr", "Mrs", "Messrs", "Dr", "St", "Gen", "Col", "Gov", "Hon", "Lieut",
                                       "Capt", "Jr", "Sr", "Ft", "Mt", "No", "Nos", "Sec", "Rev", "Maj"};
  for (const char* title : titles)
    if (word == title) return true;
  bool single_letter = word.size() == 1 && std::isalpha(static_cast<unsigned char>(word[0]));
  return single_letter || word.find('.') != std::string::npos;
}

// Is there a sentence boundary right after the terminator run text[i..end)?
static bool ends_sentence(const std::string& text, size_t terminator, size_t end) {
  if (end + 1 >= text.size() || text[end] != ' ') return false;
  unsigned char next = static_cast<unsigned char>(text[end + 1]);
  // An upper-case letter, an opening quote ('"' or the UTF-8 lead byte of “) or a bracket.
  if (!(std::isupper(next) || next == '"' || next == 0xE2 || next == '(')) return false;
  if (text[terminator] != '.') return true;
  size_t word_start = text.rfind(' ', terminator);
  word_start = word_start == std::string::npos ? 0 : word_start + 1;
  return !is_abbreviation(text.substr(word_start, terminator - word_start));
}

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> sentences;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '.' && text[i] != '?' && text[i] != '!') continue;
    size_t end = i + 1;
    // Closing quotes and brackets belong to the sentence they close: " ' ) ] and ” ’ (E2 80 9D / 99).
    while (end < text.size()) {
      if (text[end] == '"' || text[end] == '\'' || text[end] == ')' || text[end] == ']') end++;
      else if (text.compare(end, 3, "\xE2\x80\x9D") == 0 || text.compare(end, 3, "\xE2\x80\x99") == 0) end += 3;
      else break;
    }
    if (!ends_sentence(text, i, end)) continue;
    sentences.push_back(text.substr(start, end - start));
    start = end + 1;
    i = end;
  }
  if (start < text.size()) sentences.push_back(text.substr(start));
  return sentences;
}

std::vector<std::string> make_passages(const std::string& text) {
  constexpr size_t kMinSentences = 3, kMaxSentences = 5, kTargetBytes = 400;
  std::vector<std::string> passages;
  std::string passage;
  size_t sentence_count = 0;
  for (const std::string& sentence : split_sentences(text)) {
    passage += passage.empty() ? sentence : " " + sentence;
    sentence_count++;
    if (sentence_count == kMaxSentences || (sentence_count >= kMinSentences && passage.size() >= kTargetBytes)) {
      passages.push_back(std::move(passage));
      passage.clear();
      sentence_count = 0;
    }
  }
  if (sentence_count >= kMinSentences) passages.push_back(std::move(passage));
  return passages;
}

// A long address has hundreds of passages; taking at most this many from
// each keeps long-winded years from dominating a split, and keeps the tasks
// small enough to adapt a model on a laptop CPU.
constexpr size_t kMaxPassagesPerAddress = 40;

struct SotuDocument {
  const Address* address;
  int era;  // 0 before 1900, 1 from 1900 on
  std::vector<std::string> passages;
};

// Every address with its passages (a seeded sample, kept in reading order),
// duplicates across addresses dropped; in-distribution and held-out apart.
static void load_sotu_documents(const std::vector<Address>& addresses, uint64_t seed,
                                std::vector<SotuDocument>& in_distribution, std::vector<SotuDocument>& held_out) {
  std::mt19937_64 rng(seed);
  std::unordered_set<std::string> seen;
  for (const Address& address : addresses) {
    std::vector<std::string> passages = make_passages(address.text);
    std::vector<size_t> order(passages.size());
    for (size_t k = 0; k < order.size(); k++) order[k] = k;
    shuffle_seeded(order, rng);
    order.resize(std::min(order.size(), kMaxPassagesPerAddress));
    std::sort(order.begin(), order.end());
    SotuDocument doc{&address, address.year < 1900 ? 0 : 1, {}};
    for (size_t k : order)
      if (seen.insert(passages[k]).second) doc.passages.push_back(passages[k]);
    if (doc.passages.size() < 2) continue;  // too short to give a passage pair
    (is_held_out(address) ? held_out : in_distribution).push_back(std::move(doc));
  }
}

// Cuts the in-distribution addresses into train/val/test (stratified by era,
// so every split has both labels); the held-out addresses are the OOD split.
static std::vector<std::vector<SotuDocument>> sotu_splits(const std::vector<Address>& addresses, uint64_t seed) {
  std::vector<SotuDocument> in_distribution, held_out;
  load_sotu_documents(addresses, seed, in_distribution, held_out);
  std::vector<int> eras;
  for (const SotuDocument& doc : in_distribution) eras.push_back(doc.era);
  std::vector<int> split_of = assign_splits(eras, 2, 0.1, 0.1, seed);
  std::vector<std::vector<SotuDocument>> splits(4);  // train, val, test, ood
  for (size_t d = 0; d < in_distribution.size(); d++) splits[split_of[d]].push_back(std::move(in_distribution[d]));
  splits[3] = std::move(held_out);
  return splits;
}

static std::vector<Example> era_examples(const std::vector<SotuDocument>& documents) {
  std::vector<Example> examples;
  for (const SotuDocument& doc : documents)
    for (const std::string& passage : doc.passages) examples.push_back({doc.era, passage, "", "sotu:" + doc.address->id});
  return examples;
}

// Up to 10 passages of each address are anchors, each for two examples: with
// another passage of the same address ("same"), and with a passage of another
// address of the same split ("different"), so the labels are balanced.
constexpr size_t kPairAnchorsPerAddress = 10;

static std::vector<Example> pair_examples(const std::vector<SotuDocument>& documents, std::mt19937_64& rng) {
  enum { kDifferent = 0, kSame = 1 };
  std::vector<Example> examples;
  if (documents.size() < 2) return examples;
  for (size_t d = 0; d < documents.size(); d++) {
    const SotuDocument& doc = documents[d];
    std::vector<size_t> anchors(doc.passages.size());
    for (size_t k = 0; k < anchors.size(); k++) anchors[k] = k;
    shuffle_seeded(anchors, rng);
    anchors.resize(std::min(anchors.size(), kPairAnchorsPerAddress));
    for (size_t anchor : anchors) {
      size_t partner = (anchor + 1 + rng() % (doc.passages.size() - 1)) % doc.passages.size();
      examples.push_back({kSame, doc.passages[anchor], doc.passages[partner], "sotu:" + doc.address->id});
      const SotuDocument& other = documents[(d + 1 + rng() % (documents.size() - 1)) % documents.size()];
      const std::string& stranger = other.passages[rng() % other.passages.size()];
      examples.push_back({kDifferent, doc.passages[anchor], stranger, "sotu:" + doc.address->id + "|sotu:" + other.address->id});
    }
  }
  return examples;
}

static Task load_sotu_task(const std::string& name, uint64_t seed) {
  std::vector<Address> addresses = load_sotu_addresses();
  std::vector<std::vector<SotuDocument>> splits = sotu_splits(addresses, seed);
  Task task;
  task.name = name;
  std::vector<Example>* outputs[] = {&task.train, &task.val, &task.test, &task.ood};
  std::mt19937_64 rng(seed);
  if (name == "era") task.label_names = {"pre1900", "1900on"};
  else task.label_names = {"different", "same"};
  for (size_t s = 0; s < 4; s++)
    *outputs[s] = name == "era" ? era_examples(splits[s]) : pair_examples(splits[s], rng);
  shuffle_splits(task, seed);
  return task;
}

Task load_task(const std::string& name_or_tsv, uint64_t seed) {
  if (name_or_tsv == "spam") return load_spam(seed);
  if (name_or_tsv == "era" || name_or_tsv == "pair") return load_sotu_task(name_or_tsv, seed);
  if (!file_exists(name_or_tsv))
    throw InputError("task '" + name_or_tsv + "': not a built-in task (spam, era, pair) and no such file");
  return load_tsv_task(name_or_tsv, seed);
}

}  // namespace ta::data
