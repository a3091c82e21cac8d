// adapt/serving.cpp — see serving.h for the idea; this file in reading order:
// row gathers, LoRA row by row, the dispatchers that route rows to users, the
// mixed batch, length groups and classify. Loading users is
// serving_users.cpp, generation serving_generate.cpp.
#include "adapt/serving.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>

#include "adapt/adapter_dir.h"
#include "adapt/verbalizer.h"
#include "autograd/matmul.h"
#include "nn/checkpoint.h"
#include "nn/generate.h"

namespace ta::adapt {

namespace {

// ---------------------------------------------------------------------------
// Row gathers. Serving runs under NoGradGuard, so these are plain copies of
// whole rows along the first (batch) axis, not ops on the tape.

// The values of one batch row of `t` (B, ...).
int64_t row_size(const Tensor& t) { return t.numel() / t.size(0); }

// A copy of rows `rows` of t (B, ...) as (rows.size(), ...), in the order given
// (off the tape: serving runs without gradients).
Tensor copy_rows_out(const Tensor& t, const std::vector<int>& rows) {
  Shape shape = t.shape();
  shape.dims[0] = static_cast<int>(rows.size());
  Tensor out = Tensor::empty(shape);
  const int64_t n = row_size(t);
  for (size_t i = 0; i < rows.size(); i++)
    std::memcpy(out.data() + static_cast<int64_t>(i) * n, t.data() + rows[i] * n, sizeof(float) * n);
  return out;
}

// into[rows[i]] = from[i] along the first axis (off the tape).
void copy_rows_in(Tensor& into, const Tensor& from, const std::vector<int>& rows) {
  const int64_t n = row_size(into);
  for (size_t i = 0; i < rows.size(); i++)
    std::memcpy(into.data() + rows[i] * n, from.data() + static_cast<int64_t>(i) * n, sizeof(float) * n);
}

void check_row_tags(const std::vector<int>& row_tags, int batch) {
  if (row_tags.size() != static_cast<size_t>(batch))
    throw std::invalid_argument("serving: the mixed-batch hooks need one row tag per row, got " +
                                std::to_string(row_tags.size()) + " for " + std::to_string(batch) + " rows");
}

// The batch rows of each user (ascending user index, rows in batch order).
std::map<int, std::vector<int>> rows_by_user(const std::vector<int>& row_tags, int batch) {
  check_row_tags(row_tags, batch);
  std::map<int, std::vector<int>> groups;
  for (int row = 0; row < batch; row++) groups[row_tags[static_cast<size_t>(row)]].push_back(row);
  return groups;
}

// Options for one user's hook on a group of `n` of its rows.
ForwardOptions group_options(int user, size_t n) {
  ForwardOptions options;
  options.row_tags.assign(n, user);
  return options;
}

// Runs each user's hook on that user's rows of x (B, ...), one call per user,
// and returns the results in batch order; rows whose user has no hook
// (hook_of gives nullptr) get the rows of `no_hook` (shaped as the output).
// When one user holds the whole batch, its hook runs on x itself, no copies.
Tensor route_rows(const Tensor& x, const Tensor& no_hook, const ForwardOptions& options,
                  const std::function<const SublayerHook*(int user)>& hook_of) {
  const std::map<int, std::vector<int>> groups = rows_by_user(options.row_tags, x.size(0));
  if (groups.size() == 1) {
    const SublayerHook* hook = hook_of(groups.begin()->first);
    return hook ? (*hook)(x, options) : no_hook;
  }
  Tensor out = Tensor::from(no_hook.shape(), no_hook.to_vector());  // a copy: `no_hook` may be the hook's input
  for (const auto& [user, rows] : groups)
    if (const SublayerHook* hook = hook_of(user))
      copy_rows_in(out, (*hook)(copy_rows_out(x, rows), group_options(user, rows.size())), rows);
  return out;
}

// ---------------------------------------------------------------------------
// LoRA row by row: the delta (B,T,out) of a Linear whose input is x (B,T,in),
// row b being scale · (x_b Aᵀ) Bᵀ with the factors of row b's user (lora.h),
// zeros where row_update[b] is null (a user who does not adapt this Linear).
// It equals route_rows over the users' output_delta closures, without their
// gathers, scatter, zero tensor and one thread team per user: consecutive rows
// of one user form a run, computed as two products over its run·T token rows,
// and the runs are shared among the threads (a product inside the parallel
// region runs on its thread alone; a single run uses every thread itself).
struct RowRun {
  int first = 0, count = 0;                       // rows [first, first + count)
  const Linear::LowRankUpdate* update = nullptr;  // null: a zero delta
};

std::vector<RowRun> runs_of(const std::vector<const Linear::LowRankUpdate*>& row_update) {
  std::vector<RowRun> runs;
  for (int b = 0; b < static_cast<int>(row_update.size()); b++) {
    const Linear::LowRankUpdate* update = row_update[static_cast<size_t>(b)];
    if (!runs.empty() && runs.back().update == update) runs.back().count++;
    else runs.push_back({b, 1, update});
  }
  return runs;
}

// delta[run's rows] = scale · (x[run's rows] Aᵀ) Bᵀ, or zeros without an update.
void low_rank_run(const Tensor& x, const RowRun& run, int64_t tokens_per_row, Tensor& delta) {
  const int in = x.size(-1), out = delta.size(-1);
  const int rows = static_cast<int>(run.count * tokens_per_row);
  float* y = delta.data() + run.first * tokens_per_row * out;  // (rows, out)
  if (!run.update) {
    std::fill_n(y, static_cast<int64_t>(rows) * out, 0.0f);
    return;
  }
  const Tensor &A = run.update->A, &B = run.update->B;  // (r,in), (out,r)
  lora_delta(x.data() + run.first * tokens_per_row * in, rows, A.data(), B.data(), in, out, A.size(0),
             run.update->scale, y);
}

Tensor low_rank_rows(const Tensor& x, const std::vector<const Linear::LowRankUpdate*>& row_update, int out) {
  const int64_t tokens_per_row = row_size(x) / x.size(-1);  // T
  Shape shape = x.shape();
  shape.dims[shape.rank - 1] = out;
  Tensor delta = Tensor::empty(shape);  // (B,T,out)
  const std::vector<RowRun> runs = runs_of(row_update);
  if (runs.size() == 1) {  // one user's batch: its products use every thread
    low_rank_run(x, runs[0], tokens_per_row, delta);
    return delta;
  }
  const int n_runs = static_cast<int>(runs.size());
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < n_runs; i++) low_rank_run(x, runs[static_cast<size_t>(i)], tokens_per_row, delta);
  return delta;
}

}  // namespace

