// tests/test_resume.cpp — stopping and resuming `tinyadapt pretrain`, and bad
// command-line input, through the binary (issue 8).
//
// What it checks: a run stopped with --stop-after and started again logs the
// same losses, string for string, and ends with the same model.safetensors,
// byte for byte, as the run that never stopped (at OMP_NUM_THREADS=1, where
// the sums are in a fixed order); Ctrl-C (SIGINT) exits with status 130 and
// leaves a checkpoint that loads and resumes; SIGKILL at random moments,
// while checkpoints are being written, always leaves one that loads; a bad
// option or --tokens file is one line on stderr naming it and status 2.
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
#include "nn/safetensors.h"
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

// Issue 8: every file goes through write_file_atomic (temporary file, fsync,
// rename), so a kill at any moment leaves each checkpoint file whole, old or
// new. A killed process's temporary files (NAME.tmp.PID) stay behind; nothing
// reads them (data/io.h), and this test checks that they are all of that form.
TEST_CASE("resume: SIGKILL at random moments while checkpointing leaves a checkpoint that loads") {
  if (!ta::file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("kill");
  const std::string corpus = write_corpus(dir), out = dir.file("run");
  REQUIRE(run(pretrain_args(corpus, out, 2)) == 0);  // the first checkpoint

  std::mt19937 rng(8);
  std::uniform_int_distribution<int> delay_ms(20, 400);
  std::vector<std::string> killed_pids;
  for (int kill = 0; kill < 10; kill++) {
    std::vector<std::string> args = pretrain_args(corpus, out, 1000000);
    args.insert(args.end(), {"--eval-every", "1"});  // a checkpoint after every step
    const pid_t pid = spawn(args);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    REQUIRE(::kill(pid, SIGKILL) == 0);
    REQUIRE(wait_status(pid) == 128 + SIGKILL);
    killed_pids.push_back(std::to_string(pid));

    CAPTURE(kill);
    CHECK(ta::load_model(out)->config().n_embd == 16);
    CHECK(ta::data::Tokenizer::load(out).vocab_size() == 257);
    CHECK(ta::read_safetensors(out + "/optimizer.safetensors").size() > 1);
    for (const auto& entry : std::filesystem::directory_iterator(out)) {
      const std::string name = entry.path().filename().string();
      const size_t tmp = name.find(".tmp.");
      if (tmp == std::string::npos) continue;
      CAPTURE(name);
      CHECK(ta::file_exists(out + "/" + name.substr(0, tmp)));  // the temporary of a real checkpoint file
      CHECK(std::find(killed_pids.begin(), killed_pids.end(), name.substr(tmp + 5)) != killed_pids.end());
    }
  }
  // What the kills left resumes: one more step trains and saves.
  const size_t steps_logged = logged_losses(out + "/log.csv").size();
  REQUIRE(run(pretrain_args(corpus, out, static_cast<long long>(steps_logged) + 1)) == 0);
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
