#!/usr/bin/env bash
# tools/plots.sh OUT TASK... — PNG plots of `tinyadapt compare` results, drawn with gnuplot:
#   OUT/TASK/accuracy_vs_trainable.png  ID and OOD accuracy against trainable% (log axis), mean over seeds
#   OUT/TASK/id_vs_ood.png              ID beside OOD accuracy per method (mean, error bar = sd over seeds),
#                                       with the bag-of-words and majority-class accuracies as lines
#   OUT/TASK/loss_curves.png            training loss against step, one panel per group of methods: an
#                                       exponential moving average (0.9) over the raw loss, drawn faint
#   OUT/TASK/learning_curve.png         (when compare ran --train-sizes) ID and OOD accuracy against the
#                                       number of labelled examples (log axis), mean ± sd over seeds
# Reads OUT/TASK/runs.tsv, OUT/TASK/curve.tsv and each run's log.csv, all written by compare. The table's
# runs are the ones trained on the whole train split (the largest train_size in runs.tsv).
set -euo pipefail
out=$1; shift
command -v gnuplot >/dev/null || { echo "plots: gnuplot is missing (make deps installs it)" >&2; exit 2; }
for task in "$@"; do
  dir="$out/$task"
  runs="$dir/runs.tsv"   # run seed method train_size params percent id ood seconds rss bytes dir init_head
  curve="$dir/curve.tsv" # series train_size id_mean id_sd ood_mean ood_sd seeds
  tmp=$(mktemp -d)
  all=$(tail -n +2 "$runs" | cut -f4 | sort -n | tail -1)
  # Mean and sd over seeds of the table's runs: label percent id_mean id_sd ood_mean ood_sd, in table order.
  tail -n +2 "$runs" | awk -F'\t' -v all="$all" '$4 == all {
      if (!(($1) in n)) order[++rows] = $1
      n[$1]++; pct[$1] = $6; id[$1] += $7; id2[$1] += $7 * $7; ood[$1] += $8; ood2[$1] += $8 * $8 }
    function sd(s, s2, k) { return k > 1 ? sqrt(((s2 - s * s / k) > 0 ? (s2 - s * s / k) : 0) / (k - 1)) : 0 }
    END { for (r = 1; r <= rows; r++) { k = order[r]
      printf "%s\t%s\t%.4f\t%.4f\t%.4f\t%.4f\n", k, pct[k], id[k] / n[k], sd(id[k], id2[k], n[k]), ood[k] / n[k], sd(ood[k], ood2[k], n[k]) } }' \
    > "$tmp/table.tsv"
  # One label per run at its point, moved up 0.035 for each run already labelled at the same trainable%.
  awk -F'\t' '{ printf "%s\t%s\t%s\n", $2, $3 + 0.035 * placed[$2]++, $1 }' "$tmp/table.tsv" > "$tmp/labels.tsv"
  ref() { awk -F'\t' -v s="$1" -v n="$all" -v c="$2" '$1 == s && $2 == n { print $c }' "$curve"; }
  bow_id=$(ref bag-of-words 3); bow_ood=$(ref bag-of-words 5)
  maj_id=$(ref "majority class" 3); maj_ood=$(ref "majority class" 5)
  # The loss curves of each table run's first seed, smoothed: step raw ema.
  first_seed=$(tail -n +2 "$runs" | cut -f2 | sort -n | head -1)
  tail -n +2 "$runs" | awk -F'\t' -v all="$all" -v s="$first_seed" '$4 == all && $2 == s { print $1 "\t" $12 }' > "$tmp/logs.tsv"
  i=0; full=""; light=""
  while IFS=$'\t' read -r label run_dir; do
    i=$((i + 1))
    awk -F',' 'NR > 1 && $2 != "" { ema = NR == 2 ? $2 : 0.9 * ema + 0.1 * $2; print $1, $2, ema }' "$run_dir/log.csv" > "$tmp/loss$i.dat"
    series="\"$tmp/loss$i.dat\" using 1:2 with lines lc $i lw 1 dt 3 notitle, \"$tmp/loss$i.dat\" using 1:3 with lines lc $i lw 2 title \"$label\", "
    case "$label" in probe*|finetune*|lp-ft*|*DAPT*) full+="$series" ;; *) light+="$series" ;; esac
  done < "$tmp/logs.tsv"
  panels=""  # the loss panels that have curves
  [ -n "$full" ] && panels+="set title \"probes and full fine-tuning\"; plot ${full%, }
