// adapt/method.h — what every adaptation method is, and how one is found by name.
//
// Adapting a pre-trained LM (docs/design.md, "Adapting a pre-trained LM" and
// "Extension points"): load the base model, let the method freeze what it
// freezes and add what it adds, put a task head on top, and optimise the
// trainable parameters only, with cross-entropy on (x, y).
// A method attaches itself to the base through nn/'s extension points only
// (nn/layers.h): the input prefix (prompt tuning), per-layer attention
// prefixes (prefix tuning), Linear::low_rank factors run by the fused
// ta::lora_linear (LoRA; Linear::output_delta while its dropout acts), the
// sublayer output hooks (adapters) — or by unfreezing base parameters
// (fine-tuning, BitFit).
// nn/ names no method; each method is one file in adapt/ that registers
// itself here (see MethodRegistration at the bottom).
//
// The parts around the method — the head, batching, the training loop,
// evaluation, adapter files, the command line — live in the other adapt/
// files and are the same for every method.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/json.h"
#include "nn/gpt.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

namespace ta::adapt {

// Every method's options. Set from the command line (`tinyadapt adapt
// --method M ...`) and written to / read from adapter_config.json. A method
// reads the fields that concern it.
struct MethodConfig {
  std::string method;                 // probe | probe-mlp | finetune | prompt | prefix | adapter | lora | bitfit
  // prompt and prefix tuning
  int num_virtual_tokens = 20;        // k: prompt length / prefix length
  std::string prompt_init = "vocab";  // prompt tuning: vocab | label | random
  bool prefix_projection = false;     // prefix tuning: P = MLP(P') while training (Li & Liang), folded when saved
  int prefix_hidden = 256;            // hidden size of that MLP
  // adapters (Houlsby)
  int bottleneck = 16;                // r: the bottleneck width
  float adapter_init_std = 1e-2f;     // near-identity init
  bool train_layernorm = false;       // adapters: also train the layer norms
  // LoRA
  int lora_rank = 8;
  float lora_alpha = 16.0f;           // scale = alpha / rank
  float lora_dropout = 0.0f;
  std::vector<std::string> target_modules = {"c_attn"};  // Linear names, matched as module.h's name_matches
  // probing
  int probe_hidden = 256;             // probe-mlp: hidden units of the one-hidden-layer head
};

// What attach() may need besides the model, for prompt tuning's inits
// (adapt/prompt.h): the label words' token ids (`label`) and the tokens to
// sample from (`vocab`). Empty when a method is attached only to load saved
// tensors over what it drew.
struct AttachContext {
  std::vector<std::vector<int>> label_word_ids;  // per label, the tokens of its word (e.g. " spam")
  std::vector<int> vocab_sample_ids;             // prompt_init_vocabulary(); empty = every row of wte
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;

  // Called once, on a freshly loaded base model: freezes what the method
  // freezes (usually everything: model.freeze_all()), creates its own
  // parameters from `rng`, and hooks them into `model` through the extension
  // points. The method keeps a pointer to `model`; the model outlives it.
  virtual void attach(GPT& model, const AttachContext& context, Rng& rng) = 0;

  // Fills the per-call parts of a forward pass over `batch` rows: the input
  // prefix, the attention prefixes. Methods that act through hooks or weights
  // leave `options` alone.
  virtual void prepare(ForwardOptions& options, int batch) const {}

  // Training (dropout, the prefix reparameterisation) or evaluation.
  virtual void set_training(bool training) {}

  // What the optimiser updates: the method's new parameters and any base
  // parameters it unfroze, with their names (as saved) and weight decay.
  virtual std::vector<OptimParam> trainable_parameters() const = 0;

  // Values the method adds to the model (0 for finetune and BitFit, which
  // only unfreeze). "all params" in the report = base + added + head.
  virtual int64_t added_parameters() const = 0;

  // The adapter file: tensors under PEFT's names where PEFT has the method
  // (adapt/README.md documents the rest), and adapter_config.json's
  // method-specific fields (PEFT's: peft_type, r, lora_alpha, ...).
  virtual std::vector<NamedArray> save_tensors() const = 0;
  // Restores what save_tensors wrote (after attach). InputError naming
  // `source` on a missing tensor or a wrong shape.
  virtual void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) = 0;
  virtual json::Value peft_config() const = 0;

  // True when nothing below the head is trainable and the features do not
  // depend on the method (probing): the runner computes features once and
  // trains the head on the cache.
  virtual bool features_frozen() const { return false; }
};

using MethodFactory = std::function<std::unique_ptr<Method>(const MethodConfig&)>;

// A method file registers itself with a static object:
//   static MethodRegistration lora_registration{"lora", [](const MethodConfig& c) {
//     return std::make_unique<Lora>(c); }};
struct MethodRegistration {
  MethodRegistration(const char* name, MethodFactory factory);
};

// The method named config.method; InputError listing the known names otherwise.
std::unique_ptr<Method> make_method(const MethodConfig& config);
std::vector<std::string> method_names();

// Reads the fields of MethodConfig from adapter_config.json (written by
// method_config_to_json, with PEFT's names where they exist).
json::Value method_config_to_json(const MethodConfig& config);
MethodConfig method_config_from_json(const json::Value& value, const std::string& source);

// Conversions between parameters and the safetensors layer, for save/load_tensors.
NamedArray to_named_array(const std::string& name, const Tensor& t);
// Copies `array` into `t` after checking the shape; InputError naming source and name.
void copy_into(Tensor& t, const NamedArray& array, const std::string& source);
// The array called `name`; InputError naming source when absent.
const NamedArray& find_array(const std::vector<NamedArray>& arrays, const std::string& name, const std::string& source);

}  // namespace ta::adapt
