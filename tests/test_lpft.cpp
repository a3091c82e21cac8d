// tests/test_lpft.cpp — LP-FT (Kumar et al. 2022): a head started from another
// adapter directory's (adapt/head_init.h, `tinyadapt adapt --init-head`) and
// the `lp-ft` row of `tinyadapt compare`.
//
// What it checks: the new run's head is the saved head, tensor for tensor, so
// before any training the new adapter predicts exactly what the probe
// predicts (for fine-tuning, LoRA and BitFit, which leave the base unchanged
// at initialisation); a head that does not fit (missing directory, other
// labels, other width, other head type or pooling, a verbalizer) is an
// InputError naming the directory and leaves the run's head as it was; the
// base model is recognised by its fingerprint (or path); through the binary,
// the same errors exit with status 2 and one stderr line, and compare's
// lp-ft row runs finetune from the probe row's adapter of the same seed.
//
// Fixture: 1-layer GPTs (C = 32, and C = 16 for the width mismatch) with a
// nearly byte-level tokenizer, and the keyword task tests/fixtures/adapt/keyword/
// (its texts are at most 68 bytes, so n_positions = 80 keeps every label word).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/head_init.h"
#include "adapt/runner.h"
#include "data/bpe.h"
#include "data/tasks.h"
#include "nn/checkpoint.h"
#include "tests/helpers.h"

using namespace ta;
using namespace ta::adapt;
using ta::testing::ScratchDir;
using ta::testing::tinyadapt_binary;

namespace {

const char* kKeywordTask = "tests/fixtures/adapt/keyword/train.tsv";

// A random 1-layer GPT of width n_embd, saved at dir with a tokenizer that is
// bytes plus a few merges, so that the label words " bad" and " good" start
// with different tokens (a verbalizer can tell them apart).
void write_base(const std::string& dir, int n_embd, uint64_t seed) {
  std::string corpus;
  for (int i = 0; i < 10; i++) corpus += " bad good\n";
  const data::Tokenizer tokenizer = data::train_bpe(corpus, 270, {"<|endoftext|>"});
  ModelConfig c;
  c.vocab_size = tokenizer.vocab_size();
  c.n_positions = 80;
  c.n_embd = n_embd;
  c.n_layer = 1;
  c.n_head = 2;
  make_dirs(dir);
  tokenizer.save(dir);
  save_model(GPT(c, seed), dir);
}

struct Fixture {
  ScratchDir scratch{"lpft"};
  std::string base = scratch.file("base");
  data::Task task = data::load_task(kKeywordTask, 7);

  Fixture() { write_base(base, 32, 3); }

  AdaptedModel adapted(const std::string& method, const std::string& model_dir, HeadRequest request = {},
                       std::vector<std::string> labels = {}, uint64_t seed = 11) const {
    MethodConfig config;
    config.method = method;
    config.lora_rank = 2;
    config.probe_hidden = 8;
    request.hidden = config.probe_hidden;
    return create_adapted(model_dir, config,
                          resolve_head(request, method, read_config(model_dir + "/config.json"),
                                       labels.empty() ? task.label_names : labels),
                          seed);
  }

  std::vector<EncodedExample> encoded(const AdaptedModel& a, const std::string& split) const {
    return encode_examples(task.split(split), a.tokenizer, a.max_text_tokens(), split);
  }

