// tools/cmd_eval_lm.cpp — `tinyadapt eval-lm`: mean next-token cross-entropy
// (nats) and perplexity of a model on a text or a token file. Input longer
// than the context is cut into consecutive windows, so each token is
// predicted once, from at most n_positions tokens of context.
// With --adapter DIR the adaptation method applies (its prefixes, hooks or
// weights; the task head is not used) and the windows are shortened by the
// method's prefix length so prefix + text fit in n_positions.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "adapt/adapter_dir.h"
#include "adapt/runner.h"
#include "data/json.h"
#include "tools/cli.h"
#include "nn/lm_data.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

// Whitespace-separated token ids, each checked against the vocabulary.
std::vector<int> read_token_file(const std::string& path, int vocab_size) {
  const std::string text = read_file(path);
  std::vector<int> ids;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) i++;
    if (i == text.size()) break;
    size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) i++;
    const std::string word = text.substr(start, i - start);
    char* end = nullptr;
    long id = std::strtol(word.c_str(), &end, 10);
    if (*end != '\0' || word.empty()) throw InputError(path + ": '" + word + "' is not a token id");
    if (id < 0 || id >= vocab_size)
      throw InputError(path + ": token id " + word + " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
    ids.push_back(static_cast<int>(id));
  }
  return ids;
}

int run_eval_lm(Args& args) {
  const std::string model_dir = args.required("model"), adapter_dir = args.str("adapter", "");
  const std::string text_path = args.str("text", ""), tokens_path = args.str("tokens", "");
  const bool as_json = args.flag("json"), bf16 = args.flag("bf16");
  cli::use_reference_path_if_asked(args);
  args.finish();
  if (text_path.empty() == tokens_path.empty()) throw InputError("eval-lm: give exactly one of --text FILE or --tokens FILE");
  const std::string input = tokens_path.empty() ? text_path : tokens_path;
  auto read_ids = [&](const GPT& model, const data::Tokenizer& tokenizer) {
    std::vector<int> ids = tokens_path.empty() ? tokenizer.encode(read_file(text_path), {false, text_path})
                                               : read_token_file(tokens_path, model.config().vocab_size);
    if (ids.size() < 2) throw InputError(input + ": needs at least 2 tokens");
    return ids;
  };
  LMLoss e;
  if (adapter_dir.empty()) {
    ModelDir m = load_model_dir(model_dir);
    if (bf16) {
      m.model->freeze_all();
      cli::store_frozen_in_bf16(*m.model);
    }
    e = windowed_lm_loss(*m.model, read_ids(*m.model, m.tokenizer), m.model->config().n_positions);
  } else {
    const adapt::AdaptedModel a = adapt::load_adapted(model_dir, adapter_dir, false, bf16);
    if (bf16) cli::store_frozen_in_bf16(*a.model);
    e = adapt::lm_loss(a, read_ids(*a.model, a.tokenizer));
  }
  const double perplexity = std::exp(e.loss);
  if (as_json) {
    json::Value out = json::Value::object();
    out.set("loss", e.loss);
    out.set("perplexity", perplexity);
    out.set("tokens", e.tokens);
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("loss %.4f nats | perplexity %.2f | %lld tokens\n", e.loss, perplexity, e.tokens);
  }
  return 0;
}

}  // namespace

static Command eval_lm_cmd{"eval-lm", "next-token loss and perplexity of a model on a text",
                           "usage: tinyadapt eval-lm --model DIR [--adapter DIR] (--text FILE | --tokens FILE) [--json]\n"
                           "  --adapter DIR  apply an adapter (LoRA, prompt, prefix, ...; a PEFT directory works too)\n"
                           "  --text FILE    UTF-8 text, encoded with the model's tokenizer\n"
                           "  --tokens FILE  whitespace-separated token ids\n"
                           "  --bf16         the frozen base in bfloat16: half its memory, faster on CPUs with AVX512-BF16\n"
                           "  --reference    every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
                           "  --json         print {\"loss\":…, \"perplexity\":…, \"tokens\":…}",
                           run_eval_lm};

}  // namespace ta::cli
