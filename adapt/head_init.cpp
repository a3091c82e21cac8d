// adapt/head_init.cpp — see head_init.h.
#include "adapt/head_init.h"

#include <filesystem>

#include "data/io.h"

namespace ta::adapt {
namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& n : names) text += (text.empty() ? "" : ", ") + n;
  return text;
}

// "linear" or "mlp (hidden 8, relu)": what a user compares to fix a mismatch.
std::string head_shape_text(const HeadConfig& c) {
  if (c.type != "mlp") return c.type;
  return "mlp (hidden " + std::to_string(c.hidden) + ", " + c.activation + ")";
}

// The first mismatch between the saved head and this run's, or "" when it fits.
// `saved_width` is the width of the features the saved head reads (its first weight's rows).
std::string mismatch(const HeadConfig& saved, int64_t saved_width, const HeadConfig& ours, int n_embd) {
  if (saved.type == "verbalizer") return "its head is a verbalizer, which has no weights to start from";
  if (ours.type == "verbalizer") return "this run's head is a verbalizer, which has no weights (give --head classifier)";
  if (saved.type != ours.type || (saved.type == "mlp" && (saved.hidden != ours.hidden || saved.activation != ours.activation)))
    return "its head is " + head_shape_text(saved) + ", this run's is " + head_shape_text(ours) +
           " (--head linear|mlp, --probe-hidden, --probe-activation choose this run's)";
  if (saved.label_names != ours.label_names)
    return "its head's labels are [" + joined(saved.label_names) + "], this task's are [" + joined(ours.label_names) + "]";
  if (saved.pooling != ours.pooling)
    return "its head's pooling is " + pooling_name(saved.pooling) + ", this run's is " + pooling_name(ours.pooling) +
           " (--pooling)";
  if (saved_width != n_embd)
    return "its head reads features of width " + std::to_string(saved_width) + ", this base's are " +
           std::to_string(n_embd) + " (n_embd): it was trained on another base model";
  return "";
}

bool same_directory(const std::string& a, const std::string& b) {
  std::error_code error;
  return std::filesystem::equivalent(a, b, error) && !error;
}

}  // namespace

HeadInit init_head_from(AdaptedModel& adapted, const std::string& adapter_dir) {
  const std::string where = "--init-head " + adapter_dir + ": ";
  std::error_code error;
  if (!std::filesystem::is_directory(adapter_dir, error)) throw InputError(where + "no such directory");
  if (!file_exists(adapter_dir + "/adapter_config.json"))
    throw InputError(where + "no adapter_config.json there (give the --out directory of a `tinyadapt adapt` run)");
  const AdapterFiles files = read_adapter_files(adapter_dir, false);  // other problems name the file
  if (!files.has_head) throw InputError(where + "its adapter_config.json has no task head (\"head\")");
  const HeadConfig& saved = files.head_config;

  // The first weight's rows are the width of the features the head reads: (C,L) or (C,H).
  int64_t saved_width = 0;
  if (saved.type != "verbalizer")
    saved_width = find_array(files.tensors, saved.type == "mlp" ? "head.hidden.weight" : "head.weight", files.tensors_path).shape[0];
  const std::string problem = mismatch(saved, saved_width, adapted.head->config(), adapted.model->config().n_embd);
  if (!problem.empty()) throw InputError(where + problem);
  // Loaded into a new head, swapped in only when every tensor loaded. Its
  // random initial weights are all overwritten, so the seed does not matter.
  Rng overwritten(0);
  auto head = std::make_unique<Head>(adapted.head->config(), adapted.model->config().n_embd, std::vector<std::vector<int>>{}, overwritten);
  head->load_tensors(files.tensors, files.tensors_path);
  head->set_initialized_from(adapter_dir);
  adapted.head = std::move(head);

  HeadInit init;
  init.dir = adapter_dir;
  init.base_model = files.base_model;
  if (!files.base_fingerprint.empty()) {
    init.base_check = "fingerprint";
    init.same_base = files.base_fingerprint == base_model_fingerprint(adapted.base_dir);
  } else if (!init.base_model.empty() && same_directory(init.base_model, adapted.base_dir)) {
    init.base_check = "path";
    init.same_base = true;
  }
  return init;
}

}  // namespace ta::adapt
