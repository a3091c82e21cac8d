// tests/test_serving.cpp — mixed-batch serving (adapt/serving.h) and `tinyadapt serve`.
//
// Fixture: a tiny random GPT (2 layers, C = 32, matrices redrawn with sd 0.2
// so that positions, prefixes and adapters move the logits well above the
// tolerance), its BPE tokenizer, and one adapter directory per kind of user —
// prompt tuning (verbalizer), prefix tuning (linear head), prefix tuning
// trained with the MLP reparameterisation (saved folded), two LoRA users on
// the same layers (so two groups share a Linear), a Houlsby adapter, an MLP
// probe, two verbalizers over multi-token label words (a prompt, and a LoRA
// whose row tags must reach the continuation rows), and a base-only user.
// Every adapter's tensors are redrawn at random before saving (LoRA's B
// starts at zero, which would make it the base).
//
// The property: every row of a mixed batch equals the same request run alone
// through the single-adapter path (load_adapted + GPT::forward and
// AdaptedModel::label_logits, or nn/generate): 1e-5 relative on the logits
// of every text position and on the head's label logits; identical tokens
// for greedy and for seeded sampling.
// Then what cannot be served: methods that change the base (finetune, BitFit,
// adapters training their layer norms) are refused without touching the base,
// a broken adapter only fails its own user; and the command line: bad
// users.tsv lines, and a run whose error lines answer in order while the
// other requests are served.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/serving.h"
#include "data/corpus.h"
#include "data/json.h"
#include "data/tasks.h"
#include "nn/checkpoint.h"
#include "nn/generate.h"
#include "tests/helpers.h"

using namespace ta;
using namespace ta::adapt;
using ta::testing::max_relative_diff;
using ta::testing::ScratchDir;
using ta::testing::save_keyword_base;
using ta::testing::small_method_config;
using ta::testing::tinyadapt_binary;

namespace {

struct UserSpec {
  std::string name;
  MethodConfig method;
  std::string head;                      // HeadRequest::type ("" = the method's default)
  std::vector<std::string> label_words = {};  // HeadRequest::label_words (empty = the label names)
};

std::vector<UserSpec> mixable_users() {
  MethodConfig prompt = small_method_config("prompt");
  prompt.num_virtual_tokens = 3;
  MethodConfig prefix = small_method_config("prefix");
  prefix.num_virtual_tokens = 5;
  MethodConfig prefix_mlp = small_method_config("prefix");
  prefix_mlp.prefix_projection = true;
  MethodConfig lora = small_method_config("lora");
  lora.target_modules = {"c_attn", "c_fc"};
  MethodConfig short_prompt = small_method_config("prompt");
  short_prompt.num_virtual_tokens = 2;
  return {{"ann", prompt, ""},           {"bob", prefix, "classifier"}, {"cat", prefix_mlp, ""},
          {"dan", lora, ""},             {"eve", lora, ""},             {"fay", small_method_config("adapter"), ""},
          {"gus", small_method_config("probe-mlp"), ""},
          // Verbalizers over multi-token words (2 and 3 tokens): their rows are continued after the text.
          {"joe", short_prompt, "", {"the bad", "the good"}}, {"kay", lora, "verbalizer", {"so bad", "so good"}}};
}

// The model directory and one adapter directory per user (users.tsv beside them).
struct Fixture {
  ScratchDir scratch{"serving"};
  std::string model_dir = scratch.path + "/base";
  data::Task task = data::load_task("tests/fixtures/adapt/keyword/train.tsv", 7);
  std::map<std::string, std::string> adapter_dirs;  // user -> dir

  Fixture() {
    save_keyword_base(task, model_dir, 40, 0.2f);
    uint64_t seed = 20;
    for (const UserSpec& u : mixable_users()) save(u, seed++);
  }

