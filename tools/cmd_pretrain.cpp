// tools/cmd_pretrain.cpp — `tinyadapt pretrain`: train a base model from
// scratch on a text corpus (the first stage of the adaptation story).
//
// GPT: next-token prediction on random windows of the corpus (nanoGPT).
// Encoder: BERT's masked-LM objective on the same windows.
// The corpus is a mix of sources (data/pretraining.h: sotu, brown, task:NAME,
// files); its documents, in a fixed shuffled order, are encoded one by one and
// joined by <|endoftext|> (a blank line for a tokenizer without it), and the
// last 10% of that token stream is held out for validation. The tokenizer is
// trained on the corpus first (or read with --tokenizer).
// With --init DIR, training continues from the model and tokenizer in DIR
// (continued or domain-adaptive pretraining) with a fresh optimizer.
// The output directory holds the model (config.json + model.safetensors), the
// tokenizer, pretraining.json (the manifest: the documents trained on, with
// the init base's, and the token counts), optimizer.safetensors (to resume)
// and log.csv. Running the same command again with a larger --steps resumes
// where the last run stopped.
//
// Checkpoints go through Trainer::save_checkpoint, which writes the optimizer
// state and the model in an order that a kill at any moment leaves a pair
// that belongs together (nn/trainer.h); resuming from a pair that does not
// (files copied from two checkpoints) is refused with status 2.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <set>

#include "autograd/ops.h"
#include "data/pretraining.h"
#include "nn/checkpoint.h"
#include "nn/distributed.h"
#include "nn/lm_data.h"
#include "nn/progress.h"
#include "nn/trainer.h"
#include "tools/cli.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

struct PretrainArgs {
  std::string arch, corpus, tokenizer_dir, init, out;
  ModelConfig config;
  int batch = 16, eval_batches = 8;
  long long eval_every = 100;
  long long stop_after = 0;  // steps of this invocation before saving and stopping; 0 = run to --steps
  bool gradient_checkpointing = false;
  uint64_t seed = 1337;
  TrainerOptions train;
};

PretrainArgs parse(Args& args) {
  PretrainArgs p;
  p.arch = args.str("arch", "gpt");
  if (p.arch != "gpt" && p.arch != "encoder") throw InputError("--arch must be gpt or encoder, got '" + p.arch + "'");
  p.corpus = args.str("corpus", "sotu");
  p.tokenizer_dir = args.str("tokenizer", "");
  p.init = args.str("init", "");
  p.out = args.required("out");
  if (!p.init.empty())
    for (const char* shape : {"arch", "tokenizer", "vocab-size", "n-layer", "n-head", "n-embd", "ctx"})
      if (args.has(shape))
        throw InputError(std::string("--") + shape + " cannot be given with --init: the model and its tokenizer come from " + p.init);
  ModelConfig& c = p.config;
  c.vocab_size = static_cast<int>(args.integer("vocab-size", 512));
  c.n_layer = static_cast<int>(args.integer("n-layer", 4));
  c.n_head = static_cast<int>(args.integer("n-head", 4));
  c.n_embd = static_cast<int>(args.integer("n-embd", 128));
  c.n_positions = static_cast<int>(args.integer("ctx", 128));
  c.is_causal = p.arch == "gpt";
  c.embd_pdrop = c.resid_pdrop = static_cast<float>(args.real("dropout", 0.0));
  p.batch = static_cast<int>(args.integer("batch", 16));
  p.seed = static_cast<uint64_t>(args.integer("seed", 1337));
  p.train.steps = args.integer("steps", 1000);
  p.train.lr = static_cast<float>(args.real("lr", 1e-3));
  p.train.min_lr = static_cast<float>(args.real("min-lr", -1.0));
  p.train.warmup = args.integer("warmup", std::max(1LL, p.train.steps / 20));
  p.train.grad_accum = static_cast<int>(args.integer("grad-accum", 1));
  p.train.clip = static_cast<float>(args.real("clip", 1.0));
  p.train.adamw.weight_decay = static_cast<float>(args.real("weight-decay", 0.1));
  p.eval_every = args.integer("eval-every", 100);
  p.eval_batches = static_cast<int>(args.integer("eval-batches", 8));
  p.stop_after = args.integer("stop-after", 0);
  p.gradient_checkpointing = args.flag("gradient-checkpointing");
  cli::use_reference_path_if_asked(args);
  args.finish();
  if (p.batch < 1) throw InputError("--batch must be at least 1");
  if (p.stop_after < 0) throw InputError("--stop-after must be 0 (off) or a number of steps");
  return p;
}

