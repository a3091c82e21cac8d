// tests/test_brown.cpp — the Brown corpus (data/brown.h) and the POS probe
// built on it (adapt/token_probe.h, probe-tokens --property pos): parsing,
// coarse tags, the detokenised text and its spans, the probe-test split,
// which BPE token carries a word's tag, the control task's labels, errors for
// malformed files, and end-to-end probes.
//
// Fixture: tests/fixtures/brown/ — five short files in the corpus's own
// format (ca01 ca02 ca03 cb01 cb02; ca01 and cb01 are probe-test files) and
// cats.txt. The end-to-end probe writes a larger synthetic corpus whose tag is
// a function of the word.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "adapt/token_probe.h"
#include "data/brown.h"
#include "data/json.h"
#include "tests/helpers.h"

using namespace ta;
using namespace ta::data;
using ta::testing::ScratchDir;

namespace {

const char* kFixture = "tests/fixtures/brown";

// The words of a file, as "word/tag" again.
std::vector<std::string> tokens_of(const BrownFile& file, size_t first, size_t count) {
  std::vector<std::string> out;
  for (size_t i = first; i < first + count && i < file.words.size(); i++) out.push_back(file.words[i].word + "/" + file.words[i].tag);
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

TEST_CASE("brown: the fixture parses into files, genres, words and raw tags in cats.txt's order") {
  const std::vector<BrownFile> files = load_brown(kFixture);
  REQUIRE(files.size() == 5);
  CHECK(files[0].id == "ca01");
  CHECK(files[0].genre == "news");
  CHECK(files[4].id == "cb02");
  CHECK(files[4].genre == "editorial");
  CHECK(files[0].words.size() == 51);
  CHECK(tokens_of(files[0], 0, 3) == std::vector<std::string>{"The/at", "Fulton/np-tl", "County/nn-tl"});
  CHECK(files[0].words[10].word == "Atlanta's");
  CHECK(files[0].words[10].coarse == CoarseTag::Noun);
  // A word may hold a slash: the tag is after the last one.
  const std::vector<BrownWord>& ca02 = files[1].words;
  const auto acres = std::find_if(ca02.begin(), ca02.end(), [](const BrownWord& w) { return w.tag == "cd"; });
  REQUIRE(acres != ca02.end());
  CHECK(acres->word == "1-1/2");
}

TEST_CASE("brown: coarse tags follow the header's rules") {
  const std::vector<std::pair<const char*, CoarseTag>> cases = {
      {"nn", CoarseTag::Noun},           {"nns-tl", CoarseTag::Noun},       {"nn-tl-hl", CoarseTag::Noun},
      {"np$", CoarseTag::Noun},          {"nn$", CoarseTag::Noun},          {"nns$-tl-hl", CoarseTag::Noun},
      {"nr", CoarseTag::Noun},           {"fw-nn", CoarseTag::Noun},        {"fw-nn-tl", CoarseTag::Noun},
      {"vbd", CoarseTag::Verb},          {"md", CoarseTag::Verb},           {"md*", CoarseTag::Verb},
      {"do*-hl", CoarseTag::Verb},       {"bedz", CoarseTag::Verb},         {"hvz*", CoarseTag::Verb},
      {"vb+ppo", CoarseTag::Verb},       {"jj", CoarseTag::Adjective},      {"jjt-tl", CoarseTag::Adjective},
      {"od", CoarseTag::Adjective},      {"jj$", CoarseTag::Adjective},     {"rb", CoarseTag::Adverb},
      {"*", CoarseTag::Adverb},          {"*-tl", CoarseTag::Adverb},       {"fw-*", CoarseTag::Adverb},
      {"rp", CoarseTag::Adverb},         {"ql", CoarseTag::Adverb},         {"wrb+bez", CoarseTag::Adverb},
      {"rb$", CoarseTag::Adverb},        {"at", CoarseTag::Determiner},     {"abn", CoarseTag::Determiner},
      {"ap", CoarseTag::Determiner},     {"ap$", CoarseTag::Determiner},    {"dts", CoarseTag::Determiner},
      {"wdt+bez", CoarseTag::Determiner},{"in", CoarseTag::Preposition},    {"fw-in+at-t", CoarseTag::Preposition},
      {"pp$", CoarseTag::Pronoun},       {"pp$$", CoarseTag::Pronoun},      {"wp$", CoarseTag::Pronoun},
      {"ppss+md", CoarseTag::Pronoun},   {"pps+bez-nc", CoarseTag::Pronoun},{"pn$", CoarseTag::Pronoun},
      {"ex", CoarseTag::Pronoun},        {"ex+bez", CoarseTag::Pronoun},    {"cc", CoarseTag::Conjunction},
      {"cs-hl", CoarseTag::Conjunction}, {".", CoarseTag::Punctuation},     {".-hl", CoarseTag::Punctuation},
      {",-hl", CoarseTag::Punctuation},  {"---hl", CoarseTag::Punctuation}, {"``", CoarseTag::Punctuation},
      {"''", CoarseTag::Punctuation},    {"'", CoarseTag::Punctuation},     {"(-hl", CoarseTag::Punctuation},
      {"to", CoarseTag::Other},          {"to+vb", CoarseTag::Other},       {"cd", CoarseTag::Other},
      {"cd$", CoarseTag::Other},         {"cd-tl", CoarseTag::Other},       {"uh", CoarseTag::Other},
      {"nil", CoarseTag::Other},
  };
  for (const auto& [tag, coarse] : cases) {
    CAPTURE(tag);
    const std::optional<CoarseTag> got = coarse_tag(tag);
    REQUIRE(got.has_value());
    CHECK(coarse_tag_names()[static_cast<size_t>(*got)] == coarse_tag_names()[static_cast<size_t>(coarse)]);
  }
  for (const char* not_brown : {"xyz", "", "fw-", "-tl", "nn-", "NN", "$", "+nn", "vbx"}) {
    CAPTURE(not_brown);
    CHECK_FALSE(coarse_tag(not_brown).has_value());
  }
  CHECK(coarse_tag_names().size() == static_cast<size_t>(kCoarseTagCount));
}

TEST_CASE("brown: the detokenised text has natural spacing, and every word's span holds the word") {
  const std::string contents =
      "\n\nAustin/np-hl ,/,-hl Texas/np-hl\n--/-- Committee/nn approval/nn ./.\n\n\n"
      "\tHe/pps said/vbd :/: ``/`` I'd/ppss+md go/vb (/( now/rb )/) ''/'' ./.\nWhy/wrb ?/.\n"
      "It/pps called/vbd it/ppo '/' modest/jj '/' and/cc left/vbd ;/. '/' fine/jj '/' !/.\n\n\n"
      "\tNew/jj paragraph/nn ./.\n";
  const BrownFile file = parse_brown_file("ca05", "news", contents, "ca05");
  CHECK(file.text ==
        "Austin, Texas -- Committee approval.\n\n"
        "He said: \"I'd go (now)\". Why? It called it 'modest' and left; 'fine'!\n\n"
        "New paragraph.");
  for (const BrownWord& w : file.words) {
    CAPTURE(w.word);
    const std::string surface = (w.word == "``" || w.word == "''") ? "\"" : w.word;
    CHECK(file.text.substr(w.begin, w.end - w.begin) == surface);
  }
  CHECK(file.words.size() == 36);
}

TEST_CASE("brown: the probe-test files are those numbered x1: 54 of the 500, every genre at least one") {
  CHECK(is_brown_probe_test("ca01"));
  CHECK(is_brown_probe_test("cj71"));
  CHECK_FALSE(is_brown_probe_test("ca02"));
  CHECK_FALSE(is_brown_probe_test("cr09"));
  CHECK_FALSE(is_brown_probe_test("ca10"));
  // The corpus's genres and their sizes (cats.txt): a 44, b 27, ..., r 9.
  const std::map<char, int> genre_sizes = {{'a', 44}, {'b', 27}, {'c', 17}, {'d', 17}, {'e', 36},
                                           {'f', 48}, {'g', 75}, {'h', 30}, {'j', 80}, {'k', 29},
                                           {'l', 24}, {'m', 6},  {'n', 29}, {'p', 29}, {'r', 9}};
  int total = 0, tests = 0;
  for (const auto& [genre, size] : genre_sizes) {
    int in_genre = 0;
    for (int number = 1; number <= size; number++) {
      char id[16];
      std::snprintf(id, sizeof id, "c%c%02d", genre, number);
      in_genre += is_brown_probe_test(id) ? 1 : 0;
      total++;
    }
    CHECK(in_genre >= 1);
    tests += in_genre;
  }
  CHECK(total == 500);
  CHECK(tests == 54);
  // Pretraining documents leave the probe-test files out.
  const std::vector<BrownFile> files = load_brown(kFixture);
  const std::vector<Document> documents = brown_documents(files);
  std::vector<std::string> ids;
  for (const Document& d : documents) ids.push_back(d.id);
  CHECK(ids == std::vector<std::string>{"brown:ca02", "brown:ca03", "brown:cb02"});
  CHECK(documents[0].text == files[1].text);
}

TEST_CASE("brown: malformed files and cats.txt lines are InputErrors naming file:line and the problem") {
  const std::vector<std::pair<std::string, std::string>> bad_files = {
      {"\tThe/at dog/nn\nruns ./.\n", "f:2: token \"runs\" has no /tag"},
      {"\tThe/at /nn ./.\n", "f:1: token \"/nn\" has an empty word"},
      {"\n\tThe/at dog/ ./.\n", "f:2: token \"dog/\" has an empty tag"},
      {"\tThe/at dog/xyz ./.\n", "f:1: token \"dog/xyz\": unknown tag \"xyz\""},
      {"\n\n\n", "f: no tagged words"},
      {"\tThe/at d\xC3og/nn\n", "f: invalid UTF-8 at byte 9"},
  };
  for (const auto& [contents, message] : bad_files) {
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(parse_brown_file("ca01", "news", contents, "f"), message.c_str(), InputError);
  }
  ScratchDir dir("brown");
  write_file_atomic(dir.file("ca01"), "\tThe/at dog/nn ./.\n");
  const std::vector<std::pair<std::string, std::string>> bad_cats = {
      {"ca01 news\nca02 news\n", ":2: file ca02 is not in "},
      {"ca01 news\nca01 news\n", ":2: file ca01 is listed twice"},
      {"ca01\n", ":1: expected \"FILE GENRE\", got \"ca01\""},
      {"ca01 news extra\n", ":1: expected \"FILE GENRE\""},
      {"README news\n", ":1: \"README\" is not a Brown file name"},
      {"\n\n", ": lists no files"},
  };
  for (const auto& [cats, message] : bad_cats) {
    CAPTURE(message);
    write_file_atomic(dir.file("cats.txt"), cats);
    CHECK_THROWS_WITH_AS(load_brown(dir.path), doctest::Contains((dir.file("cats.txt") + message).c_str()), InputError);
  }
  write_file_atomic(dir.file("cats.txt"), "ca01 news\n");
  write_file_atomic(dir.file("ca01"), "\tThe/at dog/nn\nruns ./.\n");
  CHECK_THROWS_WITH_AS(load_brown(dir.path), (dir.file("ca01") + ":2: token \"runs\" has no /tag").c_str(), InputError);
  CHECK_THROWS_WITH_AS(load_brown(dir.path + "/missing"), doctest::Contains("cats.txt"), InputError);
}

TEST_CASE("brown: a word's tag goes on the token holding its last byte; earlier pieces and cross-word tokens carry none") {
  // `Atlanta's "no evidence". It ended.` with merges chosen by hand so that
  // Atlanta -> Atl|anta, evidence -> " e"|v|i|d|e|nce, and `".` (closing
  // quote + period, two words) is one token.
  const BrownFile file = parse_brown_file(
      "ca05", "news", "\tAtlanta's/np$ ``/`` no/at evidence/nn ''/'' ./.\nIt/pps ended/vbd ./.\n", "ca05");
  REQUIRE(file.text == "Atlanta's \"no evidence\". It ended.");
  auto byte = [](char c) { return static_cast<int>(static_cast<unsigned char>(c)); };
  const Tokenizer tokenizer = Tokenizer::from_merges({
      {byte('A'), byte('t')}, {256, byte('l')},                                    // 256 At, 257 Atl
      {byte('a'), byte('n')}, {byte('t'), byte('a')}, {258, 259},                  // 258 an, 259 ta, 260 anta
      {byte('\''), byte('s')}, {byte(' '), byte('"')}, {byte('n'), byte('o')},     // 261 's, 262 ` "`, 263 no
      {byte('"'), byte('.')}, {byte(' '), byte('e')}, {byte('n'), byte('c')}, {266, byte('e')},  // 264 ". 265 " e" 266 nc 267 nce
  });
  const std::vector<int> ids = tokenizer.encode(file.text);
  std::vector<std::string> pieces;
  for (int id : ids) pieces.push_back(tokenizer.id_to_bytes(id));
  CHECK(pieces == std::vector<std::string>{"Atl", "anta", "'s", " \"", "no", " e", "v", "i", "d", "e", "nce", "\".",
                                           " ", "I", "t", " e", "n", "d", "e", "d", "."});
  // Words: 0 Atlanta's, 1 ``, 2 no, 3 evidence, 4 '', 5 ., 6 It, 7 ended, 8 .
  // '' ends inside the token `".`, which names the period instead.
  const std::vector<int> want = {-1, -1, 0, 1, 2, -1, -1, -1, -1, -1, 3, 5, -1, -1, 6, -1, -1, -1, -1, 7, 8};
  CHECK(last_subtoken_words(ids, tokenizer, file.words) == want);
  // Tokens of a shorter text cannot cover the words.
  CHECK_THROWS_AS(last_subtoken_words(tokenizer.encode("Atlanta's"), tokenizer, file.words), InputError);

  // With a tokenizer trained on the fixture: a labelled token ends exactly
  // where its word does, and a word without one ends inside a token.
  std::string corpus;
  const std::vector<BrownFile> files = load_brown(kFixture);
  for (const BrownFile& f : files) corpus += f.text + "\n";
  const Tokenizer trained = train_bpe(corpus, 320);
  for (const BrownFile& f : files) {
    const std::vector<int> f_ids = trained.encode(f.text);
    const std::vector<int> word_of = last_subtoken_words(f_ids, trained, f.words);
    std::vector<size_t> token_ends;
    size_t end = 0;
    for (int id : f_ids) token_ends.push_back(end += trained.id_to_bytes(id).size());
    std::set<int> named;
    for (size_t i = 0; i < f_ids.size(); i++)
      if (word_of[i] >= 0) {
        CHECK(token_ends[i] == f.words[static_cast<size_t>(word_of[i])].end);
        named.insert(word_of[i]);
      }
    for (size_t w = 0; w < f.words.size(); w++)
      if (!named.count(static_cast<int>(w)))
        CHECK(std::find(token_ends.begin(), token_ends.end(), f.words[w].end) == token_ends.end());
    CHECK(named.size() * 10 >= f.words.size() * 9);  // merges across words are rare
  }
}

TEST_CASE("brown: the POS task labels each word's last token with its coarse tag; control types are lower-cased words") {
  const std::vector<BrownFile> files = load_brown(kFixture);
  const Tokenizer bytes = Tokenizer::byte_level();  // every word's last byte is a token of its own
  adapt::TokenProbeOptions o;
  o.property = "pos";
  const adapt::ProbeTask task = adapt::pos_probe_task(bytes, files, 1024, o);
  // Rounds: the first window of every training file (ca02, cb02, ca03 by
  // number, then genre), then the second; test files ca01, cb01.
  REQUIRE(task.train.size() >= 3);
  REQUIRE(task.test.size() >= 2);
  CHECK(task.train[0].ids == bytes.encode(files[1].text.substr(0, 1024)));  // ca02
  CHECK(task.train[1].ids == bytes.encode(files[4].text.substr(0, 1024)));  // cb02
  CHECK(task.test[0].ids == bytes.encode(files[0].text.substr(0, 1024)));   // ca01
  CHECK(task.class_names == coarse_tag_names());
  // ca02's first window, probed position k = its word k: the tag, and one type per lower-cased word.
  const adapt::ProbeWindow& window = task.train[0];
  std::vector<int> labels, types;
  for (size_t t = 0; t < window.ids.size(); t++)
    if (window.labels[t] >= 0) {
      labels.push_back(window.labels[t]);
      types.push_back(window.types[t]);
    }
  const std::vector<BrownWord>& words = files[1].words;
  REQUIRE(labels.size() == words.size());
  bool saw_case_pair = false;
  for (size_t i = 0; i < words.size(); i++) {
    CHECK(labels[i] == static_cast<int>(words[i].coarse));
    for (size_t j = 0; j < words.size(); j++) {
      CHECK((types[i] == types[j]) == (lower(words[i].word) == lower(words[j].word)));
      saw_case_pair |= words[i].word == "The" && words[j].word == "the";
    }
  }
  CHECK(saw_case_pair);  // the check above did compare "The" with "the"

  // Control labels: drawn once per type, at the given distribution.
  const std::vector<double> distribution = {0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02};
  const std::vector<int> control = adapt::control_labels(40000, distribution, 5);
  CHECK(control == adapt::control_labels(40000, distribution, 5));
  CHECK(control != adapt::control_labels(40000, distribution, 6));
  for (size_t c = 0; c < distribution.size(); c++) {
    CAPTURE(c);
    const double share = static_cast<double>(std::count(control.begin(), control.end(), static_cast<int>(c))) / 40000.0;
    CHECK(share == doctest::Approx(distribution[c]).epsilon(0.15));
  }
}

namespace {

// A synthetic Brown-format corpus whose tag is a function of the word:
// sentences "DET ADJ NOUN VERB PRON$ NOUN PREP DET NOUN ADV ." from small word
// lists, in files ca01..ca04 and cb01..cb04 (ca01, cb01 test), with cats.txt.
void write_grammar_corpus(const std::string& dir) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> slots = {
      {"at", {"the", "a", "every"}}, {"jj", {"big", "small", "red", "old"}},
      {"nn", {"dog", "cat", "house", "garden", "river", "teacher"}}, {"vbd", {"saw", "liked", "found", "left"}},
      {"pp$", {"his", "her", "their"}}, {"nn", {"dog", "cat", "house", "garden", "river", "teacher"}},
      {"in", {"in", "near", "under"}}, {"at", {"the", "a", "every"}},
      {"nn", {"dog", "cat", "house", "garden", "river", "teacher"}}, {"rb", {"quickly", "often", "today"}},
      {".", {"."}}};
  Rng rng(17);
  std::string cats;
  for (const char* genre : {"a", "b"})
    for (int number = 1; number <= 4; number++) {
      const std::string id = std::string("c") + genre + "0" + std::to_string(number);
      cats += id + (genre[0] == 'a' ? " news\n" : " editorial\n");
      std::string contents;
      for (int sentence = 0; sentence < 40; sentence++) {
        contents += sentence % 4 == 0 ? "\n\n\t" : "\n";
        for (const auto& [tag, words] : slots)
          contents += words[static_cast<size_t>(rng.below(static_cast<int>(words.size())))] + "/" + tag + " ";
      }
      write_file_atomic(dir + "/" + id, contents + "\n");
    }
  write_file_atomic(dir + "/cats.txt", cats);
}

}  // namespace

TEST_CASE("brown: POS probes of every layer run end to end; embeddings that name the word give the linear probe its tags") {
  ScratchDir dir("brown_grammar");
  write_grammar_corpus(dir.path);
  const std::vector<BrownFile> files = load_brown(dir.path);
  std::string corpus;
  for (const BrownFile& f : files) corpus += f.text + "\n";
  const Tokenizer tokenizer = train_bpe(corpus, 400);
  ModelConfig c;
  c.vocab_size = tokenizer.vocab_size();
  c.n_positions = 64;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 2;
  GPT word_base(c, 3), untrained(c, 4);
  Rng rng(6);
  fill_normal(word_base.wte.weight, rng, 0.0f, 1.0f);  // token identity dominates the position (sd 0.02) at layer 0
  adapt::TokenProbeOptions o;
  o.property = "pos";
  o.train_tokens = 2000;
  o.test_tokens = 600;
  o.steps = 150;
  o.mlp_hidden = 16;
  o.seeds = 2;
  const adapt::ProbeTask task = adapt::pos_probe_task(tokenizer, files, c.n_positions, o);
  const std::vector<adapt::TokenProbeResult> results =
      adapt::run_token_probe({{"word", &word_base}, {"untrained", &untrained}}, task, o);
  REQUIRE(results.size() == 2 * 3 * 2);  // bases × (embeddings + 2 blocks) × (linear, mlp)
  CHECK(results[0].base == "word");
  CHECK(results[0].layer == 0);
  CHECK(results[0].probe == "linear");
  CHECK(results[0].accuracy.mean() > 0.95);
  // The majority baseline: the training positions' commonest class (nouns, 3 of 11) on the test positions.
  long long nouns = 0;
  for (const adapt::ProbeWindow& w : task.test) nouns += std::count(w.labels.begin(), w.labels.end(), static_cast<int>(CoarseTag::Noun));
  const long long probed = adapt::probed_count(task.test);
  for (const adapt::TokenProbeResult& r : results) {
    CAPTURE(r.base);
    CAPTURE(r.layer);
    CAPTURE(r.probe);
    CHECK(r.majority == doctest::Approx(static_cast<double>(nouns) / static_cast<double>(probed)));
    REQUIRE(r.accuracy.values.size() == 2);
    for (size_t s = 0; s < 2; s++) {
      CHECK(r.accuracy.values[s] >= 0.0);
      CHECK(r.accuracy.values[s] <= 1.0);
      CHECK(r.control_accuracy.values[s] >= 0.0);
      CHECK(r.control_accuracy.values[s] <= 1.0);
      CHECK(r.selectivity.values[s] == r.accuracy.values[s] - r.control_accuracy.values[s]);
    }
  }
  // A seed's numbers depend neither on the seeds run beside it nor on the
  // thread count: each probe trains alone, on one thread.
  o.seeds = 1;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<adapt::TokenProbeResult> again = adapt::run_token_probe({{"word", &word_base}}, task, o);
  omp_set_num_threads(threads);
  for (size_t i = 0; i < again.size(); i++) {
    CHECK(again[i].accuracy.values[0] == results[i].accuracy.values[0]);
    CHECK(again[i].control_accuracy.values[0] == results[i].control_accuracy.values[0]);
  }
}

TEST_CASE("tinyadapt probe-tokens --corpus brown: the table per base, layer and probe; bad options and a missing corpus exit 2") {
  ScratchDir scratch("brown_cli");
  // The cache as `make data` leaves it: data/brown/ with its .complete marker.
  const std::string brown_dir = scratch.path + "/cache/data/brown";
  make_dirs(brown_dir);
  std::string corpus;
  for (const std::string name : {"cats.txt", "ca01", "ca02", "ca03", "cb01", "cb02"})
    write_file_atomic(brown_dir + "/" + name, read_file(std::string(kFixture) + "/" + name));
  write_file_atomic(brown_dir + "/.complete", "fixture\n");
  for (const BrownFile& f : load_brown(brown_dir)) corpus += f.text + "\n";
  const Tokenizer tokenizer = train_bpe(corpus, 320);
  ModelConfig c;
  c.vocab_size = tokenizer.vocab_size();
  c.n_positions = 32;
  c.n_embd = 16;
  c.n_layer = 2;
  c.n_head = 2;
  const std::string model_dir = scratch.path + "/base";
  make_dirs(model_dir);
  tokenizer.save(model_dir);
  save_model(GPT(c, 1), model_dir);

  const char* previous = std::getenv("TINYADAPT_CACHE");
  const std::string previous_cache = previous ? previous : "";
  ::setenv("TINYADAPT_CACHE", (scratch.path + "/cache").c_str(), 1);
  const std::string run = "probe-tokens --model " + model_dir + " --steps 10 --hidden 4 ";
  std::string output;
  CHECK(ta::testing::run_cli(run + "--corpus brown --seeds 2 --untrained --json --out " + scratch.file("table.md"), output,
                             scratch.path) == 0);
  const json::Value out = json::parse(output);
  CHECK(out.at("property").as_string().find("part of speech") != std::string::npos);  // pos: brown's default
  CHECK(out.at("seeds").as_int() == 2);
  CHECK(out.at("results").size() == 2 * 3 * 2);  // (pretrained, untrained) × 3 layers × (linear, mlp)
  const std::string table = read_file(scratch.file("table.md"));
  CHECK(table.find("| untrained | 2 | mlp | ") != std::string::npos);
  CHECK(table.find(" ± ") != std::string::npos);
  CHECK(ta::testing::run_cli(run + "--property pos", output, scratch.path) == 0);  // brown: pos's default corpus
  CHECK(output.find("| pretrained | 0 | linear | ") != std::string::npos);
  for (const char* bad : {"--property foo", "--corpus brown --seeds 0", "--property pos --corpus sotu",
                          "--corpus brown --property depth", "--corpus brown --train-tokens 3", "--corpus brown --lr 0"}) {
    CAPTURE(bad);
    CHECK(ta::testing::run_cli(run + bad, output, scratch.path) == 2);
  }
  ::setenv("TINYADAPT_CACHE", (scratch.path + "/empty").c_str(), 1);  // brown not fetched
  CHECK(ta::testing::run_cli(run + "--corpus brown", output, scratch.path) == 2);
  if (previous) ::setenv("TINYADAPT_CACHE", previous_cache.c_str(), 1);
  else ::unsetenv("TINYADAPT_CACHE");
}
