// adapt/probe.cpp — probing: a classifier trained on frozen features.
//
// The base model is frozen whole and nothing is added to it; only the task
// head learns (adapt/head.h): a linear layer ("probe") or a one-hidden-layer
// MLP ("probe-mlp"), reading the pooled last-layer features — the last real
// token for the GPT, the first token for the encoder, or the mean
// (--pooling). Because the features cannot change, features_frozen() tells
// the runner to compute them once per split and train the head on that
// cache, so training never runs the LM again (Alain & Bengio 2016; Hewitt &
// Liang 2019; the linear-probing baseline of Kumar et al. 2022).
//
// The adapter file holds only the head; adapter_config.json says
// "peft_type": "LINEAR_PROBE" or "MLP_PROBE" (PEFT has no probing).
#include "adapt/method.h"

namespace ta::adapt {
namespace {

class Probe : public Method {
 public:
  explicit Probe(const MethodConfig& config) : name_(config.method) {}
  std::string name() const override { return name_; }
  void attach(GPT& model, const AttachContext& context, Rng& rng) override { model.freeze_all(); }
  std::vector<OptimParam> trainable_parameters() const override { return {}; }
  int64_t added_parameters() const override { return 0; }
  std::vector<NamedArray> save_tensors() const override { return {}; }
  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override {}
  json::Value peft_config() const override {
    json::Value config = json::Value::object();
    config.set("peft_type", name_ == "probe" ? "LINEAR_PROBE" : "MLP_PROBE");
    config.set("task_type", "SEQ_CLS");
    return config;
  }
  bool features_frozen() const override { return true; }

 private:
  std::string name_;
};

MethodFactory probe_factory = [](const MethodConfig& c) { return std::make_unique<Probe>(c); };
MethodRegistration linear_probe_registration{"probe", probe_factory};
MethodRegistration mlp_probe_registration{"probe-mlp", probe_factory};

}  // namespace
}  // namespace ta::adapt