  // A probe trained for a few steps (so its head is far from any fresh one), saved at dir.
  std::string trained_probe(const std::string& method, const std::string& model_dir, const std::string& name,
                            std::vector<std::string> labels = {}) const {
    AdaptedModel probe = adapted(method, model_dir, {}, labels, 5);
    RunOptions run;
    run.steps = 30;
    run.lr = 1e-2f;
    run.batch = 8;
    run.warmup = 0;
    run.show_progress = false;
    train(probe, encoded(probe, "train"), {}, run);
    save_adapter(probe, scratch.file(name));
    return scratch.file(name);
  }
};

std::vector<std::vector<float>> head_values(const Head& head) {
  std::vector<std::vector<float>> values;
  for (const NamedArray& t : head.save_tensors()) values.push_back(t.values);
  return values;
}

// init_head_from must throw an InputError that names the directory and says `what`,
// and leave the run's head as it was.
void check_refused(AdaptedModel& a, const std::string& dir, const std::string& what) {
  CAPTURE(what);
  const std::vector<std::vector<float>> before = head_values(*a.head);
  try {
    init_head_from(a, dir);
    FAIL("no InputError");
  } catch (const InputError& e) {
    const std::string message = e.what();
    CHECK(message.find("--init-head " + dir + ": ") == 0);
    CHECK(message.find(what) != std::string::npos);
  }
  CHECK(head_values(*a.head) == before);
  CHECK(a.head->config().initialized_from.empty());
}

// Runs the binary with `arguments` (a shell command line) from the repository
// root, stdout to OUT/stdout.txt, stderr to OUT/stderr.txt; its exit status.
int run_cli(const std::string& arguments, const ScratchDir& scratch) {
  const std::string command = "OMP_NUM_THREADS=1 " + tinyadapt_binary() + " " + arguments + " >" +
                              scratch.file("stdout.txt") + " 2>" + scratch.file("stderr.txt");
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("lpft: --init-head copies the probe's head exactly; before training the run predicts what the probe predicts") {
  Fixture f;
  const std::string probe_dir = f.trained_probe("probe", f.base, "probe");
  const AdaptedModel probe = load_adapted("", probe_dir, true);
  const std::vector<std::vector<float>> probe_logits = predict_logits(probe, f.encoded(probe, "test"));
  for (const std::string method : {"finetune", "lora", "bitfit"}) {
    CAPTURE(method);
    AdaptedModel a = f.adapted(method, f.base);
    const std::vector<EncodedExample> test = f.encoded(a, "test");
    REQUIRE(predict_logits(a, test) != probe_logits);  // a fresh head predicts something else
    const HeadInit init = init_head_from(a, probe_dir);
    CHECK(head_values(*a.head) == head_values(*probe.head));
    CHECK(predict_logits(a, test) == probe_logits);
    CHECK(init.dir == probe_dir);
    CHECK(init.base_model == f.base);
    CHECK(init.base_check == "fingerprint");
    CHECK(init.same_base);
    // The head trains from there (it is still the run's trainable head), and its origin is saved with it.
    const size_t head_tensors = head_values(*a.head).size();
    CHECK(a.trainable_parameters().size() >= head_tensors);
    const std::string dir = f.scratch.file(method + "-from-probe");
    save_adapter(a, dir);
    const json::Value config = json::parse(read_file(dir + "/adapter_config.json"));
    CHECK(config.at("head").at("initialized_from").as_string() == probe_dir);
    CHECK(load_adapted("", dir, true).head->config().initialized_from == probe_dir);
  }
}

TEST_CASE("lpft: an mlp head starts from a probe-mlp's when this run asks for the same mlp") {
  Fixture f;
  const std::string probe_dir = f.trained_probe("probe-mlp", f.base, "probe-mlp");
  const AdaptedModel probe = load_adapted("", probe_dir, true);
  HeadRequest mlp;
  mlp.type = "mlp";
  AdaptedModel a = f.adapted("finetune", f.base, mlp);
  init_head_from(a, probe_dir);
  CHECK(head_values(*a.head) == head_values(*probe.head));
  CHECK(predict_logits(a, f.encoded(a, "test")) == predict_logits(probe, f.encoded(probe, "test")));
}

TEST_CASE("lpft: a head that does not fit is an InputError naming the directory; the run's head is kept") {
  Fixture f;
  const std::string probe_dir = f.trained_probe("probe", f.base, "probe");
  AdaptedModel a = f.adapted("finetune", f.base);

  check_refused(a, f.scratch.file("nowhere"), "no such directory");
  make_dirs(f.scratch.file("empty"));
  check_refused(a, f.scratch.file("empty"), "no adapter_config.json");

  const std::string other_labels = f.trained_probe("probe", f.base, "other-labels", {"neg", "pos"});
  check_refused(a, other_labels, "its head's labels are [neg, pos], this task's are [bad, good]");

  const std::string narrow_base = f.scratch.file("narrow-base");
  write_base(narrow_base, 16, 3);
  check_refused(a, f.trained_probe("probe", narrow_base, "narrow"), "features of width 16, this base's are 32");

  const std::string mlp_dir = f.trained_probe("probe-mlp", f.base, "probe-mlp");
  check_refused(a, mlp_dir, "its head is mlp (hidden 8, relu), this run's is linear");

  HeadRequest mean_pooling;
  mean_pooling.pooling = "mean";
  AdaptedModel mean_run = f.adapted("finetune", f.base, mean_pooling);
  check_refused(mean_run, probe_dir, "its head's pooling is last, this run's is mean");

  AdaptedModel prompt = f.adapted("prompt", f.base);  // a verbalizer: nothing to copy into
  REQUIRE(prompt.head->config().type == "verbalizer");
  check_refused(prompt, probe_dir, "this run's head is a verbalizer");
  HeadRequest verbalizer;
  verbalizer.type = "verbalizer";
  AdaptedModel verbalized = f.adapted("bitfit", f.base, verbalizer);
  save_adapter(verbalized, f.scratch.file("verbalizer"));
  check_refused(a, f.scratch.file("verbalizer"), "its head is a verbalizer");
}

TEST_CASE("lpft: the base is recognised by its fingerprint; without one, by its path") {
  Fixture f;
  const std::string probe_dir = f.trained_probe("probe", f.base, "probe");
  // Another base of the same shape: the head fits, but it was trained on other features.
  const std::string other_base = f.scratch.file("other-base");
  write_base(other_base, 32, 99);
  CHECK(base_model_fingerprint(other_base) != base_model_fingerprint(f.base));
  CHECK(base_model_fingerprint(f.base).rfind("fnv1a64:", 0) == 0);
  AdaptedModel on_other = f.adapted("finetune", other_base);
  const HeadInit other = init_head_from(on_other, probe_dir);
  CHECK(other.base_check == "fingerprint");
  CHECK_FALSE(other.same_base);

  // An adapter written before fingerprints: the same directory is the same base, another one cannot be told.
  json::Value config = json::parse(read_file(probe_dir + "/adapter_config.json"));
  json::Value without = json::Value::object();
  for (const auto& [key, value] : config.members())
    if (key != "base_model_fingerprint") without.set(key, value);
  write_file_atomic(probe_dir + "/adapter_config.json", without.dump(2));
  AdaptedModel on_same = f.adapted("finetune", f.base);
  const HeadInit same = init_head_from(on_same, probe_dir);
  CHECK(same.base_check == "path");
  CHECK(same.same_base);
  AdaptedModel on_other_again = f.adapted("finetune", other_base);
  CHECK(init_head_from(on_other_again, probe_dir).base_check == "");
}

TEST_CASE("lpft: tinyadapt adapt --init-head through the binary: metrics record it; a misfit exits 2 naming the dir") {
  if (!file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  Fixture f;
  const std::string common = std::string(" --task ") + kKeywordTask + " --steps 3 --eval-every 0";
  const std::string probe_dir = f.scratch.file("probe"), lpft_dir = f.scratch.file("lpft");
  REQUIRE(run_cli("adapt --model " + f.base + common + " --method probe --out " + probe_dir, f.scratch) == 0);
  REQUIRE(run_cli("adapt --model " + f.base + common + " --method finetune --init-head " + probe_dir + " --out " + lpft_dir,
                  f.scratch) == 0);
  CHECK(read_file(f.scratch.file("stdout.txt")).find("head: initialised from " + probe_dir) != std::string::npos);
  CHECK(read_file(f.scratch.file("stderr.txt")).find("warning") == std::string::npos);  // the same base
  const json::Value metrics = json::parse(read_file(lpft_dir + "/metrics.json"));
  CHECK(metrics.at("init_head").at("dir").as_string() == probe_dir);
  CHECK(metrics.at("init_head").at("base_check").as_string() == "fingerprint");
  CHECK(metrics.at("init_head").at("same_base").as_bool());
  CHECK(json::parse(read_file(lpft_dir + "/adapter_config.json")).at("head").at("initialized_from").as_string() == probe_dir);

  // Other labels (a task whose labels are neg / pos), another width, no directory:
  // status 2, one line on stderr naming the directory, and no --out written.
  std::string other_task;
  for (int i = 0; i < 20; i++) other_task += std::string(i % 2 ? "pos" : "neg") + "\tsample text number " + std::to_string(i) + "\n";
  make_dirs(f.scratch.file("other-task"));
  write_file_atomic(f.scratch.file("other-task/train.tsv"), other_task);
  const std::string narrow_base = f.scratch.file("narrow-base"), narrow_probe = f.scratch.file("narrow-probe");
  write_base(narrow_base, 16, 3);
  REQUIRE(run_cli("adapt --model " + narrow_base + common + " --method probe --out " + narrow_probe, f.scratch) == 0);
  const std::vector<std::pair<std::string, std::string>> misfits = {
      {"--task " + f.scratch.file("other-task/train.tsv") + " --init-head " + probe_dir, "labels"},
      {"--task " + std::string(kKeywordTask) + " --init-head " + narrow_probe, "width 16"},
      {"--task " + std::string(kKeywordTask) + " --init-head " + f.scratch.file("nowhere"), "no such directory"}};
  for (const auto& [arguments, what] : misfits) {
    CAPTURE(arguments);
    const std::string out = f.scratch.file("refused");
    CHECK(run_cli("adapt --model " + f.base + " --method finetune --steps 3 " + arguments + " --out " + out, f.scratch) == 2);
    const std::string stderr_text = read_file(f.scratch.file("stderr.txt"));
    CHECK(stderr_text.find("--init-head " + arguments.substr(arguments.rfind(' ') + 1) + ": ") != std::string::npos);
    CHECK(stderr_text.find(what) != std::string::npos);
    CHECK(std::count(stderr_text.begin(), stderr_text.end(), '\n') == 1);
    CHECK_FALSE(file_exists(out));
  }
}

TEST_CASE("lpft: compare's lp-ft row fine-tunes from the probe row's adapter of the same seed; --seeds; plots") {
  if (!file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  Fixture f;
  const std::string out = f.scratch.file("compare/keyword");
  // lp-ft before probe in --methods: the probe row is still planned (and run) first.
  REQUIRE(run_cli("compare --model " + f.base + " --task " + kKeywordTask +
                      " --methods finetune,lp-ft,probe --steps 3 --seeds 2 --seed 5 --out " + out,
                  f.scratch) == 0);
  // runs.tsv: run seed method ... dir init_head, one line per run and seed.
  const std::string tsv = read_file(out + "/runs.tsv");
  CHECK(tsv.rfind("run\tseed\tmethod\ttrain_size\ttrainable_params\ttrainable_percent\tid_accuracy\tood_accuracy\t"
                  "train_seconds\tpeak_rss_mb\tadapter_bytes\tdir\tinit_head\n", 0) == 0);
  for (int seed : {5, 6}) {
    CAPTURE(seed);
    const std::string s = std::to_string(seed);
    const std::string probe_dir = out + "/run1-probe-s" + s, lpft_dir = out + "/run2-lp-ft-s" + s;
    CHECK(tsv.find("finetune\t" + s + "\tfinetune\t96\t") != std::string::npos);
    CHECK(tsv.find("\t" + probe_dir + "\t-\n") != std::string::npos);
    CHECK(tsv.find("lp-ft\t" + s + "\tfinetune\t") != std::string::npos);
    CHECK(tsv.find("\t" + lpft_dir + "\t" + probe_dir + "\n") != std::string::npos);
    const json::Value metrics = json::parse(read_file(lpft_dir + "/metrics.json"));
    CHECK(metrics.at("method").as_string() == "finetune");
    CHECK(metrics.at("steps").as_int() == 3);
    CHECK(metrics.at("init_head").at("dir").as_string() == probe_dir);
  }
  // The table: finetune, probe, lp-ft in that order, cells mean ± sd over the 2 seeds.
  const std::string summary = read_file(out + "/summary.md");
  const size_t finetune_row = summary.find("\n| finetune |"), probe_row = summary.find("\n| probe |"),
               lpft_row = summary.find("\n| lp-ft |");
  REQUIRE(lpft_row != std::string::npos);
  CHECK(finetune_row < probe_row);
  CHECK(probe_row < lpft_row);
  CHECK(summary.substr(lpft_row, summary.find('\n', lpft_row + 1) - lpft_row).find("±") != std::string::npos);
  CHECK(summary.find("lp-ft = LP-FT") != std::string::npos);

  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    MESSAGE("plots skipped: no gnuplot");
    return;
  }
  CHECK(std::system(("tools/plots.sh " + f.scratch.file("compare") + " keyword >/dev/null 2>&1").c_str()) == 0);
  for (const char* png : {"accuracy_vs_trainable.png", "id_vs_ood.png", "loss_curves.png"}) {
    CAPTURE(png);
    CHECK(file_exists(out + "/" + png));
  }
}
