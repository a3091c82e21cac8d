// data/bpe.cpp — see bpe.h. Reading order: the byte alphabet, UTF-8 checking,
// the GPT-2 regex and special-token splitting, building a tokenizer, encoding
// (BPE on one chunk), decoding, then the files (load and save).
// The trainer lives in data/bpe_train.cpp.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/bpe.h"

#include <pcre2.h>

#include <memory>
#include <queue>
#include <stdexcept>

#include "data/corpus.h"
#include "data/json.h"

namespace ta::data {

// ---------------------------------------------------------------------------
// GPT-2's byte alphabet. vocab.json and merges.txt are text files split on
// spaces and newlines, so GPT-2 spells each byte as a printable character:
// printable Latin-1 bytes stand for themselves, and the other 68 bytes (control
// characters, space, 0x7F-0xA0, 0xAD) take code points 256, 257, ... in order.

namespace {

constexpr unsigned kAlphabetEnd = 256 + 68;  // stand-ins are code points < 324

struct ByteAlphabet {
  std::array<std::string, 256> spelling;  // byte -> UTF-8 of its stand-in
  std::array<int, kAlphabetEnd> byte_of;  // code point -> byte, or -1

  ByteAlphabet() {
    byte_of.fill(-1);
    unsigned next_stand_in = 256;
    for (unsigned b = 0; b < 256; b++) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      unsigned code_point = printable ? b : next_stand_in++;
      byte_of[code_point] = static_cast<int>(b);
      // All stand-ins are below 0x800: two UTF-8 bytes at most.
      if (code_point < 0x80) spelling[b] = std::string(1, static_cast<char>(code_point));
      else spelling[b] = {static_cast<char>(0xC0 | (code_point >> 6)), static_cast<char>(0x80 | (code_point & 0x3F))};
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet table;
  return table;
}

// The bytes a vocab.json spelling stands for; false if some character is not
// in the alphabet (only special tokens are spelled like that).
bool spelling_to_bytes(const std::string& spelling, std::string& bytes) {
  bytes.clear();
  for (size_t i = 0; i < spelling.size();) {
    unsigned char c = static_cast<unsigned char>(spelling[i]);
    unsigned code_point = c;
    if (c >= 0xC0 && c < 0xE0 && i + 1 < spelling.size()) {
      code_point = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(spelling[i + 1]) & 0x3Fu);
      i += 2;
    } else if (c < 0x80) {
      i += 1;
    } else {
      return false;  // three- and four-byte characters are never stand-ins
    }
    if (code_point >= kAlphabetEnd || alphabet().byte_of[code_point] < 0) return false;
    bytes += static_cast<char>(alphabet().byte_of[code_point]);
  }
  return true;
}

}  // namespace

const std::string& byte_to_unicode(unsigned char byte) { return alphabet().spelling[byte]; }

void check_utf8(const std::string& text, const std::string& source) {
  size_t bad = find_invalid_utf8(text);  // data/corpus.h
  if (bad != std::string::npos) throw InputError(source + ": invalid UTF-8 at byte " + std::to_string(bad));
}

// ---------------------------------------------------------------------------
// Pre-tokenisation with GPT-2's regex, compiled once (JIT when available).

namespace {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class Gpt2Regex {
 public:
  Gpt2Regex() {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (!code_) throw std::runtime_error("GPT-2 regex does not compile: PCRE2 error " + std::to_string(error));
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // pcre2_match uses it if it succeeded
  }
  ~Gpt2Regex() { pcre2_code_free(code_); }
  Gpt2Regex(const Gpt2Regex&) = delete;
  Gpt2Regex& operator=(const Gpt2Regex&) = delete;
  const pcre2_code* code() const { return code_; }

 private:
  pcre2_code* code_ = nullptr;
};

const Gpt2Regex& gpt2_regex() {
  static const Gpt2Regex regex;  // thread-safe initialisation; the code is read-only after
  return regex;
}

}  // namespace

void for_each_chunk(std::string_view text, const std::function<void(std::string_view)>& emit) {
  const pcre2_code* code = gpt2_regex().code();
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    // The caller checked UTF-8 once; checking again at every match would make this quadratic.
    int found = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
    if (found < 0) throw std::runtime_error("GPT-2 regex: PCRE2 match error " + std::to_string(found));
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
    // Every character is a letter, a digit, a space or something else, so the
    // alternatives tile the text: each match starts where the last one ended.
    if (span[0] != offset || span[1] <= offset) throw std::logic_error("GPT-2 regex left a gap");
    emit(text.substr(offset, span[1] - offset));
    offset = span[1];
  }
}

