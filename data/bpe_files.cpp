// data/bpe_files.cpp — GPT-2's byte alphabet, and the tokenizer's files:
// vocab.json and merges.txt as Hugging Face writes them (load and save).
#include <array>
#include <unordered_map>

#include "data/bpe.h"
#include "data/io.h"
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

}  // namespace

const std::string& byte_to_unicode(unsigned char byte) { return alphabet().spelling[byte]; }

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

// The vocabulary {spelling: id} of vocab.json, or of tokenizer.json's model.vocab;
// `path` names it in errors.
VocabFile vocab_from_json(const json::Value& vocab, const std::string& path) {
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

VocabFile read_vocab(const std::string& path) { return vocab_from_json(json::parse_file(path), path); }

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

// tokenizer.json's model.merges: "left right" strings (tokenizers before
// 0.20) or ["left", "right"] pairs (since); `line` counts them from 1.
std::vector<MergeLine> merges_from_json(const json::Value& merges, const std::string& path) {
  std::vector<MergeLine> lines;
  for (const json::Value& merge : merges.items(path)) {
    const size_t n = lines.size() + 1;
    const std::string where = path + "[" + std::to_string(n - 1) + "]";
    if (merge.is_string()) {
      const std::string& text = merge.as_string(where);
      const size_t space = text.find(' ');
      if (space == 0 || space == std::string::npos || space + 1 == text.size() || text.find(' ', space + 1) != std::string::npos)
        throw InputError(where + ": expected \"left right\" (two tokens, one space)");
      lines.push_back({text.substr(0, space), text.substr(space + 1), n});
    } else {
      const auto& pair = merge.items(where);
      if (pair.size() != 2) throw InputError(where + ": expected a pair [left, right]");
      lines.push_back({pair[0].as_string(where), pair[1].as_string(where), n});
    }
  }
  return lines;
}

// Tokenizer files in `dir`: Hugging Face's names, else OpenAI's.
std::pair<std::string, std::string> find_tokenizer_files(const std::string& dir) {
  if (file_exists(dir + "/vocab.json") || file_exists(dir + "/merges.txt"))
    return {dir + "/vocab.json", dir + "/merges.txt"};
  if (file_exists(dir + "/encoder.json") || file_exists(dir + "/vocab.bpe"))
    return {dir + "/encoder.json", dir + "/vocab.bpe"};
  if (file_exists(dir + "/tokenizer.json")) return {dir + "/tokenizer.json", ""};
  throw InputError(dir + ": no tokenizer here (expected vocab.json + merges.txt, encoder.json + vocab.bpe, or "
                         "tokenizer.json)");
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
  VocabFile vocab;
  std::vector<MergeLine> merge_lines;
  if (merges_path.empty()) {  // tokenizer.json: the same vocabulary and merges under "model"
    const json::Value file = json::parse_file(vocab_path);
    const json::Value& model = file.at("model", vocab_path);
    if (const json::Value* type = model.find("type"); type && type->as_string(vocab_path + ": model.type") != "BPE")
      throw InputError(vocab_path + ": model.type is \"" + type->as_string() + "\", not BPE");
    vocab = vocab_from_json(model.at("vocab", vocab_path + ": model"), vocab_path + ": model.vocab");
    merge_lines = merges_from_json(model.at("merges", vocab_path + ": model"), vocab_path + ": model.merges");
    merges_path = vocab_path + ": model.merges";
  } else {
    vocab = read_vocab(vocab_path);
    merge_lines = read_merge_lines(merges_path);
  }
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
