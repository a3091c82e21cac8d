// tests/test_distributed.cpp — data parallelism over MPI (nn/distributed.h),
// through the binary under `mpirun -np 2 --oversubscribe`, one thread per rank:
// the same run as one process, resume, and bad use ending every rank.
//
// Tolerance. Two ranks sum their shards' gradients in another order than one
// process summing the whole batch, so a gradient differs by rounding (~1e-7
// relative). AdamW's step lr · m / sqrt(v) keeps that at rounding size except
// where a gradient is itself near zero, where it can tip the step. Measured
// over 20 steps: losses and gradient norms agree to 6 digits; the weights
// within 7.5e-5 of the largest weight (pretraining; LoRA 3.6e-6). The checks
// allow 1e-4 on losses and gradient norms and 1e-3 on weights. Without the
// gradient average (each rank stepping on its own half) the weights differ by
// 1.6 (pretraining) and 2.7 (LoRA) times the largest weight; a sum in place of
// the mean doubles the gradient norm.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/io.h"
#include "data/json.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::ScratchDir;
using ta::testing::tinyadapt_binary;

namespace {

// What every MPI command here runs with: root is allowed (CI runs as root),
// shared memory without the single-copy mechanism (not allowed in many
// containers), one OpenMP thread per rank, and no leak report from the MPI
// library under AddressSanitizer.
const std::string kMpiEnv =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none "
    "OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 ";

using Run = ta::testing::CommandResult;  // tests/helpers.h; a 2-minute limit per command
Run run(const std::string& command, const ScratchDir& dir) { return ta::testing::run_command(command, dir.path, 120); }

std::string mpirun(int ranks) {
  return kMpiEnv + "mpirun --oversubscribe -np " + std::to_string(ranks) + " " + tinyadapt_binary() + " ";
}
std::string one_process() { return kMpiEnv + tinyadapt_binary() + " "; }

// A small text corpus of random words, enough for ctx 32 windows in train and validation.
std::string write_corpus(const ScratchDir& dir) {
  const char* words[] = {"the", "model", "adapts", "a", "small", "prefix", "while", "its", "base", "stays",
                         "frozen", "and", "every", "rank", "takes", "rows", "of", "batch", "gradient", "mean"};
  Rng rng(7);
  std::string text;
  for (int i = 0; i < 1500; i++) text += std::string(words[rng.below(20)]) + (i % 13 == 12 ? ".\n" : " ");
  const std::string path = dir.file("corpus.txt");
  write_file_atomic(path, text);
  return path;
}

std::string pretrain_args(const std::string& corpus, const std::string& out, int steps, int batch = 8) {
  return "pretrain --corpus " + corpus + " --vocab-size 257 --n-layer 2 --n-head 2 --n-embd 32 --ctx 32 --batch " +
         std::to_string(batch) + " --steps " + std::to_string(steps) + " --eval-every 10 --eval-batches 2 --out " + out;
}

// Column `column` (0 = the step) of every row of a log.csv.
std::vector<double> column_of(const std::string& log_path, int column) {
  std::vector<double> values;
  const std::string text = read_file(log_path);
  for (size_t start = text.find('\n') + 1, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    size_t at = start;
    for (int c = 0; c < column; c++) at = text.find(',', at) + 1;
    values.push_back(std::stod(text.substr(at)));
  }
  return values;
}
std::vector<double> losses(const std::string& log_path) { return column_of(log_path, 1); }

// max over tensors of max |a − b| / max |b|.
double weights_difference(const std::string& a_path, const std::string& b_path) {
  const std::vector<NamedArray> a = read_safetensors(a_path), b = read_safetensors(b_path);
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t k = 0; k < a.size(); k++) {
    REQUIRE(a[k].name == b[k].name);
    REQUIRE(a[k].values.size() == b[k].values.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < a[k].values.size(); i++) {
      diff = std::max(diff, std::fabs(static_cast<double>(a[k].values[i]) - b[k].values[i]));
      scale = std::max(scale, std::fabs(static_cast<double>(b[k].values[i])));
    }
    worst = std::max(worst, scale > 0 ? diff / scale : diff);
  }
  return worst;
}

