// adapt/adapter.cpp — bottleneck adapters (Houlsby et al. 2019, §2.1 and Fig. 2).
//
// Two small modules per block, one after the attention sublayer and one after
// the MLP sublayer. Each maps the sublayer's output h (after its dropout,
// before the residual add — where Houlsby puts it) to
//
//   h + W_up σ(W_down h + b_down) + b_up          σ = GELU (tanh approximation, GPT-2's)
//
// through Block::attention_output_hook / mlp_output_hook (nn/layers.h,
// extension point 4). The adapter's own skip connection keeps it close to the
// identity: W_down and W_up are drawn from N(0, adapter_init_std) with
// adapter_init_std = 1e-2 ("near-identity", Houlsby; larger inits train
// worse), the biases are zero. With W_up = 0 the block is exactly the base one.
// The activation is fixed to GELU, the nonlinearity the transformer itself
// uses (Houlsby's adapter-bert does the same); MethodConfig has no field for it.
//
// Everything pre-trained stays frozen; with train_layernorm every LayerNorm
// (ln_1, ln_2 of each block and ln_f) is trained too, as Houlsby does.
// Parameters added: per block 2 · (C·r + r + r·C + C), with r = bottleneck.
//
// Adapter file (PEFT has no Houlsby adapter; these names are ours):
//   transformer.h.N.attn_adapter.down.weight   [C, r]   W_down, stored (in, out) as our Linear
//   transformer.h.N.attn_adapter.down.bias     [r]
//   transformer.h.N.attn_adapter.up.weight     [r, C]   W_up
//   transformer.h.N.attn_adapter.up.bias       [C]
//   transformer.h.N.mlp_adapter.{down,up}.{weight,bias}   the same after the MLP
//   transformer.h.N.ln_1.weight, ...           with train_layernorm: every
//                                              LayerNorm under its model name
// adapter_config.json: {"peft_type": "HOULSBY_ADAPTER", "task_type": "CAUSAL_LM",
//   "bottleneck": r, "adapter_init_std": s, "train_layernorm": bool,
//   "activation": "gelu_new", "inference_mode": true}.
//
// Not here: merging. The adapter is a nonlinear layer between two linear
// ones, so it cannot be folded into the base weights (`tinyadapt merge`
// refuses it); it costs 2 small matmuls per sublayer at inference.
#include <memory>
#include <string>
#include <vector>

#include "adapt/method.h"
#include "data/io.h"

namespace ta::adapt {

namespace {

// W_up σ(W_down h + b_down) + b_up added to h. A Module so its parameters get
// the dotted names "down.weight", "up.bias", ...
struct BottleneckAdapter : Module {
  BottleneckAdapter(int n_embd, int bottleneck_dim) : down(n_embd, bottleneck_dim), up(bottleneck_dim, n_embd) {
    register_module("down", down);
    register_module("up", up);
  }
  Tensor forward(const Tensor& sublayer_output, const ForwardOptions& options) const {
    Tensor bottleneck = gelu(down.forward(sublayer_output, options));  // (B,T,C) → (B,T,r)
    return add(sublayer_output, up.forward(bottleneck, options));       // (B,T,r) → (B,T,C), plus the skip
  }
  Linear down;  // (C, r)
  Linear up;    // (r, C)
};

// The hook holds the adapter itself (shared), so it never outlives its weights.
SublayerHook hook_for(std::shared_ptr<const BottleneckAdapter> adapter) {
  return [adapter](const Tensor& output, const ForwardOptions& options) { return adapter->forward(output, options); };
}

class HoulsbyAdapter : public Method {
 public:
  explicit HoulsbyAdapter(const MethodConfig& config)
      : bottleneck_dim_(config.bottleneck), init_std_(config.adapter_init_std), train_layernorm_(config.train_layernorm) {
    if (bottleneck_dim_ < 1) throw InputError("adapter: the bottleneck must be at least 1, got " + std::to_string(bottleneck_dim_));
    if (!(init_std_ >= 0.0f)) throw InputError("adapter: adapter_init_std must be >= 0");
  }

