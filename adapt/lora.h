// adapt/lora.h — LoRA: low-rank updates of frozen Linear layers (Hu et al. 2021).
//
// For every Linear whose dotted name matches one of MethodConfig::target_modules
// (module.h's suffix rule: "c_attn" is every layer's attn.c_attn, "c_proj"
// both the attention's and the MLP's, "h.0.attn.c_attn" one layer's), LoRA
// keeps the pre-trained W frozen and learns a rank-r update (paper eq. 3):
//
//   y = x W + b + (alpha / r) · B (A · dropout(x))
//
//   A  lora_A  (r, in)   Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)):
//                        PEFT's default (init_lora_weights=True), nn.Linear's own init
//   B  lora_B  (out, r)  zeros, so the adapted model starts exactly at the base model
//
// Only A and B are trainable. The update is installed in Linear (nn/layers.h,
// extension point 3) in two forms: as output_delta, x (…,in) @ Aᵀ → (…,r) ·
// scale → @ Bᵀ → (…,out), the definition; and as low_rank factors, which
// Linear::forward runs through the fused op ta::lora_linear: the update is
// folded into a copy of the weight (ta::lora_fold, r·in·out multiply-adds per
// call), so the layer costs one product plus the fold and forms no (…,out)
// delta; `generate` merges once instead, where the fold would dominate.
// Either way the frozen W gets no gradient buffer and no dW FLOPs (backward
// is pruned).
// Dropout (p = lora_dropout) acts on the LoRA input only, in training mode
// (set_training), with masks from an Rng seeded at attach; while it acts,
// the layer uses output_delta (the fused form needs one x for both).
//
// merge() folds the update into the weight, W (in,out) += scale · (B A)ᵀ, and
// switches the delta off (no double counting): inference then costs nothing
// extra (the paper's "no additional latency"). unmerge() subtracts it again.
//
// Adapter file (PEFT's, for GPT-2 with fan_in_fan_out = true):
//   base_model.model.transformer.h.N.attn.c_attn.lora_A.weight   [r, in]
//   base_model.model.transformer.h.N.attn.c_attn.lora_B.weight   [out, r]
// Loading also accepts PEFT's in-memory names with the adapter name inside
// (…lora_A.default.weight). adapter_config.json carries LoraConfig's fields.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "adapt/method.h"

namespace ta::adapt {

class Lora : public Method {
 public:
  explicit Lora(const MethodConfig& config);

  std::string name() const override { return "lora"; }
  void attach(GPT& model, const AttachContext& context, Rng& rng) override;
  void set_training(bool training) override;
  std::vector<OptimParam> trainable_parameters() const override;
  int64_t added_parameters() const override;
  std::vector<NamedArray> save_tensors() const override;
  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override;
  json::Value peft_config() const override;

  // W += scale · (B A)ᵀ for every target, and the deltas off. Idempotent.
  void merge();
  // Undoes merge(): W -= scale · (B A)ᵀ, deltas back on. Idempotent.
  void unmerge();
  bool merged() const { return merged_; }

  float scale() const { return lora_alpha_ / static_cast<float>(lora_rank_); }

  // The dropout switch and its random stream, shared with the installed deltas
  // so that they never point into a destroyed Lora.
  struct DropoutState {
    float p = 0;
    bool training = false;
    Rng rng;
  };

 private:
  struct Target {
    std::string module_name;  // "transformer.h.0.attn.c_attn"
    Linear* base = nullptr;   // the frozen layer, owned by the model
    Tensor lora_A;            // (r, in)
    Tensor lora_B;            // (out, r)
  };

  void install_delta(Target& target);
  void use_fused_form(Target& target);
  void fold_into_weight(Target& target, float sign);

  int lora_rank_;
  float lora_alpha_;
  std::vector<std::string> target_modules_;
  std::shared_ptr<DropoutState> dropout_;
  std::vector<Target> targets_;
  bool merged_ = false;
};

}  // namespace ta::adapt
