// adapt/adapter_dir.cpp — see adapter_dir.h.
#include "adapt/adapter_dir.h"

#include <cinttypes>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "adapt/prompt.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"

namespace ta::adapt {

int AdaptedModel::prefix_length() const {
  NoGradGuard no_grad;
  ForwardOptions options;
  method->prepare(options, 1);
  const int attention_prefix = options.prefix_keys.empty() ? 0 : options.prefix_keys[0].size(-2);
  const int input_prefix = options.input_prefix.defined() ? options.input_prefix.size(-2) : 0;
  return attention_prefix + input_prefix;
}

int AdaptedModel::max_text_tokens() const {
  return model->config().n_positions - prefix_length() - (head ? head->continuation_positions() : 0);
}

ForwardOptions AdaptedModel::forward_options(int batch_size, Rng* dropout_rng) const {
  ForwardOptions options;
  method->prepare(options, batch_size);
  options.dropout_rng = dropout_rng;
  return options;
}

Tensor AdaptedModel::features(const Batch& batch, Rng* dropout_rng) const {
  ForwardOptions options = forward_options(batch.B, dropout_rng);
  options.padding_mask = batch.padding_mask;
  Tensor hidden = model->forward(batch.ids, batch.B, batch.T, options);  // (B,k+T,C)
  return head->features(*model, hidden, batch.B, batch.T, options);      // (B,C)
}

Tensor AdaptedModel::label_logits(const Batch& batch, Rng* dropout_rng) const {
  if (!head->needs_text_keys()) return head->logits(*model, features(batch, dropout_rng));  // (B,L)
  ForwardOptions options = forward_options(batch.B, dropout_rng);
  options.padding_mask = batch.padding_mask;
  TextKeys keys;
  Tensor hidden = forward_keeping_keys(*model, batch.ids, batch.B, batch.T, options, keys);  // (B,k+T,C)
  return head->logits(*model, head->features(*model, hidden, batch.B, batch.T, options), &keys);  // (B,L)
}

std::vector<OptimParam> AdaptedModel::trainable_parameters() const {
  std::vector<OptimParam> params = method->trainable_parameters();
  if (head)
    for (OptimParam& p : head->trainable_parameters()) params.push_back(p);
  return params;
}

HeadConfig resolve_head(const HeadRequest& request, const std::string& method, const ModelConfig& model,
                        const std::vector<std::string>& label_names) {
  HeadConfig head;
  const bool causal = model.is_causal;
  const bool prompt_like = method == "prompt" || method == "prefix";
  const std::string classifier = method == "probe-mlp" ? "mlp" : "linear";
  if (request.type.empty()) head.type = prompt_like && causal ? "verbalizer" : classifier;
  else if (request.type == "classifier") head.type = classifier;
  else head.type = request.type;
  if (head.type != "linear" && head.type != "mlp" && head.type != "verbalizer")
    throw InputError("--head must be classifier or verbalizer, got '" + request.type + "'");
  if (head.type == "verbalizer" && !causal)
    throw InputError("--head verbalizer needs a causal model (GPT): an encoder has no next-token logits");
  head.pooling = request.pooling.empty() ? (causal ? Pooling::LastToken : Pooling::FirstToken) : pooling_from_name(request.pooling, "--pooling");
  head.hidden = request.hidden;
  head.activation = request.activation;
  head.label_names = label_names;
  if (!request.label_words.empty() && request.label_words.size() != label_names.size())
    throw InputError("--label-words needs " + std::to_string(label_names.size()) + " words, one per label");
  for (size_t i = 0; i < label_names.size(); i++) {
    const std::string& word = request.label_words.empty() ? label_names[i] : request.label_words[i];
    if (word.empty() || word == " ")
      throw InputError("--label-words: the word for label '" + label_names[i] + "' is empty");
    head.label_words.push_back(word.rfind(' ', 0) == 0 ? word : " " + word);
  }
  return head;
}

// "fnv1a64:<16 hex> bytes:<size>" of a file's bytes.
// Read in 1 MiB pieces: a base's file may be 500 MB (GPT-2 small), and
// reading it whole would hold all of it in memory once more.
std::string file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open: " + std::strerror(errno));
  std::vector<char> piece(1 << 20);
  uint64_t hash = kFnv1a64Basis;  // data/io.h
  size_t bytes = 0;
  while (in) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    const size_t got = static_cast<size_t>(in.gcount());
    hash = fnv1a64(piece.data(), got, hash);
    bytes += got;
  }
  if (in.bad()) throw InputError(path + ": read failed");
  char text[64];
  std::snprintf(text, sizeof text, "fnv1a64:%016" PRIx64 " bytes:%zu", hash, bytes);
  return text;
}

