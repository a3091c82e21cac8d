// tools/cmd_generate.cpp — `tinyadapt generate`: continue a prompt with a
// causal model, streaming tokens as they are chosen (KV cache on).
// With --adapter DIR the adaptation method applies: its input prefix and
// attention prefixes go to nn/generate (a prefix becomes the first rows of
// the KV cache), its hooks and weights act on every step. A LoRA adapter is
// merged into the weights once, W' = W + s · (B A)ᵀ, before the first token:
// the fused training op (ta::lora_linear) would fold it into a copy of W at
// every token, and generation needs no gradients for A and B.
#include <cstdio>

#include "adapt/adapter_dir.h"
#include "adapt/lora.h"

#include "nn/generate.h"
#include "tools/cli.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

// Streams the continuation of `prompt` to stdout.
void generate_from(const GPT& model, const data::Tokenizer& tokenizer, const std::string& prompt, GenerateOptions g,
                   const ForwardOptions& options, const std::string& model_dir) {
  if (!model.config().is_causal) throw InputError(model_dir + ": an encoder model cannot generate text");
  std::vector<int> ids = tokenizer.encode(prompt, {false, "--prompt"});
  if (ids.empty()) throw InputError("--prompt is empty");
  const int eos = tokenizer.has_special("<|endoftext|>") ? tokenizer.special_id("<|endoftext|>") : -1;
  // A token may end inside a UTF-8 character; its bytes are written as they
  // come and the terminal joins them.
  std::printf("%s", prompt.c_str());
  g.on_token = [&](int token) {
    if (token == eos) return false;
    const std::string bytes = tokenizer.decode({token});
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  generate(model, ids, g, options);
}

int run_generate(Args& args) {
  const std::string model_dir = args.required("model"), adapter_dir = args.str("adapter", "");
  const std::string prompt = args.required("prompt");
  GenerateOptions g;
  g.max_new_tokens = static_cast<int>(args.integer("max-new", 64));
  g.temperature = static_cast<float>(args.real("temperature", 1.0));
  g.top_k = static_cast<int>(args.integer("top-k", 0));
  g.seed = static_cast<uint64_t>(args.integer("seed", 1337));
  g.use_cache = !args.flag("no-cache");
  const bool bf16 = args.flag("bf16");
  cli::use_reference_path_if_asked(args);
  args.finish();
  if (g.max_new_tokens < 0) throw InputError("--max-new must be >= 0");
  if (g.temperature < 0) throw InputError("--temperature must be >= 0");
  if (g.top_k < 0) throw InputError("--top-k must be >= 0");
  NoGradGuard no_grad;  // inference only: the adapter's prefixes are not recorded either
  if (adapter_dir.empty()) {
    ModelDir m = load_model_dir(model_dir);
    if (bf16) {
      m.model->freeze_all();
      cli::store_frozen_in_bf16(*m.model);
    }
    generate_from(*m.model, m.tokenizer, prompt, g, {}, model_dir);
  } else {
    adapt::AdaptedModel a = adapt::load_adapted(model_dir, adapter_dir, false);
    if (auto* lora = dynamic_cast<adapt::Lora*>(a.method.get())) lora->merge();
    if (bf16) cli::store_frozen_in_bf16(*a.model);  // after the merge: the merged weights are cast
    generate_from(*a.model, a.tokenizer, prompt, g, a.forward_options(1, nullptr), model_dir);
  }
  std::printf("\n");
  return 0;
}

}  // namespace

static Command generate_cmd{"generate", "continue a prompt with a GPT model (KV cache)",
                            "usage: tinyadapt generate --model DIR [--adapter DIR] --prompt TEXT [options]\n"
                            "  --adapter DIR      apply an adapter (prompt, prefix, LoRA, ...) while generating\n"
                            "  --max-new N        tokens to generate [64]\n"
                            "  --temperature T    0 = greedy [1.0]\n"
                            "  --top-k K          sample among the K most likely tokens; 0 = all [0]\n"
                            "  --seed S           sampling seed [1337]\n"
                            "  --bf16             the weights in bfloat16: half the bytes each token reads\n"
                            "  --reference        every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
                            "  --no-cache         recompute every position each step (for checking the cache)",
                            run_generate};

}  // namespace ta::cli