void check_same_column(const std::string& a_log, const std::string& b_log, int column) {
  const std::vector<double> a = column_of(a_log, column), b = column_of(b_log, column);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); i++) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-4));
}
void check_same_losses(const std::string& a_log, const std::string& b_log) { check_same_column(a_log, b_log, 1); }

}  // namespace

TEST_CASE("mpi: 20 steps of pretraining on 2 ranks equal one process with the same global batch") {
  ScratchDir dir("mpi");
  const std::string corpus = write_corpus(dir);
  const Run single = run(one_process() + pretrain_args(corpus, dir.file("one"), 20), dir);
  REQUIRE(single.status == 0);
  const Run two = run(mpirun(2) + pretrain_args(corpus, dir.file("two"), 20), dir);
  INFO(two.err);
  REQUIRE(two.status == 0);
  check_same_losses(dir.file("one/log.csv"), dir.file("two/log.csv"));
  check_same_column(dir.file("one/log.csv"), dir.file("two/log.csv"), 3);  // the gradient norm: a mean, not a sum
  const double difference = weights_difference(dir.file("two/model.safetensors"), dir.file("one/model.safetensors"));
  MESSAGE("pretraining, 2 ranks vs 1 process: largest weight difference " << difference << " of the largest weight");
  CHECK(difference <= 1e-3);
  // Rank 0 alone writes: one log with one row per step.
  CHECK(losses(dir.file("two/log.csv")).size() == 20);

  // Resume under MPI: stop after 10 steps, run again: the same run as without the interruption.
  REQUIRE(run(mpirun(2) + pretrain_args(corpus, dir.file("resumed"), 20) + " --stop-after 10", dir).status == 0);
  CHECK(losses(dir.file("resumed/log.csv")).size() == 10);
  REQUIRE(run(mpirun(2) + pretrain_args(corpus, dir.file("resumed"), 20), dir).status == 0);
  check_same_losses(dir.file("resumed/log.csv"), dir.file("two/log.csv"));
  CHECK(weights_difference(dir.file("resumed/model.safetensors"), dir.file("two/model.safetensors")) <= 1e-6);
}

TEST_CASE("mpi: the masked-LM encoder too: shards with different numbers of masked tokens average to the batch's mean") {
  ScratchDir dir("mpi");
  const std::string corpus = write_corpus(dir);
  // 260 tokens: the 256 bytes and the encoder's 4 special tokens.
  auto encoder_args = [&](const std::string& out) {
    std::string args = pretrain_args(corpus, out, 10);
    return args.replace(args.find("--vocab-size 257"), 16, "--arch encoder --vocab-size 260");
  };
  REQUIRE(run(one_process() + encoder_args(dir.file("one")), dir).status == 0);
  const Run two = run(mpirun(2) + encoder_args(dir.file("two")), dir);
  INFO(two.err);
  REQUIRE(two.status == 0);
  check_same_losses(dir.file("one/log.csv"), dir.file("two/log.csv"));
  check_same_column(dir.file("one/log.csv"), dir.file("two/log.csv"), 3);
  CHECK(weights_difference(dir.file("two/model.safetensors"), dir.file("one/model.safetensors")) <= 1e-3);
}