std::vector<std::string> specials_for(const std::string& arch) {
  if (arch == "gpt") return {"<|endoftext|>"};
  return {"[PAD]", "[CLS]", "[SEP]", "[MASK]"};
}

// The tokenizer: read from --tokenizer, or trained on the corpus (byte-level
// when the vocabulary has no room for merges).
data::Tokenizer make_tokenizer(const PretrainArgs& p, const std::string& text) {
  if (!p.tokenizer_dir.empty()) return data::Tokenizer::load(p.tokenizer_dir);
  std::vector<std::string> specials = specials_for(p.arch);
  const int merges = p.config.vocab_size - 256 - static_cast<int>(specials.size());
  if (merges < 0)
    throw InputError("--vocab-size " + std::to_string(p.config.vocab_size) + " leaves no room for the 256 bytes and " +
                     std::to_string(specials.size()) + " special tokens");
  if (merges == 0) return data::Tokenizer::byte_level(specials);
  if (dist::is_root()) std::fprintf(stderr, "pretrain: training a BPE tokenizer of %d tokens on %zu bytes\n", p.config.vocab_size, text.size());
  return data::train_bpe(text, p.config.vocab_size, specials, p.corpus);
}

// One micro-batch's loss: next-token for the GPT, masked-LM for the encoder.
MicroBatch pretrain_loss(const GPT& model, const data::Tokenizer& tok, const std::vector<int>& tokens, int B,
                         Rng& rng) {
  const ModelConfig& c = model.config();
  const int T = c.n_positions;
  TokenBatch batch = sample_windows(tokens, B, T, rng);
  if (!c.is_causal) {
    std::vector<int> specials;
    for (auto& s : tok.specials()) specials.push_back(tok.special_id(s));
    MaskedTokens masked = mask_tokens(batch.inputs, tok.vocab_size(), tok.special_id("[MASK]"), specials, rng);
    batch.inputs = std::move(masked.inputs), batch.targets = std::move(masked.targets);
  }
  // Under MPI this rank's rows of the batch every rank drew (nn/distributed.h).
  const auto [first, end] = dist::shard(B, "--batch");
  if (end - first == B) return {model.loss(batch.inputs, batch.targets, B, T), static_cast<long long>(B) * T};
  auto counted = [&](int from, int to) {  // targets that count in rows [from, to)
    return std::count_if(batch.targets.begin() + from * T, batch.targets.begin() + to * T, [](int t) { return t != -100; });
  };
  // The shard's mean loss, weighted so that the ranks' average is the mean
  // over the whole batch's targets even when the shards hold different
  // numbers of them (masked LM): mean_r · N · count_r / count.
  const long long all = counted(0, B), mine = counted(first, end);
  const float weight = all > 0 ? static_cast<float>(mine) * dist::world_size() / static_cast<float>(all) : 1.0f;
  const TokenBatch shard = batch_rows(batch, first, end);
  Tensor loss = model.loss(shard.inputs, shard.targets, shard.B, T);
  return {weight == 1.0f ? loss : mul_scalar(loss, weight), static_cast<long long>(shard.B) * T};
}

// Validation loss on a fixed set of windows (the same every evaluation).
float validation_loss(const GPT& model, const data::Tokenizer& tok, const std::vector<int>& val, int B, int batches,
                      uint64_t seed) {
  NoGradGuard no_grad;
  double total = 0;
  for (int i = 0; i < batches; i++) {
    Rng rng = step_rng(seed ^ 0x5EEDull, -1 - i);
    total += pretrain_loss(model, tok, val, B, rng).loss.item();
  }
  return static_cast<float>(dist::allreduce_sum(total) / dist::world_size() / batches);
}

ModelDir fresh_model(PretrainArgs& p, const std::vector<data::Document>& documents) {
  if (!p.init.empty()) {
    if (!file_exists(p.init + "/config.json")) throw InputError("--init " + p.init + ": not a model directory (no config.json)");
    return load_model_dir(p.init);
  }
  p.config.validate("pretrain");  // before the tokenizer: a bad shape fails at once
  std::string text;
  for (const data::Document& d : documents) text += (text.empty() ? "" : "\n\n") + d.text;
  data::Tokenizer tok = make_tokenizer(p, text);
  p.config.vocab_size = std::max(p.config.vocab_size, tok.vocab_size());
  return ModelDir{std::make_unique<GPT>(p.config, p.seed), std::move(tok)};
}

