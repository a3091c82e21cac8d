// adapt/adapter_dir.h — an adapted model (base + method + task head) and the
// adapter directory it is saved to.
//
// Building one (docs/design.md, "Files on disk"): load the base model
// directory, count its parameters, make the method from its MethodConfig and
// attach it (the method freezes what it freezes and hooks its own parameters
// in), then put a task head on top (adapt/head.h).
//
// The adapter directory (adapt/README.md has the full field list):
//   adapter_config.json        method.peft_config() (PEFT's fields, e.g.
//                              "peft_type": "LORA", "task_type"), then
//                              "base_model_name_or_path" = the --model dir,
//                              "base_model_fingerprint" (which weights: see
//                              base_model_fingerprint below),
//                              the MethodConfig under PEFT's names where PEFT
//                              has them, "tinyadapt_version", and "head"
//                              (type, pooling, label names, label words).
//   adapter_model.safetensors  method.save_tensors() + head "head.*" tensors.
// Both writes are atomic; the base model directory is never written (saving
// into it is refused). Loading validates everything: a missing file, an
// unknown method, a missing or misshapen tensor, a tensor nobody claims, or a
// missing head when one is needed is an InputError naming the file. A head
// is never re-initialised on load.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adapt/head.h"
#include "adapt/method.h"
#include "adapt/task_data.h"
#include "data/bpe.h"

namespace ta::adapt {

inline constexpr const char* kTinyadaptVersion = "0.1.0";

struct AdaptedModel {
  std::string base_dir;
  std::unique_ptr<GPT> model;       // declared before the method: it outlives it
  data::Tokenizer tokenizer;
  int64_t base_parameters = 0;      // the base model's values, counted before attach
  MethodConfig method_config;
  std::unique_ptr<Method> method;
  std::unique_ptr<Head> head;       // null when loaded for the LM only (eval-lm, generate)

  // Positions the method puts before the text (attention prefix + input prefix).
  int prefix_length() const;
  // Longest text to classify: n_positions - prefix_length() - the positions
  // the verbalizer's label words take after it (Head::continuation_positions).
  int max_text_tokens() const;
  // The method's per-call parts for `batch_size` rows, plus dropout when `dropout_rng` is set.
  ForwardOptions forward_options(int batch_size, Rng* dropout_rng) const;
  // batch -> pooled features (B,C) through the base, the method and the head's pooling.
  Tensor features(const Batch& batch, Rng* dropout_rng) const;
  // batch -> the head's label logits (B,L); the text pass keeps its keys when
  // the verbalizer scores multi-token words (Head::needs_text_keys).
  Tensor label_logits(const Batch& batch, Rng* dropout_rng) const;
  // What the optimiser updates: the method's tensors, then the head's.
  std::vector<OptimParam> trainable_parameters() const;
};

// What the command line asks of the head; empty fields take the defaults.
struct HeadRequest {
  std::string type;                     // "" | classifier | verbalizer | linear | mlp
  std::string pooling;                  // "" (the model's default) | last | first | mean
  std::vector<std::string> label_words; // empty: " " + each label name; a word without a leading space gets one
  int hidden = 256;                     // mlp
  std::string activation = "relu";      // mlp
};

// The head for `method` on `model`: a verbalizer for prompt and prefix tuning
// on a GPT, an MLP for probe-mlp, a linear classifier otherwise. "classifier"
// means linear (mlp for probe-mlp). InputError for a verbalizer on an encoder.
HeadConfig resolve_head(const HeadRequest& request, const std::string& method, const ModelConfig& model,
                        const std::vector<std::string>& label_names);

// Loads the base at model_dir, attaches a fresh method and a fresh head (both
// initialised from `seed`). With bf16_base the base's matrices are read
// straight into bfloat16 (load_model; --bf16), refused for full fine-tuning.
AdaptedModel create_adapted(const std::string& model_dir, const MethodConfig& method_config,
                            const HeadConfig& head_config, uint64_t seed, bool bf16_base = false);

// Writes adapter_config.json and adapter_model.safetensors into `dir`.
void save_adapter(const AdaptedModel& adapted, const std::string& dir);

// Loads the base (model_dir, or the config's base_model_name_or_path when
// model_dir is empty), then the adapter at adapter_dir. With `with_head`, the
// config's head and its tensors must be there. bf16_base as create_adapted's.
AdaptedModel load_adapted(const std::string& model_dir, const std::string& adapter_dir, bool with_head,
                          bool bf16_base = false);

// The same load in three steps, for callers that put an adapter on a base
// model they already hold (adapt/serving.h puts many users' adapters on one):
// read and check the files; make the method and attach it to `model` (its
// tensors not loaded yet, so the caller may inspect what it attached); load
// the method's tensors and the head, refusing a tensor nobody claims.
struct AdapterFiles {
  std::string config_path, tensors_path;
  std::string base_model;    // base_model_name_or_path; "" when absent
  std::string base_fingerprint;  // base_model_fingerprint; "" when absent (adapters saved before it, PEFT's)
  MethodConfig method_config;
  bool has_head = false;
  HeadConfig head_config;    // when has_head
  std::vector<NamedArray> tensors;
};
AdapterFiles read_adapter_files(const std::string& adapter_dir, bool with_head);
std::unique_ptr<Method> attach_adapter_method(GPT& model, const AdapterFiles& files);
std::unique_ptr<Head> load_adapter_tensors(const GPT& model, const data::Tokenizer& tokenizer, Method& method,
                                           const AdapterFiles& files, bool with_head);

// Identifies the weights of the base model at model_dir: the size and the
// 64-bit FNV-1a hash of its model.safetensors, as "fnv1a64:<16 hex> bytes:<n>".
// save_adapter records it, so that --init-head (head_init.h) can tell whether
// a saved head was trained on this base even when the directory moved or was
// overwritten. FNV-1a is not a cryptographic hash: it tells a retrained or
// different base apart, it does not resist a forgery. About 1 ns per byte.
std::string base_model_fingerprint(const std::string& model_dir);
// The same for any file: adapter_config.json's "tensors_fingerprint" is this
// of adapter_model.safetensors, checked on load (a pair cut short is refused).
std::string file_fingerprint(const std::string& path);

}  // namespace ta::adapt
