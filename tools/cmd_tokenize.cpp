// tools/cmd_tokenize.cpp — `tinyadapt tokenize`: text on stdin -> token ids on stdout.
//
// Loads a tokenizer directory (ours, a model directory, or GPT-2's own files:
// see data/bpe.h) and prints the ids of all of stdin on one line, separated by
// spaces, or as {"ids": [...]} with --json. Not a detokenizer, and not a
// per-line tool: stdin is one text, newlines included.
#include <cstdio>

#include "data/bpe.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

std::string read_stdin() {
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) text.append(buffer, n);
  if (std::ferror(stdin)) throw InputError("stdin: read failed");
  return text;
}

int run_tokenize(Args& args) {
  std::string dir = args.required("tokenizer");
  bool as_json = args.flag("json");
  bool match_specials = !args.flag("no-specials");
  args.finish();
  data::Tokenizer tokenizer = data::Tokenizer::load(dir);
  std::vector<int> ids = tokenizer.encode(read_stdin(), data::EncodeOptions{match_specials, "stdin"});
  std::string line = as_json ? "{\"ids\": [" : "";
  for (size_t i = 0; i < ids.size(); i++) {
    if (i) line += as_json ? ", " : " ";
    line += std::to_string(ids[i]);
  }
  if (as_json) line += "]}";
  std::printf("%s\n", line.c_str());
  return 0;
}

Command tokenize_cmd{"tokenize", "text on stdin -> token ids",
                     "tinyadapt tokenize --tokenizer DIR [--json] [--no-specials] < text\n\n"
                     "Encodes all of stdin (UTF-8) with the byte-level BPE tokenizer in DIR\n"
                     "(vocab.json + merges.txt, or GPT-2's encoder.json + vocab.bpe; a model\n"
                     "directory works too) and prints the ids on one line.\n\n"
                     "  --tokenizer DIR  the tokenizer directory\n"
                     "  --json           print {\"ids\": [...]} instead of space-separated ids\n"
                     "  --no-specials    treat special-token text such as <|endoftext|> as plain text",
                     run_tokenize};

}  // namespace
}  // namespace ta::cli