TEST_CASE("mpi: 20 steps of LoRA adaptation on 2 ranks equal one process") {
  ScratchDir dir("mpi");
  const std::string corpus = write_corpus(dir);
  REQUIRE(run(one_process() + pretrain_args(corpus, dir.file("base"), 10), dir).status == 0);
  const std::string adapt = "adapt --model " + dir.file("base") +
                            " --task tests/fixtures/adapt/keyword/train.tsv --method lora --steps 20 --batch 8 "
                            "--eval-every 0 --out ";
  const Run single = run(one_process() + adapt + dir.file("one"), dir);
  REQUIRE(single.status == 0);
  const Run two = run(mpirun(2) + adapt + dir.file("two"), dir);
  INFO(two.err);
  REQUIRE(two.status == 0);
  check_same_losses(dir.file("one/log.csv"), dir.file("two/log.csv"));
  const double difference =
      weights_difference(dir.file("two/adapter_model.safetensors"), dir.file("one/adapter_model.safetensors"));
  MESSAGE("LoRA, 2 ranks vs 1 process: largest adapter weight difference " << difference);
  CHECK(difference <= 1e-3);
  // Rank 0 reports once (the other rank's stdout goes to /dev/null), and the
  // same test result as the single process.
  auto line_of = [](const std::string& out, const std::string& start) {
    const size_t at = out.find(start);
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  };
  CHECK(!line_of(two.out, "test  accuracy").empty());
  CHECK(line_of(two.out, "test  accuracy") == line_of(single.out, "test  accuracy"));
  size_t reports = 0;
  for (size_t at = two.out.find("test  accuracy"); at != std::string::npos; at = two.out.find("test  accuracy", at + 1))
    reports++;
  CHECK(reports == 1);
}

TEST_CASE("mpi: bad use ends every rank with one clear line and a non-zero status, never a hang") {
  ScratchDir dir("mpi");
  const std::string corpus = write_corpus(dir);
  // 3 ranks cannot share a batch of 8 rows; nothing is written.
  Run r = run(mpirun(3) + pretrain_args(corpus, dir.file("three"), 5), dir);
  CHECK(r.status != 0);
  CHECK(r.err.find("--batch 8 cannot be shared equally by 3 ranks") != std::string::npos);
  CHECK(!file_exists(dir.file("three")));
  // More ranks than rows.
  r = run(mpirun(3) + pretrain_args(corpus, dir.file("three"), 5, 2), dir);
  CHECK(r.status != 0);
  CHECK(r.err.find("--batch 2 cannot be shared equally by 3 ranks") != std::string::npos);
  // Rank 1 cannot read its data (a different command line for it): the message names rank 1.
  r = run(kMpiEnv + "mpirun --oversubscribe -np 1 " + tinyadapt_binary() + " " +
              pretrain_args(corpus, dir.file("mixed"), 5) + " : -np 1 " + tinyadapt_binary() + " " +
              pretrain_args(dir.file("missing.txt"), dir.file("mixed"), 5),
          dir);
  CHECK(r.status != 0);
  CHECK(r.err.find("rank 1 of 2") != std::string::npos);
  CHECK(r.err.find("missing.txt") != std::string::npos);
  // compare starts processes of its own: refused under mpirun, before it reads anything.
  r = run(mpirun(2) + "compare --model " + dir.file("none") + " --task era --out " + dir.file("cmp"), dir);
  CHECK(r.status != 0);
  CHECK(r.err.find("run it without mpirun") != std::string::npos);
  // A rank that dies without a word: mpirun ends the job, status non-zero, within the time limit.
  r = run(kMpiEnv + "mpirun --oversubscribe -np 2 sh -c '[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && exit 3; exec " +
              tinyadapt_binary() + " " + pretrain_args(corpus, dir.file("dies"), 200) + "'",
          dir);
  CHECK(r.status != 0);
  CHECK(r.status != 124);  // not the time limit
}

TEST_CASE("mpi: bench all-reduces the trainable gradients only, 4 bytes per value, every step") {
  ScratchDir dir("mpi");
  const std::string tiny = "bench --vocab 64 --ctx 16 --d 32 --layers 2 --heads 2 --batch 4 --steps 2 --warmup 1 --threads 1 --json";
  double full_bytes = 0;
  for (const std::string method : {"full", "lora"}) {
    CAPTURE(method);
    const Run r = run(mpirun(2) + tiny + " --method " + method, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const size_t at = r.out.find("JSON ");
    REQUIRE(at != std::string::npos);
    const json::Value result = json::parse(r.out.substr(at + 5, r.out.find('\n', at) - at - 5));
    CHECK(result.at("ranks").as_int() == 2);
    const double bytes = result.at("allreduce_bytes_per_step").as_number();
    CHECK(bytes == 4 * result.at("trainable").as_number());
    if (method == "full") full_bytes = bytes;
    else CHECK(bytes < 0.1 * full_bytes);  // the frozen base is never sent
  }
}
