// tools/cmd_eval.cpp — `tinyadapt eval`: score an adapter (method + its saved
// head) on one split of a task: accuracy, macro-F1, mean loss, n.
// The splits are the ones `adapt` saw: every command cuts them with the same
// seed (data/tasks.h kSplitSeed).
#include <cstdio>

#include "adapt/adapter_dir.h"
#include "adapt/report.h"
#include "adapt/runner.h"
#include "data/tasks.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

int run_eval(Args& args) {
  const std::string model_dir = args.required("model"), adapter_dir = args.required("adapter");
  const std::string task_name = args.required("task"), split = args.str("split", "test");
  const int batch = static_cast<int>(args.integer("batch", 32));
  const bool as_json = args.flag("json"), bf16 = args.flag("bf16");
  cli::use_reference_path_if_asked(args);
  args.finish();
  if (batch < 1) throw InputError("--batch must be at least 1");

  const data::Task task = data::load_task(task_name);
  const std::vector<data::Example>& examples = task.split(split);
  if (examples.empty()) throw InputError(task_name + ": the " + split + " split is empty");
  adapt::AdaptedModel a = adapt::load_adapted(model_dir, adapter_dir, true, bf16);
  if (a.head->config().label_names != task.label_names)
    throw InputError(adapter_dir + ": the adapter's labels differ from the labels of task " + task_name);
  if (bf16) cli::store_frozen_in_bf16(*a.model);
  const adapt::Evaluation e =
      adapt::evaluate(a, adapt::encode_examples(examples, a.tokenizer, a.max_text_tokens(), task_name + "/" + split), batch);
  if (as_json) std::printf("%s\n", adapt::evaluation_json(e).dump().c_str());
  else std::printf("%s: accuracy %.4f | macro-F1 %.4f | loss %.4f | n %lld\n", split.c_str(), e.accuracy, e.macro_f1, e.loss, e.n);
  return 0;
}

}  // namespace

static Command eval_cmd{"eval", "score an adapter on a split of a task (accuracy, macro-F1, loss)",
                        "usage: tinyadapt eval --model DIR --adapter DIR --task T [--split val|test|ood] [--json]\n"
                        "  --split S        which split [test]\n"
                        "  --batch B        evaluation batch size [32]\n"
                        "  --bf16           the frozen base in bfloat16: half its memory, faster on CPUs with AVX512-BF16\n"
                        "  --reference      every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
                        "  --json           print {\"accuracy\":…, \"macro_f1\":…, \"loss\":…, \"n\":…}",
                        run_eval};

}  // namespace ta::cli
