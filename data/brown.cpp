// data/brown.cpp — see brown.h.
#include "data/brown.h"

#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

namespace ta::data {

const std::vector<std::string>& coarse_tag_names() {
  static const std::vector<std::string> names = {"noun",        "verb",    "adjective",   "adverb",      "determiner",
                                                 "preposition", "pronoun", "conjunction", "punctuation", "other"};
  return names;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The base tags of brown.h's table.
const std::unordered_map<std::string, CoarseTag>& base_tag_classes() {
  static const std::unordered_map<std::string, CoarseTag> table = [] {
    const std::map<CoarseTag, std::vector<const char*>> classes = {
        {CoarseTag::Noun, {"nn", "nns", "np", "nps", "nr", "nrs"}},
        {CoarseTag::Verb, {"vb",  "vbd", "vbg", "vbn", "vbz", "md", "be",  "bed", "bedz", "beg", "bem",
                           "ben", "ber", "bez", "do",  "dod", "doz", "hv", "hvd", "hvg", "hvn",  "hvz"}},
        {CoarseTag::Adjective, {"jj", "jjr", "jjs", "jjt", "od"}},
        {CoarseTag::Adverb, {"rb", "rbr", "rbt", "rn", "rp", "ql", "qlp", "wql", "wrb", "*"}},
        {CoarseTag::Determiner, {"at", "abl", "abn", "abx", "ap", "dt", "dti", "dts", "dtx", "wdt"}},
        {CoarseTag::Preposition, {"in"}},
        {CoarseTag::Pronoun, {"pn", "pp$", "pp$$", "ppl", "ppls", "ppo", "pps", "ppss", "wp$", "wpo", "wps", "ex"}},
        {CoarseTag::Conjunction, {"cc", "cs"}},
        {CoarseTag::Punctuation, {".", ",", ":", "(", ")", "--", "``", "''", "'"}},
        {CoarseTag::Other, {"to", "cd", "uh", "nil"}},
    };
    std::unordered_map<std::string, CoarseTag> out;
    for (const auto& [coarse, tags] : classes)
      for (const char* tag : tags) out.emplace(tag, coarse);
    return out;
  }();
  return table;
}

}  // namespace

std::optional<CoarseTag> coarse_tag(const std::string& brown_tag) {
  std::string tag = brown_tag.compare(0, 3, "fw-") == 0 ? brown_tag.substr(3) : brown_tag;
  tag = tag.substr(0, tag.find('+'));
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (const char* suffix : {"-tl", "-hl", "-nc"})
      if (ends_with(tag, suffix)) {
        tag.resize(tag.size() - 3);
        stripped = true;
      }
  }
  if (tag.size() > 1 && tag.back() == '*') tag.pop_back();
  const auto& table = base_tag_classes();
  auto found = table.find(tag);
  if (found == table.end() && tag.size() > 1 && tag.back() == '$') found = table.find(tag.substr(0, tag.size() - 1));
  if (found == table.end()) return std::nullopt;
  return found->second;
}

namespace {

// Builds a file's text word by word with brown.h's spacing, one paragraph at a time.
class Detokeniser {
 public:
  explicit Detokeniser(BrownFile& file) : file_(file) {}

  void start_paragraph() {
    if (!file_.text.empty()) file_.text += "\n\n";
    glue_next_ = true;
    single_quote_open_ = false;
  }

  void add(BrownWord word) {
    const std::string& w = word.word;
    const bool single_quote = w == "'";
    const bool closes = w == "," || w == "." || w == ";" || w == ":" || w == "?" || w == "!" || w == ")" ||
                        w == "]" || w == "''" || (single_quote && single_quote_open_);
    const bool opens = w == "(" || w == "[" || w == "``" || (single_quote && !single_quote_open_);
    if (single_quote) single_quote_open_ = !single_quote_open_;
    if (!glue_next_ && !closes) file_.text += ' ';
    word.begin = file_.text.size();
    file_.text += (w == "``" || w == "''") ? "\"" : w;
    word.end = file_.text.size();
    glue_next_ = opens;
    file_.words.push_back(std::move(word));
  }