"
  [ -n "$light" ] && panels+="set title \"lightweight methods\"; plot ${light%, }
"
  gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,10"
set datafile separator "\t"
set output "$dir/accuracy_vs_trainable.png"
set title "$task: accuracy against the share of parameters trained (mean over seeds)"
set logscale x
set xlabel "trainable parameters (% of all, log scale)"
set ylabel "accuracy"
set key bottom right
set offsets 0, graph 0.12, 0, 0
plot "$tmp/table.tsv" using 2:3:4 with yerrorbars pt 7 ps 1.2 title "ID (test)", \
     "" using 2:5:6 with yerrorbars pt 5 ps 1.2 title "OOD", \
     "$tmp/labels.tsv" using 1:2:3 with labels offset 1,0.6 font ",8" notitle
set output "$dir/id_vs_ood.png"
unset logscale x
set offsets 0, 0, 0, 0
set title "$task: in distribution vs out of distribution (mean ± sd over seeds)"
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set yrange [0:1.05]
set key below
set xlabel ""
set arrow 1 from graph 0, first $bow_id to graph 1, first $bow_id nohead lc rgb "#1f77b4" dt 2 lw 2
set arrow 2 from graph 0, first $bow_ood to graph 1, first $bow_ood nohead lc rgb "#ff7f0e" dt 2 lw 2
set arrow 3 from graph 0, first $maj_id to graph 1, first $maj_id nohead lc rgb "#1f77b4" dt 3 lw 1
set arrow 4 from graph 0, first $maj_ood to graph 1, first $maj_ood nohead lc rgb "#ff7f0e" dt 3 lw 1
set label 1 "dashed: bag of words (ID $bow_id, OOD $bow_ood); dotted: majority class (ID $maj_id, OOD $maj_ood)" at graph 0.01, graph 1.03 font ",8"
plot "$tmp/table.tsv" using 3:4:xtic(1) title "ID (test)" lc rgb "#1f77b4", "" using 5:6 title "OOD" lc rgb "#ff7f0e"
unset arrow; unset label
set output "$dir/loss_curves.png"
set terminal pngcairo size 1100,480 font "sans,10"
set datafile separator whitespace
unset style
set xtics norotate
set yrange [0:*]
set xlabel "step"
set ylabel "cross-entropy"
set key inside top right
set multiplot layout 1,$(printf '%s' "$panels" | grep -c plot) title "$task: training loss (seed $first_seed; bold: moving average, dotted: per step)"
$panels
unset multiplot
GP
  if [ "$(awk -F'\t' 'NR > 1 && $1 != "majority class" && $1 != "bag-of-words"' "$curve" | wc -l)" -gt 0 ]; then
    series=$(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$curve")
    plots_id=""; plots_ood=""; i=0
    while IFS= read -r s; do
      i=$((i + 1))
      awk -F'\t' -v s="$s" '$1 == s { print $2, $3, $4, $5, $6 }' "$curve" > "$tmp/curve$i.dat"
      id_cols="1:2:3"; ood_cols="1:4:5"; style="yerrorlines lw 2 lc $i"
      case "$s" in
        "majority class") id_cols="1:2"; ood_cols="1:4"; style="lines dt 3 lw 2 lc rgb 'gray40'" ;;
        bag-of-words) style="yerrorlines dt 2 lw 2 lc rgb 'black'" ;;
      esac
      plots_id+="\"$tmp/curve$i.dat\" using $id_cols with $style title \"$s\", "
      plots_ood+="\"$tmp/curve$i.dat\" using $ood_cols with $style title \"$s\", "
    done <<< "$series"
    gnuplot <<GP
set terminal pngcairo size 1100,480 font "sans,10"
set output "$dir/learning_curve.png"
set logscale x 2
set xlabel "labelled training examples (log scale)"
set ylabel "accuracy"
set key bottom right font ",8"
set multiplot layout 1,2 title "$task: accuracy by number of labelled examples (mean ± sd over seeds)"
set title "in distribution (test)"
plot ${plots_id%, }
set title "out of distribution"
plot ${plots_ood%, }
unset multiplot
GP
  fi
  rm -rf "$tmp"
done
