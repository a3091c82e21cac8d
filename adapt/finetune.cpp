// adapt/finetune.cpp — full fine-tuning: every base parameter trains, with
// the task head (Radford et al. 2018; Devlin et al. 2019).
//
// The baseline every lightweight method is measured against. Its costs are
// the ones the others avoid: optimiser state for every value (2 floats
// each), gradients for every weight, and one full copy of the model per task
// — the adapter file holds every parameter under its Hugging Face GPT-2 name
// ("transformer.h.0.attn.c_attn.weight", exactly the keys of the base's
// model.safetensors) plus the head, and `tinyadapt adapt` prints its size
// next to the lightweight methods'. The default learning rate (runner.cpp)
// is 10× below pretraining's, so the pretrained features are adjusted rather
// than overwritten. Weight decay follows nanoGPT's rule (matrices only).
//
// adapter_config.json: "peft_type": "FULL_FINETUNE" (not a PEFT type).
#include "adapt/method.h"

namespace ta::adapt {
namespace {

class FullFinetune : public Method {
 public:
  std::string name() const override { return "finetune"; }

  void attach(GPT& model, const AttachContext& context, Rng& rng) override {
    model_ = &model;
    for (auto& [name, t] : model.named_parameters()) {
      Tensor param = t;
      param.set_requires_grad(true);
    }
  }

  std::vector<OptimParam> trainable_parameters() const override {
    std::vector<OptimParam> params;
    for (auto& [name, t] : model_->named_parameters()) params.push_back({name, t, default_weight_decay(name, t)});
    return params;
  }

  int64_t added_parameters() const override { return 0; }

  std::vector<NamedArray> save_tensors() const override {
    std::vector<NamedArray> arrays;
    for (auto& [name, t] : model_->named_parameters()) arrays.push_back(to_named_array(name, t));
    return arrays;
  }

  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override {
    for (auto& [name, t] : model_->named_parameters()) {
      Tensor param = t;
      copy_into(param, find_array(tensors, name, source), source);
    }
  }

  json::Value peft_config() const override {
    json::Value config = json::Value::object();
    config.set("peft_type", "FULL_FINETUNE");
    config.set("task_type", "SEQ_CLS");
    return config;
  }

 private:
  GPT* model_ = nullptr;
};

MethodRegistration finetune_registration{"finetune", [](const MethodConfig&) { return std::make_unique<FullFinetune>(); }};

}  // namespace
}  // namespace ta::adapt