std::string base_model_fingerprint(const std::string& model_dir) { return file_fingerprint(model_dir + "/model.safetensors"); }

namespace {

// The base model directory loaded, its parameters counted; no method yet.
AdaptedModel load_base(const std::string& model_dir, const MethodConfig& method_config, bool bf16_base) {
  if (bf16_base && method_config.method == "finetune")
    throw InputError("--bf16: full fine-tuning trains every matrix of the base; it cannot keep them in bfloat16");
  AdaptedModel a{model_dir, load_model(model_dir, bf16_base), data::Tokenizer::load(model_dir), 0, method_config, nullptr, nullptr};
  if (a.tokenizer.vocab_size() > a.model->config().vocab_size)
    throw InputError(model_dir + ": the tokenizer has more tokens than the model's vocab_size");
  a.base_parameters = a.model->count_parameters();
  return a;
}

// The method made from its config and attached to `model` (seeded).
std::unique_ptr<Method> make_and_attach(GPT& model, const MethodConfig& method_config, const AttachContext& context,
                                        uint64_t seed) {
  std::unique_ptr<Method> method = make_method(method_config);
  Rng rng(seed);
  method->attach(model, context, rng);
  return method;
}

// What a fresh method's attach() may use: the label words' tokens (prompt
// tuning's label init) and the tokens its vocab init samples from.
AttachContext fresh_attach_context(const std::string& model_dir, const data::Tokenizer& tokenizer, const HeadConfig& head) {
  AttachContext context;
  for (const std::string& word : head.label_words)
    context.label_word_ids.push_back(tokenizer.encode(word, {false, "label word '" + word + "'"}));
  context.vocab_sample_ids = prompt_init_vocabulary(model_dir, tokenizer);
  return context;
}

std::unique_ptr<Head> make_head(const GPT& model, const data::Tokenizer& tokenizer, const HeadConfig& config, uint64_t seed) {
  std::vector<std::vector<int>> words;
  if (config.type == "verbalizer") words = label_word_tokens(config.label_words, tokenizer, model.config().n_positions);
  Rng rng(seed ^ 0x4EADull);
  return std::make_unique<Head>(config, model.config().n_embd, words, rng);
}

// Refuses to write an adapter over a model directory (the base is never written).
void check_not_model_dir(const std::string& dir, const std::string& base_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool same = fs::exists(dir, ec) && fs::equivalent(dir, base_dir, ec);
  if (same || file_exists(dir + "/model.safetensors"))
    throw InputError(dir + ": is a model directory; an adapter is written to a directory of its own");
}

}  // namespace

AdaptedModel create_adapted(const std::string& model_dir, const MethodConfig& method_config,
                            const HeadConfig& head_config, uint64_t seed, bool bf16_base) {
  AdaptedModel a = load_base(model_dir, method_config, bf16_base);
  a.head = make_head(*a.model, a.tokenizer, head_config, seed);  // first: bad label words are refused before attach
  a.method = make_and_attach(*a.model, method_config, fresh_attach_context(model_dir, a.tokenizer, head_config), seed);
  return a;
}

