#!/usr/bin/env bash
# Figure 5: wall time of one DSSGD epoch (30 participants x 600 Fashion-MNIST
# images, MLP, theta_u = 0.1) per schedule on 3 MPI ranks, against round-robin
# in the same run: the `seconds` column (training and messages; evaluation
# excluded) of epochs 2-6; epoch 1 (the full first download) is a warm-up.
# usage: bench-epochs.sh [BUILD [CSV DATE HOST]]; with CSV, appends rows.
set -euo pipefail
build=${1:-build}
csv=${2:-}
date=${3:-$(date +%F)}
host=${4:-unknown}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ranks=3 epochs=6
if [[ -z "$csv" ]]; then
  printf "%-6s %-34s %12s %7s %-11s %-22s %12s %8s %-13s %s\n" figure config median spread unit \
    reference "ref median" ratio target met
fi
for s in round-robin random sync async; do
  mpirun --oversubscribe -np $ranks "$build/dssgd" train --schedule "$s" --epochs $epochs \
    --eval-size 200 --quiet --metrics "$tmp/$s.csv" >/dev/null
  # epochs/s of each epoch after the first, one line
  tail -n +3 "$tmp/$s.csv" | cut -d, -f2 | awk '{ printf "%s%.6g", (NR > 1 ? " " : ""), 1 / $1 }
    END { print "" }' >"$tmp/$s.rates"
done

# median, min, max of a line of numbers
stats() { tr ' ' '\n' <"$1" | sort -g | awk '{ v[NR] = $1 } END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.6g %.6g %.6g %d\n", m, v[1], v[NR], NR }'; }

read -r rmed rmin rmax rn < <(stats "$tmp/round-robin.rates")
for s in random sync async; do
  read -r med min max n < <(stats "$tmp/$s.rates")
  target=""
  [[ $s == sync || $s == async ]] && target="ratio>=1.7"
  awk -v s="$s" -v med="$med" -v min="$min" -v max="$max" -v n="$n" -v rmed="$rmed" \
      -v rmin="$rmin" -v rmax="$rmax" -v rn="$rn" -v target="$target" -v csv="$csv" \
      -v date="$date" -v host="$host" -v ranks=$ranks -v cores="$(nproc)" '
    BEGIN {
      ratio = med / rmed
      met = ""
      if (target != "") { split(target, t, ">="); met = ratio >= t[2] ? "yes" : "NO" }
      config = s " " ranks "ranks/" cores "cores"
      printf "%-6s %-34s %12.5g %6.1f%% %-11s %-22s %12.5g %8.5g %-13s %s\n", "epoch", config,
             med, 100 * (max - min) / med, "epochs/s", "round-robin", rmed, ratio, target, met
      printf "       # %.4f s per epoch, round-robin %.4f s\n", 1 / med, 1 / rmed
      if (csv != "") {
        getline load < "/proc/loadavg"; split(load, l, " ")
        printf "%s,%s,epoch,%s,epochs/s,%.6g,%.6g,%.6g,%d,round-robin,%.6g,%.6g,%.6g,%d,%.6g,%s,%s,%.2f\n",
               date, host, config, med, min, max, n, rmed, rmin, rmax, rn, ratio, target,
               tolower(met), l[1] >> csv
      }
    }'
done
