// data/bpe_train.cpp — learning BPE merges from a corpus (train_bpe in bpe.h).
//
// The algorithm is minbpe's RegexTokenizer.train: cut the text into GPT-2
// chunks, start every chunk as its bytes, and repeatedly fuse the adjacent
// pair that occurs most often into a new token. minbpe recounts every pair of
// every chunk after each merge; that is O(merges × corpus) and takes hours on
// 10 MB. Two observations make it take seconds (as in Hugging Face tokenizers
// and sentencepiece):
//   1. A corpus has far fewer distinct chunks than chunks (" the" occurs
//      100k times): keep each distinct chunk once, as a "word" with a count.
//   2. A merge only changes the words that contain its pair: keep the pair
//      counts up to date by re-counting just those words (an index maps each
//      pair to the words holding it), and keep the counts in a max-heap whose
//      outdated entries are skipped when they reach the top.
// What it is not: a trainer for SentencePiece-style unigram models, or one
// that normalises text.
#include <algorithm>
#include <unordered_map>

#include "data/bpe.h"

namespace ta::data {

namespace {

int left_of(uint64_t pair) { return static_cast<int>(pair >> 32); }
int right_of(uint64_t pair) { return static_cast<int>(pair & 0xFFFFFFFFu); }

struct Word {
  std::vector<int> ids;  // the chunk's tokens so far
  long long count;       // how often the chunk occurs in the corpus
  int last_merge = -1;   // the last merge that re-counted this word
};

struct HeapEntry {
  long long count;
  uint64_t pair;
};
// The heap's top is the most frequent pair; ties go to the smallest (left, right).
bool heap_below(const HeapEntry& a, const HeapEntry& b) {
  return a.count != b.count ? a.count < b.count : a.pair > b.pair;
}

class PairCounts {
 public:
  explicit PairCounts(std::vector<Word>& words) : words_(words) {
    for (size_t w = 0; w < words_.size(); w++) {
      const auto& ids = words_[w].ids;
      for (size_t i = 0; i + 1 < ids.size(); i++) {
        uint64_t pair = pair_key(ids[i], ids[i + 1]);
        count_[pair] += words_[w].count;
        note_word(pair, static_cast<int>(w));
      }
    }
    for (auto& [pair, count] : count_) heap_.push_back({count, pair});
    std::make_heap(heap_.begin(), heap_.end(), heap_below);
  }

  // The most frequent pair and its count; count 0 when no pair is left.
  HeapEntry most_frequent() {
    while (!heap_.empty()) {
      HeapEntry top = heap_.front();
      auto current = count_.find(top.pair);
      if (current != count_.end() && current->second == top.count) return top;
      std::pop_heap(heap_.begin(), heap_.end(), heap_below);  // outdated: the count changed since
      heap_.pop_back();
    }
    return {0, 0};
  }

  // Replaces every occurrence of `pair` by `result` in the words that hold it.
  void merge(uint64_t pair, int result, int merge_index);

 private:
  void note_word(uint64_t pair, int word) {
    auto& list = words_with_[pair];
    if (list.empty() || list.back() != word) list.push_back(word);
  }
  void merge_in_word(Word& word, int word_index, uint64_t pair, int result);

