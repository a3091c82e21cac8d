// data/bpe.cpp — see bpe.h. Reading order: UTF-8 checking, the GPT-2 regex
// and special-token splitting, building a tokenizer, encoding (BPE on one
// chunk), decoding. GPT-2's byte alphabet and the files (load and save) are
// data/bpe_files.cpp; the trainer is data/bpe_train.cpp.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/bpe.h"

#include <pcre2.h>

#include <memory>
#include <queue>
#include <stdexcept>

#include "data/corpus.h"
#include "data/json.h"

namespace ta::data {

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

}  // namespace ta::data
