#!/usr/bin/env bash
# make demo — the main job, on a fresh machine:
#   1. pretrain a small GPT on the SOTU corpus (the held-out presidents excluded),
#   2. adapt it to the `spam` and `era` tasks with every method,
#   3. print one table per task (bag-of-words baseline first) and draw the plots.
# Everything lands in runs/demo/ (or $DEMO_OUT). A second run reuses the
# pretrained base when it is complete. QUICK=1 (make demo-quick) uses a much
# smaller budget: the same pipeline in a few minutes, with weaker numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_OUT:-runs/demo}
if [ "${QUICK:-0}" = 1 ]; then
  out=${DEMO_OUT:-runs/demo-quick}
  pretrain_steps=150
  pretrain=(--n-layer 2 --n-head 2 --n-embd 64 --ctx 64 --batch 16 --eval-every 50 --vocab-size 512)
  adapt_steps=(--steps 40)
else
  # Sized for 15 minutes on 2 cores: about 3 for pretraining, 4.5 per task.
  pretrain_steps=1200
  pretrain=(--n-layer 4 --n-head 4 --n-embd 128 --ctx 128 --batch 16 --eval-every 200 --vocab-size 1024)
  adapt_steps=(--steps 250)
fi
mkdir -p "$out"
start=$(date +%s)

if [ -f "$out/base/model.safetensors" ] && [ "$(tail -n 1 "$out/base/log.csv" | cut -d, -f1)" = "$pretrain_steps" ]; then
  echo "demo: reusing the pretrained base in $out/base"
else
  echo "demo: pretraining a GPT on the SOTU corpus -> $out/base"
  ./tinyadapt pretrain --arch gpt --corpus sotu "${pretrain[@]}" --steps "$pretrain_steps" --seed 1337 --out "$out/base"
fi
./tinyadapt generate --model "$out/base" --prompt "The state of the Union" --max-new 40 --temperature 0.8 --top-k 40 --seed 1

for task in spam era; do
  echo "demo: adapting to $task with every method"
  ./tinyadapt compare --model "$out/base" --task "$task" "${adapt_steps[@]}" --out "$out/$task"
done
tools/plots.sh "$out" spam era

{
  echo "# tinyadapt demo"
  echo
  echo "Base: a GPT pretrained on the SOTU corpus ($(grep -o '"n_layer": [0-9]*' "$out/base/config.json"), $(grep -o '"n_embd": [0-9]*' "$out/base/config.json"))."
  echo "ID = the task's test split; OOD = its out-of-distribution split (spam: hard ham + spam-2; era: held-out presidents)."
  echo
  cat "$out/spam/summary.md"
  echo
  cat "$out/era/summary.md"
  echo
  echo "Plots: accuracy_vs_trainable.png, id_vs_ood.png, loss_curves.png (per task folder)."
} > "$out/summary.md"
echo "demo: done in $(( $(date +%s) - start )) s; summary in $out/summary.md"