  // An adapter for `spec` with random values everywhere, saved under users/NAME.
  void save(const UserSpec& spec, uint64_t seed) {
    HeadRequest request;
    request.type = spec.head;
    request.hidden = spec.method.probe_hidden;
    request.label_words = spec.label_words;
    AdaptedModel a = create_adapted(model_dir, spec.method,
                                    resolve_head(request, spec.method.method, a_config(), task.label_names), seed);
    Rng rng(seed);
    for (const OptimParam& p : a.trainable_parameters()) {
      Tensor t = p.tensor;
      fill_normal(t, rng, 0.0f, 0.3f);
    }
    const std::string dir = scratch.path + "/users/" + spec.name;
    save_adapter(a, dir);
    adapter_dirs[spec.name] = dir;
  }

  ModelConfig a_config() const { return read_config(model_dir + "/config.json"); }

  // The single-adapter path for `user` (load_adapted), loaded once; the bare base for "hal".
  const AdaptedModel& alone(const std::string& user) const {
    auto found = alone_models.find(user);
    if (found == alone_models.end())
      found = alone_models.emplace(user, load_adapted(model_dir, adapter_dirs.at(user), false)).first;
    return found->second;
  }
  const GPT& base() const {
    if (!base_model) base_model = load_model(model_dir);
    return *base_model;
  }
  mutable std::map<std::string, AdaptedModel> alone_models;
  mutable std::unique_ptr<GPT> base_model;

  // A server with every mixable user and the base-only user "hal".
  std::unique_ptr<ServingModel> server() const {
    auto s = std::make_unique<ServingModel>(model_dir);
    for (const UserSpec& u : mixable_users()) s->add_user(u.name, adapter_dirs.at(u.name));
    s->add_user("hal", "");
    return s;
  }
};

std::vector<int> encode(const ServingModel& s, const std::string& text) {
  return s.tokenizer().encode(text, {false, "test"});
}

// The request's text logits (n, V) run alone, and its label logits when the
// adapter has a head: through load_adapted, or the bare base for "hal".
struct Alone {
  std::vector<float> text_logits, label_logits;
};

Alone run_alone(const Fixture& f, const std::string& user, const std::vector<int>& ids) {
  NoGradGuard no_grad;
  const int n = static_cast<int>(ids.size());
  Alone out;
  if (user == "hal") {
    out.text_logits = f.base().logits(f.base().forward(ids, 1, n)).to_vector();
    return out;
  }
  const AdaptedModel& a = f.alone(user);
  ForwardOptions options = a.forward_options(1, nullptr);
  Tensor hidden = a.model->forward(ids, 1, n, options);  // (1,k+n,C)
  const int k = hidden.size(1) - n;
  out.text_logits = a.model->logits(slice(hidden, 1, k, k + n)).to_vector();
  if (a.head) out.label_logits = a.label_logits(make_batch({{ids, 0}}, {0}), nullptr).to_vector();
  return out;
}

// Row b's text logits (n_b, V) from the hidden states of a mixed batch.
std::vector<float> row_text_logits(const ServingModel& s, const MixedBatch& batch, const Tensor& hidden, int b, int n) {
  NoGradGuard no_grad;
  const int first = batch.k + batch.T - n;
  Tensor row = slice(slice(hidden, 0, b, b + 1), 1, first, first + n);  // (1,n,C)
  return s.model().logits(row).to_vector();
}

// Users in a scrambled order, repeated, with texts of different lengths.
std::vector<std::pair<std::string, std::string>> mixed_requests(const Fixture& f) {
  const std::vector<std::string> users = {"dan", "hal", "ann", "eve", "bob", "fay", "gus", "cat", "ann", "joe", "dan", "kay", "bob", "joe"};
  std::vector<std::pair<std::string, std::string>> requests;
  for (size_t i = 0; i < users.size(); i++) requests.push_back({users[i], f.task.train[i * 3].text_a});
  requests[3].second += " and then the team was great again";  // the longest row
  return requests;
}

}  // namespace

