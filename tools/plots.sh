#!/usr/bin/env bash
# tools/plots.sh OUT TASK... — PNG plots of `tinyadapt compare` results, drawn with gnuplot:
#   OUT/TASK/accuracy_vs_trainable.png  ID and OOD accuracy against trainable% (log axis)
#   OUT/TASK/id_vs_ood.png              ID beside OOD accuracy, per run
#   OUT/TASK/loss_curves.png            training loss against step, per run
# Reads OUT/TASK/runs.tsv (written by compare) and each run's log.csv. With
# several seeds (compare --seeds N) every seed is its own point, bar and curve;
# bars and curves are named "<run> s<seed>". An lp-ft curve is its fine-tuning stage: it starts at the
# loss its probe reached, not at a fresh head's.
set -euo pipefail
out=$1; shift
command -v gnuplot >/dev/null || { echo "plots: gnuplot is missing (make deps installs it)" >&2; exit 2; }
for task in "$@"; do
  dir="$out/$task"
  runs="$dir/runs.tsv"   # run seed method trainable_params trainable_percent id ood seconds rss bytes dir init_head
  seeds=$(tail -n +2 "$runs" | cut -f2 | sort -u | wc -l)
  if [ "$seeds" -gt 1 ]; then name='sprintf("%s s%d", strcol(1), column(2))'; else name='strcol(1)'; fi
  # One label per run name at its point, moved up 0.035 for each run already
  # labelled at the same trainable% (finetune and lp-ft both sit at 100%).
  labels=$(mktemp)
  tail -n +2 "$runs" | awk -F'\t' '!done[$1]++ { printf "%s\t%s\t%s\n", $5, $6 + 0.035 * placed[$5]++, $1 }' > "$labels"
  loss_series=$(tail -n +2 "$runs" | awk -F'\t' -v seeds="$seeds" '{
    title = seeds > 1 ? $1 " s" $2 : $1
    printf "\"%s/log.csv\" using 1:2 with lines title \"%s\", ", $11, title }')
  gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,10"
set datafile separator "\t"
set output "$dir/accuracy_vs_trainable.png"
set title "$task: accuracy against the share of parameters trained"
set logscale x
set xlabel "trainable parameters (% of all, log scale)"
set ylabel "accuracy"
set key bottom right
set offsets 0, graph 0.12, 0, 0
plot "$runs" skip 1 using 5:6 with points pt 7 ps 1.4 title "ID (test)", \
     "" skip 1 using 5:7 with points pt 5 ps 1.4 title "OOD", \
     "$labels" using 1:2:3 with labels offset 1,0.6 font ",8" notitle
set output "$dir/id_vs_ood.png"
unset logscale x
set offsets 0, 0, 0, 0
set title "$task: in distribution vs out of distribution"
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set yrange [0:1]
set key below
set xlabel ""
plot "$runs" skip 1 using 6:xtic($name) title "ID (test)", "" skip 1 using 7 title "OOD"
set output "$dir/loss_curves.png"
set datafile separator ","
unset style
set xtics norotate
set yrange [*:*]
set title "$task: training loss"
set xlabel "step"
set ylabel "cross-entropy"
set key inside top right
plot ${loss_series%, }
GP
  rm -f "$labels"
done
