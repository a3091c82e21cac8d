#!/usr/bin/env bash
# tools/experiments/scale_ladder.sh — Lester et al. (2021)'s Figure 1 at our
# scale: does the gap between prompt tuning (and prefix tuning, LoRA) and full
# fine-tuning close as the base model grows?
#
#   1. pretrain one base per rung of the ladder on the same corpus, each for the
#      same number of tokens (the compute rule: compute then grows with the
#      model, as in a fixed-data scaling study);
#   2. adapt each with finetune, lora, prompt and prefix on spam and era, with
#      --seeds seeds (tinyadapt compare);
#   3. write OUT/ladder.tsv (base, parameters, task, method, ID and OOD mean and
#      sd, gap to finetune), OUT/ladder.md, and OUT/ladder.png (the gap to
#      fine-tuning against base parameters, log scale), and the wall time.
#
# Not part of `make demo` (the default ladder takes about half an hour on 2
# cores; see FINDINGS.md for the measured time). Environment:
#   OUT     [runs/scale-ladder]    RUNGS  ["2:64:2 4:128:4 6:192:6" = layers:width:heads]
#   TOKENS  [3072000 = the demo base's 1500 steps x 16 x 128] pretraining tokens per rung
#   CORPUS  [sotu,brown]    STEPS [100] adaptation steps per run    SEEDS [3]   JOBS [2]
#   TASKS   ["spam era"]    POOLING [mean]    EVAL_LIMIT [300] test/ood examples scored
#   METHOD_ARGS  compare --method-args [none]
# The 4:128:4 rung is the demo's base: copy runs/demo/base to OUT/base-4-128 to reuse it.
# A rung whose base and compare results exist is reused (delete its folder to redo it).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/scale-ladder}
rungs=${RUNGS:-"2:64:2 4:128:4 6:192:6"}
tokens=${TOKENS:-3072000}
corpus=${CORPUS:-sotu,brown}
steps=${STEPS:-100}
seeds=${SEEDS:-3}
jobs=${JOBS:-2}
tasks=${TASKS:-"spam era"}
method_args=${METHOD_ARGS:-}
pooling=${POOLING:-mean}
eval_limit=${EVAL_LIMIT:-300}
ctx=128 batch=16 vocab=2048
mkdir -p "$out"
start=$(date +%s)

for rung in $rungs; do
  IFS=: read -r layers width heads <<<"$rung"
  base="$out/base-$layers-$width"
  pretrain_steps=$(( tokens / (batch * ctx) ))
  if [ -f "$base/model.safetensors" ] && [ "$(tail -n 1 "$base/log.csv" | cut -d, -f1)" = "$pretrain_steps" ]; then
    echo "ladder: reusing $base"
  else
    echo "ladder: pretraining $base ($layers layers, C = $width, $pretrain_steps steps of $batch x $ctx tokens)"
    ./tinyadapt pretrain --corpus "$corpus" --n-layer "$layers" --n-head "$heads" --n-embd "$width" --ctx $ctx \
        --vocab-size $vocab --batch $batch --steps "$pretrain_steps" --eval-every 500 --seed 1337 --out "$base"
  fi
  for task in $tasks; do
    if [ -f "$base-$task/runs.tsv" ]; then continue; fi
    ./tinyadapt compare --model "$base" --task "$task" --methods finetune,lora,prompt,prefix --steps "$steps" \
        --seeds "$seeds" --jobs "$jobs" --pooling "$pooling" --eval-limit "$eval_limit" ${method_args:+--method-args "$method_args"} --out "$base-$task"
  done
done

# One line per rung, task and method: mean and sd over seeds, and the gap to finetune's ID mean.
{
  printf 'base\tparams\tval_loss\ttask\tmethod\tid_mean\tid_sd\tood_mean\tood_sd\tgap_to_finetune\n'
  for rung in $rungs; do
    IFS=: read -r layers width heads <<<"$rung"
    base="$out/base-$layers-$width"
    # The base's parameters: finetune trains them all (and a head of 2C + 2).
    params=$(awk -F'\t' 'NR > 1 && $3 == "finetune" { print $5 - 2 * '"$width"' - 2; exit }' "$base-${tasks%% *}/runs.tsv")
    val_loss=$(awk -F, 'NR > 1 && $7 != "" { v = $7 } END { print v }' "$base/log.csv")
    for task in $tasks; do
      awk -F'\t' -v base="$layers-$width" -v params="$params" -v vl="$val_loss" -v task="$task" '
        NR > 1 { n[$1]++; s[$1] += $7; s2[$1] += $7 * $7; o[$1] += $8; o2[$1] += $8 * $8; if (!(($1) in seen)) { seen[$1] = 1; order[++k] = $1 } }
        function sd(a, a2, m) { return m > 1 ? sqrt(((a2 - a * a / m) > 0 ? a2 - a * a / m : 0) / (m - 1)) : 0 }
        END { ft = s["finetune"] / n["finetune"]
          for (i = 1; i <= k; i++) { m = order[i]
            printf "%s\t%s\t%s\t%s\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\n", base, params, vl, task, m, s[m] / n[m], sd(s[m], s2[m], n[m]),
                   o[m] / n[m], sd(o[m], o2[m], n[m]), s[m] / n[m] - ft } }' "$base-$task/runs.tsv"
    done
  done
} > "$out/ladder.tsv"

{
  echo "# Scale ladder: the gap to full fine-tuning as the base grows"
  echo
  echo "Corpus $corpus, $tokens pretraining tokens per base, $steps adaptation steps, $seeds seeds, $pooling pooling, test/ood scored on $eval_limit examples; ID accuracy mean ± sd, gap = method − finetune (ID)."
  echo
  echo "| base (layers-width) | parameters | val loss | task | method | ID | OOD | gap to finetune |"
  echo "|---|---:|---:|---|---|---:|---:|---:|"
  tail -n +2 "$out/ladder.tsv" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %.3f ± %.3f | %.3f ± %.3f | %+.3f |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
  echo
  echo "Wall time: $(( ($(date +%s) - start) / 60 )) min for the steps not reused."
} > "$out/ladder.md"

if command -v gnuplot >/dev/null; then
  plots=""
  for task in $tasks; do
    for method in lora prompt prefix; do
      awk -F'\t' -v t="$task" -v m="$method" 'NR > 1 && $4 == t && $5 == m { print $2, $10, $7 }' "$out/ladder.tsv" > "$out/.ladder-$task-$method.dat"
      plots+="\"$out/.ladder-$task-$method.dat\" using 1:2:3 with yerrorlines lw 2 title \"$task $method\", "
    done
  done
  gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,10"
set output "$out/ladder.png"
set title "Gap to full fine-tuning (ID accuracy) against base size (mean over seeds, bars = the method's sd)"
set logscale x
set xlabel "base parameters (log scale)"
set ylabel "accuracy − finetune's accuracy"
set key bottom right
set yzeroaxis
set arrow from graph 0, first 0 to graph 1, first 0 nohead dt 2
plot ${plots%, }
GP
  rm -f "$out"/.ladder-*.dat
fi
cat "$out/ladder.md"