  std::string name() const override { return "adapter"; }

  void attach(GPT& model, const AttachContext& context, Rng& rng) override {
    model.freeze_all();
    const int n_embd = model.config().n_embd;
    for (int i = 0; i < model.n_layer(); i++) {
      const std::string block = "transformer.h." + std::to_string(i) + ".";
      model.block(i).attention_output_hook = hook_for(add_adapter(block + "attn_adapter", n_embd, rng));
      model.block(i).mlp_output_hook = hook_for(add_adapter(block + "mlp_adapter", n_embd, rng));
    }
    if (!train_layernorm_) return;
    for (auto& [module_name, module] : model.named_modules()) {
      if (!dynamic_cast<LayerNorm*>(module)) continue;
      for (auto& [name, tensor] : module->named_parameters()) {
        tensor.set_requires_grad(true);
        layernorm_parameters_.emplace_back(module_name + "." + name, tensor);
      }
    }
  }

  std::vector<OptimParam> trainable_parameters() const override {
    std::vector<OptimParam> params;
    for (auto& [name, tensor] : named_tensors()) params.push_back({name, tensor, default_weight_decay(name, tensor)});
    return params;
  }

  // The adapters only: the layer norms belong to the base model.
  int64_t added_parameters() const override {
    int64_t total = 0;
    for (auto& [name, adapter] : adapters_) total += adapter->count_parameters();
    return total;
  }

  std::vector<NamedArray> save_tensors() const override {
    std::vector<NamedArray> arrays;
    for (auto& [name, tensor] : named_tensors()) arrays.push_back(to_named_array(name, tensor));
    return arrays;
  }

  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override {
    for (auto& [name, tensor] : named_tensors()) copy_into(tensor, find_array(tensors, name, source), source);
  }

  json::Value peft_config() const override {
    json::Value config = json::Value::object();
    config.set("peft_type", "HOULSBY_ADAPTER");
    config.set("task_type", "CAUSAL_LM");
    config.set("bottleneck", bottleneck_dim_);
    config.set("adapter_init_std", static_cast<double>(init_std_));
    config.set("train_layernorm", train_layernorm_);
    config.set("activation", "gelu_new");
    config.set("inference_mode", true);
    return config;
  }

 private:
  std::shared_ptr<BottleneckAdapter> add_adapter(const std::string& name, int n_embd, Rng& rng) {
    auto adapter = std::make_shared<BottleneckAdapter>(n_embd, bottleneck_dim_);
    fill_normal(adapter->down.weight, rng, 0.0f, init_std_);  // biases stay zero
    fill_normal(adapter->up.weight, rng, 0.0f, init_std_);
    adapters_.emplace_back(name, adapter);
    return adapter;
  }

  // Every trainable tensor under its saved name: the adapters, then the layer norms.
  std::vector<std::pair<std::string, Tensor>> named_tensors() const {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (auto& [adapter_name, adapter] : adapters_)
      for (auto& [name, tensor] : adapter->named_parameters()) tensors.emplace_back(adapter_name + "." + name, tensor);
    tensors.insert(tensors.end(), layernorm_parameters_.begin(), layernorm_parameters_.end());
    return tensors;
  }

  int bottleneck_dim_;
  float init_std_;
  bool train_layernorm_;
  std::vector<std::pair<std::string, std::shared_ptr<BottleneckAdapter>>> adapters_;  // 2 per block
  std::vector<std::pair<std::string, Tensor>> layernorm_parameters_;                  // with train_layernorm
};

}  // namespace

static MethodRegistration adapter_registration{"adapter", [](const MethodConfig& config) {
  return std::make_unique<HoulsbyAdapter>(config);
}};

}  // namespace ta::adapt
