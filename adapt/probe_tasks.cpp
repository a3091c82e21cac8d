// adapt/probe_tasks.cpp — the probed properties (token_probe.h): which
// positions each probe reads and their labels. pos on the Brown corpus;
// depth and start on any token stream. Nothing here runs a model.
#include <algorithm>
#include <cctype>
#include <unordered_map>

#include "adapt/token_probe.h"

namespace ta::adapt {

bool ends_sentence(const std::string& previous_token_bytes) {
  for (auto it = previous_token_bytes.rbegin(); it != previous_token_bytes.rend(); ++it) {
    if (*it == '"' || *it == '\'' || *it == ')' || *it == ']' || *it == ' ') continue;
    return *it == '.' || *it == '?' || *it == '!';
  }
  return false;
}

int sentence_depth(const std::vector<bool>& ends_after, int t) {
  int depth = 0;
  while (depth < t && !ends_after[static_cast<size_t>(t - depth - 1)]) depth++;
  return depth;
}

long long probed_count(const ProbeWindow& window) {
  return std::count_if(window.labels.begin(), window.labels.end(), [](int label) { return label >= 0; });
}

long long probed_count(const std::vector<ProbeWindow>& windows) {
  long long n = 0;
  for (const ProbeWindow& window : windows) n += probed_count(window);
  return n;
}

namespace {

// Windows taken in order until the next would pass `limit` probed positions.
struct WindowSet {
  explicit WindowSet(long long limit) : limit(limit) {}
  long long limit;
  std::vector<ProbeWindow> windows;
  long long probed = 0;
  bool full = false;

