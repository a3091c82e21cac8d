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
