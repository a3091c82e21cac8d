// tools/cli.h — the `tinyadapt` command line: subcommand registry and options.
//
// One subcommand per file in tools/. A file registers its command with
//
//   static int run_tokenize(ta::cli::Args& args) { ... return 0; }
//   static ta::cli::Command tokenize_cmd{"tokenize", "text on stdin -> token ids",
//       "tinyadapt tokenize --tokenizer DIR [--json] < text", run_tokenize};
//
// Options are `--key value` or `--flag`; words before the first option are
// positionals (`tinyadapt data stats --task spam`: "stats"), read with positional(). A command reads its options through
// Args (args.str / integer / real / flag / required), then calls args.finish(),
// which rejects any option it did not read. Bad input anywhere throws
// ta::InputError (data/io.h); main prints it as one line and exits with status 2.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/io.h"

namespace ta {
class GPT;
}

namespace ta::cli {

class Args {
 public:
  Args(std::string command, std::vector<std::string> argv);

  bool has(const std::string& key) const;
  std::string str(const std::string& key, const std::string& fallback);
  std::string required(const std::string& key);
  long long integer(const std::string& key, long long fallback);
  double real(const std::string& key, double fallback);
  bool flag(const std::string& key);  // `--key` with no value
  // A comma-separated value as its items, empty ones dropped ("a,,b" -> a, b);
  // `fallback` when the option is absent.
  std::vector<std::string> list(const std::string& key, const std::string& fallback);
  // The i-th positional word, or "" when there is none; marks it read.
  std::string positional(size_t i);
  // Throws InputError for any option or positional given but never read.
  void finish();
  const std::string& command() const { return command_; }

 private:
  std::string command_;
  std::map<std::string, std::string> values_;  // key -> value ("" for a flag)
  std::map<std::string, bool> read_;
  std::vector<std::string> positionals_;
  size_t positionals_read_ = 0;
};

struct Command {
  Command(const char* name, const char* summary, const char* usage, int (*run)(Args&));
  const char* name;
  const char* summary;
  const char* usage;  // full usage text, printed by --help
  int (*run)(Args&);
};

const std::vector<Command*>& commands();

// `--reference` on a command that trains or evaluates: every fused kernel runs
// as its composition of plain ops (autograd/reference.cpp), in this process and
// in the runs it starts (it sets TINYADAPT_REFERENCE=1, which they inherit).
void use_reference_path_if_asked(Args& args);

// `--bf16` on a command that adapts or evaluates: once the model is loaded and
// its adaptation attached, store_frozen_in_bf16 keeps every frozen weight
// matrix in bfloat16 (GPT::store_frozen_in_bf16). An error when nothing is
// frozen (full fine-tuning) or with --reference (whose plain ops are float32).
// Returns the bytes saved.
int64_t store_frozen_in_bf16(GPT& model);

}  // namespace ta::cli
