// adapt/serving.h — personalised serving: many users' adapters in one mixed batch.
//
// The idea (docs/design.md, "Personalised serving"; the "one prefix per user"
// story of prefix tuning, Li & Liang 2021 §1): every user of a service has a
// small adapter of their own, but all of them adapt the same frozen base model. So the base is
// loaded once, every user's adapter is loaded onto it, and one mini-batch may
// hold requests of many users at once: each row names its user (or none,
// base only), and each row's output equals that request run alone with its
// user's adapter (load_adapted + forward). How each kind of method is mixed:
//
//   prompt tuning   per-row gather: the batch's input prefix is (B, k, C),
//                   row b holding its user's prompt (right-aligned, so it
//                   ends where the text starts), zeros for users with a
//                   shorter or no prompt, hidden by ForwardOptions::prefix_mask.
//   prefix tuning   per-row gather too: each layer's prefix keys / values are
//                   (B, P, C), row b holding its user's P_u rows, the rest
//                   masked. (A prefix saved with its MLP reparameterisation is
//                   folded in the file: it is a plain table here.)
//   positions       a row alone would put its text at P_u + k_u + t; in the
//                   batch the prefixes are padded to the longest and the text
//                   is left-padded, so each row gets its own positions
//                   through ForwardOptions::position_ids.
//   LoRA            per-row low-rank deltas: on every Linear some user's
//                   LoRA targets, a dispatcher computes row b's delta as
//                   scale · (x_b Aᵀ) Bᵀ with the factors of row b's user
//                   (ForwardOptions::row_tags), one run of consecutive rows
//                   of a user at a time, the runs spread over the threads;
//                   rows whose user does not adapt the Linear get zeros.
//                   The factors are Linear::low_rank, which LoRA's attach()
//                   sets beside its output_delta.
//   adapters        grouped by user in Block's sublayer hooks: each user's
//                   hook runs once on that user's rows (gathered), a row
//                   whose user has a Houlsby adapter gets h + W_up σ(W_down h),
//                   the others h unchanged.
//   heads           classification pools every row once (one call per
//                   pooling rule in the batch), then applies each user's head
//                   (linear, MLP probe or verbalizer) to its rows' features.
//                   When some user's verbalizer has multi-token label words,
//                   the batch's forward keeps its keys and that user's rows
//                   are continued over the words' tokens from them
//                   (adapt/verbalizer.h): each continuation row attends to
//                   its own text row's keys under that row's masks, at the
//                   positions after its text, with its user's row tag.
//
// Lengths: a batch is as wide as its longest prompt plus its longest text, so
// short rows beside long ones are mostly padding. classify() therefore sorts
// its requests by prompt + text length and cuts them into the sub-batches
// that minimise the padded work plus a fixed cost per forward (length_groups);
// the answers still come back in the order of the requests. generate() runs
// one batch: each of its steps costs about the fixed cost alone, which more
// sub-batches would multiply.
//
// How the hooks are found: a Method attaches itself by setting hooks on the
// model (Linear::output_delta and low_rank, Block::*_output_hook) and keeps
// its tensors in its own closures. add_user lets one user's method attach to the shared base,
// then takes the hooks it set off the base into that user's slot, so the next
// user finds the base clean. Dispatcher hooks installed on the base then
// route each row to its user's hooks. The method's prepare() (prompt and
// prefix) is called once at load; its tensors are gathered per batch.
//
// What cannot be mixed: a method that changes the base model's own weights —
// finetune (all of them), BitFit (the biases), adapters with train_layernorm
// (the layer norms) — since every user shares those weights; and a Linear
// output_delta given without its low-rank factors. Such a user is
// refused with an error its requests answer; it never falls back to the base.
//
// Generation runs every row with one KV cache (B, P+k+T+steps, C) per layer:
// the cache starts as the rows' gathered attention prefixes, the first step
// feeds the left-padded prompts with the gathered input prefixes, then each
// step feeds one token per row. The key mask grows with the cache.
//
// Everything here runs under NoGradGuard: serving never records a tape, and
// the row gathers below are plain copies with no backward.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapt/head.h"
#include "adapt/method.h"
#include "data/bpe.h"

namespace ta::adapt {

// One request, tokenised.
struct ServeRequest {
  int user = 0;          // ServingModel::user_index
  std::vector<int> ids;  // the text's tokens
  int max_new = 0;       // generation: tokens to generate; 0 = classification
  uint64_t seed = 0;     // generation: the sampler's seed (as `tinyadapt generate --seed`)
};

struct Classification {
  int label = 0;               // argmax of the logits
  std::vector<float> logits;   // (L) the head's label logits
  std::vector<float> probs;    // (L) softmax of the logits
};

// One user: an adapter loaded onto the shared base, or the base alone.
struct ServingUser {
  std::string name;
  std::string adapter_dir;                 // "" = base only
  std::string error;                       // why the adapter could not be served; "" = fine
  std::unique_ptr<Method> method;          // null for base only and on error
  std::unique_ptr<Head> head;              // null when the adapter has none
  // What the method's prepare() gives, computed once at load:
  Tensor input_prefix;                     // (k, C) prompt tuning; undefined otherwise
  std::vector<Tensor> prefix_keys, prefix_values;  // one (P, C) per layer: prefix tuning; empty otherwise
  // The hooks the method's attach() set on the base, taken off it:
  std::map<std::string, Linear::LowRankUpdate> low_rank;  // LoRA's factors, by the Linear's dotted name
  std::vector<SublayerHook> attention_hooks, mlp_hooks;  // one per layer; empty = none (adapters)

