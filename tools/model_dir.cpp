// tools/model_dir.cpp — see model_dir.h.
#include "tools/model_dir.h"

#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/lm_data.h"

namespace ta::cli {

ModelDir load_model_dir(const std::string& dir) {
  ModelDir m{load_model(dir), data::Tokenizer::load(dir)};
  if (m.tokenizer.vocab_size() > m.model->config().vocab_size)
    throw InputError(dir + ": the tokenizer has " + std::to_string(m.tokenizer.vocab_size()) +
                     " tokens but the model's vocab_size is " + std::to_string(m.model->config().vocab_size));
  return m;
}

void save_model_dir(const GPT& model, const data::Tokenizer& tokenizer, const std::string& dir) {
  make_dirs(dir);
  tokenizer.save(dir);
  save_model(model, dir);
}

LMEval evaluate_lm(const GPT& model, const std::vector<int>& tokens, const ForwardOptions& options) {
  if (!model.config().is_causal) throw InputError("eval-lm: the model is an encoder (is_causal false): it has no next-token loss");
  NoGradGuard no_grad;
  LMEval result;
  double total = 0;
  for (const TokenBatch& w : consecutive_windows(tokens, model.config().n_positions)) {
    const float loss = model.loss(w.inputs, w.targets, w.B, w.T, options).item();
    total += static_cast<double>(loss) * w.T;
    result.tokens += w.T;
  }
  result.loss = result.tokens ? total / static_cast<double>(result.tokens) : 0.0;
  return result;
}

}  // namespace ta::cli