void split_on_specials(std::string_view text, const std::vector<std::string>& specials,
                       const std::function<void(std::string_view)>& ordinary,
                       const std::function<void(size_t)>& special) {
  // next_at[k]: where specials[k] next occurs at or after `pos` (npos: never
  // again). Remembering it means each special is searched for once per
  // occurrence, not once per cut.
  std::vector<size_t> next_at(specials.size());
  for (size_t k = 0; k < specials.size(); k++) next_at[k] = text.find(specials[k]);
  size_t pos = 0;
  for (;;) {
    size_t best = std::string_view::npos, which = 0;
    for (size_t k = 0; k < specials.size(); k++) {
      if (next_at[k] != std::string_view::npos && next_at[k] < pos) next_at[k] = text.find(specials[k], pos);
      bool longer_at_same_place = next_at[k] == best && best != std::string_view::npos &&
                                  specials[k].size() > specials[which].size();
      if (next_at[k] < best || longer_at_same_place) best = next_at[k], which = k;
    }
    if (best == std::string_view::npos) break;
    if (best > pos) ordinary(text.substr(pos, best - pos));
    special(which);
    pos = best + specials[which].size();
  }
  if (pos < text.size()) ordinary(text.substr(pos));
}

// ---------------------------------------------------------------------------
// Building a tokenizer.

int Tokenizer::add_token(std::string bytes) {
  token_bytes_.push_back(std::move(bytes));
  return static_cast<int>(token_bytes_.size()) - 1;
}

void Tokenizer::add_merge(int left, int right, int result) {
  merge_of_pair_[pair_key(left, right)] = Merge{static_cast<int>(merges_.size()), result};
  merges_.emplace_back(left, right);
}

Tokenizer Tokenizer::from_merges(const std::vector<std::pair<int, int>>& merges,
                                 const std::vector<std::string>& specials) {
  Tokenizer t;
  for (int b = 0; b < 256; b++) {
    t.byte_ids_[static_cast<size_t>(b)] = t.add_token(std::string(1, static_cast<char>(b)));
    t.ordinary_ids_.emplace(t.token_bytes_.back(), b);
  }
  for (auto [left, right] : merges) {
    for (int side : {left, right})
      if (side < 0 || side >= t.vocab_size())
        throw InputError("merge " + std::to_string(t.merges_.size()) + " names token " + std::to_string(side) +
                         ", which does not exist before it");
    std::string bytes = t.token_bytes_[static_cast<size_t>(left)] + t.token_bytes_[static_cast<size_t>(right)];
    auto existing = t.ordinary_ids_.find(bytes);
    int result = existing != t.ordinary_ids_.end() ? existing->second : t.add_token(bytes);
    t.ordinary_ids_.emplace(bytes, result);
    t.add_merge(left, right, result);
  }
  for (const auto& text : specials) t.add_special(text);
  return t;
}

Tokenizer Tokenizer::byte_level(const std::vector<std::string>& specials) { return from_merges({}, specials); }

int Tokenizer::add_special(const std::string& text) {
  auto known = special_ids_.find(text);
  if (known != special_ids_.end()) return known->second;
  if (text.empty()) throw InputError("special token: empty text");
  check_utf8(text, "special token");
  // Its text is also its vocab.json key, so it must not spell an ordinary token.
  std::string bytes;
  if (spelling_to_bytes(text, bytes) && ordinary_ids_.count(bytes))
    throw InputError("special token \"" + text + "\": already an ordinary token of the vocabulary");
  int id = add_token(text);
  special_texts_.push_back(text);
  special_ids_.emplace(text, id);
  return id;
}

// ---------------------------------------------------------------------------
// Encoding. BPE on one chunk: start from its bytes and repeatedly apply the
// lowest-ranked merge present (leftmost first on ties) until none applies.
// GPT-2's Python does this by rescanning the whole chunk per merge, which is
// quadratic on a long chunk (a run of 100k spaces); here the symbols form a
// linked list and candidate merges sit in a heap, so a chunk of n bytes costs
// O(n log n). Stale candidates (a neighbour changed since) are skipped.

