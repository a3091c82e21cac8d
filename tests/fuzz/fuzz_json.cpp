// tests/fuzz/fuzz_json.cpp — libFuzzer target for ta::json::parse (issue 8).
// fuzz-sources: data/json.cpp data/io.cpp
//
// Any byte string must either parse or throw ta::InputError: no crash, no
// sanitizer report, no other exception. What parses must survive the writer:
// dump() (compact and indented) must parse back to an equal value, numbers
// bit for bit, so a config we save loads as the config we had.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "data/json.h"

using ta::json::Value;

static bool same_value(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Null: return true;
    case Value::Kind::Bool: return a.as_bool() == b.as_bool();
    case Value::Kind::Number: {
      double x = a.as_number(), y = b.as_number();
      return std::memcmp(&x, &y, sizeof x) == 0;  // -0 and 0 differ too
    }
    case Value::Kind::String: return a.as_string() == b.as_string();
    case Value::Kind::Array:
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); i++)
        if (!same_value(a.items()[i], b.items()[i])) return false;
      return true;
    case Value::Kind::Object:
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); i++)
        if (a.members()[i].first != b.members()[i].first ||
            !same_value(a.members()[i].second, b.members()[i].second))
          return false;
      return true;
  }
  return false;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  Value value;
  try {
    value = ta::json::parse(text, "fuzz");
  } catch (const ta::InputError&) {
    return 0;  // rejected with the project's error: fine
  }
  // The writer's output is JSON we wrote ourselves: it must parse (an
  // InputError here escapes and libFuzzer reports it as a crash).
  if (!same_value(value, ta::json::parse(value.dump(), "compact dump"))) std::abort();
  if (!same_value(value, ta::json::parse(value.dump(2), "indented dump"))) std::abort();
  return 0;
}
