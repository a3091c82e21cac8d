// adapt/lora.cpp — LoRA (Hu et al. 2021) with PEFT's semantics: see lora.h.
#include "adapt/lora.h"

#include <cmath>
#include <stdexcept>

#include "autograd/matmul.h"
#include "data/io.h"

namespace ta::adapt {

namespace {

const char* const kPeftPrefix = "base_model.model.";  // PeftModel → LoraModel → the base model

// "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"
std::string peft_key(const std::string& module_name, const char* matrix) {
  return kPeftPrefix + module_name + "." + matrix + ".weight";
}

// The array saved for `matrix` of `module_name`, under PEFT's file name or its
// in-memory name with the adapter name "default" inside.
const NamedArray& find_lora_array(const std::vector<NamedArray>& arrays, const std::string& module_name,
                                  const char* matrix, const std::string& source) {
  const std::string with_adapter_name = kPeftPrefix + module_name + "." + matrix + ".default.weight";
  for (const NamedArray& a : arrays)
    if (a.name == with_adapter_name) return a;
  return find_array(arrays, peft_key(module_name, matrix), source);
}

bool is_lora_key(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

}  // namespace

Lora::Lora(const MethodConfig& config)
    : lora_rank_(config.lora_rank), lora_alpha_(config.lora_alpha), target_modules_(config.target_modules),
      dropout_(std::make_shared<DropoutState>()) {
  if (lora_rank_ < 1) throw InputError("lora: the rank r must be at least 1, got " + std::to_string(lora_rank_));
  if (!(config.lora_dropout >= 0.0f && config.lora_dropout < 1.0f))
    throw InputError("lora: lora_dropout must be in [0, 1), got " + std::to_string(config.lora_dropout));
  if (target_modules_.empty()) throw InputError("lora: target_modules is empty (try c_attn)");
  dropout_->p = config.lora_dropout;
}

// Every Linear matched by some target name, once, in the order of the names.
void Lora::attach(GPT& model, const AttachContext& context, Rng& rng) {
  model.freeze_all();
  for (const std::string& wanted : target_modules_) {
    auto found = find_linears(model, wanted);
    if (found.empty())
      throw InputError("lora: target module \"" + wanted + "\" matches no Linear layer (try c_attn, c_proj, c_fc)");
    for (auto& [module_name, linear] : found) {
      bool seen = false;
      for (const Target& t : targets_) seen = seen || t.base == linear;
      if (seen) continue;
      const int in = linear->weight.size(0), out = linear->weight.size(1);  // W is (in, out)
      Target target{module_name, linear, Tensor::zeros({lora_rank_, in}), Tensor::zeros({out, lora_rank_})};
      const float bound = 1.0f / std::sqrt(static_cast<float>(in));  // kaiming_uniform_(a=sqrt(5)) on (r, in)
      fill_uniform(target.lora_A, rng, -bound, bound);
      target.lora_A.set_requires_grad(true);
      target.lora_B.set_requires_grad(true);
      targets_.push_back(std::move(target));
    }
  }
  dropout_->rng = Rng(rng.next_u64());
  for (Target& t : targets_) install_delta(t);
}

// Linear::output_delta = scale · B(A · dropout(x)). The closure holds its own
// handles (tensors are shared), so it stays valid whatever outlives what.
// Linear::low_rank carries the same update as factors for the fused op; it is
// set whenever no dropout acts (see use_fused_form).
void Lora::install_delta(Target& target) {
  Tensor lora_A = target.lora_A, lora_B = target.lora_B;
  std::shared_ptr<DropoutState> dropout = dropout_;
  const float lora_scale = scale();
  target.base->output_delta = [lora_A, lora_B, dropout, lora_scale](const Tensor& x, const ForwardOptions&) {
    Tensor input = dropout->training && dropout->p > 0.0f ? ta::dropout(x, dropout->p, dropout->rng) : x;
    Tensor low_rank = mul_scalar(matmul(input, lora_A, false, true), lora_scale);  // (…,in) @ Aᵀ → (…,r)
    return matmul(low_rank, lora_B, false, true);                                    // (…,r) @ Bᵀ → (…,out)
  };
  use_fused_form(target);
}

// The fused op (ta::lora_linear) merges the update into the weight, so the
// base and the update see the same x: right unless dropout masks the update's
// input, which it does in training with p > 0. Then the layer falls back to
// output_delta.
void Lora::use_fused_form(Target& target) {
  const bool dropout_acts = dropout_->training && dropout_->p > 0.0f;
  if (dropout_acts) target.base->low_rank.reset();
  else target.base->low_rank = Linear::LowRankUpdate{target.lora_A, target.lora_B, scale()};
}

void Lora::set_training(bool training) {
  dropout_->training = training;
  if (merged_) return;
  for (Target& t : targets_) use_fused_form(t);
}

std::vector<OptimParam> Lora::trainable_parameters() const {
  std::vector<OptimParam> params;
  auto add = [&params](const std::string& name, const Tensor& t) {
    params.push_back({name, t, default_weight_decay(name, t)});  // matrices: decayed, as PEFT under HF's Trainer
  };
  for (const Target& t : targets_) {
    add(peft_key(t.module_name, "lora_A"), t.lora_A);
    add(peft_key(t.module_name, "lora_B"), t.lora_B);
  }
  return params;
}

// r · (in + out) per target.
int64_t Lora::added_parameters() const {
  int64_t total = 0;
  for (const Target& t : targets_) total += t.lora_A.numel() + t.lora_B.numel();
  return total;
}

std::vector<NamedArray> Lora::save_tensors() const {
  std::vector<NamedArray> arrays;
  for (const OptimParam& p : trainable_parameters()) arrays.push_back(to_named_array(p.name, p.tensor));
  return arrays;
}

void Lora::load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) {
  if (merged_) throw std::logic_error("lora: load_tensors on a merged model (unmerge first)");
  for (Target& t : targets_) {
    copy_into(t.lora_A, find_lora_array(tensors, t.module_name, "lora_A", source), source);
    copy_into(t.lora_B, find_lora_array(tensors, t.module_name, "lora_B", source), source);
  }
  // A LoRA tensor for a module we do not target would be silently dropped: refuse it.
  for (const NamedArray& a : tensors) {
    if (!is_lora_key(a.name)) continue;
    bool ours = false;
    for (const Target& t : targets_) ours = ours || a.name.rfind(kPeftPrefix + t.module_name + ".lora_", 0) == 0;
    if (!ours)
      throw InputError(source + ": " + a.name + " adapts a module outside target_modules (adapter_config.json and the tensors disagree)");
  }
}

// PEFT's LoraConfig fields (peft/tuners/lora/config.py); the framework adds
// base_model_name_or_path.
json::Value Lora::peft_config() const {
  json::Value config = json::Value::object();
  config.set("peft_type", "LORA");
  config.set("task_type", "CAUSAL_LM");
  config.set("r", lora_rank_);
  config.set("lora_alpha", static_cast<double>(lora_alpha_));
  config.set("lora_dropout", static_cast<double>(dropout_->p));
  json::Value targets = json::Value::array();
  for (const std::string& name : target_modules_) targets.push(name);
  config.set("target_modules", targets);
  config.set("fan_in_fan_out", true);  // GPT-2's Conv1D stores W as (in, out)
  config.set("bias", "none");
  config.set("init_lora_weights", true);
  config.set("use_rslora", false);
  config.set("modules_to_save", json::Value());
  config.set("inference_mode", true);
  return config;
}

// W (in,out) += sign · scale · (B A)ᵀ = sign · scale · Aᵀ Bᵀ (ta::lora_fold).
void Lora::fold_into_weight(Target& target, float sign) {
  const int r = target.lora_A.size(0), in = target.lora_A.size(1), out = target.lora_B.size(0);
  if (target.base->weight_bf16) throw InputError("lora: " + target.module_name + " is stored in bfloat16 (--bf16): cannot merge into it");
  lora_fold(target.base->weight.data(), target.lora_A.data(), target.lora_B.data(), in, out, r, sign * scale());
}

void Lora::merge() {
  if (merged_) return;
  for (Target& t : targets_) {
    fold_into_weight(t, +1.0f);
    t.base->output_delta = nullptr;
    t.base->low_rank.reset();
  }
  merged_ = true;
}

void Lora::unmerge() {
  if (!merged_) return;
  for (Target& t : targets_) {
    fold_into_weight(t, -1.0f);
    install_delta(t);
  }
  merged_ = false;
}

static MethodRegistration lora_registration{"lora", [](const MethodConfig& config) {
  return std::make_unique<Lora>(config);
}};

}  // namespace ta::adapt
