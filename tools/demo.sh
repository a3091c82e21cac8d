#!/usr/bin/env bash
# make demo — the main job, on a fresh machine:
#   1. pretrain a small GPT on the SOTU addresses and the Brown corpus (less
#      every text a task or probe evaluates on: data/pretraining.h);
#   2. probe it for part of speech, layer by layer, against an untrained twin
#      (Hewitt & Liang's control task gives the selectivity);
#   3. continue pretraining on spam's unlabelled train e-mails (DAPT);
#   4. adapt to `spam` and `era` with every method, 3 seeds each, and a learning
#      curve over 16 .. all labelled examples beside the bag of words;
#   5. write one summary (runs/demo/summary.md) and the plots.
# Everything lands in runs/demo/ (or $DEMO_OUT). A second run reuses the bases
# when they are complete. QUICK=1 (make demo-quick): the same pipeline on a
# tiny budget, in about a minute, with numbers too weak to read.
#
# The budget (15 minutes on 2 cores) is spent where tools/experiments/FINDINGS.md
# measured it pays: the base's size and steps, 60 adaptation steps per run
# (100 for prompt and prefix, 40 for the curve's small samples), test and ood
# scored on 500 examples each,
# runs two at a time on one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_OUT:-runs/demo}
seeds=3
if [ "${QUICK:-0}" = 1 ]; then
  out=${DEMO_OUT:-runs/demo-quick}
  shape=(--n-layer 2 --n-head 2 --n-embd 64 --ctx 64 --vocab-size 512)
  pretrain_steps=150 dapt_steps=20 steps=20 curve_steps=15 sizes=16,64,all eval_limit=100
  probe=(--train-tokens 2048 --test-tokens 1024 --steps 100)
else
  shape=(--n-layer 4 --n-head 4 --n-embd 128 --ctx 128 --vocab-size 2048)
  pretrain_steps=1500 dapt_steps=150 steps=60 curve_steps=40 sizes=16,64,256,all eval_limit=500
  probe=()
fi
# A measured choice (FINDINGS.md, "What the demo runs"): the classifier heads
# read the mean of the last layer's states (a causal model's last token
# summarises a text poorly at this size).
compare=(--seeds "$seeds" --jobs 2 --pooling mean --eval-limit "$eval_limit"
         --methods probe,probe-mlp,finetune,bitfit,prompt,prefix,adapter,lora)
# Prompt and prefix tuning learn slower than the rest (FINDINGS.md, the sweeps): their table rows
# get more steps than the others' (--steps), their curve points the same (--curve-steps).
if [ "${QUICK:-0}" = 1 ]; then method_args="prompt: --steps 30; prefix: --steps 30"
else method_args="prompt: --steps 100; prefix: --steps 100"; fi
compare+=(--method-args "$method_args")
mkdir -p "$out"
start=$(date +%s)

# pretrain OUT_DIR STEPS ARGS...: trains unless OUT_DIR already finished STEPS steps.
pretrain() {
  local dir=$1 total=$2; shift 2
  if [ -f "$dir/model.safetensors" ] && [ "$(tail -n 1 "$dir/log.csv" | cut -d, -f1)" = "$total" ]; then
    echo "demo: reusing $dir"
  else
    ./tinyadapt pretrain "$@" --steps "$total" --out "$dir"
  fi
}

echo "demo: pretraining a GPT on SOTU + Brown -> $out/base"
pretrain "$out/base" "$pretrain_steps" --corpus sotu,brown "${shape[@]}" --batch 16 --eval-every 500 --seed 1337
./tinyadapt generate --model "$out/base" --prompt "The state of the Union" --max-new 40 --temperature 0.8 --top-k 40 --seed 1

echo "demo: probing every layer for part of speech (pretrained and untrained base, $seeds seeds)"
./tinyadapt probe-tokens --model "$out/base" --corpus brown --untrained --seeds "$seeds" "${probe[@]}" --out "$out/pos.md"

echo "demo: continued pretraining on spam's train e-mails (DAPT) -> $out/base-dapt-spam"
pretrain "$out/base-dapt-spam" "$dapt_steps" --init "$out/base" --corpus task:spam --batch 16 --lr 5e-4 \
    --eval-every "$dapt_steps" --seed 1337

for task in spam era; do
  echo "demo: adapting to $task with every method and a learning curve"
  dapt=()
  [ "$task" = spam ] && dapt=(--dapt "$out/base-dapt-spam" --dapt-methods probe,lora)
  ./tinyadapt compare --model "$out/base" --task "$task" "${dapt[@]}" --steps "$steps" --curve-steps "$curve_steps" \
      --train-sizes "$sizes" --curve-methods probe,finetune,lora,prefix "${compare[@]}" --out "$out/$task"
done
tools/plots.sh "$out" spam era

val_loss() { awk -F, 'NR > 1 && $7 != "" { v = $7 } END { printf "%.3f", v }' "$1/log.csv"; }
{
  echo "# tinyadapt demo"
  echo
  config=$(tr -d ' \n' < "$out/base/config.json")
  field() { echo "$config" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
  loss=$(val_loss "$out/base")
  echo "Base: a GPT ($(field n_layer) layers, C = $(field n_embd), context $(field n_positions), vocabulary $(field vocab_size))" \
       "pretrained for $pretrain_steps steps of 16 × $(field n_positions) tokens on SOTU + Brown;" \
       "validation loss $loss nats per token (perplexity $(awk -v l="$loss" 'BEGIN { printf "%.1f", exp(l) }'))." \
       "DAPT base: $dapt_steps further steps on spam's train e-mails, validation loss $(val_loss "$out/base-dapt-spam") on held-out ones."
  echo "ID = the task's test split; OOD = its out-of-distribution split (spam: hard ham + spam-2; era: held-out presidents);" \
       "each scored on its first $eval_limit examples. Cells: mean ± sd over $seeds seeds."
  echo
  cat "$out/spam/summary.md"
  echo
  cat "$out/era/summary.md"
  echo
  echo "## Part of speech, layer by layer"
  echo
  cat "$out/pos.md"
  echo
  echo "Plots: accuracy_vs_trainable.png, id_vs_ood.png, loss_curves.png, learning_curve.png (per task folder)."
  echo
  echo "Wall time: $(( $(date +%s) - start )) s."
} > "$out/summary.md"
echo "demo: done in $(( $(date +%s) - start )) s; summary in $out/summary.md"
