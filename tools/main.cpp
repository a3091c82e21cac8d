// tools/main.cpp — `tinyadapt COMMAND [options]`: dispatch to the registered
// subcommands (tools/cmd_*.cpp) and turn errors into exit statuses:
//   0 success, 2 bad input (one line on stderr naming the input), 1 internal error.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "autograd/tensor.h"
#include "nn/distributed.h"
#include "nn/gpt.h"
#include "tools/cli.h"

namespace ta::cli {

static std::vector<Command*>& registry() {
  static std::vector<Command*> all;
  return all;
}
const std::vector<Command*>& commands() { return registry(); }

Command::Command(const char* name_, const char* summary_, const char* usage_, int (*run_)(Args&))
    : name(name_), summary(summary_), usage(usage_), run(run_) {
  registry().push_back(this);
}

Args::Args(std::string command, std::vector<std::string> argv) : command_(std::move(command)) {
  for (size_t i = 0; i < argv.size(); i++) {
    const std::string& a = argv[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      if (!values_.empty())
        throw InputError("tinyadapt " + command_ + ": unexpected argument '" + a + "' (options are --key value)");
      positionals_.push_back(a);
      continue;
    }
    std::string key = a.substr(2), value;
    size_t eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (i + 1 < argv.size() && !(argv[i + 1].size() > 2 && argv[i + 1].compare(0, 2, "--") == 0)) {
      value = argv[++i];
    }
    if (values_.count(key)) throw InputError("tinyadapt " + command_ + ": --" + key + " given twice");
    values_[key] = value;
  }
}

bool Args::has(const std::string& key) const { return values_.count(key) > 0; }

std::string Args::str(const std::string& key, const std::string& fallback) {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  read_[key] = true;
  if (it->second.empty()) throw InputError("tinyadapt " + command_ + ": --" + key + " needs a value");
  return it->second;
}

std::string Args::required(const std::string& key) {
  if (!has(key)) throw InputError("tinyadapt " + command_ + ": --" + key + " is required (see --help)");
  return str(key, "");
}

long long Args::integer(const std::string& key, long long fallback) {
  if (!has(key)) return fallback;
  std::string v = str(key, "");
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (errno != 0 || end == v.c_str() || *end != '\0')
    throw InputError("tinyadapt " + command_ + ": --" + key + ": expected an integer, got '" + v + "'");
  return x;
}

double Args::real(const std::string& key, double fallback) {
  if (!has(key)) return fallback;
  std::string v = str(key, "");
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  if (errno != 0 || end == v.c_str() || *end != '\0')
    throw InputError("tinyadapt " + command_ + ": --" + key + ": expected a number, got '" + v + "'");
  return x;
}

bool Args::flag(const std::string& key) {
  auto it = values_.find(key);
  if (it == values_.end()) return false;
  read_[key] = true;
  if (!it->second.empty())
    throw InputError("tinyadapt " + command_ + ": --" + key + " takes no value (got '" + it->second + "')");
  return true;
}

std::vector<std::string> Args::list(const std::string& key, const std::string& fallback) {
  const std::string text = str(key, fallback);
  std::vector<std::string> items;
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) items.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

std::string Args::positional(size_t i) {
  if (i >= positionals_.size()) return "";
  positionals_read_ = std::max(positionals_read_, i + 1);
  return positionals_[i];
}

void Args::finish() {
  if (positionals_read_ < positionals_.size())
    throw InputError("tinyadapt " + command_ + ": unexpected argument '" + positionals_[positionals_read_] + "'");
  for (auto& kv : values_)
    if (!read_.count(kv.first))
      throw InputError("tinyadapt " + command_ + ": unknown option --" + kv.first + " (see --help)");
}

void use_reference_path_if_asked(Args& args) {
  if (!args.flag("reference")) return;
  set_reference_path(true);
  ::setenv("TINYADAPT_REFERENCE", "1", 1);
}

int64_t store_frozen_in_bf16(GPT& model) {
  if (reference_path()) throw InputError("--bf16 and --reference do not go together: the reference path is plain float32 ops");
  const int64_t cast = model.store_frozen_in_bf16();
  if (cast == 0) throw InputError("--bf16: no weight matrix of the model is frozen (full fine-tuning trains them all)");
  return cast * 2;  // 4 bytes of float32 become 2 of bfloat16
}

}  // namespace ta::cli

static void print_overview() {
  std::printf("tinyadapt — adapt a small pre-trained language model, from scratch in C++\n\n"
              "usage: tinyadapt COMMAND [options]   (tinyadapt COMMAND --help for its options)\n\n");
  for (auto* c : ta::cli::commands()) std::printf("  %-16s %s\n", c->name, c->summary);
}

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_overview();
    return argc < 2 ? 2 : 0;
  }
  ta::cli::Command* command = nullptr;
  for (auto* c : ta::cli::commands())
    if (!std::strcmp(c->name, argv[1])) command = c;
  if (!command) {
    std::fprintf(stderr, "tinyadapt: unknown command '%s' (tinyadapt --help lists them)\n", argv[1]);
    return 2;
  }
  std::vector<std::string> rest(argv + 2, argv + argc);
  for (auto& a : rest)
    if (a == "--help" || a == "-h") {
      std::printf("%s\n", command->usage);
      return 0;
    }
  // Under mpirun (nn/distributed.h) an error on one rank ends them all.
  ta::dist::init(&argc, &argv);
  auto fail = [&](const std::string& message, int status) {
    if (ta::dist::world_size() > 1) ta::dist::abort_all(message, status);
    std::fprintf(stderr, "%s\n", message.c_str());
    return status;
  };
  try {
    ta::cli::Args args(command->name, rest);
    const int status = command->run(args);
    ta::dist::finalize();
    return status;
  } catch (const ta::InputError& e) {
    return fail(std::string("error: ") + e.what(), 2);
  } catch (const std::exception& e) {
    return fail(std::string("tinyadapt ") + command->name + ": internal error: " + e.what(), 1);
  }
}
