// data/json.cpp — see json.h. A recursive-descent parser over bytes.
#include "data/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

namespace ta::json {

static const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::Null: return "null";
    case Value::Kind::Bool: return "a boolean";
    case Value::Kind::Number: return "a number";
    case Value::Kind::String: return "a string";
    case Value::Kind::Array: return "an array";
    case Value::Kind::Object: return "an object";
  }
  return "?";
}

static void expect_kind(const Value& v, Value::Kind k, const std::string& what) {
  if (v.kind() != k)
    throw InputError(what + ": expected " + kind_name(k) + ", got " + kind_name(v.kind()));
}

bool Value::as_bool(const std::string& what) const { expect_kind(*this, Kind::Bool, what); return bool_; }
double Value::as_number(const std::string& what) const { expect_kind(*this, Kind::Number, what); return number_; }

long long Value::as_int(const std::string& what, long long lo, long long hi) const {
  double x = as_number(what);
  if (x != std::floor(x) || x < static_cast<double>(lo) || x > static_cast<double>(hi))
    throw InputError(what + ": expected a whole number in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got " + Value(x).dump());
  return static_cast<long long>(x);
}

const std::string& Value::as_string(const std::string& what) const { expect_kind(*this, Kind::String, what); return string_; }
const std::vector<Value>& Value::items(const std::string& what) const { expect_kind(*this, Kind::Array, what); return array_; }
const std::vector<std::pair<std::string, Value>>& Value::members(const std::string& what) const {
  expect_kind(*this, Kind::Object, what);
  return object_;
}

const Value* Value::find(const std::string& key) const {
  if (kind_ != Kind::Object) return nullptr;
  for (auto& kv : object_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Value& Value::at(const std::string& key, const std::string& what) const {
  expect_kind(*this, Kind::Object, what);
  const Value* v = find(key);
  if (!v) throw InputError(what + ": missing key \"" + key + "\"");
  return *v;
}

size_t Value::size() const { return kind_ == Kind::Array ? array_.size() : object_.size(); }

Value& Value::push(Value v) {
  if (kind_ == Kind::Null) kind_ = Kind::Array;
  expect_kind(*this, Kind::Array, "push");
  array_.push_back(std::move(v));
  return array_.back();
}

Value& Value::set(const std::string& key, Value v) {
  if (kind_ == Kind::Null) kind_ = Kind::Object;
  expect_kind(*this, Kind::Object, "set");
  for (auto& kv : object_)
    if (kv.first == key) return kv.second = std::move(v);
  object_.emplace_back(key, std::move(v));
  return object_.back().second;
}

void write_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// The shortest of 15, 16 or 17 significant digits that reads back as the same
// double (17 always does), so what we write loads bit for bit: 0.1 stays
// "0.1", and a 64-bit seed or a float32 widened to double keeps every bit.
static void write_number(std::string& out, double x) {
  if (!std::isfinite(x)) { out += "null"; return; }  // JSON has no NaN/Inf
  char buf[32];
  if (x == std::floor(x) && std::fabs(x) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", x);
  } else {
    for (int digits = 15; digits <= 17; digits++) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, x);
      if (std::strtod(buf, nullptr) == x) break;
    }
  }
  out += buf;
}

void Value::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent > 0) { out += '\n'; out.append(static_cast<size_t>(indent * d), ' '); }
  };
  switch (kind_) {
    case Kind::Null: out += "null"; break;
    case Kind::Bool: out += bool_ ? "true" : "false"; break;
    case Kind::Number: write_number(out, number_); break;
    case Kind::String: write_string(out, string_); break;
    case Kind::Array:
      out += '[';
      for (size_t i = 0; i < array_.size(); i++) {
        if (i) out += indent > 0 ? "," : ", ";
        if (indent > 0) newline(depth + 1);
        array_[i].dump_to(out, indent, depth + 1);
      }
      if (indent > 0 && !array_.empty()) newline(depth);
      out += ']';
      break;
    case Kind::Object:
      out += '{';
      for (size_t i = 0; i < object_.size(); i++) {
        if (i) out += indent > 0 ? "," : ", ";
        if (indent > 0) newline(depth + 1);
        write_string(out, object_[i].first);
        out += ": ";
        object_[i].second.dump_to(out, indent, depth + 1);
      }
      if (indent > 0 && !object_.empty()) newline(depth);
      out += '}';
      break;
  }
}

std::string Value::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

// Appends code point `cp` (at most U+10FFFF) encoded as UTF-8.
void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ---------------------------------------------------------------------------
// Parser