// ---------------------------------------------------------------------------
// Dispatchers: one hook on the base wherever some user has one, routing each
// row to its user's (ForwardOptions::row_tags holds the user of each row).

void ServingModel::install_dispatchers() {
  remove_hooks();
  const std::vector<std::unique_ptr<ServingUser>>& users = users_;
  std::set<std::string> linear_names;
  for (const auto& user : users)
    for (const auto& [name, factors] : user->low_rank) linear_names.insert(name);
  for (const std::string& name : linear_names) {
    Linear& linear = find_linear(*model_, name);
    const int out_features = linear.weight.size(1);
    // LoRA: the delta (B,T,out) is scale · B(A x) in the rows of users whose
    // LoRA adapts this layer, zero in the others (low_rank_rows).
    linear.output_delta = [&users, name, out_features](const Tensor& x, const ForwardOptions& options) {
      check_row_tags(options.row_tags, x.size(0));
      std::vector<const Linear::LowRankUpdate*> row_update;
      for (int user : options.row_tags) {
        const auto& factors = users[static_cast<size_t>(user)]->low_rank;
        auto found = factors.find(name);
        row_update.push_back(found == factors.end() ? nullptr : &found->second);
      }
      return low_rank_rows(x, row_update, out_features);
    };
  }
  // Adapters: the sublayer's output h (B,T,C) becomes the user's adapter(h)
  // in its rows and stays h in rows without an adapter.
  auto sublayer_dispatcher = [&users](size_t layer, bool after_attention) -> SublayerHook {
    return [&users, layer, after_attention](const Tensor& output, const ForwardOptions& options) {
      return route_rows(output, output, options, [&](int user) -> const SublayerHook* {
        const ServingUser& u = *users[static_cast<size_t>(user)];
        const SublayerHook& hook = after_attention ? u.attention_hooks[layer] : u.mlp_hooks[layer];
        return hook ? &hook : nullptr;
      });
    };
  };
  for (int i = 0; i < model_->n_layer(); i++) {
    const size_t layer = static_cast<size_t>(i);
    bool attention_hooks = false, mlp_hooks = false;
    for (const auto& user : users) {
      attention_hooks = attention_hooks || user->attention_hooks[layer];
      mlp_hooks = mlp_hooks || user->mlp_hooks[layer];
    }
    if (attention_hooks) model_->block(i).attention_output_hook = sublayer_dispatcher(layer, true);
    if (mlp_hooks) model_->block(i).mlp_output_hook = sublayer_dispatcher(layer, false);
  }
}

// ---------------------------------------------------------------------------
// Requests and the mixed batch

