// tools/model_dir.cpp — see model_dir.h.
#include "tools/model_dir.h"

#include "nn/checkpoint.h"

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

}  // namespace ta::cli
