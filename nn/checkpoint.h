// nn/checkpoint.h — a model directory on disk: config.json + model.safetensors
// in Hugging Face GPT-2's layout.
//
// Saving writes what transformers' GPT2LMHeadModel.save_pretrained writes
// with safetensors: every parameter under its "transformer."-prefixed name,
// Conv1D weights [in, out], metadata {"format": "pt"}, and no lm_head.weight
// (it is tied to transformer.wte.weight, and save_pretrained drops tied
// copies). So a directory we save loads in GPT2LMHeadModel unchanged.
//
// Loading accepts Hugging Face checkpoints as published: keys with or without
// the "transformer." prefix, the h.N.attn.bias / h.N.attn.masked_bias mask
// buffers ignored, lm_head.weight accepted only when it equals wte (we always
// tie), F16/BF16/F64 converted to float32 (by nn/safetensors). Anything else —
// a missing key, a wrong shape, an unknown key, a key given twice — is one
// InputError naming the file, the key and the shapes, found from the file's
// header before its data is read (a truncated 500 MB file or a config.json
// with the wrong vocab_size costs no more than reading the header).
// load_model converts each tensor straight into its parameter, a run of 1 M
// values at a time: memory is the model and a few MB. load_weights, which
// fills a model the caller holds, reads into copies first and leaves the
// model untouched on any error. Writes are atomic (a file is renamed into place), so saving into
// the directory a model was loaded from is safe.
//
// The encoder uses the same layout with "is_causal": false in config.json;
// transformers would load it as GPT2LMHeadModel and run it causally (it has
// no bidirectional GPT-2), so only the weights, not the behaviour, carry over.
//
// Not here: the tokenizer files (the command line copies them), optimiser
// state and adapters.
#pragma once
#include <memory>
#include <string>

#include "nn/gpt.h"

namespace ta {

// Reads DIR/config.json and DIR/model.safetensors. With bf16_matrices the
// matrices GPT::store_frozen_in_bf16 would cast are stored in bfloat16 as
// they are read (frozen), so the float32 model is never in memory whole.
std::unique_ptr<GPT> load_model(const std::string& dir, bool bf16_matrices = false);

// Creates DIR if needed and writes DIR/model.safetensors then DIR/config.json.
void save_model(const GPT& model, const std::string& dir);

// Copies the weights of a safetensors file into an existing model (validated as above).
void load_weights(GPT& model, const std::string& path);

}  // namespace ta
