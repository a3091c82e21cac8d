// tests/test_tasks.cpp — tasks, TSV reading, splits, the bag-of-words baseline
// (data/tasks.h, data/bow.h, data/corpus.h). Fixtures: tests/fixtures/tasks/.
// The built-in tasks are checked only when `make data` has filled the cache;
// otherwise that test says it skipped. Nothing here uses the network.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "data/bow.h"
#include "data/corpus.h"
#include "data/pretraining.h"
#include "data/tasks.h"

using ta::data::Example;
using ta::data::Task;

static const std::string kFixtures = "tests/fixtures/tasks/";

// The message of the InputError that `load` throws, or "" when it throws none.
template <typename F>
static std::string input_error_of(F load) {
  try {
    load();
  } catch (const ta::InputError& e) {
    return e.what();
  }
  return "";
}

static std::set<std::string> docs_of(const std::vector<Example>& split) {
  std::set<std::string> docs;
  for (const Example& e : split) {
    size_t start = 0;  // "a|b" names two documents
    for (size_t bar; (bar = e.doc.find('|', start)) != std::string::npos; start = bar + 1)
      docs.insert(e.doc.substr(start, bar - start));
    docs.insert(e.doc.substr(start));
  }
  return docs;
}

static std::set<std::string> texts_of(const std::vector<Example>& split) {
  std::set<std::string> texts;
  for (const Example& e : split) {
    texts.insert(e.text_a);
    if (!e.text_b.empty()) texts.insert(e.text_b);
  }
  return texts;
}

static size_t shared(const std::set<std::string>& a, const std::set<std::string>& b) {
  size_t n = 0;
  for (const std::string& x : a) n += b.count(x);
  return n;
}

// No document and no text in two splits; every label in every non-empty split.
static void check_splits_disjoint_and_complete(const Task& task) {
  const char* names[] = {"train", "val", "test", "ood"};
  for (int i = 0; i < 4; i++) {
    const auto& split = task.split(names[i]);
    if (split.empty()) continue;
    for (size_t count : ta::data::label_counts(split, task.label_names.size())) {
      INFO(task.name << " " << names[i]);
      CHECK(count > 0);
    }
    for (int j = i + 1; j < 4; j++) {
      INFO(task.name << ": " << names[i] << " vs " << names[j]);
      CHECK(shared(docs_of(split), docs_of(task.split(names[j]))) == 0);
      CHECK(shared(texts_of(split), texts_of(task.split(names[j]))) == 0);
    }
  }
}

TEST_CASE("tasks: a 2-column TSV is a task; val and test are carved from train by seed") {
  Task task = ta::data::load_task(kFixtures + "single/train.tsv", 7);
  CHECK_FALSE(task.is_pair());
  REQUIRE(task.label_names == std::vector<std::string>{"fruit", "space"});
  // 30 lines per label: 10% (3) of each to val and to test, 24 stay in train.
  CHECK(task.train.size() == 48);
  CHECK(task.val.size() == 6);
  CHECK(task.test.size() == 6);
  CHECK(task.ood.empty());
  CHECK(ta::data::label_counts(task.val, 2) == std::vector<size_t>{3, 3});
  check_splits_disjoint_and_complete(task);
  // Lines are kept verbatim: docs name file:line.
  std::set<std::string> all_docs = docs_of(task.train);
  for (const auto* split : {&task.val, &task.test})
    for (const std::string& d : docs_of(*split)) all_docs.insert(d);
  CHECK(all_docs.size() == 60);
  CHECK(all_docs.count(kFixtures + "single/train.tsv:1") == 1);
}

TEST_CASE("tasks: the seeded split is deterministic and depends on the seed") {
  auto val_docs = [](uint64_t seed) { return docs_of(ta::data::load_task(kFixtures + "single/train.tsv", seed).val); };
  CHECK(val_docs(3) == val_docs(3));
  CHECK(val_docs(3) != val_docs(4));
}

TEST_CASE("tasks: a 3-column TSV with sibling val/test/ood files is a pair task") {
  Task task = ta::data::load_task(kFixtures + "pair/train.tsv", 1);
  CHECK(task.is_pair());
  REQUIRE(task.label_names == std::vector<std::string>{"different", "same"});
  REQUIRE(task.train.size() == 4);
  REQUIRE(task.val.size() == 2);  // from val.tsv (CRLF line ends), not carved from train
  REQUIRE(task.test.size() == 2);
  REQUIRE(task.ood.size() == 1);
  CHECK(task.train[0].label == 1);
  CHECK(task.train[0].text_a == "The cat sleeps.");
  CHECK(task.train[0].text_b == "A cat is sleeping.");
  CHECK(task.val[1].text_b == "Taxes rose.");  // the '\r' is gone
  CHECK(task.ood[0].text_a == "Caf\xc3\xa9 au lait.");
  CHECK(task.ood[0].doc == kFixtures + "pair/ood.tsv:1");
}

