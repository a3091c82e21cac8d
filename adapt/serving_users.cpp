// adapt/serving_users.cpp — loading users onto the shared base (see
// serving.h): each adapter is attached to the bare base, its prefixes are
// kept as the user's rows and its hooks are taken off the base into the user,
// so that the dispatchers (serving.cpp) can route each batch row to its own.
#include <set>
#include <stdexcept>

#include "adapt/adapter_dir.h"
#include "adapt/serving.h"
#include "nn/checkpoint.h"

namespace ta::adapt {

// A (1, n, C) or (n, C) prefix from Method::prepare as (n, C).
static Tensor as_rows(const Tensor& t) { return t.rank() == 3 ? reshape(t, {t.size(1), t.size(2)}) : t; }

// ---------------------------------------------------------------------------
// Loading

ServingModel::ServingModel(const std::string& model_dir)
    : model_(load_model(model_dir)), tokenizer_(data::Tokenizer::load(model_dir)) {
  if (tokenizer_.vocab_size() > model_->config().vocab_size)
    throw InputError(model_dir + ": the tokenizer has more tokens than the model's vocab_size");
  model_->freeze_all();
}

int ServingModel::user_index(const std::string& name) const {
  for (size_t i = 0; i < users_.size(); i++)
    if (users_[i]->name == name) return static_cast<int>(i);
  return -1;
}

// A user with no adapter loaded yet: no prefixes, no hooks.
static std::unique_ptr<ServingUser> new_user(const std::string& name, const std::string& adapter_dir, int n_layer) {
  auto user = std::make_unique<ServingUser>();
  user->name = name;
  user->adapter_dir = adapter_dir;
  user->attention_hooks.resize(static_cast<size_t>(n_layer));
  user->mlp_hooks.resize(static_cast<size_t>(n_layer));
  return user;
}

int ServingModel::add_user(const std::string& name, const std::string& adapter_dir) {
  if (user_index(name) >= 0) throw InputError("user '" + name + "' is declared twice");
  if (model_->wte.weight_bf16) throw std::logic_error("ServingModel::add_user: users are added before store_base_in_bf16");
  std::unique_ptr<ServingUser> user = new_user(name, adapter_dir, model_->n_layer());
  if (!adapter_dir.empty()) {
    remove_hooks();  // the base bare, so that the hooks found after attach are this method's
    try {
      load_adapter(*user);
    } catch (const std::exception& e) {  // a broken adapter: its user answers errors, the others are served
      remove_hooks();
      user = new_user(name, adapter_dir, model_->n_layer());
      user->error = e.what();
    }
    model_->freeze_all();  // finetune's and BitFit's attach unfroze base weights before they were refused
  }
  users_.push_back(std::move(user));
  install_dispatchers();
  return static_cast<int>(users_.size()) - 1;
}

// The base's own parameters, by node: a method that trains one of them changes the shared base.
static std::set<const Node*> parameter_nodes(const GPT& model) {
  std::set<const Node*> nodes;
  for (const auto& [name, tensor] : model.named_parameters()) nodes.insert(tensor.node());
  return nodes;
}

void ServingModel::load_adapter(ServingUser& user) {
  const AdapterFiles files = read_adapter_files(user.adapter_dir, false);
  user.method = attach_adapter_method(*model_, files);
  take_hooks(user);
  // Checked before the tensors are loaded, so a refused adapter never writes into the base.
  const std::set<const Node*> base_nodes = parameter_nodes(*model_);
  for (const OptimParam& p : user.method->trainable_parameters())
    if (base_nodes.count(p.tensor.node()))
      throw InputError(user.adapter_dir + ": method " + files.method_config.method + " changes the base model's own weights (" +
                       p.name + "), which every user shares; it cannot be served in a mixed batch (merge it into a model of its own)");
  user.head = load_adapter_tensors(*model_, tokenizer_, *user.method, files, false);
  user.method->set_training(false);
  NoGradGuard no_grad;
  ForwardOptions prepared;
  user.method->prepare(prepared, 1);
  if (prepared.input_prefix.defined()) user.input_prefix = as_rows(prepared.input_prefix);
  for (const Tensor& keys : prepared.prefix_keys) user.prefix_keys.push_back(as_rows(keys));
  for (const Tensor& values : prepared.prefix_values) user.prefix_values.push_back(as_rows(values));
}

// Every hook on the base set to none (the dispatchers included).
void ServingModel::remove_hooks() {
  for (auto& [name, module] : model_->named_modules())
    if (auto* linear = dynamic_cast<Linear*>(module)) {
      linear->output_delta = nullptr;
      linear->low_rank.reset();
    }
  for (int i = 0; i < model_->n_layer(); i++) {
    model_->block(i).attention_output_hook = nullptr;
    model_->block(i).mlp_output_hook = nullptr;
  }
}

// Moves the hooks a method's attach() just set on the bare base into `user`.
void ServingModel::take_hooks(ServingUser& user) {
  for (auto& [name, module] : model_->named_modules()) {
    auto* linear = dynamic_cast<Linear*>(module);
    if (!linear || !linear->output_delta) continue;
    // The dispatcher computes the delta from the factors; output_delta is its plain form.
    if (!linear->low_rank)
      throw InputError(user.adapter_dir + ": the method adds an output delta to " + name +
                       " that is not low-rank factors (Linear::low_rank); it cannot be served in a mixed batch");
    user.low_rank[name] = *linear->low_rank;
    linear->output_delta = nullptr;
    linear->low_rank.reset();
  }
  for (int i = 0; i < model_->n_layer(); i++) {
    Block& block = model_->block(i);
    user.attention_hooks[static_cast<size_t>(i)] = std::move(block.attention_output_hook);
    user.mlp_hooks[static_cast<size_t>(i)] = std::move(block.mlp_output_hook);
    block.attention_output_hook = block.mlp_output_hook = nullptr;
  }
}

}  // namespace ta::adapt