  int attention_prefix_length() const { return prefix_keys.empty() ? 0 : prefix_keys[0].size(0); }  // P_u
  int input_prefix_length() const { return input_prefix.defined() ? input_prefix.size(0) : 0; }    // k_u
};

// A mixed batch laid out for GPT::forward: left-padded ids and the per-row
// prefixes, masks and positions in `options`.
struct MixedBatch {
  int B = 0, T = 0;       // rows; text length after left padding
  int P = 0, k = 0;       // the longest attention prefix and input prefix of the batch's users
  std::vector<int> ids;   // (B,T), row b's tokens in its last n_b columns, id 0 before them
  ForwardOptions options; // input_prefix (B,k,C), prefix_keys/values (B,P,C) per layer,
                          // prefix_mask (B,P+k), padding_mask (B,T), position_ids (B,k+T), row_tags (B)
};

class ServingModel {
 public:
  // Loads the base model directory (weights and tokenizer) once, frozen.
  explicit ServingModel(const std::string& model_dir);
  ServingModel(const ServingModel&) = delete;
  ServingModel& operator=(const ServingModel&) = delete;

  // Adds user `name` served by the adapter at `adapter_dir` ("" = base only)
  // and returns its index. An adapter that cannot be loaded or mixed does not
  // throw: the user is kept with its error, which each of its requests
  // answers. InputError for a name given twice.
  int add_user(const std::string& name, const std::string& adapter_dir);
  int user_index(const std::string& name) const;  // -1 when unknown
  const ServingUser& user(int index) const { return *users_[static_cast<size_t>(index)]; }

  const GPT& model() const { return *model_; }
  // serve --bf16: the shared base's matrices in bfloat16 (GPT::store_frozen_in_bf16),
  // once the users are added (an adapter attached later would find no float32 weights).
  void store_base_in_bf16() { model_->store_frozen_in_bf16(); }
  const data::Tokenizer& tokenizer() const { return tokenizer_; }

  // "" when `request` can be served, else why not: the user's load error, an
  // empty text, classification without a head, a text (plus max_new, or plus
  // the verbalizer's label words) longer than the positions left after the
  // user's prefix.
  std::string check(const ServeRequest& request) const;

  // Requests that passed check(), all of one kind: classify in the mixed
  // batches of length_groups, generate in one mixed batch. Results in the
  // order of `requests`.
  std::vector<Classification> classify(const std::vector<ServeRequest>& requests) const;
  // The new tokens of each row (greedy at temperature 0, else sampled from
  // softmax(logits / temperature) with Rng(request.seed)); a row stops after
  // max_new tokens or at stop_token (not included; -1 = none).
  std::vector<std::vector<int>> generate(const std::vector<ServeRequest>& requests, float temperature,
                                         int stop_token) const;

  // The layout of a mixed batch, and its hidden states (B, k+T, C) after ln_f.
  // Row b's text token i sits at column k + (T - n_b) + i.
  MixedBatch mixed_batch(const std::vector<ServeRequest>& requests) const;
  Tensor forward(const MixedBatch& batch) const;

  // The indices of `requests` cut into batches for classify(): sorted by
  // input prefix + text length (stable), then split where the padding saved
  // is worth more than another forward's fixed cost, counted as
  // forward_cost_in_tokens token rows. Every index appears once.
  std::vector<std::vector<int>> length_groups(const std::vector<ServeRequest>& requests) const;
  // At config A on 2 cores a forward costs about 0.15 ms beyond its tokens,
  // 15 token rows at about 10 µs each (a 1x40 forward takes 0.79 ms, 16x40
  // 6.5 ms); the throughput of `tinyadapt bench --serve`'s window line is flat
  // for values 16..64. A larger model (more work per token) would want a
  // smaller value.
  int forward_cost_in_tokens = 32;

 private:
  void remove_hooks();
  void take_hooks(ServingUser& user);
  void load_adapter(ServingUser& user);
  void install_dispatchers();

  std::unique_ptr<GPT> model_;
  data::Tokenizer tokenizer_;
  std::vector<std::unique_ptr<ServingUser>> users_;  // stable addresses: the dispatchers read them
};

}  // namespace ta::adapt
