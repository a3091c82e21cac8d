// tools/model_dir.h — what the commands share about a model directory:
// the model (nn/checkpoint) and its tokenizer (data/bpe) side by side.
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

// Writes the model and the tokenizer into DIR (created if needed): the
// tokenizer files, then model.safetensors, then config.json, each atomically,
// so a DIR with config.json has all of them (pretrain relies on it).
void save_model_dir(const GPT& model, const data::Tokenizer& tokenizer, const std::string& dir);

}  // namespace ta::cli