std::string ServingModel::check(const ServeRequest& request) const {
  const ServingUser& u = user(request.user);
  if (!u.error.empty()) return "user '" + u.name + "': " + u.error;
  if (request.ids.empty()) return "the text is empty";
  const int room = model_->config().n_positions - u.attention_prefix_length() - u.input_prefix_length();
  const int n = static_cast<int>(request.ids.size());
  if (request.max_new == 0) {
    if (!u.head)
      return "user '" + u.name + "': " + (u.adapter_dir.empty() ? "base only" : u.adapter_dir) +
             " has no task head, so it cannot classify (ask for generation with max_new)";
    const int words = u.head->continuation_positions();  // the label words' tokens after the text
    if (n > room - words)
      return "the text has " + std::to_string(n) + " tokens; at most " + std::to_string(room - words) + " fit" +
             (words > 0 ? " (beside the label words)" : "");
    return "";
  }
  if (!model_->config().is_causal) return "the model is an encoder (is_causal false); it cannot generate";
  // The last token fed to the model is the (max_new-1)-th new one.
  if (n + request.max_new - 1 > room)
    return "the text has " + std::to_string(n) + " tokens; with max_new " + std::to_string(request.max_new) +
           " at most " + std::to_string(room + 1 - request.max_new) + " fit";
  return "";
}

MixedBatch ServingModel::mixed_batch(const std::vector<ServeRequest>& requests) const {
  MixedBatch batch;
  batch.B = static_cast<int>(requests.size());
  for (const ServeRequest& r : requests) {
    batch.T = std::max(batch.T, static_cast<int>(r.ids.size()));
    batch.P = std::max(batch.P, user(r.user).attention_prefix_length());
    batch.k = std::max(batch.k, user(r.user).input_prefix_length());
  }
  const int B = batch.B, T = batch.T, P = batch.P, k = batch.k, C = model_->config().n_embd;
  ForwardOptions& options = batch.options;
  batch.ids.assign(static_cast<size_t>(B) * T, 0);
  options.padding_mask.assign(static_cast<size_t>(B) * T, 0);
  options.position_ids.assign(static_cast<size_t>(B) * (k + T), 0);  // padding rows: position 0, never seen
  if (P + k > 0) options.prefix_mask.assign(static_cast<size_t>(B) * (P + k), 0);
  Tensor input_prefix = Tensor::zeros({B, k, C});  // (B,k,C)
  for (int i = 0; i < model_->n_layer() && P > 0; i++) {
    options.prefix_keys.push_back(Tensor::zeros({B, P, C}));    // (B,P,C)
    options.prefix_values.push_back(Tensor::zeros({B, P, C}));  // (B,P,C)
  }
  for (int b = 0; b < B; b++) {
    const ServeRequest& r = requests[static_cast<size_t>(b)];
    const ServingUser& u = user(r.user);
    const int n = static_cast<int>(r.ids.size()), P_u = u.attention_prefix_length(), k_u = u.input_prefix_length();
    options.row_tags.push_back(r.user);
    // Text, left-padded: token i at column T - n + i.
    std::copy(r.ids.begin(), r.ids.end(), batch.ids.begin() + static_cast<long>(b) * T + (T - n));
    std::fill_n(options.padding_mask.begin() + static_cast<long>(b) * T + (T - n), n, 1);
    // Attention prefix: the user's P_u rows first, then masked zeros.
    for (size_t i = 0; i < u.prefix_keys.size(); i++) {
      std::memcpy(options.prefix_keys[i].data() + static_cast<int64_t>(b) * P * C, u.prefix_keys[i].data(), sizeof(float) * P_u * C);
      std::memcpy(options.prefix_values[i].data() + static_cast<int64_t>(b) * P * C, u.prefix_values[i].data(), sizeof(float) * P_u * C);
    }
    // Input prefix: masked zeros, then the user's k_u rows just before the text.
    if (k_u > 0)
      std::memcpy(input_prefix.data() + (static_cast<int64_t>(b) * k + (k - k_u)) * C, u.input_prefix.data(), sizeof(float) * k_u * C);
    uint8_t* prefix_mask = options.prefix_mask.data() + static_cast<size_t>(b) * (P + k);
    std::fill_n(prefix_mask, P_u, 1);
    std::fill_n(prefix_mask + P + (k - k_u), k_u, 1);
    // Positions as alone: the prompt row j at P_u + j, the text token i at P_u + k_u + i.
    int* positions = options.position_ids.data() + static_cast<size_t>(b) * (k + T);
    for (int j = 0; j < k_u; j++) positions[k - k_u + j] = P_u + j;
    for (int i = 0; i < n; i++) positions[k + (T - n) + i] = P_u + k_u + i;
  }
  if (k > 0) options.input_prefix = input_prefix;
  return batch;
}