TEST_CASE("tasks: every bad TSV throws InputError naming file and line") {
  const std::pair<const char*, const char*> cases[] = {
      {"bad/four_columns.tsv", "bad/four_columns.tsv:3: expected 2 or 3 tab-separated columns, got 4"},
      {"bad/mixed_columns.tsv", "bad/mixed_columns.tsv:2: expected 2 columns"},
      {"bad/invalid_utf8.tsv", "bad/invalid_utf8.tsv:2: invalid UTF-8"},
      {"bad/empty_text.tsv", "bad/empty_text.tsv:2: empty text"},
      {"bad/empty_label.tsv", "bad/empty_label.tsv:3: empty label"},
      {"bad/blank_line.tsv", "bad/blank_line.tsv:2: expected 2 or 3 tab-separated columns, got 1"},
      {"unseen_label/train.tsv", "unseen_label/val.tsv:2: label 'maybe' does not occur in the train file"},
  };
  for (const auto& [file, expected] : cases) {
    std::string message = input_error_of([&] { ta::data::load_task(kFixtures + file, 1); });
    INFO(file << " -> " << message);
    CHECK(message.find(expected) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);  // one line
  }
  CHECK(input_error_of([] { ta::data::load_task("no/such/task.tsv", 1); }).find("not a built-in task") !=
        std::string::npos);
}

TEST_CASE("tasks: assign_splits cuts each label by the fractions, disjointly") {
  std::vector<int> labels;
  for (int i = 0; i < 200; i++) labels.push_back(i < 150 ? 0 : 1);  // 150 of label 0, 50 of label 1
  std::vector<int> split_of = ta::data::assign_splits(labels, 2, 0.1, 0.2, 5);
  int count[2][3] = {};
  for (size_t d = 0; d < labels.size(); d++) count[labels[d]][split_of[d]]++;
  CHECK(count[0][1] == 15);
  CHECK(count[0][2] == 30);
  CHECK(count[0][0] == 105);
  CHECK(count[1][1] == 5);
  CHECK(count[1][2] == 10);
  CHECK(ta::data::assign_splits(labels, 2, 0.1, 0.2, 5) == split_of);
  CHECK(ta::data::assign_splits(labels, 2, 0.1, 0.2, 6) != split_of);
}

TEST_CASE("tasks: e-mail bodies lose their headers and keep a capped, whitespace-normalised body") {
  std::string message = "From: a@b.c\nSubject: hi\n\nHello   there,\n\n\tfriend.\n";
  CHECK(ta::data::email_body(message, 1000) == "Hello there, friend.");
  CHECK(ta::data::email_body("From: a@b.c\r\n\r\nBody\r\n", 1000) == "Body");
  CHECK(ta::data::email_body("Subject: only headers\n", 1000).empty());
  // The cap never cuts a UTF-8 character in half: "é" is 2 bytes at offset 4..5.
  CHECK(ta::data::email_body("X: y\n\nabcd\xc3\xa9" "fgh", 5) == "abcd");
  CHECK(ta::data::email_body("X: y\n\nabcd\xc3\xa9" "fgh", 6) == "abcd\xc3\xa9");
}

TEST_CASE("tasks: sentences split at terminators, not at titles or initials; passages hold 3-5") {
  std::string text =
      "Mr. Speaker, the U.S. Army under Gen. Grant won. Did it? Yes! "
      "John F. Kennedy spoke in St. Louis. \"We shall go,\" he said. The end.";
  std::vector<std::string> sentences = ta::data::split_sentences(text);
  REQUIRE(sentences.size() == 6);
  CHECK(sentences[0] == "Mr. Speaker, the U.S. Army under Gen. Grant won.");
  CHECK(sentences[1] == "Did it?");
  CHECK(sentences[3] == "John F. Kennedy spoke in St. Louis.");
  CHECK(sentences[4] == "\"We shall go,\" he said.");
  std::vector<std::string> passages = ta::data::make_passages(text);
  // 6 short sentences: one passage of 5, and a tail of 1, which is dropped.
  REQUIRE(passages.size() == 1);
  CHECK(passages[0].substr(0, 9) == "Mr. Speak");
  CHECK(passages[0].find("he said.") != std::string::npos);
}