TEST_CASE("serving: every row of a mixed batch equals its request run alone (logits of every text position, label logits)") {
  Fixture f;
  auto server = f.server();
  const auto texts = mixed_requests(f);
  std::vector<ServeRequest> requests;
  for (const auto& [user, text] : texts) requests.push_back({server->user_index(user), encode(*server, text), 0, 0});
  for (const ServeRequest& r : requests) REQUIRE(server->check(r).empty() == (r.user != server->user_index("hal")));

  // joe's and kay's verbalizers continue their rows over words of 2 and 3 tokens.
  CHECK(server->user(server->user_index("joe")).head->continuation_positions() == 1);
  CHECK(server->user(server->user_index("kay")).head->continuation_positions() == 2);
  const MixedBatch batch = server->mixed_batch(requests);
  CHECK(batch.P == 5);  // bob's prefix, the longest
  CHECK(batch.k == 3);  // ann's prompt
  const Tensor hidden = server->forward(batch);
  std::vector<ServeRequest> classifiable;
  for (const ServeRequest& r : requests)
    if (server->user(r.user).head) classifiable.push_back(r);
  const std::vector<Classification> classes = server->classify(classifiable);
  const Alone base_alone = run_alone(f, "hal", requests[0].ids);
  size_t c = 0;
  for (size_t b = 0; b < requests.size(); b++) {
    const std::string& user = texts[b].first;
    CAPTURE(user);
    CAPTURE(b);
    const int n = static_cast<int>(requests[b].ids.size());
    const Alone alone = run_alone(f, user, requests[b].ids);
    CHECK(max_relative_diff(row_text_logits(*server, batch, hidden, static_cast<int>(b), n), alone.text_logits) <= 1e-5f);
    if (!server->user(requests[b].user).head) continue;
    const Classification& got = classes[c++];
    CHECK(max_relative_diff(got.logits, alone.label_logits) <= 1e-5f);
    CHECK(got.label == static_cast<int>(std::max_element(got.logits.begin(), got.logits.end()) - got.logits.begin()));
    CHECK(std::fabs(got.probs[0] + got.probs[1] - 1.0f) < 1e-6f);
  }
  // The adapters matter: on the same text, every adapted user's logits are far from the base's
  // (the probe only adds a head, so its LM is the base's).
  for (const std::string user : {"ann", "bob", "cat", "dan", "eve", "fay", "joe", "kay"}) {
    CAPTURE(user);
    CHECK(max_relative_diff(run_alone(f, user, requests[0].ids).text_logits, base_alone.text_logits) > 1e-2f);
  }
}

TEST_CASE("serving: generation in a mixed batch gives each row's tokens alone (greedy and seeded sampling, KV cache)") {
  Fixture f;
  auto server = f.server();
  const auto texts = mixed_requests(f);
  for (const float temperature : {0.0f, 0.9f}) {
    CAPTURE(temperature);
    std::vector<ServeRequest> requests;
    for (size_t i = 0; i < texts.size(); i++)
      requests.push_back({server->user_index(texts[i].first), encode(*server, texts[i].second), 4 + static_cast<int>(i % 4),
                          100 + i});
    for (const ServeRequest& r : requests) REQUIRE(server->check(r).empty());
    const std::vector<std::vector<int>> got = server->generate(requests, temperature, -1);
    for (size_t b = 0; b < requests.size(); b++) {
      CAPTURE(texts[b].first);
      GenerateOptions g;
      g.max_new_tokens = requests[b].max_new;
      g.temperature = temperature;
      g.seed = requests[b].seed;
      std::vector<int> alone;
      if (texts[b].first == "hal") {
        alone = ta::generate(f.base(), requests[b].ids, g);
      } else {
        NoGradGuard no_grad;
        const AdaptedModel& a = f.alone(texts[b].first);
        alone = ta::generate(*a.model, requests[b].ids, g, a.forward_options(1, nullptr));
      }
      CHECK(got[b] == alone);
    }
  }
  // A stop token ends its row early and is not returned; the other rows go on.
  std::vector<ServeRequest> two = {{server->user_index("dan"), encode(*server, "then and soon"), 6, 0},
                                   {server->user_index("bob"), encode(*server, "we they of"), 6, 0}};
  const std::vector<std::vector<int>> free_run = server->generate(two, 0.0f, -1);
  const std::vector<std::vector<int>> stopped = server->generate(two, 0.0f, free_run[0][2]);
  CHECK(stopped[0] == std::vector<int>(free_run[0].begin(), free_run[0].begin() + 2));
  CHECK(stopped[1].size() <= free_run[1].size());
}