Tensor ServingModel::forward(const MixedBatch& batch) const {
  NoGradGuard no_grad;
  return model_->forward(batch.ids, batch.B, batch.T, batch.options);  // (B,k+T,C)
}

// ---------------------------------------------------------------------------
// Classification: requests sorted by length into sub-batches; in each, every
// row pooled once, then each user's head on its rows' features.

std::vector<std::vector<int>> ServingModel::length_groups(const std::vector<ServeRequest>& requests) const {
  // A row's columns in the stream: its input prefix and its text. (The
  // attention prefix only adds keys: about 2% of a layer's work at config A.)
  auto prompt_length = [&](int i) { return user(requests[static_cast<size_t>(i)].user).input_prefix_length(); };
  auto text_length = [&](int i) { return static_cast<int>(requests[static_cast<size_t>(i)].ids.size()); };
  const int n = static_cast<int>(requests.size());
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return prompt_length(a) + text_length(a) < prompt_length(b) + text_length(b);
  });
  // Cut the sorted rows into consecutive runs. A run of rows (i, j] costs a
  // forward's fixed cost plus (j - i) rows of the padded width k + T (its
  // longest prompt plus its longest text, as mixed_batch lays it out).
  // cost[j] = the least cost of the first j sorted rows; start[j] = where the
  // last run of that best split starts.
  std::vector<int64_t> cost(static_cast<size_t>(n) + 1, 0);
  std::vector<int> start(static_cast<size_t>(n) + 1, 0);
  for (int j = 1; j <= n; j++) {
    cost[static_cast<size_t>(j)] = INT64_MAX;
    int k = 0, T = 0;  // the widest prompt and text of the run (i, j]
    for (int i = j - 1; i >= 0; i--) {
      k = std::max(k, prompt_length(order[static_cast<size_t>(i)]));
      T = std::max(T, text_length(order[static_cast<size_t>(i)]));
      const int64_t c = cost[static_cast<size_t>(i)] + forward_cost_in_tokens + static_cast<int64_t>(j - i) * (k + T);
      if (c < cost[static_cast<size_t>(j)]) {
        cost[static_cast<size_t>(j)] = c;
        start[static_cast<size_t>(j)] = i;
      }
    }
  }
  std::vector<std::vector<int>> groups;
  for (int j = n; j > 0; j = start[static_cast<size_t>(j)])
    groups.insert(groups.begin(), std::vector<int>(order.begin() + start[static_cast<size_t>(j)], order.begin() + j));
  return groups;
}

std::vector<Classification> ServingModel::classify(const std::vector<ServeRequest>& requests) const {
  NoGradGuard no_grad;
  std::vector<Classification> results(requests.size());
  for (const std::vector<int>& group : length_groups(requests)) {
    std::vector<ServeRequest> batch_requests;
    for (int i : group) batch_requests.push_back(requests[static_cast<size_t>(i)]);
    const MixedBatch batch = mixed_batch(batch_requests);
    const std::map<int, std::vector<int>> user_rows = rows_by_user(batch.options.row_tags, batch.B);
    bool keep_keys = false;  // some user's verbalizer continues the texts with multi-token words
    for (const auto& [user_id, rows] : user_rows) keep_keys = keep_keys || user(user_id).head->needs_text_keys();
    TextKeys keys;
    const Tensor hidden = keep_keys ? forward_keeping_keys(*model_, batch.ids, batch.B, batch.T, batch.options, keys)
                                    : forward(batch);  // (B,k+T,C)
    std::map<Pooling, Tensor> features;  // (B,C) for each pooling the batch's heads use
    for (const auto& [user_id, rows] : user_rows) {
      const Head& head = *user(user_id).head;
      const Pooling pooling = head.pooling();
      if (!features.count(pooling)) features[pooling] = model_->pool(hidden, batch.B, batch.T, pooling, batch.options);
      const Tensor logits = head.logits(*model_, copy_rows_out(features[pooling], rows), keep_keys ? &keys : nullptr, rows);  // (n,L)
      const Tensor probs = softmax(logits);                                              // (n,L)
      const int L = logits.size(1);
      for (size_t i = 0; i < rows.size(); i++) {
        Classification& c = results[static_cast<size_t>(group[static_cast<size_t>(rows[i])])];
        c.logits.assign(logits.data() + i * L, logits.data() + (i + 1) * L);
        c.probs.assign(probs.data() + i * L, probs.data() + (i + 1) * L);
        c.label = static_cast<int>(std::max_element(c.logits.begin(), c.logits.end()) - c.logits.begin());
      }
    }
  }
  return results;
}

}  // namespace ta::adapt