std::vector<int> Tokenizer::encode_chunk(std::string_view chunk) const {
  struct Symbol {
    int id, prev, next;  // prev/next: neighbouring symbol indices, -1 at the ends
  };
  struct Candidate {
    int rank, left, right, left_id, right_id;
  };
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };
  int n = static_cast<int>(chunk.size());
  std::vector<Symbol> symbols(chunk.size());
  for (int i = 0; i < n; i++)
    symbols[static_cast<size_t>(i)] = {byte_ids_[static_cast<unsigned char>(chunk[static_cast<size_t>(i)])], i - 1,
                                       i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto consider = [&](int left) {
    if (left < 0 || symbols[static_cast<size_t>(left)].next < 0) return;
    int right = symbols[static_cast<size_t>(left)].next;
    int left_id = symbols[static_cast<size_t>(left)].id, right_id = symbols[static_cast<size_t>(right)].id;
    auto merge = merge_of_pair_.find(pair_key(left_id, right_id));
    if (merge != merge_of_pair_.end()) queue.push({merge->second.rank, left, right, left_id, right_id});
  };
  for (int i = 0; i + 1 < n; i++) consider(i);
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    Symbol& right = symbols[static_cast<size_t>(c.right)];
    if (left.id != c.left_id || left.next != c.right || right.id != c.right_id) continue;  // stale
    left.id = merge_of_pair_.at(pair_key(c.left_id, c.right_id)).result;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = c.left;
    right.id = -1;  // absorbed into `left`
    consider(left.prev);
    consider(c.left);
  }
  std::vector<int> ids;
  for (int i = n > 0 ? 0 : -1; i >= 0; i = symbols[static_cast<size_t>(i)].next)
    ids.push_back(symbols[static_cast<size_t>(i)].id);
  return ids;
}

void Tokenizer::encode_ordinary(std::string_view text, ChunkCache& cache, std::vector<int>& out) const {
  for_each_chunk(text, [&](std::string_view chunk) {
    if (chunk.size() == 1) {
      out.push_back(byte_ids_[static_cast<unsigned char>(chunk[0])]);
      return;
    }
    auto cached = cache.find(chunk);
    if (cached == cache.end()) cached = cache.emplace(chunk, encode_chunk(chunk)).first;
    out.insert(out.end(), cached->second.begin(), cached->second.end());
  });
}

std::vector<int> Tokenizer::encode(const std::string& text, const EncodeOptions& options) const {
  check_utf8(text, options.source);
  std::vector<int> ids;
  ChunkCache cache;  // per call, so encode stays const and safe to call from many threads
  auto ordinary = [&](std::string_view piece) { encode_ordinary(piece, cache, ids); };
  if (options.match_specials && !special_texts_.empty())
    split_on_specials(text, special_texts_, ordinary,
                      [&](size_t k) { ids.push_back(special_ids_.at(special_texts_[k])); });
  else
    ordinary(text);
  return ids;
}

// ---------------------------------------------------------------------------
// Decoding and look-ups.

