// tools/bench_serve.cpp — `tinyadapt bench --serve`: personalised serving
// (adapt/serving.h) measured.
//
// 16 users (8 LoRA r8 on c_attn, 8 prefix tuning k16, random values, linear
// heads) × 8 classification requests of 16..64 random tokens (--min-tokens,
// --max-tokens) on a random GPT of the given shape, answered three ways: mixed batches of 16 (every batch holds
// all 16 users), single-user batches of 16 (a user's 8 requests twice: what
// batching buys when traffic is grouped by user), and one request at a time.
// Requests/s of each (best of --repeats; the three are timed in turn within
// each repeat, so that a change in the machine's load hits all three), and the
// ratios. (classify sorts each batch by length into sub-batches, serving.h.)
// An extra line: the same 128 requests given to classify as one window.
// Then the ceiling of batching at this size, a separate measurement: the base
// model alone (no adapters, no heads, no padding) on requests of the mean
// length, one at a time against batches of 16 and of 64.
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <omp.h>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/method.h"
#include "adapt/serving.h"
#include "data/json.h"
#include "nn/checkpoint.h"
#include "nn/gpt.h"
#include "tools/bench.h"

namespace ta::cli {
namespace {

// A random GPT of shape `c` with a byte-level tokenizer, saved in `dir`, and
// 16 users' adapters (8 LoRA, 8 prefix) with random values under dir/users.
adapt::ServingModel make_serving_fixture(ModelConfig c, const std::string& dir) {
  const data::Tokenizer tokenizer = data::Tokenizer::byte_level({"<|endoftext|>"});
  c.vocab_size = std::max(c.vocab_size, tokenizer.vocab_size());
  const std::string model_dir = dir + "/base";
  make_dirs(model_dir);
  tokenizer.save(model_dir);
  save_model(GPT(c, 1337), model_dir);
  for (int u = 0; u < 16; u++) {
    adapt::MethodConfig method;
    method.method = u % 2 == 0 ? "lora" : "prefix";
    method.lora_rank = 8;
    method.num_virtual_tokens = 16;
    adapt::HeadRequest classifier;
    classifier.type = "classifier";
    const adapt::HeadConfig head = adapt::resolve_head(classifier, method.method, c, {"no", "yes"});
    adapt::AdaptedModel a = adapt::create_adapted(model_dir, method, head, static_cast<uint64_t>(u));
    Rng rng(static_cast<uint64_t>(100 + u));
    for (const OptimParam& p : a.trainable_parameters()) {
      Tensor t = p.tensor;
      fill_normal(t, rng, 0.0f, 0.1f);
    }
    adapt::save_adapter(a, dir + "/users/" + std::to_string(u));
  }
  return adapt::ServingModel(model_dir);
}

// Seconds to classify `batches` one after the other.
double seconds_to_classify(const adapt::ServingModel& server, const std::vector<std::vector<adapt::ServeRequest>>& batches) {
  const double t0 = now_ms();
  for (const auto& batch : batches) server.classify(batch);
  return (now_ms() - t0) / 1000.0;
}

// Requests/s of the base model alone (GPT::forward, no adapters) on requests
// of `tokens` random tokens, for each entry of `batch_sizes`: 16 requests at 1
// a forward, or one forward of that many. Best of `repeats`, timed in turn.
std::vector<double> base_requests_per_second(const GPT& model, const std::vector<int>& batch_sizes, int tokens,
                                             int repeats) {
  Rng rng(7);
  std::vector<int> ids(static_cast<size_t>(64) * tokens);
  for (int& id : ids) id = rng.below(256);
  std::vector<double> best_ms(batch_sizes.size(), 1e30);
  for (int r = 0; r < repeats; r++)
    for (size_t i = 0; i < batch_sizes.size(); i++) {
      const int rows = batch_sizes[i], forwards = std::max(1, 16 / rows);
      const double t0 = now_ms();
      for (int f = 0; f < forwards; f++)
        model.forward(std::vector<int>(ids.begin(), ids.begin() + static_cast<int64_t>(rows) * tokens), rows, tokens);
      best_ms[i] = std::min(best_ms[i], (now_ms() - t0) / forwards);
    }
  std::vector<double> rps;
  for (size_t i = 0; i < batch_sizes.size(); i++) rps.push_back(batch_sizes[i] * 1000.0 / best_ms[i]);
  return rps;
}

}  // namespace

int run_serve_bench(const ModelConfig& c, int min_tokens, int max_tokens, int repeats, bool as_json) {
  char scratch[] = "/tmp/tinyadapt_serve_bench_XXXXXX";
  if (!mkdtemp(scratch)) throw InputError("bench --serve: cannot create a folder under /tmp");
  const std::string dir = scratch;
  NoGradGuard no_grad;
  adapt::ServingModel server = make_serving_fixture(c, dir);
  const int users = 16, per_user = 8, batch = 16;
  for (int u = 0; u < users; u++) server.add_user("user" + std::to_string(u), dir + "/users/" + std::to_string(u));
  // requests[u][j]: user u's j-th request, min_tokens..max_tokens random tokens.
  Rng rng(1337);
  std::vector<std::vector<adapt::ServeRequest>> requests(users);
  for (int u = 0; u < users; u++)
    for (int j = 0; j < per_user; j++) {
      adapt::ServeRequest r;
      r.user = u;
      r.ids.resize(static_cast<size_t>(min_tokens + rng.below(max_tokens - min_tokens + 1)));
      for (int& id : r.ids) id = rng.below(256);
      requests[static_cast<size_t>(u)].push_back(r);
    }
  std::vector<std::vector<adapt::ServeRequest>> mixed(per_user), single_user(users), one_at_a_time;
  for (int u = 0; u < users; u++)
    for (int j = 0; j < per_user; j++) {
      const adapt::ServeRequest& r = requests[static_cast<size_t>(u)][static_cast<size_t>(j)];
      mixed[static_cast<size_t>(j)].push_back(r);  // batch j: the j-th request of every user
      one_at_a_time.push_back({r});
    }
  for (int u = 0; u < users; u++)
    for (int copy = 0; copy < batch / per_user; copy++)
      for (const adapt::ServeRequest& r : requests[static_cast<size_t>(u)]) single_user[static_cast<size_t>(u)].push_back(r);
  server.classify(mixed[0]);  // warm-up: the buffer pool, OpenBLAS threads
  // An extra measurement: all the requests given to classify at once, which sorts and cuts them itself.
  const std::vector<std::vector<adapt::ServeRequest>> window = {[&] {
    std::vector<adapt::ServeRequest> all;
    for (const auto& b : mixed) all.insert(all.end(), b.begin(), b.end());
    return all;
  }()};
  double mixed_s = 1e30, single_s = 1e30, alone_s = 1e30, window_s = 1e30;
  for (int r = 0; r < repeats; r++) {
    mixed_s = std::min(mixed_s, seconds_to_classify(server, mixed));
    single_s = std::min(single_s, seconds_to_classify(server, single_user));
    alone_s = std::min(alone_s, seconds_to_classify(server, one_at_a_time));
    window_s = std::min(window_s, seconds_to_classify(server, window));
  }
  const double mixed_rps = users * per_user / mixed_s, single_rps = users * batch / single_s;
  const double alone_rps = users * per_user / alone_s, window_rps = users * per_user / window_s;
  const size_t window_batches = server.length_groups(window[0]).size();
  const int mean_tokens = (min_tokens + max_tokens) / 2;
  const std::vector<double> base_rps = base_requests_per_second(*load_model(dir + "/base"), {1, batch, 64}, mean_tokens, repeats);
  std::filesystem::remove_all(dir);
  std::printf("serving %d users x %d requests of %d..%d tokens (8 LoRA r8, 8 prefix k16), batch %d, %d threads:\n"
              "requests/s mixed %.1f | single-user batches %.1f | one at a time %.1f\n", users, per_user, min_tokens,
              max_tokens, batch, omp_get_max_threads(), mixed_rps, single_rps, alone_rps);
  std::printf("mixed / single-user batches %.2f (target >= 0.9) | mixed / one at a time %.2f (target >= 4)\n",
              mixed_rps / single_rps, mixed_rps / alone_rps);
  std::printf("extra: all %d requests as one window (classify cuts them into %zu batches of similar lengths): "
              "requests/s %.1f, %.2fx one at a time\n", users * per_user, window_batches, window_rps, window_rps / alone_rps);
  std::printf("ceiling, the base model alone (no adapters, no padding), requests of %d tokens: requests/s one at a time "
              "%.1f | batch %d %.1f (%.2fx) | batch 64 %.1f (%.2fx)\n", mean_tokens, base_rps[0], batch, base_rps[1],
              base_rps[1] / base_rps[0], base_rps[2], base_rps[2] / base_rps[0]);
  if (as_json) {
    json::Value out = json::Value::object();
    out.set("mixed_rps", mixed_rps);
    out.set("single_user_rps", single_rps);
    out.set("one_at_a_time_rps", alone_rps);
    out.set("mixed_over_single_user", mixed_rps / single_rps);
    out.set("mixed_over_one_at_a_time", mixed_rps / alone_rps);
    out.set("window_rps", window_rps);
    out.set("base_one_at_a_time_rps", base_rps[0]);
    out.set("base_batch_rps", base_rps[1]);
    out.set("base_batch64_rps", base_rps[2]);
    std::printf("JSON %s\n", out.dump().c_str());
  }
  return 0;
}

}  // namespace ta::cli
