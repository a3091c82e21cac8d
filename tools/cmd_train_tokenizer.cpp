// tools/cmd_train_tokenizer.cpp — `tinyadapt train-tokenizer`: learn byte-level
// BPE merges from a corpus and write a GPT-2 tokenizer directory.
//
// The corpus is a built-in one ("sotu", data/corpus.h) or a UTF-8 file. The
// output (vocab.json, merges.txt, special_tokens_map.json) loads with
// `--tokenizer DIR` here and in Hugging Face's GPT2Tokenizer. The trainer is
// data/bpe_train.cpp; this file only reads options and reports.
#include <chrono>
#include <cstdio>

#include "data/bpe.h"
#include "data/pretraining.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

// "[MASK],[PAD]" -> {"[MASK]", "[PAD]"}; "none" -> {}.
std::vector<std::string> parse_specials(const std::string& list) {
  std::vector<std::string> specials;
  if (list == "none") return specials;
  for (size_t start = 0; start <= list.size();) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    std::string token = list.substr(start, comma - start);
    if (token.empty()) throw InputError("tinyadapt train-tokenizer: --special: empty token in '" + list + "'");
    specials.push_back(token);
    start = comma + 1;
  }
  return specials;
}

int run_train_tokenizer(Args& args) {
  std::string corpus_name = args.required("corpus");
  args.required("vocab-size");  // present, or "--vocab-size is required"
  long long vocab_size = args.integer("vocab-size", 0);
  std::vector<std::string> specials = parse_specials(args.str("special", "<|endoftext|>"));
  std::string out = args.required("out");
  args.finish();
  if (vocab_size < 256 || vocab_size > 1000000)
    throw InputError("tinyadapt train-tokenizer: --vocab-size must be in [256, 1000000], got " +
                     std::to_string(vocab_size));
  std::string text = data::corpus_text(corpus_name);
  auto start = std::chrono::steady_clock::now();
  data::Tokenizer tokenizer = data::train_bpe(text, static_cast<int>(vocab_size), specials, corpus_name);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  tokenizer.save(out);
  std::printf("train-tokenizer: %d merges + %zu special tokens = %d tokens, learned from %s (%.1f MB) in %.2f s\n",
              tokenizer.merge_count(), tokenizer.specials().size(), tokenizer.vocab_size(), corpus_name.c_str(),
              text.size() / 1e6, seconds);
  if (tokenizer.vocab_size() < vocab_size)
    std::printf("train-tokenizer: stopped below --vocab-size %lld: no pair of tokens occurs twice any more\n",
                vocab_size);
  std::printf("train-tokenizer: wrote %s/vocab.json and %s/merges.txt\n", out.c_str(), out.c_str());
  return 0;
}

Command train_tokenizer_cmd{
    "train-tokenizer", "learn byte-level BPE merges from a corpus",
    "tinyadapt train-tokenizer --corpus sotu|FILE --vocab-size N [--special TOKENS] --out DIR\n\n"
    "Learns GPT-2-style byte-level BPE merges (most frequent pair first, within the\n"
    "chunks of GPT-2's pre-tokenizer regex) and writes vocab.json + merges.txt to DIR.\n\n"
    "  --corpus sotu|FILE  the built-in corpus or a UTF-8 text file\n"
    "  --vocab-size N      tokens in all: 256 bytes + merges + special tokens\n"
    "  --special TOKENS    comma-separated special tokens, ids after the merges\n"
    "                      (default <|endoftext|>; [PAD],[CLS],[SEP],[MASK] for an encoder;\n"
    "                      none for no special tokens)\n"
    "  --out DIR           the tokenizer directory to write",
    run_train_tokenizer};

}  // namespace
}  // namespace ta::cli
