// tools/cmd_merge.cpp — `tinyadapt merge`: fold an adapter into the base
// weights and write a plain model directory (config.json, model.safetensors,
// tokenizer files) that every command reads without --adapter.
//
// LoRA merges as PEFT's merge_and_unload: W (in,out) += (alpha/r)·(B A)ᵀ for
// every adapted Linear (adapt/lora.h), so the merged model computes what the
// base + adapter computed, at the base model's cost. Fine-tuning and BitFit
// store base parameters themselves: loading them already gives the merged
// weights. The other methods add computation the weights cannot express and
// are refused: prompt and prefix tuning add virtual tokens (inputs, not
// weights), Houlsby adapters a nonlinear bottleneck between two linear maps,
// probes only a task head. A task head saved with the adapter is not part of
// a language model directory and is left out (said on stderr).
//
// Safety: --out must differ from --model and --adapter (compared after
// resolving the paths); nothing is written there. Writes are atomic.
#include <cstdio>
#include <filesystem>
#include <string>

#include "adapt/adapter_dir.h"
#include "adapt/lora.h"
#include "tools/cli.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

// Why `method` cannot be folded into the base weights; "" when it can.
std::string unmergeable_reason(const std::string& method) {
  if (method == "lora" || method == "finetune" || method == "bitfit") return "";
  if (method == "prompt" || method == "prefix")
    return "its virtual tokens are extra inputs to the model, not a change of its weights; "
           "use --adapter with eval-lm or generate instead";
  if (method == "adapter")
    return "a Houlsby adapter is a nonlinear bottleneck (W_up gelu(W_down h)) between the layers, "
           "which no change of the existing weights can express; use --adapter instead";
  if (method == "probe" || method == "probe-mlp") return "a probe changes no weight of the language model, only adds a task head";
  return "tinyadapt does not know how to merge it";
}

// `path` absolute, symbolic links and ".." resolved as far as it exists.
std::filesystem::path resolved(const std::string& path) {
  std::error_code error;
  std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::absolute(path, error), error);
  if (error) throw InputError("merge: cannot resolve the path " + path + ": " + error.message());
  return p.lexically_normal();
}

// True when `a` and `b` name the same directory (either may not exist yet).
bool same_directory(const std::string& a, const std::string& b) {
  std::filesystem::path pa = resolved(a), pb = resolved(b);
  return pa == pb || pa / "" == pb / "";  // "runs/base/" is "runs/base"
}

int run_merge(Args& args) {
  const std::string model_dir = args.required("model"), adapter_dir = args.required("adapter");
  const std::string out_dir = args.required("out");
  args.finish();
  if (same_directory(out_dir, model_dir)) throw InputError("merge: --out must not be the --model directory (" + model_dir + ")");
  if (same_directory(out_dir, adapter_dir)) throw InputError("merge: --out must not be the --adapter directory (" + adapter_dir + ")");

  adapt::AdaptedModel a = adapt::load_adapted(model_dir, adapter_dir, false);
  const std::string method = a.method_config.method;
  if (const std::string reason = unmergeable_reason(method); !reason.empty())
    throw InputError(adapter_dir + ": method '" + method + "' cannot be merged: " + reason);
  if (auto* lora = dynamic_cast<adapt::Lora*>(a.method.get())) lora->merge();
  save_model_dir(*a.model, a.tokenizer, out_dir);

  if (a.method_config.method == "lora")
    std::printf("merged LoRA (r=%d, alpha=%g, scale %g) into the base weights -> %s\n", a.method_config.lora_rank,
                static_cast<double>(a.method_config.lora_alpha), static_cast<double>(a.method_config.lora_alpha / a.method_config.lora_rank),
                out_dir.c_str());
  else
    std::printf("wrote the %s weights as a plain model directory -> %s\n", method.c_str(), out_dir.c_str());
  if (json::Value config = json::parse_file(adapter_dir + "/adapter_config.json"); config.find("head"))
    std::fprintf(stderr, "note: the adapter's task head is not part of a model directory; keep %s to classify\n",
                 adapter_dir.c_str());
  return 0;
}

}  // namespace

static Command merge_cmd{"merge", "fold a LoRA (or fine-tuning / BitFit) adapter into the base: a plain model directory",
                         "usage: tinyadapt merge --model DIR --adapter DIR --out DIR\n"
                         "  --model DIR    the base model directory (read only)\n"
                         "  --adapter DIR  a lora, finetune or bitfit adapter directory (read only);\n"
                         "                 prompt, prefix, adapter and probe adapters cannot be merged\n"
                         "  --out DIR      where the merged model directory is written (not --model, not --adapter)\n"
                         "The result needs no --adapter: eval-lm --model OUT gives the adapted model's loss.",
                         run_merge};

}  // namespace ta::cli
