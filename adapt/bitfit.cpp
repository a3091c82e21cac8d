// adapt/bitfit.cpp — BitFit: train only the bias terms (Ben Zaken et al. 2021),
// plus the task head.
//
// Every parameter whose name ends in ".bias" is unfrozen: the biases of
// c_attn (queries, keys and values), of both c_proj, of c_fc, and the shift β
// of every LayerNorm (ln_1, ln_2, ln_f). The paper's equations list the
// attention, MLP and LayerNorm bias terms of BERT, and its code selects
// parameters by "bias" in their name, which includes LayerNorm's; we do the
// same. The LayerNorm gains γ stay frozen. On GPT-2 this is about 0.1% of the
// values (the paper: 0.08% of BERT-large). Trainable = Σ bias sizes + head.
//
// The adapter file holds those biases under their Hugging Face GPT-2 names
// ("transformer.h.0.attn.c_attn.bias"); "peft_type": "BITFIT" (not a PEFT type).
#include "adapt/method.h"

namespace ta::adapt {
namespace {

bool is_bias(const std::string& name) {
  const std::string suffix = ".bias";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class BitFit : public Method {
 public:
  std::string name() const override { return "bitfit"; }

  void attach(GPT& model, const AttachContext& context, Rng& rng) override {
    model.freeze_all();
    for (auto& [name, t] : model.named_parameters()) {
      if (!is_bias(name)) continue;
      Tensor bias = t;
      bias.set_requires_grad(true);
      biases_.push_back({name, bias, false});
    }
  }

  std::vector<OptimParam> trainable_parameters() const override { return biases_; }
  int64_t added_parameters() const override { return 0; }

  std::vector<NamedArray> save_tensors() const override {
    std::vector<NamedArray> arrays;
    for (const OptimParam& b : biases_) arrays.push_back(to_named_array(b.name, b.tensor));
    return arrays;
  }

  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override {
    for (OptimParam& b : biases_) copy_into(b.tensor, find_array(tensors, b.name, source), source);
  }

  json::Value peft_config() const override {
    json::Value config = json::Value::object();
    config.set("peft_type", "BITFIT");
    config.set("task_type", "SEQ_CLS");
    return config;
  }

 private:
  std::vector<OptimParam> biases_;
};

MethodRegistration bitfit_registration{"bitfit", [](const MethodConfig&) { return std::make_unique<BitFit>(); }};

}  // namespace
}  // namespace ta::adapt
