// tools/cmd_probe_tokens.cpp — `tinyadapt probe-tokens`: how much a base
// model's hidden states say about a token property, with Hewitt & Liang's
// control task (adapt/token_probe.h): accuracy, control accuracy and
// selectivity of a linear and an MLP probe.
#include <cstdio>

#include "adapt/token_probe.h"
#include "data/pretraining.h"
#include "data/json.h"
#include "tools/cli.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

int run_probe_tokens(Args& args) {
  const std::string model_dir = args.required("model"), corpus = args.str("corpus", "sotu");
  adapt::TokenProbeOptions o;
  o.property = args.str("property", o.property);
  o.train_tokens = args.integer("train-tokens", o.train_tokens);
  o.test_tokens = args.integer("test-tokens", o.test_tokens);
  o.steps = args.integer("steps", o.steps);
  o.lr = static_cast<float>(args.real("lr", o.lr));
  o.mlp_hidden = static_cast<int>(args.integer("hidden", o.mlp_hidden));
  o.seed = static_cast<uint64_t>(args.integer("seed", o.seed));
  const bool as_json = args.flag("json");
  args.finish();
  if (o.steps < 1 || o.mlp_hidden < 1 || o.lr <= 0) throw InputError("--steps, --hidden and --lr must be positive");
  ModelDir m = load_model_dir(model_dir);
  const std::vector<int> tokens = m.tokenizer.encode(data::corpus_text(corpus), {false, corpus});
  const std::vector<adapt::TokenProbeResult> results = adapt::run_token_probe(*m.model, m.tokenizer, tokens, o);
  json::Value out = json::Value::array();
  if (!as_json && !results.empty())
    std::printf("property: %s; control: a random label per token type\n", results[0].property.c_str());
  for (const adapt::TokenProbeResult& r : results) {
    if (as_json) {
      json::Value row = json::Value::object();
      row.set("probe", r.probe);
      row.set("property", r.property);
      row.set("accuracy", r.accuracy);
      row.set("control_accuracy", r.control_accuracy);
      row.set("selectivity", r.selectivity());
      row.set("majority", r.majority);
      out.push(row);
    } else {
      std::printf("%-6s probe: accuracy %.4f | control accuracy %.4f | selectivity %.4f | majority %.4f\n",
                  r.probe.c_str(), r.accuracy, r.control_accuracy, r.selectivity(), r.majority);
    }
  }
  if (as_json) std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

static Command probe_tokens_cmd{
    "probe-tokens", "token-level probes with a control task: accuracy, control accuracy, selectivity",
    "usage: tinyadapt probe-tokens --model DIR [--corpus sotu|FILE] [options]\n"
    "  --property depth|start             is the token deep in its sentence (at least the median depth:\n"
    "                                     balanced classes) [depth], or does it start one (97% no)\n"
    "  control: a random label per token type, at the property's base rate\n"
    "  --train-tokens N --test-tokens N   positions probed (every 5th window tests) [16384, 4096]\n"
    "  --steps N --lr X --hidden N        probe training and the MLP's width [400, 1e-2, 256]\n"
    "  --seed S                           control labels, init, batches [1337]\n"
    "  --json                             one object per probe",
    run_probe_tokens};

}  // namespace ta::cli
