// tests/test_resume.cpp — stopping and resuming `tinyadapt pretrain`, and bad
// command-line input, through the binary (issue 8).
//
// What it checks: a run stopped with --stop-after and started again logs the
// same losses, string for string, and ends with the same model.safetensors,
// byte for byte, as the run that never stopped (at OMP_NUM_THREADS=1, where
// the sums are in a fixed order); Ctrl-C (SIGINT) exits with status 130 and
// leaves a checkpoint that loads and resumes; SIGKILL at random moments,
// while checkpoints are being written, always leaves a model and optimizer
// state that belong together, and resuming after twenty kills still ends with
// the uninterrupted run's files; a model and optimizer state from different
// checkpoints are refused; a bad option or --tokens file is one line on
// stderr naming it and status 2. (tests/test_checkpoint.cpp tests the
// pieces in-process.)
//
// What it is not: a test of the training maths (test_optim, test_model). The
// binary is ./tinyadapt, built by `make test` before the suite, or the one
// TINYADAPT_BIN names; without it the tests say so and pass.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data/bpe.h"
#include "data/io.h"
#include "nn/checkpoint.h"
#include "nn/trainer.h"
#include "tests/helpers.h"

using ta::testing::ScratchDir;
using ta::testing::tinyadapt_binary;

namespace {

// A corpus of a few kilobytes: enough windows of 16 bytes for training and
// the 10% held out for validation.
std::string write_corpus(const ScratchDir& dir) {
  std::string text;
  for (int i = 0; i < 60; i++)
    text += "Sentence " + std::to_string(i) + " of the tiny corpus, with words that repeat often enough.\n";
  const std::string path = dir.file("corpus.txt");
  ta::write_file_atomic(path, text);
  return path;
}

// The arguments of a tiny byte-level GPT run (no tokenizer training, ~ms per step).
std::vector<std::string> pretrain_args(const std::string& corpus, const std::string& out, long long steps) {
  return {"pretrain", "--corpus", corpus, "--out", out, "--vocab-size", "257", "--n-layer", "1", "--n-head", "2",
          "--n-embd", "16", "--ctx", "16", "--batch", "2", "--eval-batches", "1", "--steps", std::to_string(steps)};
}

// Starts the binary with `args` at one thread, stdout discarded, stderr to
// `stderr_path`; returns its pid.
pid_t spawn(std::vector<std::string> args, const std::string& stderr_path = "/dev/null") {
  args.insert(args.begin(), tinyadapt_binary());
  std::fflush(nullptr);  // else the child's freopen writes our buffered output a second time
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setenv("OMP_NUM_THREADS", "1", 1);
    ::freopen("/dev/null", "w", stdout);
    ::freopen(stderr_path.c_str(), "w", stderr);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for the process; its exit status, or 128 + the signal that ended it.
int wait_status(pid_t pid) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run(const std::vector<std::string>& args) { return wait_status(spawn(args)); }

// The `loss` column (the second) of a log.csv, header excluded, as written.
std::vector<std::string> logged_losses(const std::string& log_path) {
  std::vector<std::string> losses;
  const std::string text = ta::read_file(log_path);
  size_t line_start = text.find('\n') + 1;
  while (line_start < text.size()) {
    const size_t line_end = text.find('\n', line_start);
    const std::string line = text.substr(line_start, line_end - line_start);
    const size_t comma = line.find(',');
    losses.push_back(line.substr(comma + 1, line.find(',', comma + 1) - comma - 1));
    line_start = line_end + 1;
  }
  return losses;
}

// Polls (in 1 ms steps) until the file at `path` contains `text`; false if
// the process ended first.
bool wait_for_text(const std::string& path, const std::string& text, pid_t pid) {
  while (!ta::file_exists(path) || ta::read_file(path).find(text) == std::string::npos) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Polls (in 10 ms steps) until `path` exists; false if the process ended first.
bool wait_for_file(const std::string& path, pid_t pid) {
  while (!ta::file_exists(path)) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace

TEST_CASE("resume: --stop-after then resume gives the uninterrupted run's losses and model, bit for bit") {
  if (!ta::file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("resume");
  const std::string corpus = write_corpus(dir);
  const std::string whole = dir.file("whole"), sliced = dir.file("sliced");

  REQUIRE(run(pretrain_args(corpus, whole, 12)) == 0);
  std::vector<std::string> stop_args = pretrain_args(corpus, sliced, 12);
  stop_args.insert(stop_args.end(), {"--stop-after", "5"});
  REQUIRE(run(stop_args) == 0);
  CHECK(logged_losses(sliced + "/log.csv").size() == 5);
  REQUIRE(run(pretrain_args(corpus, sliced, 12)) == 0);

  const std::vector<std::string> expected = logged_losses(whole + "/log.csv");
  REQUIRE(expected.size() == 12);
  CHECK(logged_losses(sliced + "/log.csv") == expected);
  CHECK(ta::read_file(sliced + "/model.safetensors") == ta::read_file(whole + "/model.safetensors"));
  CHECK(ta::read_file(sliced + "/optimizer.safetensors") == ta::read_file(whole + "/optimizer.safetensors"));
}

TEST_CASE("resume: SIGINT saves, exits with 130, and the checkpoint loads and resumes") {
  if (!ta::file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("resume");
  const std::string corpus = write_corpus(dir), out = dir.file("run");
  std::vector<std::string> args = pretrain_args(corpus, out, 1000000);
  args.insert(args.end(), {"--eval-every", "20"});
  const pid_t pid = spawn(args);
  REQUIRE(wait_for_file(out + "/model.safetensors", pid));
  REQUIRE(::kill(pid, SIGINT) == 0);
  CHECK(wait_status(pid) == 130);

  const size_t steps_logged = logged_losses(out + "/log.csv").size();
  CHECK(steps_logged >= 20);
  CHECK(ta::load_model(out)->config().n_embd == 16);
  CHECK(ta::data::Tokenizer::load(out).vocab_size() == 257);
  // Resuming continues the log from the saved step.
  args = pretrain_args(corpus, out, static_cast<long long>(steps_logged) + 3);
  REQUIRE(run(args) == 0);
  CHECK(logged_losses(out + "/log.csv").size() == steps_logged + 3);
}

namespace {

// What pretrain does on resume, in-process: the model from DIR, then the
// optimizer state that belongs to it (Trainer::load_state). Returns the step
// the run would continue from; throws InputError if the pair does not match.
long long checkpoint_step(const std::string& dir) {
  std::unique_ptr<ta::GPT> model = ta::load_model(dir);
  std::vector<ta::OptimParam> params;
  for (auto& [name, tensor] : model->named_parameters()) params.push_back({name, tensor, true});
  ta::Trainer trainer(params, ta::TrainerOptions{});
  return trainer.load_state(dir);
}

// The files of a pretrain directory (each written by write_file_atomic).
const std::vector<std::string> kCheckpointFiles = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                                   "model.safetensors", "config.json", "optimizer.safetensors",
                                                   "optimizer.pending.safetensors", "log.csv", "pretraining.json"};

}  // namespace

// Issue 8: a kill at any moment of a checkpoint leaves a model and optimizer
// state that belong together (Trainer::save_checkpoint), so a run killed 20
// times and resumed each time ends with the files of the run never killed.
// Each run is killed a random 0-1 step's time after it reports its first
// step's validation loss, which it does just before logging the step and
// checkpointing it; with a checkpoint after every step (most of a step's time
// is fsync and rename) most kills land inside one, on a fast disk or a busy
// one. A killed process's NAME.tmp.PID files stay until the next run writes
// NAME, which removes them (data/io.h).
TEST_CASE("resume: SIGKILL at random moments while checkpointing; resuming ends with the uninterrupted run's files") {
  if (!ta::file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("kill");
  const std::string corpus = write_corpus(dir), whole = dir.file("whole"), out = dir.file("run");
  const long long steps = 40;
  auto args = [&](const std::string& to) {
    std::vector<std::string> a = pretrain_args(corpus, to, steps);
    a.insert(a.end(), {"--eval-every", "1"});  // a checkpoint after every step
    return a;
  };
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(run(args(whole)) == 0);
  const double whole_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();

  std::mt19937 rng(8);
  std::uniform_real_distribution<double> delay_ms(0.0, whole_ms / steps);
  std::vector<std::string> killed_pids;
  long long last_step = 0;
  for (int attempt = 0; attempt < 20 && last_step < steps; attempt++) {
    std::filesystem::remove(dir.file("stderr.txt"));  // else the last run's text would count
    const pid_t pid = spawn(args(out), dir.file("stderr.txt"));
    REQUIRE(wait_for_text(dir.file("stderr.txt"), ": val loss", pid));
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay_ms(rng)));
    REQUIRE(::kill(pid, SIGKILL) == 0);
    const int status = wait_status(pid);
    CAPTURE(attempt);
    CAPTURE(whole_ms);
    REQUIRE((status == 128 + SIGKILL || status == 0));  // 0: it finished before the kill
    if (status != 0) killed_pids.push_back(std::to_string(pid));
    if (!ta::file_exists(out + "/config.json")) continue;  // killed inside its first checkpoint

    // The pair on disk matches, and the checkpoint never goes back. (Checked
    // on a copy: load_state may finish an interrupted save, and the next run
    // must be left to do that itself.)
    const std::string copy = dir.file("copy");
    std::filesystem::remove_all(copy);
    std::filesystem::copy(out, copy);
    const long long step = checkpoint_step(copy);
    CHECK(step >= last_step);
    last_step = step;
    for (const auto& entry : std::filesystem::directory_iterator(out)) {
      const std::string name = entry.path().filename().string();
      const size_t tmp = name.find(".tmp.");
      if (tmp == std::string::npos) continue;
      CAPTURE(name);
      CHECK(std::count(kCheckpointFiles.begin(), kCheckpointFiles.end(), name.substr(0, tmp)) == 1);
      CHECK(std::count(killed_pids.begin(), killed_pids.end(), name.substr(tmp + 5)) == 1);
    }
  }
  CHECK(killed_pids.size() >= 10);  // the kills did land while it ran

  REQUIRE(run(args(out)) == 0);
  for (const char* name : {"model.safetensors", "optimizer.safetensors", "config.json", "vocab.json", "merges.txt"}) {
    CAPTURE(name);
    CHECK(ta::read_file(out + "/" + name) == ta::read_file(whole + "/" + name));
  }
  CHECK(logged_losses(out + "/log.csv") == logged_losses(whole + "/log.csv"));
  CHECK(logged_losses(out + "/log.csv").size() == steps);
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    CAPTURE(entry.path());  // every temporary removed, the pending file renamed
    CHECK(std::count(kCheckpointFiles.begin(), kCheckpointFiles.end(), entry.path().filename().string()) == 1);
  }
  CHECK_FALSE(ta::file_exists(out + "/optimizer.pending.safetensors"));
}

// A model and an optimizer state from two checkpoints of one run: the
// shapes fit, so only the fingerprint in optimizer.safetensors tells. Both
// directions are refused without touching the files; the matching pair resumes.
TEST_CASE("resume: model and optimizer state from different checkpoints: one line, status 2, files untouched") {
  if (!ta::file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("mismatch");
  const std::string corpus = write_corpus(dir), out = dir.file("run"), whole = dir.file("whole"),
                    errors = dir.file("stderr.txt");
  const std::string model = out + "/model.safetensors", optimizer = out + "/optimizer.safetensors";
  std::vector<std::string> stop_args = pretrain_args(corpus, out, 8);
  stop_args.insert(stop_args.end(), {"--stop-after", "3"});
  REQUIRE(run(stop_args) == 0);
  const std::string model_3 = ta::read_file(model), optimizer_3 = ta::read_file(optimizer);
  stop_args.back() = "2";
  REQUIRE(run(stop_args) == 0);
  const std::string model_5 = ta::read_file(model), optimizer_5 = ta::read_file(optimizer), log = ta::read_file(out + "/log.csv");
  REQUIRE(checkpoint_step(out) == 5);

  const std::vector<std::pair<std::string, std::string>> mixed = {{model_5, optimizer_3}, {model_3, optimizer_5}};
  for (const auto& [model_bytes, optimizer_bytes] : mixed) {
    ta::write_file_atomic(model, model_bytes);
    ta::write_file_atomic(optimizer, optimizer_bytes);
    CHECK(wait_status(spawn(pretrain_args(corpus, out, 8), errors)) == 2);
    const std::string message = ta::read_file(errors);
    CAPTURE(message);
    CHECK(message.find(optimizer + ": the optimizer state belongs to other weights than those loaded") !=
          std::string::npos);
    CHECK(message.find("different checkpoints") != std::string::npos);
    CHECK(std::count(message.begin(), message.end(), '\n') == 1);
    CHECK(ta::read_file(model) == model_bytes);
    CHECK(ta::read_file(optimizer) == optimizer_bytes);
    CHECK(ta::read_file(out + "/log.csv") == log);
  }

  ta::write_file_atomic(model, model_5);
  ta::write_file_atomic(optimizer, optimizer_5);
  REQUIRE(run(pretrain_args(corpus, out, 8)) == 0);
  REQUIRE(run(pretrain_args(corpus, whole, 8)) == 0);
  CHECK(ta::read_file(model) == ta::read_file(whole + "/model.safetensors"));
  CHECK(logged_losses(out + "/log.csv") == logged_losses(whole + "/log.csv"));
}

TEST_CASE("resume: bad options and a bad --tokens file: one line naming the problem, status 2") {
  if (!ta::file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("cli");
  const std::string corpus = write_corpus(dir), model = dir.file("model"), errors = dir.file("stderr.txt");
  REQUIRE(run(pretrain_args(corpus, model, 1)) == 0);
  ta::write_file_atomic(dir.file("letters.txt"), "1 2 three 4\n");
  ta::write_file_atomic(dir.file("too_big.txt"), "1 2 257\n");
  struct Case {
    std::vector<std::string> args;
    std::string expected;  // a part of the one error line
  };
  const std::vector<Case> cases = {
      {{"pretrain", "--out", model, "--no-such-option", "1"}, "unknown option --no-such-option"},
      {{"pretrain", "--out", model, "--steps", "12x"}, "--steps: expected an integer, got '12x'"},
      {{"pretrain", "--out", model, "--stop-after", "-1"}, "--stop-after must be"},
      {{"eval-lm", "--model", model, "--tokens", dir.file("letters.txt")}, "letters.txt: 'three' is not a token id"},
      {{"eval-lm", "--model", model, "--tokens", dir.file("too_big.txt")}, "too_big.txt: token id 257 is outside"},
      {{"eval-lm", "--model", model, "--tokens", dir.file("absent.txt")}, "absent.txt: cannot open"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expected);
    CHECK(wait_status(spawn(c.args, errors)) == 2);
    const std::string message = ta::read_file(errors);
    CHECK(message.find(c.expected) != std::string::npos);
    CHECK(std::count(message.begin(), message.end(), '\n') == 1);
  }
}
