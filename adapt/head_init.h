// adapt/head_init.h — starting a task head from the head saved in another
// adapter directory (`tinyadapt adapt --init-head DIR`).
//
// The use it exists for is LP-FT (Kumar et al. 2022, "Fine-Tuning can
// Distort Pretrained Features and Underperform Out-of-Distribution"): first
// a linear probe (the base frozen, the head trained on its features), then
// full fine-tuning that starts from the probe's head instead of a random one.
// With a random head the first fine-tuning steps push large, meaningless
// gradients into the pretrained features and distort them; with the probed
// head the loss starts low, the features move less, and out-of-distribution
// accuracy suffers less. Nothing here is specific to probing or fine-tuning:
// any run with a classifier head (linear or mlp) can start from any saved
// classifier head that fits it.
//
// "Fits" means: the same head type (and hidden size / activation for mlp),
// the same pooling, the same label names in the same order, and features of
// the same width (n_embd). Anything else is an InputError naming DIR and the
// mismatch. The base model the head was trained on should be this run's
// base — features of another base mean something else — so that is checked
// too, but only reported (HeadInit::same_base): a head from a different base
// of the same width is a poor start, not an invalid one.
//
// What it is not: a way to load a whole adapter (adapter_dir.h, load_adapted)
// or to skip training; only the head's tensors are copied, the method's are not.
#pragma once
#include <string>

#include "adapt/adapter_dir.h"

namespace ta::adapt {

// What init_head_from found; `tinyadapt adapt` writes it to metrics.json and
// warns when the base differs or cannot be checked.
struct HeadInit {
  std::string dir;         // the adapter directory the head came from
  std::string base_model;  // its base_model_name_or_path ("" when absent)
  // How the bases were compared: "fingerprint" (adapter_config.json's
  // base_model_fingerprint against this base's, adapter_dir.h), "path" (an
  // adapter without a fingerprint, whose base_model_name_or_path is this base's
  // directory), or "" (neither: could not tell).
  std::string base_check;
  bool same_base = false;  // meaningful when base_check is not ""
};

// Copies the head saved in adapter_dir (adapter_config.json "head" +
// adapter_model.safetensors "head.*") into adapted.head, after checking that
// it fits (see the top of this file); records adapter_dir as the head's
// initialized_from. InputError "--init-head DIR: problem" otherwise (a
// missing or misshapen tensor: the safetensors file and the tensor), with
// adapted unchanged.
HeadInit init_head_from(AdaptedModel& adapted, const std::string& adapter_dir);

}  // namespace ta::adapt