TEST_CASE("serving: LoRA rows in runs (a user's consecutive rows, a batch of one user, rows without LoRA between) equal each request alone") {
  Fixture f;
  auto server = f.server();
  // dan's LoRA adapts c_attn and c_fc of both layers: four factored deltas, run row by row.
  CHECK(server->user(server->user_index("dan")).low_rank.size() == 4);
  CHECK(server->user(server->user_index("bob")).low_rank.empty());
  const std::vector<std::vector<std::string>> batches = {
      {"dan", "dan", "eve", "eve", "eve", "hal", "bob", "dan"}, {"eve", "eve", "eve"}, {"dan"}};
  for (const std::vector<std::string>& users : batches) {
    std::vector<ServeRequest> requests;
    for (size_t i = 0; i < users.size(); i++)
      requests.push_back({server->user_index(users[i]), encode(*server, f.task.train[i * 5 + 1].text_a), 0, 0});
    const MixedBatch batch = server->mixed_batch(requests);
    const Tensor hidden = server->forward(batch);
    for (size_t b = 0; b < requests.size(); b++) {
      CAPTURE(users.size());
      CAPTURE(b);
      const int n = static_cast<int>(requests[b].ids.size());
      CHECK(max_relative_diff(row_text_logits(*server, batch, hidden, static_cast<int>(b), n),
                              run_alone(f, users[b], requests[b].ids).text_logits) <= 1e-5f);
    }
  }
}