  std::vector<Word>& words_;
  std::unordered_map<uint64_t, long long> count_;                // pair -> occurrences in the corpus
  std::unordered_map<uint64_t, std::vector<int>> words_with_;    // pair -> words (may hold stale ones)
  std::unordered_map<uint64_t, long long> change_;               // pair -> count change of this merge
  std::vector<HeapEntry> heap_;
};

void PairCounts::merge(uint64_t pair, int result, int merge_index) {
  change_.clear();
  std::vector<int> holders = std::move(words_with_[pair]);
  words_with_.erase(pair);
  for (int w : holders) {
    Word& word = words_[static_cast<size_t>(w)];
    if (word.last_merge == merge_index) continue;  // listed twice
    word.last_merge = merge_index;
    merge_in_word(word, w, pair, result);
  }
  for (auto& [changed, delta] : change_) {
    if (delta == 0) continue;
    long long& count = count_[changed];
    count += delta;
    if (count == 0) {
      count_.erase(changed);
      continue;
    }
    heap_.push_back({count, changed});
    std::push_heap(heap_.begin(), heap_.end(), heap_below);
  }
}

// Un-counts the word's pairs, merges left to right (as the encoder does), and
// counts the new pairs; only net changes reach the heap (see merge()).
void PairCounts::merge_in_word(Word& word, int word_index, uint64_t pair, int result) {
  std::vector<int>& ids = word.ids;
  for (size_t i = 0; i + 1 < ids.size(); i++) change_[pair_key(ids[i], ids[i + 1])] -= word.count;
  size_t kept = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    bool match = i + 1 < ids.size() && ids[i] == left_of(pair) && ids[i + 1] == right_of(pair);
    ids[kept++] = match ? result : ids[i];
    if (match) i++;
  }
  ids.resize(kept);
  for (size_t i = 0; i + 1 < ids.size(); i++) {
    uint64_t next = pair_key(ids[i], ids[i + 1]);
    change_[next] += word.count;
    if (ids[i] == result || ids[i + 1] == result) note_word(next, word_index);
  }
}

// Distinct chunks of the corpus with their counts, specials cut out.
std::vector<Word> count_words(const std::string& corpus, const std::vector<std::string>& specials) {
  std::unordered_map<std::string_view, long long> chunk_counts;
  auto count_chunks = [&](std::string_view text) {
    for_each_chunk(text, [&](std::string_view chunk) { chunk_counts[chunk]++; });
  };
  split_on_specials(corpus, specials, count_chunks, [](size_t) {});
  std::vector<std::pair<std::string_view, long long>> sorted(chunk_counts.begin(), chunk_counts.end());
  std::sort(sorted.begin(), sorted.end());  // a fixed order, so training is deterministic
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (auto& [chunk, count] : sorted) {
    if (chunk.size() < 2) continue;  // a single byte has no pair
    Word word{{}, count};
    for (unsigned char b : chunk) word.ids.push_back(b);
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace

Tokenizer train_bpe(const std::string& corpus, int vocab_size, const std::vector<std::string>& specials,
                    const std::string& source) {
  check_utf8(corpus, source);
  int base = 256 + static_cast<int>(specials.size());
  if (vocab_size < base)
    throw InputError("vocab size " + std::to_string(vocab_size) + " is below " + std::to_string(base) +
                     " (256 bytes + " + std::to_string(specials.size()) + " special tokens)");
  std::vector<Word> words = count_words(corpus, specials);
  PairCounts counts(words);
  std::vector<std::pair<int, int>> merges;
  std::unordered_map<std::string, int> id_of_bytes;  // see Tokenizer::from_merges: equal bytes, one id
  std::vector<std::string> bytes_of_id;
  for (int b = 0; b < 256; b++) bytes_of_id.emplace_back(1, static_cast<char>(b));
  while (static_cast<int>(bytes_of_id.size()) + static_cast<int>(specials.size()) < vocab_size) {
    HeapEntry best = counts.most_frequent();
    if (best.count < 2) break;  // a pair seen once teaches nothing
    int left = left_of(best.pair), right = right_of(best.pair);
    std::string bytes = bytes_of_id[static_cast<size_t>(left)] + bytes_of_id[static_cast<size_t>(right)];
    auto [known, is_new] = id_of_bytes.emplace(bytes, static_cast<int>(bytes_of_id.size()));
    if (is_new) bytes_of_id.push_back(bytes);
    counts.merge(best.pair, known->second, static_cast<int>(merges.size()));
    merges.emplace_back(left, right);
  }
  return Tokenizer::from_merges(merges, specials);
}

}  // namespace ta::data