 private:
  BrownFile& file_;
  bool glue_next_ = true;  // no space before the next word
  bool single_quote_open_ = false;
};

BrownWord parse_token(const std::string& token, const std::string& where) {
  const size_t slash = token.rfind('/');
  if (slash == std::string::npos) throw InputError(where + ": token \"" + token + "\" has no /tag");
  BrownWord word;
  word.word = token.substr(0, slash);
  word.tag = token.substr(slash + 1);
  if (word.word.empty()) throw InputError(where + ": token \"" + token + "\" has an empty word");
  if (word.tag.empty()) throw InputError(where + ": token \"" + token + "\" has an empty tag");
  const std::optional<CoarseTag> coarse = coarse_tag(word.tag);
  if (!coarse) throw InputError(where + ": token \"" + token + "\": unknown tag \"" + word.tag + "\"");
  word.coarse = *coarse;
  return word;
}

bool is_blank(const std::string& line) { return line.find_first_not_of(" \t\r") == std::string::npos; }

}  // namespace

BrownFile parse_brown_file(const std::string& id, const std::string& genre, const std::string& contents,
                           const std::string& source) {
  const size_t bad = find_invalid_utf8(contents);
  if (bad != std::string::npos) throw InputError(source + ": invalid UTF-8 at byte " + std::to_string(bad));
  BrownFile file;
  file.id = id;
  file.genre = genre;
  Detokeniser text(file);
  std::istringstream lines(contents);
  std::string line, token;
  bool in_paragraph = false;
  for (int number = 1; std::getline(lines, line); number++) {
    if (is_blank(line)) {
      in_paragraph = false;
      continue;
    }
    if (line[0] == '\t' || !in_paragraph) text.start_paragraph();
    in_paragraph = true;
    std::istringstream tokens(line);
    while (tokens >> token) text.add(parse_token(token, source + ":" + std::to_string(number)));
  }
  if (file.words.empty()) throw InputError(source + ": no tagged words");
  return file;
}

namespace {

// "ca01": c, a genre letter, two digits.
bool is_file_id(const std::string& id) {
  return id.size() == 4 && id[0] == 'c' && id[1] >= 'a' && id[1] <= 'r' && std::isdigit(static_cast<unsigned char>(id[2])) &&
         std::isdigit(static_cast<unsigned char>(id[3]));
}

}  // namespace

std::vector<BrownFile> load_brown(const std::string& dir) {
  const std::string cats = dir + "/cats.txt";
  std::istringstream lines(read_file(cats));
  std::string line;
  std::set<std::string> seen;
  std::vector<BrownFile> files;
  for (int number = 1; std::getline(lines, line); number++) {
    if (is_blank(line)) continue;
    const std::string where = cats + ":" + std::to_string(number);
    std::istringstream fields(line);
    std::string id, genre, extra;
    if (!(fields >> id >> genre) || (fields >> extra))
      throw InputError(where + ": expected \"FILE GENRE\", got \"" + line + "\"");
    if (!is_file_id(id)) throw InputError(where + ": \"" + id + "\" is not a Brown file name (ca01 .. cr99)");
    if (!seen.insert(id).second) throw InputError(where + ": file " + id + " is listed twice");
    if (!file_exists(dir + "/" + id)) throw InputError(where + ": file " + id + " is not in " + dir);
    files.push_back(parse_brown_file(id, genre, read_file(dir + "/" + id), dir + "/" + id));
  }
  if (files.empty()) throw InputError(cats + ": lists no files");
  return files;
}

std::vector<BrownFile> load_brown() { return load_brown(dataset_dir("brown")); }

bool is_brown_probe_test(const std::string& file_id) { return !file_id.empty() && file_id.back() == '1'; }

std::vector<Document> brown_documents(const std::vector<BrownFile>& files) {
  std::vector<Document> documents;
  for (const BrownFile& file : files)
    if (!is_brown_probe_test(file.id)) documents.push_back({"brown:" + file.id, file.text});
  return documents;
}

std::vector<Document> brown_documents() { return brown_documents(load_brown()); }

std::vector<int> last_subtoken_words(const std::vector<int>& ids, const Tokenizer& tokenizer,
                                     const std::vector<BrownWord>& words) {
  std::vector<int> word_of_token(ids.size(), -1);
  size_t token_end = 0, w = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    token_end += tokenizer.id_to_bytes(ids[i]).size();
    while (w < words.size() && words[w].end < token_end) w++;  // ends inside this token: named by none
    if (w < words.size() && words[w].end == token_end) word_of_token[i] = static_cast<int>(w++);
  }
  if (w < words.size())
    throw InputError("tokens cover " + std::to_string(token_end) + " bytes, but word \"" + words[w].word +
                     "\" ends at byte " + std::to_string(words[w].end));
  return word_of_token;
}

}  // namespace ta::data