// The documents in an order fixed by the corpus alone (so every seed holds out
// the same validation text), each encoded with specials off (e-mails are
// untrusted), joined by <|endoftext|> or, without it, a blank line.
std::vector<int> encode_corpus(std::vector<data::Document> documents, const data::Tokenizer& tok, const std::string& spec) {
  std::mt19937_64 rng(0xC0A9u);
  for (size_t i = documents.size(); i > 1; i--) std::swap(documents[i - 1], documents[rng() % i]);
  const std::vector<int> separator =
      tok.has_special("<|endoftext|>") ? std::vector<int>{tok.special_id("<|endoftext|>")} : tok.encode("\n\n", {false, spec});
  std::vector<int> tokens;
  for (const data::Document& d : documents) {
    if (!tokens.empty()) tokens.insert(tokens.end(), separator.begin(), separator.end());
    const std::vector<int> ids = tok.encode(d.text, {false, d.id});
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  return tokens;
}

// The manifest: this corpus's document ids, with the init base's (the
// documents a continued base has seen include its base's), and token counts.
data::PretrainingManifest make_manifest(const PretrainArgs& p, const std::vector<data::Document>& documents,
                                        const std::vector<int>& train, size_t val_tokens, int vocab_size) {
  data::PretrainingManifest m;
  m.corpus = p.corpus;
  m.init = p.init;
  std::set<std::string> ids;
  for (const data::Document& d : documents) ids.insert(d.id);
  data::PretrainingManifest base;
  if (!p.init.empty() && data::read_manifest(p.init, base)) ids.insert(base.documents.begin(), base.documents.end());
  m.documents.assign(ids.begin(), ids.end());
  m.train_tokens = static_cast<long long>(train.size());
  m.val_tokens = static_cast<long long>(val_tokens);
  m.token_counts.assign(static_cast<size_t>(vocab_size), 0);
  for (int id : train) m.token_counts[static_cast<size_t>(id)]++;
  return m;
}

// save_model_dir writes the tokenizer, model.safetensors, then config.json.
// The tokenizer and config.json are the same at every checkpoint of a run, so
// the weights change at the rename of model.safetensors (the commit point in
// nn/trainer.h); in a run's first checkpoint config.json comes last, so
// run_pretrain resumes only when it is there.
void save_all(const GPT& model, const data::Tokenizer& tok, const Trainer& trainer, const std::string& dir) {
  trainer.save_checkpoint(dir, [&] { save_model_dir(model, tok, dir); });
}

int run_pretrain(Args& args) {
  PretrainArgs p = parse(args);
  std::error_code no_throw;
  if (!p.init.empty() && std::filesystem::equivalent(p.init, p.out, no_throw))
    throw InputError("--out " + p.out + " is the --init model: continued pretraining writes a new directory");
  const std::vector<data::Document> documents = data::corpus_documents(p.corpus);
  std::vector<std::string> ids;
  for (const data::Document& d : documents) ids.push_back(d.id);
  data::check_no_leakage(ids, data::forbidden_documents(ids), "--corpus " + p.corpus);
  const bool resume = file_exists(p.out + "/config.json") && has_optimizer_state(p.out);
  ModelDir state = resume ? load_model_dir(p.out) : fresh_model(p, documents);
  GPT* model = state.model.get();
  model->gradient_checkpointing = p.gradient_checkpointing;
  const data::Tokenizer& tok = state.tokenizer;
  std::vector<int> tokens = encode_corpus(documents, tok, p.corpus);
  const size_t n_val = tokens.size() / 10;
  const int T = model->config().n_positions;
  if (tokens.size() - n_val < static_cast<size_t>(T + 1) || n_val < static_cast<size_t>(T + 1))
    throw InputError(p.corpus + ": " + std::to_string(tokens.size()) + " tokens are too few for --ctx " + std::to_string(T));
  std::vector<int> val(tokens.end() - static_cast<long>(n_val), tokens.end());
  tokens.resize(tokens.size() - n_val);
  dist::shard(p.batch, "--batch");  // fails on every rank alike, before anything is written
  const bool root = dist::is_root();  // under MPI, rank 0 alone writes
  if (root) {
    make_dirs(p.out);
    data::write_manifest(p.out, make_manifest(p, documents, tokens, n_val, model->config().vocab_size));
  }

  std::vector<OptimParam> params;
  for (auto& [name, t] : model->named_parameters()) params.push_back({name, t, default_weight_decay(name, t)});
  Trainer trainer(params, p.train);
  // Resuming may finish an interrupted save (a rename): rank 0 first, then the others read.
  long long start = resume && root ? trainer.load_state(p.out) : 0;
  dist::barrier();
  if (resume && !root) start = trainer.load_state(p.out);
  if (root) std::fprintf(stderr, "pretrain: %s, %lld parameters, %zu documents, %zu train / %zu val tokens, steps %lld..%lld\n",
               model->config().is_causal ? "gpt" : "encoder", static_cast<long long>(model->count_parameters()),
               documents.size(), tokens.size(), val.size(), start, p.train.steps);

  std::unique_ptr<CsvLog> log;
  if (root) log = std::make_unique<CsvLog>(p.out + "/log.csv", std::vector<std::string>{"step", "loss", "lr", "grad_norm",
                                           "tokens_per_s", "elapsed_s", "val_loss"}, start);
  auto save = [&] {
    if (root) save_all(*model, tok, trainer, p.out);
  };
  Progress progress("pretrain", p.train.steps, start, 10);
  install_interrupt_handler();
  for (long long step = start; step < p.train.steps; step++) {
    Rng rng = step_rng(p.seed, step);
    const double step_start = progress.elapsed_seconds();
    StepStats s = trainer.step(step, [&](int) { return pretrain_loss(*model, tok, tokens, p.batch, rng); });
    progress.update(step, s.loss, s.tokens);
    bool last = step + 1 == p.train.steps, eval = p.eval_every > 0 && ((step + 1) % p.eval_every == 0 || last);
    std::string val_text;
    if (eval) {
      float vl = validation_loss(*model, tok, val, p.batch, p.eval_batches, p.seed);
      val_text = std::to_string(vl);
      progress.note("step " + std::to_string(step + 1) + ": val loss " + val_text);
    }
    // The row before the checkpoint: a kill in between leaves the log ahead
    // of the checkpoint, and the resumed run's CsvLog cuts it back (never behind).
    const double step_seconds = progress.elapsed_seconds() - step_start;
    if (log)
      log->row({std::to_string(step + 1), std::to_string(s.loss), std::to_string(s.lr), std::to_string(s.grad_norm),
                std::to_string(static_cast<double>(s.tokens) / std::max(step_seconds, 1e-9)),
                std::to_string(progress.elapsed_seconds()), val_text});
    if (eval) save();
    // Ctrl-C and --stop-after save the same checkpoint; running the command
    // again continues from it as if never stopped.
    if (dist::any_rank(interrupted())) {
      progress.note("interrupted: saving at step " + std::to_string(step + 1));
      save();
      return 130;
    }
    if (p.stop_after > 0 && step + 1 - start == p.stop_after && !last) {
      progress.note("--stop-after " + std::to_string(p.stop_after) + ": saving at step " + std::to_string(step + 1));
      save();
      return 0;
    }
  }
  progress.finish();
  save();
  if (root) std::fprintf(stderr, "pretrain: saved %s\n", p.out.c_str());
  return 0;
}

}  // namespace

