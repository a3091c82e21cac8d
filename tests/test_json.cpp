// tests/test_json.cpp — the JSON reader/writer of data/json.h.
#include <doctest/doctest.h>

#include "data/json.h"

using ta::json::parse;
using ta::json::Value;

TEST_CASE("json: parse and dump round-trip") {
  Value v = parse(R"({"a": 1, "b": [true, false, null], "c": "x\ny\u00e9\ud83d\ude00", "d": -2.5e3})");
  CHECK(v.at("a").as_int() == 1);
  CHECK(v.at("b").items().size() == 3);
  CHECK(v.at("c").as_string() == "x\ny\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.at("d").as_number() == -2500.0);
  Value w = parse(v.dump());
  CHECK(w.dump() == v.dump());
  CHECK(parse(v.dump(2)).dump() == v.dump());
  // keys keep insertion order
  CHECK(v.dump().find("\"a\"") < v.dump().find("\"d\""));
}

TEST_CASE("json: malformed input throws InputError naming the source") {
  const char* bad[] = {"", "{", "[1,]", "{\"a\" 1}", "tru", "\"\\x\"", "01", "1 2", "\"\xff\"",
                       "\"\\ud800\"", "{\"a\":1,}", "[\"\x01\"]", "-", "1e"};
  for (const char* text : bad) {
    INFO("input: " << text);
    try {
      parse(text, "cfg.json");
      FAIL("no exception");
    } catch (const ta::InputError& e) {
      CHECK(std::string(e.what()).find("cfg.json") == 0);
    }
  }
  std::string deep(600, '[');
  CHECK_THROWS_AS(parse(deep), ta::InputError);
}

TEST_CASE("json: typed accessors check kinds and ranges") {
  Value v = parse(R"({"n": 12, "f": 1.5, "s": "x"})");
  CHECK_THROWS_WITH_AS(v.at("s").as_int("cfg: s"), "cfg: s: expected a number, got a string", ta::InputError);
  CHECK_THROWS_AS(v.at("f").as_int("cfg: f"), ta::InputError);
  CHECK_THROWS_AS(v.at("n").as_int("cfg: n", 0, 10), ta::InputError);
  CHECK_THROWS_WITH_AS(v.at("missing", "cfg"), "cfg: missing key \"missing\"", ta::InputError);
}

// The three cases below were found by tests/fuzz/fuzz_json.cpp, whose oracle
// is "what parses, dumps and parses back to an equal value, bit for bit".
TEST_CASE("json: numbers are written so they read back bit for bit") {
  // Before: "%.9g" wrote 1234567890123456789 as 1.23456789e+18 and 0.1f widened as 0.100000001.
  const double values[] = {0.1, 1.0 / 3.0, 3.0000000000000004, 1234567890123456789.0, 2.2250738585072014e-308,
                           5e-324, 1e308, -1.5e3, static_cast<double>(0.1f), 123456789012345.0};
  for (double x : values) {
    INFO("x = " << x);
    std::string text = Value(x).dump();
    CHECK(parse(text).as_number() == x);
  }
  CHECK(Value(0.1).dump() == "0.1");  // the shortest form, not 0.10000000000000001
  CHECK(Value(1e-05).dump() == "1e-05");
  CHECK(Value(12).dump() == "12");
}

TEST_CASE("json: a number beyond the range of a double is an error, not infinity") {
  // Before: 1e999 parsed to inf, which the writer can only write as null.
  CHECK_THROWS_WITH_AS(parse("[1e999]", "cfg.json"), doctest::Contains("cfg.json: invalid JSON at byte"), ta::InputError);
  CHECK_THROWS_AS(parse("-1e400"), ta::InputError);
  CHECK(parse("1e-999").as_number() == 0.0);  // underflow to zero is harmless
}

TEST_CASE("json: duplicate keys in an object are an error") {
  // Before: the last one silently won, so a safetensors header could name a tensor twice.
  CHECK_THROWS_WITH_AS(parse(R"({"n_embd": 48, "n_embd": 64})", "config.json"),
                       doctest::Contains("config.json: invalid JSON at byte 23: duplicate key \"n_embd\""), ta::InputError);
  CHECK(parse(R"({"a": {"k": 1}, "b": {"k": 2}})").at("b").at("k").as_int() == 2);  // same key, different objects
}

TEST_CASE("json: a vocab.json-sized object keeps its 50,257 keys in order") {
  // Before: each key was looked up linearly, so this parse took over 10 s.
  std::string text = "{";
  for (int i = 0; i < 50257; i++) text += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":" + std::to_string(i);
  Value vocab = parse(text + "}");
  REQUIRE(vocab.size() == 50257);
  CHECK(vocab.members()[12345].first == "t12345");
  CHECK(vocab.members()[50256].second.as_int() == 50256);
  CHECK_THROWS_WITH_AS(parse(text + ",\"t50256\":0}"), doctest::Contains("duplicate key \"t50256\""), ta::InputError);
}
