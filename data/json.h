// data/json.h — a small JSON value, parser and writer (RFC 8259).
//
// Used for config.json, adapter_config.json, safetensors headers, vocab.json,
// the data sets' JSON files and the JSON-lines requests of `serve`. Objects
// keep their keys in insertion order (a writer that round-trips a config keeps
// the order a reader expects). Numbers are doubles. The parser rejects
// anything that is not JSON (trailing commas, bare words, invalid UTF-8,
// nesting deeper than 512) with a message giving the byte offset.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/io.h"

namespace ta::json {

class Value {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  Value() = default;  // null
  Value(bool b) : kind_(Kind::Bool), bool_(b) {}
  Value(double x) : kind_(Kind::Number), number_(x) {}
  Value(int x) : kind_(Kind::Number), number_(x) {}
  Value(long x) : kind_(Kind::Number), number_(static_cast<double>(x)) {}
  Value(long long x) : kind_(Kind::Number), number_(static_cast<double>(x)) {}
  Value(unsigned long x) : kind_(Kind::Number), number_(static_cast<double>(x)) {}
  Value(const char* s) : kind_(Kind::String), string_(s) {}
  Value(std::string s) : kind_(Kind::String), string_(std::move(s)) {}
  static Value array() { Value v; v.kind_ = Kind::Array; return v; }
  static Value object() { Value v; v.kind_ = Kind::Object; return v; }

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  // Accessors throw InputError ("expected a string, got a number") on a kind mismatch;
  // `what` names the place for the message, e.g. "config.json: n_embd".
  bool as_bool(const std::string& what = "value") const;
  double as_number(const std::string& what = "value") const;
  // A number that must be a whole number in [lo, hi].
  long long as_int(const std::string& what = "value", long long lo = INT64_MIN / 2,
                   long long hi = INT64_MAX / 2) const;
  const std::string& as_string(const std::string& what = "value") const;
  const std::vector<Value>& items(const std::string& what = "value") const;  // array
  const std::vector<std::pair<std::string, Value>>& members(const std::string& what = "value") const;

  // Object access. find() returns nullptr when absent; at() throws InputError naming the key.
  const Value* find(const std::string& key) const;
  const Value& at(const std::string& key, const std::string& what = "object") const;
  size_t size() const;  // array length or object member count

  // Building.
  Value& push(Value v);                            // array append
  Value& set(const std::string& key, Value v);     // object insert or replace

  // Compact JSON; `indent` > 0 pretty-prints with that many spaces.
  std::string dump(int indent = 0) const;

 private:
  friend struct Parser;  // builds objects member by member (json.cpp)
  void dump_to(std::string& out, int indent, int depth) const;
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

// Parses one JSON document; `source` names it in errors ("config.json: byte 17: expected ':'").
Value parse(const std::string& text, const std::string& source = "json");
Value parse_file(const std::string& path);

// Appends code point `cp` (at most U+10FFFF) to `out`, encoded as UTF-8.
void append_utf8(std::string& out, unsigned cp);

// Appends `s` to `out` as a JSON string literal (quotes and escapes).
void write_string(std::string& out, const std::string& s);

}  // namespace ta::json