static Command pretrain_cmd{
    "pretrain", "train a base model (GPT or encoder) from scratch on a corpus",
    "usage: tinyadapt pretrain --out DIR [options]\n"
    "  --arch gpt|encoder     GPT-2 (next token) or the bidirectional encoder (masked LM) [gpt]\n"
    "  --corpus A,B,...       a mix of sources [sotu]: sotu (the SOTU addresses no task evaluates on), brown\n"
    "                         (the Brown corpus less the POS probe's test files), task:NAME (a task's train\n"
    "                         split, unlabelled: domain-adaptive pretraining), or a UTF-8 text file\n"
    "  --init DIR             continue pretraining the model (and tokenizer) in DIR, fresh optimizer;\n"
    "                         the shape options below are then refused\n"
    "  --tokenizer DIR        reuse a tokenizer instead of training one on the corpus\n"
    "  --vocab-size N         tokenizer size incl. 256 bytes and special tokens; 257 = bytes only [512]\n"
    "  --n-layer L --n-head H --n-embd C --ctx T    model shape [4, 4, 128, 128]\n"
    "  --batch B --steps S --lr X --min-lr X --warmup N --grad-accum N --clip X --weight-decay X --dropout P\n"
    "                         training [16, 1000, 1e-3, lr/10, steps/20, 1, 1.0, 0.1, 0]\n"
    "  --eval-every N --eval-batches N   validation loss and a checkpoint every N steps [100, 8]\n"
    "  --seed S               initialisation and batch sampling [1337]\n"
    "  --gradient-checkpointing   keep each block's input only and recompute its activations in the backward\n"
    "                         (less memory, one more forward pass; the same run)\n"
    "  --stop-after N         save and stop after N steps of this run, as Ctrl-C does (time-sliced\n"
    "                         training: repeat the command until --steps is reached) [0 = off]\n"
    "  --reference            every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
    "Running it again on the same --out resumes from the last checkpoint; at OMP_NUM_THREADS=1 the\n"
    "losses and the final model are bit-identical to an uninterrupted run.",
    run_pretrain};

}  // namespace ta::cli
