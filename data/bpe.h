// data/bpe.h — GPT-2's byte-level BPE tokenizer: load, encode, decode, save, train.
//
// What it is. Text is UTF-8 bytes. Every byte is a token of its own (256 of
// them), so any text can be encoded and decoded losslessly. A list of merges,
// learned from a corpus and applied in the order they were learned (their
// "rank"), fuses adjacent tokens into longer ones: rank 0 might be (" ", "t")
// → " t". Before merging, the text is cut into pre-tokens ("chunks") by GPT-2's
// regex, so merges never cross a word, number or punctuation boundary:
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (PCRE2 with Unicode properties). Special tokens ("<|endoftext|>", "[MASK]",
// "[PAD]", "[CLS]", "[SEP]") are literal strings found in the text before the
// regex runs; they take the ids after the bytes and the merges.
//
// Files (a tokenizer directory, loadable by Hugging Face GPT2Tokenizer):
//   vocab.json   {"token": id, ...} for every id 0..V-1. Ordinary tokens are
//                written in GPT-2's byte→unicode alphabet (a space is "Ġ",
//                a newline "Ċ"); special tokens are written as their text.
//   merges.txt   "#version: 0.2", then one merge a line, "left right", in
//                rank order, both sides in the byte→unicode alphabet.
//   special_tokens_map.json  written when there are special tokens, so that
//                Hugging Face knows their roles (eos_token, mask_token, ...).
//                Our loader does not need it: in vocab.json, a token that is
//                neither one of the 256 bytes nor the result of a merge can
//                never come out of BPE, so it is a special token (GPT-2's
//                "<|endoftext|>", RoBERTa's "<s>"), and that is how we find
//                them again, wherever their ids are.
// OpenAI's names for the first two files, encoder.json and vocab.bpe, are
// read too.
//
// What it is not: a SentencePiece/WordPiece tokenizer, or a normaliser (no
// lower-casing, no Unicode normalisation: the bytes you give are the bytes you
// get back).
//
// Ids. A tokenizer built here (trained or byte-level) numbers byte b as id b,
// merge r as id 256 + r, and special tokens after those, as minbpe does. A
// loaded GPT-2 vocabulary keeps its own numbering (in GPT-2, byte tokens are
// ordered by their unicode stand-ins: "!" is 0).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/io.h"

namespace ta::data {

struct EncodeOptions {
  // true: a special token's text in the input becomes its id. false: it is
  // encoded as ordinary text (use this for untrusted text, e.g. e-mails).
  bool match_specials = true;
  // Names the input in errors: "spam/train.tsv:12: invalid UTF-8 at byte 40".
  std::string source = "text";
};

class Tokenizer {
 public:
  // 256 byte tokens and no merges, then the given special tokens.
  static Tokenizer byte_level(const std::vector<std::string>& specials = {});
  // Bytes as ids 0..255, then merge r = (left, right) makes the token whose
  // bytes are left's + right's: id 256 + r, or the existing id if an earlier
  // merge already made those bytes. Then the specials. A merge may only name
  // ids that exist before it.
  static Tokenizer from_merges(const std::vector<std::pair<int, int>>& merges,
                               const std::vector<std::string>& specials = {});
  // Reads vocab.json + merges.txt (or encoder.json + vocab.bpe, or Hugging
  // Face tokenizers' tokenizer.json, which holds the same two under "model") from `dir`;
  // InputError naming the file (and line) for anything malformed.
  static Tokenizer load(const std::string& dir);
  // Writes vocab.json, merges.txt (and special_tokens_map.json) atomically.
  void save(const std::string& dir) const;

  // Appends a special token with the next free id and returns it; returns the
  // existing id if `text` is already special. InputError if `text` is empty,
  // not UTF-8, or already an ordinary token.
  int add_special(const std::string& text);

  // Text -> ids: special tokens are cut out first (if matched), the rest is
  // cut into GPT-2 chunks, and each chunk's bytes are merged by rank.
  // InputError naming options.source if `text` is not UTF-8. Safe to call
  // from several threads at once (the chunk memo lives for one call).
  std::vector<int> encode(const std::string& text, const EncodeOptions& options = {}) const;
  // Concatenates the tokens' bytes (which need not be valid UTF-8 if `ids` is
  // a cut of a longer sequence). InputError for an id outside [0, vocab_size).
  std::string decode(const std::vector<int>& ids) const;

  int vocab_size() const { return static_cast<int>(token_bytes_.size()); }
  int merge_count() const { return static_cast<int>(merges_.size()); }
  // The id of a token as vocab.json spells it ("Ġthe", "<|endoftext|>").
  int token_id(const std::string& token) const;
  // The id of a special token; InputError naming it if there is none.
  int special_id(const std::string& text) const;
  bool has_special(const std::string& text) const { return special_ids_.count(text) > 0; }
  const std::vector<std::string>& specials() const { return special_texts_; }
  // The bytes a token stands for (a special token: its text).
  const std::string& id_to_bytes(int id) const;
  // Merges in rank order, as (left id, right id).
  const std::vector<std::pair<int, int>>& merges() const { return merges_; }

 private:
  struct Merge {
    int rank;
    int result;
  };
  Tokenizer() = default;
  int add_token(std::string bytes);
  void add_merge(int left, int right, int result);
  std::string vocab_spelling(int id) const;
  // Per-call memo: chunk text (a view into the input) -> its ids.
  using ChunkCache = std::unordered_map<std::string_view, std::vector<int>>;
  std::vector<int> encode_chunk(std::string_view chunk) const;
  void encode_ordinary(std::string_view text, ChunkCache& cache, std::vector<int>& out) const;

  std::vector<std::string> token_bytes_;                // id -> bytes
  std::array<int, 256> byte_ids_{};                     // byte -> id
  std::vector<std::pair<int, int>> merges_;             // rank -> (left, right)
  std::unordered_map<uint64_t, Merge> merge_of_pair_;  // (left, right) -> rank, result
  std::unordered_map<std::string, int> ordinary_ids_;  // bytes -> id (not specials)
  std::vector<std::string> special_texts_;             // in id order
  std::unordered_map<std::string, int> special_ids_;   // text -> id
};

// Learns merges from `corpus` (minbpe's RegexTokenizer.train, made fast): the
// corpus is cut at special tokens and into GPT-2 chunks, and merges are added,
// most frequent adjacent pair first (ties: smallest (left, right) ids), until
// the vocabulary holds `vocab_size` tokens including `specials`, or no pair
// occurs twice. InputError if the corpus is not UTF-8 or the size is too small.
Tokenizer train_bpe(const std::string& corpus, int vocab_size,
                    const std::vector<std::string>& specials = {},
                    const std::string& source = "corpus");

// ---------------------------------------------------------------------------
// Pieces shared by the tokenizer and the trainer.

// Throws InputError "source: invalid UTF-8 at byte N" unless `text` is UTF-8
// (overlong forms, surrogates and code points past U+10FFFF are not: PCRE2
// would reject them, and round trips must be lossless).
void check_utf8(const std::string& text, const std::string& source);

// Calls `emit` with each GPT-2 pre-token of `text` in order (they tile it).
// `text` must be valid UTF-8 (check_utf8 first).
void for_each_chunk(std::string_view text, const std::function<void(std::string_view)>& emit);

// Cuts `text` at every occurrence of a special token (leftmost, then longest):
// `ordinary` gets the text between them, `special` the index into `specials`.
void split_on_specials(std::string_view text, const std::vector<std::string>& specials,
                       const std::function<void(std::string_view)>& ordinary,
                       const std::function<void(size_t)>& special);

// Two token ids as one hash key: left in the high 32 bits, right in the low.
inline uint64_t pair_key(int left, int right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// GPT-2's printable stand-in for a byte, as UTF-8 ("Ġ" for ' ').
const std::string& byte_to_unicode(unsigned char byte);
// The bytes a vocab.json spelling stands for (byte_to_unicode backwards);
// false if some character is not a stand-in (only special tokens are spelled so).
bool spelling_to_bytes(const std::string& spelling, std::string& bytes);

}  // namespace ta::data
