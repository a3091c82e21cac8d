// tests/test_checkpoint.cpp — the pieces that make a checkpoint survive a
// kill, tested in-process (issue 8): Trainer::save_checkpoint cut short at
// each point a kill can fall, the fingerprint that ties optimizer state to
// its weights, write_file_atomic's removal of dead processes' temporaries,
// and CsvLog's cut back to the checkpoint's step.
//
// A "kill" here is an exception thrown from the save_weights callback: the
// files on disk are then exactly those a SIGKILL at that moment leaves, since
// every single write is atomic. tests/test_resume.cpp kills the real binary.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/io.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "nn/trainer.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::ScratchDir;

namespace {

struct Killed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<OptimParam> trainable_params(const GPT& model) {
  std::vector<OptimParam> params;
  for (auto& [name, tensor] : model.named_parameters()) params.push_back({name, tensor, default_weight_decay(name, tensor)});
  return params;
}

// A GPT of a few hundred weights that trains on one fixed sequence.
struct TinyRun {
  GPT model;
  Trainer trainer;
  TinyRun() : model(config(), 5), trainer(trainable_params(model), options()) {}

  static ModelConfig config() {
    ModelConfig c;
    c.vocab_size = 16, c.n_positions = 8, c.n_embd = 8, c.n_layer = 1, c.n_head = 2;
    return c;
  }
  static TrainerOptions options() {
    TrainerOptions o;
    o.steps = 10;
    o.lr = 1e-2f;
    return o;
  }
  void step() {
    const std::vector<int> ids = {1, 5, 9, 3, 7, 2, 11, 4}, targets = {5, 9, 3, 7, 2, 11, 4, 1};
    trainer.step(trainer.optimizer().steps_taken(), [&](int) { return MicroBatch{model.loss(ids, targets, 1, 8), 8}; });
  }
};

// What pretrain does on resume: the weights from DIR, then the optimizer
// state that belongs to them. Returns the resumed trainer's step count and
// its first moments through `moments`.
long long resume(const std::string& dir, std::vector<std::vector<float>>* moments = nullptr) {
  std::unique_ptr<GPT> model = load_model(dir);
  Trainer trainer(trainable_params(*model), TinyRun::options());
  const long long steps = trainer.load_state(dir);
  if (moments) *moments = trainer.optimizer().first_moments();
  return steps;
}

// The message of the InputError `f` throws ("" if it throws none).
template <class F>
std::string input_error(F f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint: a save cut short before or after the weights leaves a pair that resumes; a mixed pair is refused") {
  ScratchDir dir("ckpt");
  const std::string state = dir.file("optimizer.safetensors"), pending = dir.file("optimizer.pending.safetensors");
  TinyRun run;
  auto save_weights = [&] { save_model(run.model, dir.path); };

  run.step();
  run.trainer.save_checkpoint(dir.path, save_weights);  // a whole checkpoint of step 1
  const std::vector<std::vector<float>> moments_1 = run.trainer.optimizer().first_moments();
  const std::string state_1 = read_file(state);
  CHECK_FALSE(file_exists(pending));
  SafetensorsMetadata metadata;
  CHECK(read_safetensors(state, &metadata).size() == 2 * trainable_params(run.model).size());
  CHECK(metadata == SafetensorsMetadata{{"format", "pt"}, {"step", "1"},
                                        {"weights_fingerprint", weights_fingerprint(trainable_params(run.model))}});

  // Killed after the new optimizer state, before the new weights: step 1 resumes.
  run.step();
  CHECK_THROWS_AS(run.trainer.save_checkpoint(dir.path, [] { throw Killed("before the weights"); }), Killed);
  CHECK(file_exists(pending));
  std::vector<std::vector<float>> moments;
  CHECK(resume(dir.path, &moments) == 1);
  CHECK(moments == moments_1);

  // Killed after the new weights, before the pending file is renamed: step 2
  // resumes from the pending file.
  auto killed_after_the_weights = [&] {
    save_weights();
    throw Killed("after the weights");
  };
  CHECK_THROWS_AS(run.trainer.save_checkpoint(dir.path, killed_after_the_weights), Killed);
  CHECK(resume(dir.path, &moments) == 2);
  CHECK(moments == run.trainer.optimizer().first_moments());
  CHECK(moments != moments_1);
  // Resuming finished that save: the pending file is now optimizer.safetensors,
  // so the next save, killed before its weights, still leaves step 2 behind.
  // (Found by the SIGKILL test in test_resume.cpp: without the rename, that
  // save overwrote the pending file, the only state matching the weights.)
  CHECK_FALSE(file_exists(pending));
  run.step();
  CHECK_THROWS_AS(run.trainer.save_checkpoint(dir.path, [] { throw Killed("before the weights"); }), Killed);
  CHECK(resume(dir.path, &moments) == 2);

  // The weights of step 2 with the state of step 1 (and no pending file):
  // one line naming the file and both fingerprints.
  std::filesystem::remove(pending);
  write_file_atomic(state, state_1);
  const std::string refusal = input_error([&] { resume(dir.path); });
  CAPTURE(refusal);
  CHECK(refusal.find(state + ": the optimizer state belongs to other weights than those loaded") == 0);
  CHECK(refusal.find("optimizer.safetensors is step 1 of weights fnv1a64:") != std::string::npos);
  CHECK(refusal.find('\n') == std::string::npos);

  // A whole save repairs it; no optimizer file at all is an error too.
  run.trainer.save_checkpoint(dir.path, save_weights);
  CHECK(resume(dir.path) == 3);
  std::filesystem::remove(state);
  CHECK_FALSE(has_optimizer_state(dir.path));
  CHECK(input_error([&] { resume(dir.path); }).find("no optimizer state to resume from") != std::string::npos);
}

TEST_CASE("checkpoint: weights_fingerprint changes with any value, name or shape") {
  auto param = [](const std::string& name, Shape shape, std::vector<float> values) {
    Tensor t = Tensor::from(shape, values);
    t.set_requires_grad(true);
    return OptimParam{name, t, false};
  };
  const std::string base = weights_fingerprint({param("a", Shape{2, 2}, {1, 2, 3, 4})});
  CHECK(base.rfind("fnv1a64:", 0) == 0);
  CHECK(base.size() == 8 + 16);
  CHECK(weights_fingerprint({param("a", Shape{2, 2}, {1, 2, 3, 4})}) == base);
  CHECK(weights_fingerprint({param("a", Shape{2, 2}, {1, 2, 3, std::nextafter(4.0f, 5.0f)})}) != base);
  CHECK(weights_fingerprint({param("b", Shape{2, 2}, {1, 2, 3, 4})}) != base);
  CHECK(weights_fingerprint({param("a", Shape{4, 1}, {1, 2, 3, 4})}) != base);
  CHECK(weights_fingerprint({param("a", Shape{2, 2}, {1, 2, 3, -0.0f})}) !=
        weights_fingerprint({param("a", Shape{2, 2}, {1, 2, 3, 0.0f})}));
}

TEST_CASE("fnv1a64: the published values of \"\" and \"a\"; chained calls hash the concatenation") {
  CHECK(fnv1a64("", 0) == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("bc", 2, fnv1a64("a", 1)) == fnv1a64("abc", 3));
}

TEST_CASE("write_file_atomic: removes its target's temporaries left by dead processes, never a live process's") {
  // A process that has ended (reaped, so its PID is free) and one that runs.
  std::fflush(nullptr);
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  const pid_t live = ::fork();
  REQUIRE(live >= 0);
  if (live == 0) {
    for (;;) ::pause();
  }

  ScratchDir dir("stale");
  const std::string target = dir.file("model.safetensors");
  const std::string dead_tmp = target + ".tmp." + std::to_string(dead);
  const std::vector<std::string> kept = {
      target + ".tmp." + std::to_string(live),          // a writer that still runs
      target + ".tmp.1",                                // init runs (EPERM or not, it is alive)
      dir.file("config.json.tmp." + std::to_string(dead)),  // another file's temporary
      target + ".tmp.0" + std::to_string(dead),         // not a name write_file_atomic makes
      target + ".tmp." + std::to_string(dead) + "x",
      target + ".tmp.99999999999",                      // past any PID
  };
  write_file_atomic(dead_tmp, "half a file");
  for (const std::string& path : kept) write_file_atomic(path, "someone's bytes");

  write_file_atomic(target, "the new file");
  CHECK_FALSE(file_exists(dead_tmp));
  for (const std::string& path : kept) {
    CAPTURE(path);
    CHECK(read_file(path) == "someone's bytes");
  }
  CHECK(read_file(target) == "the new file");
  CHECK_FALSE(file_exists(target + ".tmp." + std::to_string(::getpid())));

  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
}

TEST_CASE("CsvLog: resuming at step N keeps the header and rows 1..N, drops later and cut-short rows") {
  ScratchDir dir("csv");
  const std::string path = dir.file("log.csv");
  const std::string header = "step,loss\n", rows = "1,0.9\n2,0.8\n3,0.7\n4,0.6\n", cut = "5,0.";
  write_file_atomic(path, header + rows + cut);
  {
    CsvLog log(path, {"step", "loss"}, 2);
    log.row({"3", "0.75"});
  }
  CHECK(read_file(path) == header + "1,0.9\n2,0.8\n3,0.75\n");
  {
    CsvLog log(path, {"step", "loss"}, 0);  // a fresh run: the header only
  }
  CHECK(read_file(path) == header);
  write_file_atomic(path, header + rows);
  {
    CsvLog log(path, {"step", "loss"});  // no step given: append to what is there
    log.row({"5", "0.5"});
  }
  CHECK(read_file(path) == header + rows + "5,0.5\n");
}
