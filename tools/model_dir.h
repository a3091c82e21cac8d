// tools/model_dir.h — what the commands share about a model directory:
// the model (nn/checkpoint) and its tokenizer (data/bpe) side by side, and the
// language-model loss of a token stream.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/bpe.h"
#include "nn/gpt.h"

namespace ta::cli {

struct ModelDir {
  std::unique_ptr<GPT> model;
  data::Tokenizer tokenizer;
};

// Loads DIR: config.json + model.safetensors + the tokenizer files. Checks
// that the tokenizer's vocabulary fits the model's.
ModelDir load_model_dir(const std::string& dir);

// Writes the model and the tokenizer into DIR (created if needed).
void save_model_dir(const GPT& model, const data::Tokenizer& tokenizer, const std::string& dir);

struct LMEval {
  double loss = 0;       // mean next-token cross-entropy, nats
  long long tokens = 0;  // predicted tokens
};

// Next-token loss over `tokens`, cut into consecutive windows of the model's
// context (n_positions). GPT only: an encoder has no next-token loss.
LMEval evaluate_lm(const GPT& model, const std::vector<int>& tokens, const ForwardOptions& options = {});

}  // namespace ta::cli