void save_adapter(const AdaptedModel& a, const std::string& dir) {
  check_not_model_dir(dir, a.base_dir);
  json::Value config = a.method->peft_config();
  config.set("base_model_name_or_path", a.base_dir);
  config.set("base_model_fingerprint", base_model_fingerprint(a.base_dir));
  const json::Value method_fields = method_config_to_json(a.method_config);
  for (const auto& [key, value] : method_fields.members())
    if (!config.find(key)) config.set(key, value);
  config.set("tinyadapt_version", kTinyadaptVersion);
  std::vector<NamedArray> tensors = a.method->save_tensors();
  if (a.head) {
    config.set("head", head_config_to_json(a.head->config()));
    for (NamedArray& t : a.head->save_tensors()) tensors.push_back(std::move(t));
  }
  // The two files must belong together: the config, written last, records a
  // fingerprint of the tensor file, so a process killed between the writes
  // (re-running into an existing --out) leaves a pair that load refuses.
  make_dirs(dir);
  write_safetensors(dir + "/adapter_model.safetensors", tensors);
  config.set("tensors_fingerprint", file_fingerprint(dir + "/adapter_model.safetensors"));
  write_file_atomic(dir + "/adapter_config.json", config.dump(2) + "\n");
}

AdapterFiles read_adapter_files(const std::string& adapter_dir, bool with_head) {
  AdapterFiles f;
  f.config_path = adapter_dir + "/adapter_config.json";
  f.tensors_path = adapter_dir + "/adapter_model.safetensors";
  const json::Value config = json::parse(read_file(f.config_path), f.config_path);
  if (!config.is_object()) throw InputError(f.config_path + ": expected a JSON object");
  f.method_config = method_config_from_json(config, f.config_path);
  if (const json::Value* base = config.find("base_model_name_or_path"); base && base->is_string())
    f.base_model = base->as_string();
  if (const json::Value* fingerprint = config.find("base_model_fingerprint"); fingerprint && fingerprint->is_string())
    f.base_fingerprint = fingerprint->as_string();
  const json::Value* head_json = config.find("head");
  if (with_head && !head_json) throw InputError(f.config_path + ": has no task head (\"head\"); it cannot classify");
  f.has_head = head_json != nullptr;
  if (head_json) f.head_config = head_config_from_json(*head_json, f.config_path);
  if (const json::Value* expected = config.find("tensors_fingerprint"); expected && expected->is_string()) {
    const std::string actual = file_fingerprint(f.tensors_path);  // absent in files PEFT wrote: not checked
    if (actual != expected->as_string())
      throw InputError(f.tensors_path + ": is not the tensor file " + f.config_path + " was saved with (" + actual +
                       ", expected " + expected->as_string() + "); the save was cut short — re-run adapt");
  }
  f.tensors = read_safetensors(f.tensors_path);
  return f;
}

std::unique_ptr<Method> attach_adapter_method(GPT& model, const AdapterFiles& files) {
  // The tensors loaded next overwrite whatever attach() draws: no context needed.
  return make_and_attach(model, files.method_config, AttachContext{}, 0);
}

std::unique_ptr<Head> load_adapter_tensors(const GPT& model, const data::Tokenizer& tokenizer, Method& method,
                                           const AdapterFiles& files, bool with_head) {
  method.load_tensors(files.tensors, files.tensors_path);
  std::set<std::string> claimed;
  for (const NamedArray& t : method.save_tensors()) claimed.insert(t.name);
  std::unique_ptr<Head> head;
  if (files.has_head) {
    head = make_head(model, tokenizer, files.head_config, 0);
    head->load_tensors(files.tensors, files.tensors_path);
    for (const NamedArray& t : head->save_tensors()) claimed.insert(t.name);
  }
  for (const NamedArray& t : files.tensors)
    if (!claimed.count(t.name) && !(t.name.rfind("head.", 0) == 0 && !with_head))
      throw InputError(files.tensors_path + ": tensor " + t.name + " belongs to neither the " +
                       files.method_config.method + " method nor the head");
  return head;
}

AdaptedModel load_adapted(const std::string& model_dir, const std::string& adapter_dir, bool with_head, bool bf16_base) {
  AdapterFiles files = read_adapter_files(adapter_dir, with_head);
  if (model_dir.empty() && files.base_model.empty())
    throw InputError(files.config_path + ": base_model_name_or_path is missing or not a string (give --model)");
  const std::string base = model_dir.empty() ? files.base_model : model_dir;
  AdaptedModel a = load_base(base, files.method_config, bf16_base);
  a.method = attach_adapter_method(*a.model, files);
  a.head = load_adapter_tensors(*a.model, a.tokenizer, *a.method, files, with_head);
  return a;
}

}  // namespace ta::adapt
