// tests/test_pretraining.cpp — pretraining corpora and the few-label regime:
// corpus mixing, the leakage rule, the manifest (data/pretraining.h), the
// stratified --train-size sample (data/tasks.h), and the commands that use
// them (pretrain --corpus A,B / --init, adapt --train-size, adapt refusing a
// base pretrained on its test text).
//
// The SOTU checks read tests/fixtures/cache/, a data cache in `make data`'s
// layout holding 19 shortened addresses (4 of held-out presidents), so they
// run without the network or the real data.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <map>
#include <set>

#include "data/json.h"
#include "data/pretraining.h"
#include "tests/helpers.h"

using ta::data::Document;
using ta::data::Example;
using ta::data::Task;
using ta::testing::ScratchDir;

namespace {

const std::string kFixtureCache = "tests/fixtures/cache";
const std::string kTasks = "tests/fixtures/tasks/";

// Points TINYADAPT_CACHE (data/corpus.h cache_dir) at the fixture cache for one scope.
struct FixtureCache {
  std::string saved;
  bool had = false;
  FixtureCache() {
    if (const char* old = std::getenv("TINYADAPT_CACHE")) saved = old, had = true;
    ::setenv("TINYADAPT_CACHE", kFixtureCache.c_str(), 1);
  }
  ~FixtureCache() { had ? ::setenv("TINYADAPT_CACHE", saved.c_str(), 1) : ::unsetenv("TINYADAPT_CACHE"); }
};

template <typename F>
std::string input_error_of(F call) {
  try {
    call();
  } catch (const ta::InputError& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> ids_of(const std::vector<Document>& documents) {
  std::vector<std::string> ids;
  for (const Document& d : documents) ids.push_back(d.id);
  return ids;
}

// A task of n examples, the first `positives` labelled 1.
std::vector<Example> labelled(size_t n, size_t positives) {
  std::vector<Example> examples;
  for (size_t i = 0; i < n; i++) examples.push_back({i < positives ? 1 : 0, "text " + std::to_string(i), "", ""});
  return examples;
}

}  // namespace

TEST_CASE("pretraining: stratified --train-size samples keep the label shares, every label, and the seed's draw") {
  const std::vector<Example> split = labelled(1000, 100);  // 10% label 1
  for (size_t n : {2u, 16u, 64u, 256u, 1000u}) {
    const std::vector<Example> sample = ta::data::stratified_sample(split, n, 2, 7);
    CAPTURE(n);
    REQUIRE(sample.size() == n);
    const std::vector<size_t> counts = ta::data::label_counts(sample, 2);
    CHECK(counts[1] >= 1);
    // The minority's share: one guaranteed, the rest of n shared as 99 : 899.
    const double expected = 1 + static_cast<double>(n - 2) * 99.0 / 998.0;
    CHECK(std::fabs(static_cast<double>(counts[1]) - expected) < 1.0);
    std::set<std::string> texts;
    for (const Example& e : sample) texts.insert(e.text_a);
    CHECK(texts.size() == n);  // without replacement
  }
  // 16 of 10% gives 2.4 -> 2 positives and 14 negatives (largest remainder: 0.4 < 0.6).
  CHECK(ta::data::label_counts(ta::data::stratified_sample(split, 16, 2, 1), 2) == std::vector<size_t>{14, 2});
  // The same seed draws the same examples, another seed others; the split's order is kept.
  auto texts = [&](uint64_t seed) {
    std::vector<std::string> t;
    for (const Example& e : ta::data::stratified_sample(split, 64, 2, seed)) t.push_back(e.text_a);
    return t;
  };
  CHECK(texts(3) == texts(3));
  CHECK(texts(3) != texts(4));
  std::vector<std::string> order = texts(3);
  CHECK(std::is_sorted(order.begin(), order.end(), [](const std::string& a, const std::string& b) {
    return std::stoi(a.substr(5)) < std::stoi(b.substr(5));
  }));
  // A label with one example still gets it; sizes outside [labels, split] are refused.
  CHECK(ta::data::label_counts(ta::data::stratified_sample(labelled(50, 1), 3, 2, 1), 2) == std::vector<size_t>{2, 1});
  CHECK(input_error_of([&] { ta::data::stratified_sample(split, 1001, 2, 1); }).find("--train-size 1001") == 0);
  CHECK(input_error_of([&] { ta::data::stratified_sample(split, 1, 2, 1); }).find("give a size from 2 to 1000") !=
        std::string::npos);
}

TEST_CASE("pretraining: the sotu corpus leaves out every address era and pair evaluate on") {
  FixtureCache cache;
  const Task era = ta::data::load_task("era");
  REQUIRE(!era.test.empty());
  REQUIRE(!era.ood.empty());
  const std::set<std::string> evaluated = ta::data::evaluation_documents(era);
  const std::vector<Document> sotu = ta::data::corpus_documents("sotu");
  std::set<std::string> pretrained;
  for (const Document& d : sotu) pretrained.insert(d.id);
  for (const ta::data::Address& a : ta::data::load_sotu_addresses()) {
    CAPTURE(a.id);
    const std::string id = "sotu:" + a.id;
    CHECK(pretrained.count(id) == (ta::data::is_held_out(a) || evaluated.count(id) ? 0u : 1u));
  }
  std::set<std::string> trained_on;  // every era train address is pretraining text
  for (const Example& e : era.train) trained_on.insert(e.doc);
  for (const std::string& id : trained_on) CHECK(pretrained.count(id) == 1);
  CHECK(pretrained.size() == trained_on.size() + 0);  // every fixture address has passages enough for era
  // The rule passes on the real corpus and names what breaks it.
  const std::vector<std::string> ids = ids_of(sotu);
  CHECK_NOTHROW(ta::data::check_no_leakage(ids, ta::data::forbidden_documents(ids), "sotu"));
  std::vector<std::string> leaky = ids;
  leaky.push_back(era.test.front().doc);
  const std::string message = input_error_of([&] { ta::data::check_no_leakage(leaky, ta::data::forbidden_documents(leaky), "--corpus x"); });
  CHECK(message.find("--corpus x: 1 document(s) that a task evaluates on (" + era.test.front().doc + ")") == 0);
  // A held-out president's address is refused too, also inside a pair's "a|b".
  std::string held_out;
  for (const ta::data::Address& a : ta::data::load_sotu_addresses())
    if (ta::data::is_held_out(a)) held_out = "sotu:" + a.id;
  CHECK(!input_error_of([&] { ta::data::check_no_leakage({ids[0] + "|" + held_out}, ta::data::forbidden_documents(ids), "x"); }).empty());
}

TEST_CASE("pretraining: corpora mix in order; task:NAME is the train split; bad specs are one line") {
  FixtureCache cache;
  ScratchDir dir("corpus");
  ta::write_file_atomic(dir.file("notes.txt"), "plain notes");
  const std::vector<Document> mixed = ta::data::corpus_documents("sotu," + dir.file("notes.txt"));
  REQUIRE(mixed.size() >= 2);
  CHECK(mixed.front().id.rfind("sotu:", 0) == 0);
  CHECK(mixed.back().id == "file:" + dir.file("notes.txt"));
  CHECK(mixed.back().text == "plain notes");
  CHECK(ta::data::corpus_text(dir.file("notes.txt") + ",") == "plain notes");

  const Task tsv = ta::data::load_task(kTasks + "single/train.tsv");
  const std::vector<Document> dapt = ta::data::corpus_documents("task:" + kTasks + "single/train.tsv");
  REQUIRE(dapt.size() == tsv.train.size());
  for (size_t i = 0; i < dapt.size(); i++) CHECK(dapt[i].text == tsv.train[i].text_a);
  const std::vector<Document> era_train = ta::data::corpus_documents("task:era");
  CHECK(era_train.size() == ta::data::load_task("era").train.size());
  CHECK(era_train.front().id.rfind("sotu:", 0) == 0);  // an era passage is SOTU text

  CHECK(input_error_of([] { ta::data::corpus_documents("sotu,sotu"); }) == "--corpus sotu,sotu: 'sotu' is given twice");
  CHECK(input_error_of([] { ta::data::corpus_documents(","); }).find("--corpus is empty") == 0);
  CHECK(input_error_of([] { ta::data::corpus_documents("task:"); }).find("name a task after 'task:'") != std::string::npos);
  CHECK(input_error_of([] { ta::data::corpus_documents("nosuch.txt"); }).find("'nosuch.txt' is not a corpus") != std::string::npos);
  CHECK(input_error_of([] { ta::data::corpus_documents(kTasks + "bad/invalid_utf8.tsv"); })
            .find("bad/invalid_utf8.tsv: invalid UTF-8 at byte 25") != std::string::npos);
}

TEST_CASE("pretraining: the manifest round-trips; a malformed one is an InputError naming the file") {
  ScratchDir dir("manifest");
  ta::data::PretrainingManifest m, back;
  CHECK(!ta::data::read_manifest(dir.path, back));
  m.corpus = "sotu,brown";
  m.init = "runs/base";
  m.documents = {"brown:ca01", "sotu:1790_george_washington_n"};
  m.train_tokens = 90;
  m.val_tokens = 10;
  m.token_counts = {0, 5, 85};
  ta::data::write_manifest(dir.path, m);
  REQUIRE(ta::data::read_manifest(dir.path, back));
  CHECK(back.corpus == m.corpus);
  CHECK(back.init == m.init);
  CHECK(back.documents == m.documents);
  CHECK(back.token_counts == m.token_counts);
  CHECK(back.train_tokens == 90);
  ta::write_file_atomic(dir.file("pretraining.json"), "{\"corpus\": \"x\", \"init\": \"\", \"train_tokens\": -1}");
  CHECK(input_error_of([&] { ta::data::read_manifest(dir.path, back); }).find(dir.file("pretraining.json")) == 0);
}

namespace {

// Runs `tinyadapt <arguments>` with stdout and stderr in one string; the exit status.
int run_tinyadapt(const std::string& arguments, std::string& output, const ScratchDir& dir) {
  const std::string log = dir.file("output.txt");
  const int status = std::system((ta::testing::tinyadapt_binary() + " " + arguments + " >" + log + " 2>&1").c_str());
  output = ta::read_file(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const std::string kTinyShape = "--vocab-size 300 --n-layer 1 --n-head 2 --n-embd 16 --ctx 32 --batch 2 --eval-every 3";

}  // namespace

TEST_CASE("pretraining: pretrain --corpus A,B writes the manifest; --init continues and adds its documents") {
  if (!ta::file_exists(ta::testing::tinyadapt_binary())) {
    MESSAGE("skipped: no " << ta::testing::tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("pretrain_mix");
  const std::string keyword = "tests/fixtures/adapt/keyword/";
  ta::write_file_atomic(dir.file("notes.txt"), "the good team and the great day; a bad and awful night\n");
  std::string output;
  REQUIRE(run_tinyadapt("pretrain --corpus " + keyword + "val.tsv," + dir.file("notes.txt") + " " + kTinyShape +
                            " --steps 3 --out " + dir.file("base"), output, dir) == 0);
  ta::data::PretrainingManifest base;
  REQUIRE(ta::data::read_manifest(dir.file("base"), base));
  CHECK(base.documents == std::vector<std::string>{"file:" + dir.file("notes.txt"), "file:" + keyword + "val.tsv"});
  CHECK(base.init.empty());
  long long counted = 0;
  for (long long c : base.token_counts) counted += c;
  CHECK(counted == base.train_tokens);
  CHECK(base.token_counts.size() == 300);
  CHECK(base.val_tokens * 9 <= base.train_tokens + 9);  // the last 10% of the stream is held out

  // Continued pretraining on a task's train split: the base's weights and tokenizer, a fresh optimizer.
  REQUIRE(run_tinyadapt("pretrain --init " + dir.file("base") + " --corpus task:" + keyword + "train.tsv --steps 2 --batch 2 "
                        "--eval-every 2 --out " + dir.file("dapt"), output, dir) == 0);
  ta::data::PretrainingManifest dapt;
  REQUIRE(ta::data::read_manifest(dir.file("dapt"), dapt));
  CHECK(dapt.init == dir.file("base"));
  CHECK(dapt.corpus == "task:" + keyword + "train.tsv");
  CHECK(dapt.documents.size() == 2 + 96);  // the base's two files and one document per train example
  CHECK(ta::read_file(dir.file("dapt/vocab.json")) == ta::read_file(dir.file("base/vocab.json")));
  CHECK(ta::read_file(dir.file("dapt/config.json")) == ta::read_file(dir.file("base/config.json")));
  CHECK(ta::read_file(dir.file("dapt/model.safetensors")) != ta::read_file(dir.file("base/model.safetensors")));

  // Bad uses: one line, status 2, and the base untouched.
  const std::string base_weights = ta::read_file(dir.file("base/model.safetensors"));
  for (const std::string& bad : {"--init " + dir.file("base") + " --n-layer 2 --corpus sotu --out " + dir.file("x"),
                                 "--init " + dir.file("base") + " --corpus task:" + keyword + "train.tsv --out " + dir.file("base"),
                                 "--init " + dir.file("nosuch") + " --corpus " + dir.file("notes.txt") + " --out " + dir.file("y"),
                                 "--corpus task:nosuch.tsv --out " + dir.file("z")}) {
    CAPTURE(bad);
    CHECK(run_tinyadapt("pretrain " + bad, output, dir) == 2);
    CHECK(std::count(output.begin(), output.end(), '\n') == 1);
  }
  CHECK(output.find("task 'nosuch.tsv'") != std::string::npos);
  CHECK(ta::read_file(dir.file("base/model.safetensors")) == base_weights);
}

TEST_CASE("pretraining: adapt --train-size trains on the sample; adapt refuses a base pretrained on the task's test text") {
  if (!ta::file_exists(ta::testing::tinyadapt_binary())) {
    MESSAGE("skipped: no " << ta::testing::tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("train_size");
  const std::string keyword = "tests/fixtures/adapt/keyword/";
  std::string output;
  REQUIRE(run_tinyadapt("pretrain --corpus " + keyword + "train.tsv " + kTinyShape + " --steps 3 --out " + dir.file("base"),
                        output, dir) == 0);
  const std::string adapt = "adapt --model " + dir.file("base") + " --task " + keyword + "train.tsv --method probe --steps 5 ";
  REQUIRE(run_tinyadapt(adapt + "--train-size 8 --data-seed 3 --out " + dir.file("probe"), output, dir) == 0);
  const ta::json::Value metrics = ta::json::parse_file(dir.file("probe/metrics.json"));
  CHECK(metrics.at("train_size").as_int() == 8);
  CHECK(metrics.at("data_seed").as_int() == 3);
  REQUIRE(run_tinyadapt(adapt + "--eval-every 0 --out " + dir.file("all"), output, dir) == 0);
  const ta::json::Value all = ta::json::parse_file(dir.file("all/metrics.json"));
  CHECK(all.at("train_size").as_int() == 96);
  CHECK(all.find("val") == nullptr);  // --eval-every 0: never scored
  CHECK(all.find("test") != nullptr);
  CHECK(run_tinyadapt(adapt + "--train-size 97 --out " + dir.file("x"), output, dir) == 2);
  CHECK(output.find("--train-size 97: the train split has 96 examples of 2 labels") != std::string::npos);

  // A base whose manifest lists an address era tests on is refused (fixture cache, as the child sees it).
  const std::string cache = "TINYADAPT_CACHE=" + kFixtureCache + " ";
  REQUIRE(std::system((cache + ta::testing::tinyadapt_binary() + " pretrain --corpus sotu " + kTinyShape + " --steps 2 --out " +
                       dir.file("sotu") + " >/dev/null 2>&1").c_str()) == 0);
  const std::string era_adapt = "adapt --model " + dir.file("sotu") + " --task era --method probe --steps 2 --eval-every 0 --out ";
  const int clean = std::system((cache + ta::testing::tinyadapt_binary() + " " + era_adapt + dir.file("era") + " >/dev/null 2>&1").c_str());
  CHECK(WEXITSTATUS(clean) == 0);
  ta::data::PretrainingManifest m;
  REQUIRE(ta::data::read_manifest(dir.file("sotu"), m));
  std::string test_doc;
  {
    FixtureCache fixture;
    test_doc = ta::data::load_task("era").test.front().doc;
  }
  m.documents.push_back(test_doc);
  ta::data::write_manifest(dir.file("sotu"), m);
  const int refused = std::system((cache + ta::testing::tinyadapt_binary() + " " + era_adapt + dir.file("era2") + " >" +
                                   dir.file("refused.txt") + " 2>&1").c_str());
  CHECK(WEXITSTATUS(refused) == 2);
  const std::string message = ta::read_file(dir.file("refused.txt"));
  CHECK(message.find("(pretrained on sotu) cannot be adapted to era: 1 document(s) that a task evaluates on (" + test_doc + ")") !=
        std::string::npos);
  CHECK(!ta::file_exists(dir.file("era2/metrics.json")));
}

TEST_CASE("pretraining: brown leaves out the part-of-speech probe's test files, and the rule refuses them") {
  FixtureCache cache;  // its brown is tests/fixtures/brown: ca01 (a probe-test file), ca02, ca03, cb01, cb02
  const std::vector<Document> mixed = ta::data::corpus_documents("sotu,brown");
  std::vector<std::string> ids = ids_of(mixed);
  std::vector<std::string> brown(std::find(ids.begin(), ids.end(), "brown:ca02"), ids.end());
  CHECK(brown == std::vector<std::string>{"brown:ca02", "brown:ca03", "brown:cb02"});  // cb01 ends in 1 too
  CHECK_NOTHROW(ta::data::check_no_leakage(ids, ta::data::forbidden_documents(ids), "--corpus sotu,brown"));
  ids.push_back("brown:ca01");
  CHECK(input_error_of([&] { ta::data::check_no_leakage(ids, ta::data::forbidden_documents(ids), "--corpus x"); })
            .find("(brown:ca01)") != std::string::npos);
}