TEST_CASE("serving: length_groups sorts rows by prompt + text length and splits where the padding saved outweighs a forward") {
  Fixture f;
  auto server = f.server();
  const int dan = server->user_index("dan"), ann = server->user_index("ann"), bob = server->user_index("bob");
  // Widths (input prefix + text): ann's prompt has 3 rows; bob's attention prefix adds keys, not width.
  auto request = [](int user, int n) { return ServeRequest{user, std::vector<int>(static_cast<size_t>(n), 1), 0, 0}; };
  const std::vector<ServeRequest> requests = {request(dan, 30), request(dan, 2), request(bob, 31),
                                              request(ann, 1), request(dan, 29), request(dan, 2)};
  // Widths 30, 2, 31, 4, 29, 2. With a forward worth 64 rows, one batch costs
  // 64 + 6·31 = 250 and {2,2,4} {29,30,31} 2·64 + 3·4 + 3·31 = 233; with the
  // default (32), 218 against 169.
  for (const int forward_cost : {64, server->forward_cost_in_tokens}) {
    server->forward_cost_in_tokens = forward_cost;
    CHECK(server->length_groups(requests) == std::vector<std::vector<int>>{{1, 5, 3}, {4, 0, 2}});
  }
  server->forward_cost_in_tokens = 1000;  // a forward dearer than any padding: one batch, sorted
  CHECK(server->length_groups(requests) == std::vector<std::vector<int>>{{1, 5, 3, 4, 0, 2}});
  server->forward_cost_in_tokens = 0;  // free forwards: no row is ever padded
  std::vector<int> seen;
  for (const std::vector<int>& group : server->length_groups(requests)) {
    for (int i : group) CHECK(requests[static_cast<size_t>(i)].ids.size() == requests[static_cast<size_t>(group[0])].ids.size());
    seen.insert(seen.end(), group.begin(), group.end());
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(server->length_groups({}).empty());
}

TEST_CASE("serving: classify answers in the order of the requests however they are cut into sub-batches") {
  Fixture f;
  auto server = f.server();
  std::vector<ServeRequest> requests;
  std::vector<std::string> users;
  for (const auto& [user, text] : mixed_requests(f))
    if (user != "hal") {
      requests.push_back({server->user_index(user), encode(*server, text), 0, 0});
      users.push_back(user);
    }
  const int default_cost = server->forward_cost_in_tokens;
  for (const int forward_cost : {0, 64, 100000}) {  // one row a batch (nearly), a middle value, one batch
    CAPTURE(forward_cost);
    server->forward_cost_in_tokens = forward_cost;
    const std::vector<Classification> got = server->classify(requests);
    REQUIRE(got.size() == requests.size());
    for (size_t b = 0; b < requests.size(); b++) {
      CAPTURE(users[b]);
      CHECK(max_relative_diff(got[b].logits, run_alone(f, users[b], requests[b].ids).label_logits) <= 1e-5f);
    }
  }
  server->forward_cost_in_tokens = default_cost;
  CHECK(server->length_groups(requests).size() > 1);  // the default does split this batch
}

TEST_CASE("serving: a method that changes the base's weights is refused and the base is untouched; a broken adapter fails only its user") {
  Fixture f;
  MethodConfig adapter_with_norms = small_method_config("adapter");
  adapter_with_norms.train_layernorm = true;
  f.save({"fine", small_method_config("finetune"), ""}, 31);
  f.save({"bias", small_method_config("bitfit"), ""}, 32);
  f.save({"norm", adapter_with_norms, ""}, 33);
  auto server = f.server();
  std::map<std::string, std::vector<float>> before;
  for (auto& [name, t] : server->model().named_parameters()) before[name] = t.to_vector();
  const std::vector<int> ids = encode(*server, "then then today great");
  const std::vector<float> dan_before = server->classify({{server->user_index("dan"), ids, 0, 0}})[0].logits;

  for (const std::string user : {"fine", "bias", "norm"}) {
    CAPTURE(user);
    const int index = server->add_user(user, f.adapter_dirs.at(user));
    CHECK(server->user(index).error.find("changes the base model's own weights") != std::string::npos);
    CHECK(server->check({index, ids, 0, 0}).find("user '" + user + "'") == 0);
  }
  const int broken = server->add_user("ivy", f.scratch.path + "/no-such-adapter");
  CHECK(server->user(broken).error.find("no-such-adapter/adapter_config.json") != std::string::npos);
  CHECK(server->check({broken, ids, 3, 0}) != "");
  CHECK_THROWS_AS(server->add_user("dan", ""), InputError);

  for (auto& [name, t] : server->model().named_parameters()) {
    CAPTURE(name);
    CHECK(t.to_vector() == before[name]);
    CHECK_FALSE(t.requires_grad());
  }
  CHECK(server->classify({{server->user_index("dan"), ids, 0, 0}})[0].logits == dan_before);
}

TEST_CASE("serving: check() refuses classification without a head and texts that do not fit") {
  Fixture f;
  auto server = f.server();
  const int hal = server->user_index("hal"), bob = server->user_index("bob");
  CHECK(server->check({hal, {1, 2}, 0, 0}).find("has no task head") != std::string::npos);
  CHECK(server->check({hal, {1, 2}, 3, 0}) == "");
  CHECK(server->check({bob, {}, 0, 0}) == "the text is empty");
  // n_positions 40, bob's prefix 5: 35 tokens fit; generating m tokens feeds m-1 of them back.
  CHECK(server->check({bob, std::vector<int>(35, 1), 0, 0}) == "");
  CHECK(server->check({bob, std::vector<int>(36, 1), 0, 0}).find("at most 35 fit") != std::string::npos);
  CHECK(server->check({bob, std::vector<int>(30, 1), 6, 0}) == "");
  CHECK(server->check({bob, std::vector<int>(30, 1), 7, 0}).find("at most 29 fit") != std::string::npos);
  // joe: a prompt of 2 and label words of 2 tokens, whose first is fed after the text: 37 fit.
  const int joe = server->user_index("joe");
  REQUIRE(server->user(joe).head->continuation_positions() == 1);
  CHECK(server->check({joe, std::vector<int>(37, 1), 0, 0}) == "");
  CHECK(server->check({joe, std::vector<int>(38, 1), 0, 0}).find("at most 37 fit (beside the label words)") != std::string::npos);
  CHECK(server->check({joe, std::vector<int>(38, 1), 1, 0}) == "");  // generation has no label words
}

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

int run_serve(const std::string& arguments, const std::string& out_path, const std::string& err_path) {
  const int status = std::system((tinyadapt_binary() + " serve " + arguments + " >" + out_path + " 2>" + err_path).c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("tinyadapt serve: bad users.tsv lines exit 2 naming file:line") {
  Fixture f;
  const std::string out = f.scratch.file("out"), err = f.scratch.file("err");
  write_text(f.scratch.file("empty.jsonl"), "");
  for (const char* bad : {"ann\tusers/ann\textra\n", "\tusers/ann\n", "ann users/ann\n", "ann\tusers/ann\nann\tusers/bob\n"}) {
    CAPTURE(bad);
    write_text(f.scratch.file("bad.tsv"), std::string("# comment\n") + bad);
    CHECK(run_serve("--model " + f.model_dir + " --adapters " + f.scratch.file("bad.tsv") + " --input " +
                        f.scratch.file("empty.jsonl"), out, err) == 2);
    CHECK(read_text(err).find("bad.tsv:") != std::string::npos);
  }
}

TEST_CASE("tinyadapt serve: answers in input order; unknown users, broken adapters and bad lines get errors, the rest is served") {
  Fixture f;
  // Relative adapter paths are read relative to users.tsv's folder; "-" and an empty column mean base only.
  write_text(f.scratch.file("users.tsv"), "# user\tadapter\nann\tusers/ann\ndan\tusers/dan\nbob\t" +
                                              f.adapter_dirs.at("bob") + "\nhal\t-\nkim\t\nivy\tusers/missing\n");
  write_text(f.scratch.file("requests.jsonl"),
             "{\"id\": 1, \"user\": \"ann\", \"text\": \"then and soon great\"}\n"
             "{\"id\": \"two\", \"user\": \"nobody\", \"text\": \"hello\"}\n"
             "{\"id\": 3, \"user\": \"dan\", \"text\": \"then and soon\", \"max_new\": 5}\n"
             "this is not json\n"
             "{\"id\": 5, \"user\": \"ivy\", \"text\": \"great\"}\n"
             "{\"id\": 6, \"user\": \"hal\", \"text\": \"great\"}\n"
             "{\"id\": 7, \"user\": \"kim\", \"text\": \"we they\", \"max_new\": 3}\n"
             "{\"id\": 8, \"user\": \"bob\"}\n"
             "{\"id\": 9, \"user\": \"bob\", \"text\": \"our the of later a awful\"}\n"
             "{\"id\": 10, \"user\": \"bob\", \"text\": \"x\", \"max_new\": 0}\n");
  const std::string out = f.scratch.file("out"), err = f.scratch.file("err");
  REQUIRE(run_serve("--model " + f.model_dir + " --adapters " + f.scratch.file("users.tsv") + " --batch 3 --temperature 0 --input " +
                        f.scratch.file("requests.jsonl"), out, err) == 0);
  std::vector<json::Value> lines;
  std::string text = read_text(out);
  for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(json::parse(text.substr(start, end - start), "serve output"));
  REQUIRE(lines.size() == 10);
  auto error_of = [&](size_t i) { return lines[i].find("error") ? lines[i].at("error").as_string() : std::string(); };
  // 1: classified by ann's verbalizer, as the library does.
  auto server = f.server();
  const Classification ann = server->classify({{server->user_index("ann"), encode(*server, "then and soon great"), 0, 0}})[0];
  CHECK(lines[0].at("id").as_number() == 1);
  CHECK(lines[0].at("user").as_string() == "ann");
  CHECK(lines[0].at("label").as_string() == f.task.label_names[static_cast<size_t>(ann.label)]);
  CHECK(std::fabs(lines[0].at("probs").at(f.task.label_names[0]).as_number() - ann.probs[0]) < 1e-6);
  CHECK(lines[1].at("id").as_string() == "two");
  CHECK(error_of(1).find("unknown user 'nobody'") != std::string::npos);
  // 3: dan's greedy continuation, as the library's.
  const std::vector<int> dan = server->generate({{server->user_index("dan"), encode(*server, "then and soon"), 5, 0}}, 0.0f, -1)[0];
  // (the output is valid UTF-8: bytes that end inside a character become U+FFFD)
  const std::string expected = server->tokenizer().decode(dan), got = lines[2].at("text").as_string();
  const size_t valid = data::find_invalid_utf8(expected);
  if (valid == std::string::npos) CHECK(got == expected);
  else CHECK(got.substr(0, valid + 3) == expected.substr(0, valid) + "\xEF\xBF\xBD");
  CHECK(lines[3].at("id").is_null());
  CHECK(error_of(3).find("input line 4: invalid JSON") != std::string::npos);
  CHECK(error_of(4).find("users/missing/adapter_config.json") != std::string::npos);
  CHECK(error_of(5).find("has no task head") != std::string::npos);
  CHECK(lines[6].at("user").as_string() == "kim");  // base only, generating
  CHECK(lines[6].find("text"));
  CHECK(error_of(7).find("missing field \"text\"") != std::string::npos);
  CHECK(lines[8].at("label").is_string());
  CHECK(error_of(9).find("max_new") != std::string::npos);
  CHECK(read_text(err).find("ivy") != std::string::npos);  // the broken adapter is reported at startup
}

TEST_CASE("tinyadapt serve --bf16: the same answers as float32, to bfloat16's precision") {
  Fixture f;
  write_text(f.scratch.file("users.tsv"), "ann\tusers/ann\ndan\tusers/dan\nbob\t" + f.adapter_dirs.at("bob") + "\n");
  write_text(f.scratch.file("requests.jsonl"),
             "{\"id\": 1, \"user\": \"ann\", \"text\": \"then and soon great\"}\n"
             "{\"id\": 2, \"user\": \"bob\", \"text\": \"our the of later a awful\"}\n"
             "{\"id\": 3, \"user\": \"dan\", \"text\": \"then and soon\", \"max_new\": 5}\n");
  std::vector<json::Value> answers[2];
  for (int bf16 = 0; bf16 < 2; bf16++) {
    const std::string out = f.scratch.file("out"), err = f.scratch.file("err");
    REQUIRE(run_serve("--model " + f.model_dir + " --adapters " + f.scratch.file("users.tsv") + " --temperature 0 --input " +
                          f.scratch.file("requests.jsonl") + (bf16 ? " --bf16" : ""), out, err) == 0);
    const std::string text = read_text(out);
    for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
      answers[bf16].push_back(json::parse(text.substr(start, end - start), "serve output"));
    REQUIRE(answers[bf16].size() == 3);
  }
  for (int i : {0, 1}) {
    CHECK(answers[1][i].at("label").as_string() == answers[0][i].at("label").as_string());
    for (const std::string& label : f.task.label_names)
      CHECK(std::fabs(answers[1][i].at("probs").at(label).as_number() - answers[0][i].at("probs").at(label).as_number()) < 2e-2);
  }
  CHECK(answers[1][2].at("text").is_string());  // dan generates (its greedy tokens may part where two logits are within rounding)
}

TEST_CASE("tinyadapt serve: pending requests are answered once the input is quiet for --wait-ms, before it ends") {
  Fixture f;
  write_text(f.scratch.file("users.tsv"), "ann\tusers/ann\n");
  const std::string out = f.scratch.file("out"), err = f.scratch.file("err");
  // The client sends one request, then waits (up to 10 s) for its answer
  // before sending a second one, whose id says whether the answer had come.
  // A server that waited for a full batch (16) or the end of input would
  // answer nothing until the client gave up: the second id would be "late".
  const std::string client =
      "( printf '%s\\n' '{\"id\": 1, \"user\": \"ann\", \"text\": \"then and soon great\"}';"
      "  for i in $(seq 100); do [ -s " + out + " ] && break; sleep 0.1; done;"
      "  if [ -s " + out + " ]; then id=early; else id=late; fi;"
      "  printf '{\"id\": \"%s\", \"user\": \"ann\", \"text\": \"great\"}\\n' \"$id\" )";
  const int status = std::system((client + " | " + tinyadapt_binary() + " serve --model " + f.model_dir + " --adapters " +
                                  f.scratch.file("users.tsv") + " --batch 16 --wait-ms 50 >" + out + " 2>" + err).c_str());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const std::string text = read_text(out);
  REQUIRE(std::count(text.begin(), text.end(), '\n') == 2);
  const json::Value second = json::parse(text.substr(text.find('\n') + 1), "serve output");
  CHECK(second.at("id").as_string() == "early");
  CHECK(second.at("label").is_string());
}