TEST_CASE("tasks: find_invalid_utf8 rejects bad bytes, overlongs and surrogates") {
  using ta::data::find_invalid_utf8;
  const size_t valid = std::string::npos;
  CHECK(find_invalid_utf8("plain, caf\xc3\xa9, \xe4\xb8\xad, \xf0\x9f\x98\x80") == valid);
  CHECK(find_invalid_utf8("ab\xff") == 2);
  CHECK(find_invalid_utf8("a\xc0\xaf") == 1);      // overlong '/'
  CHECK(find_invalid_utf8("\xed\xa0\x80") == 0);   // surrogate U+D800
  CHECK(find_invalid_utf8("x\xe4\xb8") == 1);      // truncated
  CHECK(find_invalid_utf8("\xf4\x90\x80\x80") == 0);  // above U+10FFFF
}

TEST_CASE("tasks: a file corpus must be UTF-8; the error names the file") {
  CHECK(ta::data::corpus_text(kFixtures + "pair/test.tsv").substr(0, 10) == "same\tBirds");
  std::string message = input_error_of([] { ta::data::corpus_text(kFixtures + "bad/invalid_utf8.tsv"); });
  CHECK(message.find("bad/invalid_utf8.tsv: invalid UTF-8 at byte 25") != std::string::npos);
}

TEST_CASE("tasks: the bag-of-words baseline learns a separable task and only that") {
  Task task = ta::data::load_task(kFixtures + "single/train.tsv", 1);
  ta::data::BowClassifier bow(task);
  CHECK(bow.accuracy(task.train) == 1.0);
  CHECK(bow.accuracy(task.val) == 1.0);
  CHECK(bow.accuracy(task.test) == 1.0);
  CHECK(bow.accuracy(task.ood) == 0.0);  // empty split
  // A new sentence of fruit words is "fruit" (label 0), of space words "space".
  CHECK(bow.predict({-1, "a ripe plum and a sweet melon", "", "new"}) == 0);
  CHECK(bow.predict({-1, "the comet and the moon", "", "new"}) == 1);
  CHECK(bow.vocab_size() > 10);
  CHECK(ta::data::bow_words("Hello, WORLD! caf\xc3\xa9 x2") ==
        std::vector<std::string>{"hello", "world", "caf\xc3\xa9", "x2"});
}

TEST_CASE("tasks: the built-in tasks (needs `make data`)") {
  if (!ta::file_exists(ta::data::cache_dir() + "/data/sotu/.complete") ||
      !ta::file_exists(ta::data::cache_dir() + "/data/spam-assassin/.complete")) {
    MESSAGE("skipped: no data cache in " << ta::data::cache_dir() << " (run `make data`)");
    return;
  }
  for (const char* name : {"spam", "era", "pair"}) {
    Task task = ta::data::load_task(name, 1);
    REQUIRE(task.label_names.size() == 2);
    for (const auto* split : {&task.train, &task.val, &task.test, &task.ood}) CHECK(split->size() > 100);
    check_splits_disjoint_and_complete(task);
    Task again = ta::data::load_task(name, 1);
    CHECK(docs_of(again.test) == docs_of(task.test));
  }
  // The OOD presidents: every one is in the data, all their addresses are in
  // the OOD split of era, and none is in the pretraining corpus; nor is any
  // address era evaluates on in distribution.
  std::string corpus = ta::data::corpus_text("sotu");
  Task era = ta::data::load_task("era");
  std::set<std::string> ood_docs = docs_of(era.ood), evaluated = ta::data::evaluation_documents(era);
  std::set<std::string> held_out_presidents_seen;
  for (const ta::data::Address& address : ta::data::load_sotu_addresses()) {
    bool in_corpus = corpus.find(address.text.substr(0, 300)) != std::string::npos;
    INFO(address.id);
    CHECK(in_corpus == (!ta::data::is_held_out(address) && !evaluated.count("sotu:" + address.id)));
    CHECK(ood_docs.count("sotu:" + address.id) == (ta::data::is_held_out(address) ? 1u : 0u));
    if (ta::data::is_held_out(address)) held_out_presidents_seen.insert(address.president);
  }
  CHECK(held_out_presidents_seen.size() == ta::data::held_out_presidents().size());
}