  // Takes `window` if it fits; once one does not, the set is full and takes no more.
  void offer(ProbeWindow window) {
    const long long n = probed_count(window);
    if (full || n == 0) return;
    if (probed + n > limit) {
      full = true;
      return;
    }
    probed += n;
    windows.push_back(std::move(window));
  }
};

void require_windows(const WindowSet& set, const char* split, const std::string& why) {
  if (set.windows.empty())
    throw InputError("probe-tokens: no " + std::string(split) + " window fits (" + why + ", or --" + split +
                     "-tokens " + std::to_string(set.limit) + " is smaller than one window's probed positions)");
}

// The median depth of the training positions splits depth's two classes.
void threshold_depths(ProbeTask& task) {
  std::vector<int> depths;
  for (const ProbeWindow& w : task.train) depths.insert(depths.end(), w.labels.begin(), w.labels.end());
  std::nth_element(depths.begin(), depths.begin() + static_cast<long>(depths.size() / 2), depths.end());
  const int threshold = std::max(1, depths[depths.size() / 2]);
  for (auto* set : {&task.train, &task.test})
    for (ProbeWindow& w : *set)
      for (int& label : w.labels) label = label >= threshold ? 1 : 0;
  task.property = "the token is at least " + std::to_string(threshold) + " tokens into its sentence";
}

}  // namespace

ProbeTask stream_probe_task(const data::Tokenizer& tokenizer, const std::vector<int>& tokens, int n_positions,
                            const TokenProbeOptions& o) {
  if (o.property != "depth" && o.property != "start")
    throw InputError("probe-tokens: a token stream is probed for depth or start, not \"" + o.property + "\"");
  const size_t T = static_cast<size_t>(n_positions);
  std::vector<bool> ends(tokens.size());
  for (size_t i = 0; i < tokens.size(); i++) ends[i] = ends_sentence(tokenizer.id_to_bytes(tokens[i]));
  WindowSet train(o.train_tokens), test(o.test_tokens);
  for (size_t w = 0, start = 0; start + T <= tokens.size() && !(train.full && test.full); w++, start += T) {
    ProbeWindow window;
    window.ids.assign(tokens.begin() + static_cast<long>(start), tokens.begin() + static_cast<long>(start + T));
    window.types = window.ids;
    const std::vector<bool> ends_after(ends.begin() + static_cast<long>(start), ends.begin() + static_cast<long>(start + T));
    for (size_t t = 0; t < T; t++)
      window.labels.push_back(o.property == "start" ? (start + t > 0 && ends[start + t - 1] ? 1 : 0)
                                                    : sentence_depth(ends_after, static_cast<int>(t)));
    (w % 5 == 4 ? test : train).offer(std::move(window));
  }
  const std::string why = "the corpus is too short for windows of " + std::to_string(T) + " tokens, every fifth testing";
  require_windows(train, "train", why);
  require_windows(test, "test", why);
  ProbeTask task;
  task.class_names = {"no", "yes"};
  task.train = std::move(train.windows);
  task.test = std::move(test.windows);
  task.n_types = tokenizer.vocab_size();
  task.control = "a random label per token type";
  if (o.property == "depth") threshold_depths(task);
  else task.property = "the token starts a sentence";
  return task;
}

namespace {

// A file's windows of n_positions tokens: each token ending a word carries
// the word's coarse tag and its lower-cased word's type.
std::vector<ProbeWindow> file_windows(const data::Tokenizer& tokenizer, const data::BrownFile& file, size_t T,
                                      std::unordered_map<std::string, int>& type_of_word) {
  const std::vector<int> ids = tokenizer.encode(file.text, {false, "brown:" + file.id});
  const std::vector<int> word_of_token = data::last_subtoken_words(ids, tokenizer, file.words);
  std::vector<ProbeWindow> windows;
  for (size_t start = 0; start < ids.size(); start += T) {
    ProbeWindow window;
    for (size_t i = start; i < std::min(ids.size(), start + T); i++) {
      window.ids.push_back(ids[i]);
      const int w = word_of_token[i];
      if (w < 0) {
        window.labels.push_back(-1);
        window.types.push_back(-1);
        continue;
      }
      const data::BrownWord& word = file.words[static_cast<size_t>(w)];
      std::string lower = word.word;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      window.labels.push_back(static_cast<int>(word.coarse));
      window.types.push_back(type_of_word.emplace(lower, static_cast<int>(type_of_word.size())).first->second);
    }
    windows.push_back(std::move(window));
  }
  return windows;
}

// Offers the first window of every file, then the second, ..., until the set is full.
void take_in_rounds(const std::vector<std::vector<ProbeWindow>>& files, WindowSet& set) {
  for (size_t round = 0; !set.full; round++) {
    bool any = false;
    for (const std::vector<ProbeWindow>& windows : files)
      if (round < windows.size()) {
        any = true;
        set.offer(windows[round]);
      }
    if (!any) return;
  }
}

}  // namespace

ProbeTask pos_probe_task(const data::Tokenizer& tokenizer, const std::vector<data::BrownFile>& files,
                         int n_positions, const TokenProbeOptions& o) {
  std::vector<const data::BrownFile*> ordered;
  for (const data::BrownFile& file : files) ordered.push_back(&file);
  // By number, then genre: ca02, cb02, ..., cr02, ca03, ... (ids are "c" + genre letter + number).
  std::stable_sort(ordered.begin(), ordered.end(), [](const data::BrownFile* a, const data::BrownFile* b) {
    return std::make_pair(a->id.substr(2), a->id.substr(0, 2)) < std::make_pair(b->id.substr(2), b->id.substr(0, 2));
  });
  std::unordered_map<std::string, int> type_of_word;
  std::vector<std::vector<ProbeWindow>> train_files, test_files;
  for (const data::BrownFile* file : ordered)
    (data::is_brown_probe_test(file->id) ? test_files : train_files)
        .push_back(file_windows(tokenizer, *file, static_cast<size_t>(n_positions), type_of_word));
  WindowSet train(o.train_tokens), test(o.test_tokens);
  take_in_rounds(train_files, train);
  take_in_rounds(test_files, test);
  require_windows(train, "train", "no Brown training file (one whose number does not end in 1)");
  require_windows(test, "test", "no Brown probe-test file (ca01, ca11, ...)");
  ProbeTask task;
  task.property = "the coarse part of speech of the word a token ends (Brown)";
  task.class_names = data::coarse_tag_names();
  task.train = std::move(train.windows);
  task.test = std::move(test.windows);
  task.n_types = static_cast<int>(type_of_word.size());
  task.control = "a random tag per word type (lower-cased word)";
  return task;
}

}  // namespace ta::adapt