const std::string& Tokenizer::id_to_bytes(int id) const {
  if (id < 0 || id >= vocab_size())
    throw InputError("token id " + std::to_string(id) + " is outside [0, " + std::to_string(vocab_size()) + ")");
  return token_bytes_[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  for (int id : ids) text += id_to_bytes(id);
  return text;
}

int Tokenizer::token_id(const std::string& token) const {
  std::string bytes;
  if (spelling_to_bytes(token, bytes)) {
    auto found = ordinary_ids_.find(bytes);
    if (found != ordinary_ids_.end()) return found->second;
  }
  auto special = special_ids_.find(token);
  if (special != special_ids_.end()) return special->second;
  throw InputError("token \"" + token + "\" is not in the vocabulary");
}

int Tokenizer::special_id(const std::string& text) const {
  auto found = special_ids_.find(text);
  if (found == special_ids_.end()) throw InputError("special token \"" + text + "\" is not in the vocabulary");
  return found->second;
}

std::string Tokenizer::vocab_spelling(int id) const {
  const std::string& bytes = token_bytes_[static_cast<size_t>(id)];
  auto special = special_ids_.find(bytes);
  if (special != special_ids_.end() && special->second == id) return bytes;
  std::string spelling;
  for (unsigned char b : bytes) spelling += byte_to_unicode(b);
  return spelling;
}

// ---------------------------------------------------------------------------
// Files. Loading checks everything a file could lie about before using it:
// ids are 0..V-1 exactly once; every byte has a token; every merge names
// tokens that exist and that bytes or earlier merges already make (so ranks
// follow the order merges were learned, which the heap in encode_chunk relies
// on); no merge is listed twice. Nothing is sized by a number read from a file.

namespace {

struct VocabFile {
  std::vector<std::string> spelling_of_id;           // id -> spelling
  std::unordered_map<std::string, int> id_of_spelling;
};

VocabFile read_vocab(const std::string& path) {
  json::Value vocab = json::parse_file(path);
  const auto& members = vocab.members(path);
  size_t count = members.size();
  if (count == 0) throw InputError(path + ": no tokens");
  VocabFile file;
  file.spelling_of_id.resize(count);
  std::vector<bool> seen(count, false);
  for (const auto& [spelling, value] : members) {
    long long id = value.as_int(path + ": \"" + spelling + "\"", 0, INT32_MAX);
    if (static_cast<size_t>(id) >= count)
      throw InputError(path + ": \"" + spelling + "\" has id " + std::to_string(id) + ", but " +
                       std::to_string(count) + " tokens must have the ids 0.." + std::to_string(count - 1) +
                       " without gaps");
    if (seen[static_cast<size_t>(id)])
      throw InputError(path + ": id " + std::to_string(id) + " is given to both \"" +
                       file.spelling_of_id[static_cast<size_t>(id)] + "\" and \"" + spelling + "\"");
    seen[static_cast<size_t>(id)] = true;
    file.spelling_of_id[static_cast<size_t>(id)] = spelling;
    file.id_of_spelling.emplace(spelling, static_cast<int>(id));
  }
  return file;
}

struct MergeLine {
  std::string left, right;
  size_t line;
};

std::vector<MergeLine> read_merge_lines(const std::string& path) {
  std::string text = read_file(path);
  std::vector<MergeLine> merges;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    line_no++;
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    size_t space = line.find(' ');
    if (space == 0 || space == std::string::npos || space + 1 == line.size() ||
        line.find_first_of(" \t\r", space + 1) != std::string::npos)
      throw InputError(path + ":" + std::to_string(line_no) + ": expected \"left right\" (two tokens, one space)");
    merges.push_back({line.substr(0, space), line.substr(space + 1), line_no});
  }
  return merges;
}

// Tokenizer files in `dir`: Hugging Face's names, else OpenAI's.
std::pair<std::string, std::string> find_tokenizer_files(const std::string& dir) {
  if (file_exists(dir + "/vocab.json") || file_exists(dir + "/merges.txt"))
    return {dir + "/vocab.json", dir + "/merges.txt"};
  if (file_exists(dir + "/encoder.json") || file_exists(dir + "/vocab.bpe"))
    return {dir + "/encoder.json", dir + "/vocab.bpe"};
  throw InputError(dir + ": no tokenizer here (expected vocab.json + merges.txt, or encoder.json + vocab.bpe)");
}

// The id of each byte's token (GPT-2 orders them by spelling: "!" is 0).
std::array<int, 256> resolve_byte_ids(const VocabFile& vocab, const std::string& vocab_path) {
  std::array<int, 256> byte_ids{};
  for (int b = 0; b < 256; b++) {
    const std::string& spelling = byte_to_unicode(static_cast<unsigned char>(b));
    auto found = vocab.id_of_spelling.find(spelling);
    if (found == vocab.id_of_spelling.end())
      throw InputError(vocab_path + ": no token for byte " + std::to_string(b) + " (spelled \"" + spelling + "\")");
    byte_ids[static_cast<size_t>(b)] = found->second;
  }
  return byte_ids;
}

struct ResolvedMerge {
  int left, right, result;
};

// Turns merge lines into ids. `made[id]` says whether the token is a byte or
// made by a merge so far; on return it marks every token BPE can produce.
std::vector<ResolvedMerge> resolve_merges(const VocabFile& vocab, const std::vector<MergeLine>& lines,
                                          std::vector<bool>& made, const std::string& vocab_path,
                                          const std::string& merges_path) {
  std::vector<ResolvedMerge> merges;
  std::unordered_map<uint64_t, size_t> line_of_pair;
  for (const MergeLine& m : lines) {
    std::string where = merges_path + ":" + std::to_string(m.line) + ": ";
    std::string merged = m.left + m.right;
    const std::string* spellings[3] = {&m.left, &m.right, &merged};
    int ids[3];
    for (int k = 0; k < 3; k++) {
      auto found = vocab.id_of_spelling.find(*spellings[k]);
      if (found == vocab.id_of_spelling.end())
        throw InputError(where + "token \"" + *spellings[k] + "\" is not in " + vocab_path);
      ids[k] = found->second;
    }
    for (int k = 0; k < 2; k++)
      if (!made[static_cast<size_t>(ids[k])])
        throw InputError(where + "\"" + *spellings[k] + "\" is used before a byte or an earlier merge makes it");
    auto [first, is_new] = line_of_pair.emplace(pair_key(ids[0], ids[1]), m.line);
    if (!is_new) throw InputError(where + "the same merge as line " + std::to_string(first->second));
    made[static_cast<size_t>(ids[2])] = true;
    merges.push_back({ids[0], ids[1], ids[2]});
  }
  return merges;
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  auto [vocab_path, merges_path] = find_tokenizer_files(dir);
  VocabFile vocab = read_vocab(vocab_path);
  std::vector<MergeLine> merge_lines = read_merge_lines(merges_path);
  Tokenizer t;
  t.byte_ids_ = resolve_byte_ids(vocab, vocab_path);
  std::vector<bool> made(vocab.spelling_of_id.size(), false);
  for (int id : t.byte_ids_) made[static_cast<size_t>(id)] = true;
  for (const ResolvedMerge& m : resolve_merges(vocab, merge_lines, made, vocab_path, merges_path))
    t.add_merge(m.left, m.right, m.result);
  // Tokens BPE can make are spelled in the byte alphabet; the others are special.
  t.token_bytes_.resize(made.size());
  for (size_t id = 0; id < made.size(); id++) {
    const std::string& spelling = vocab.spelling_of_id[id];
    if (made[id]) {
      spelling_to_bytes(spelling, t.token_bytes_[id]);  // always succeeds: a concatenation of byte spellings
      t.ordinary_ids_.emplace(t.token_bytes_[id], static_cast<int>(id));
    } else {
      t.token_bytes_[id] = spelling;
      t.special_texts_.push_back(spelling);
      t.special_ids_.emplace(spelling, static_cast<int>(id));
    }
  }
  return t;
}

// The roles Hugging Face gives our usual special tokens (special_tokens_map.json).
static json::Value special_tokens_map(const std::vector<std::string>& specials) {
  json::Value map = json::Value::object(), additional = json::Value::array();
  for (const auto& text : specials) {
    if (text == "<|endoftext|>") {
      for (const char* role : {"bos_token", "eos_token", "unk_token"}) map.set(role, text);
    } else if (text == "[MASK]") map.set("mask_token", text);
    else if (text == "[PAD]") map.set("pad_token", text);
    else if (text == "[CLS]") map.set("cls_token", text);
    else if (text == "[SEP]") map.set("sep_token", text);
    else additional.push(text);
  }
  if (additional.size() > 0) map.set("additional_special_tokens", additional);
  return map;
}

void Tokenizer::save(const std::string& dir) const {
  make_dirs(dir);
  // Written by hand rather than through json::Value, whose objects look keys
  // up linearly: one token per line, in id order, so the file diffs well.
  std::string vocab = "{";
  for (int id = 0; id < vocab_size(); id++) {
    vocab += id ? ",\n  " : "\n  ";
    json::write_string(vocab, vocab_spelling(id));
    vocab += ": " + std::to_string(id);
  }
  vocab += "\n}\n";
  std::string merges = "#version: 0.2\n";
  for (auto [left, right] : merges_) merges += vocab_spelling(left) + " " + vocab_spelling(right) + "\n";
  write_file_atomic(dir + "/vocab.json", vocab);
  write_file_atomic(dir + "/merges.txt", merges);
  if (!special_texts_.empty())
    write_file_atomic(dir + "/special_tokens_map.json", special_tokens_map(special_texts_).dump(2) + "\n");
}

}  // namespace ta::data