// Not in an anonymous namespace: Value names it a friend so that object()
// can append members without Value::set's linear search for the key.
struct Parser {
  const std::string& text;
  const std::string& source;
  size_t pos = 0;

  [[noreturn]] void fail(const std::string& problem) const {
    throw InputError(source + ": invalid JSON at byte " + std::to_string(pos) + ": " + problem);
  }
  void skip_space() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r')) pos++;
  }
  bool consume(char c) {
    skip_space();
    if (pos < text.size() && text[pos] == c) { pos++; return true; }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) fail(std::string("expected '") + c + "'");
  }
  bool literal(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (text.compare(pos, n, word) == 0) { pos += n; return true; }
    return false;
  }

  Value value(int depth) {
    if (depth > 512) fail("nesting deeper than 512");
    skip_space();
    if (pos >= text.size()) fail("unexpected end of input");
    char c = text[pos];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return Value(string());
    if (c == '-' || (c >= '0' && c <= '9')) return Value(number());
    if (literal("true")) return Value(true);
    if (literal("false")) return Value(false);
    if (literal("null")) return Value();
    fail(std::string("unexpected character '") + c + "'");
  }

  Value object(int depth) {
    Value v = Value::object();
    pos++;  // '{'
    if (consume('}')) return v;
    // The keys so far, in a hash set: a linear search per key made GPT-2's
    // 50,257-entry vocab.json take over 10 seconds to parse.
    std::unordered_set<std::string> keys;
    do {
      skip_space();
      if (pos >= text.size() || text[pos] != '"') fail("expected a string key");
      std::string key = string();
      // RFC 8259 leaves duplicate names unpredictable; for a config or a
      // safetensors header the only safe reading is none.
      if (!keys.insert(key).second) fail("duplicate key \"" + key + "\"");
      expect(':');
      Value member = value(depth + 1);
      v.object_.emplace_back(std::move(key), std::move(member));
    } while (consume(','));
    expect('}');
    return v;
  }

  Value array(int depth) {
    Value v = Value::array();
    pos++;  // '['
    if (consume(']')) return v;
    do v.push(value(depth + 1));
    while (consume(','));
    expect(']');
    return v;
  }

  double number() {
    size_t start = pos;
    if (text[pos] == '-') pos++;
    auto digits = [&] {
      size_t d = pos;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') pos++;
      if (pos == d) fail("expected a digit");
    };
    if (pos < text.size() && text[pos] == '0') pos++;
    else digits();
    if (pos < text.size() && text[pos] == '.') { pos++; digits(); }
    if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
      pos++;
      if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) pos++;
      digits();
    }
    double x = std::strtod(text.substr(start, pos - start).c_str(), nullptr);
    // 1e999 would become infinity, which JSON cannot write back (RFC 8259 §6
    // lets a parser limit the range); underflow to 0 loses nothing that matters.
    if (!std::isfinite(x)) fail("number out of the range of a double");
    return x;
  }

  unsigned hex4() {
    if (pos + 4 > text.size()) fail("truncated \\u escape");
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
      char c = text[pos++];
      x <<= 4;
      if (c >= '0' && c <= '9') x |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') x |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') x |= static_cast<unsigned>(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return x;
  }

  // Copies one valid UTF-8 sequence starting at pos; fails on invalid bytes.
  void utf8_char(std::string& out) {
    unsigned char c = static_cast<unsigned char>(text[pos]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || pos + static_cast<size_t>(len) > text.size()) fail("invalid UTF-8");
    unsigned cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; i++) {
      unsigned char d = static_cast<unsigned char>(text[pos + static_cast<size_t>(i)]);
      if ((d >> 6) != 0x2) fail("invalid UTF-8");
      cp = (cp << 6) | (d & 0x3F);
    }
    static const unsigned min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8");
    out.append(text, pos, static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
  }

  std::string string() {
    pos++;  // opening quote
    std::string out;
    for (;;) {
      if (pos >= text.size()) fail("unterminated string");
      char c = text[pos];
      if (c == '"') { pos++; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { utf8_char(out); continue; }
      pos++;
      if (pos >= text.size()) fail("unterminated escape");
      char e = text[pos++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            if (!literal("\\u")) fail("lone high surrogate");
            unsigned low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone low surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }
};

Value parse(const std::string& text, const std::string& source) {
  Parser p{text, source};
  Value v = p.value(0);
  p.skip_space();
  if (p.pos != text.size()) p.fail("trailing characters after the JSON value");
  return v;
}

Value parse_file(const std::string& path) { return parse(read_file(path), path); }

}  // namespace ta::json
