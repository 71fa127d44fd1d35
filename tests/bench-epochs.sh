#!/usr/bin/env bash
# Wall time of one DSSGD epoch (30 participants x 600 Fashion-MNIST images,
# MLP, theta_u = 0.1) per schedule on 3 MPI ranks: the median of the
# `seconds` column (training and messages; evaluation excluded) over 5 epochs.
set -euo pipefail
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "DSSGD epoch, 30 participants x 600 images, MLP, theta_u 0.1, 3 ranks on $(nproc) cores"
printf "%-12s %10s %10s %12s\n" schedule "median s" "spread" "vs round-robin"
rr=""
for s in round-robin random sync async; do
  mpirun --oversubscribe -np 3 "$build/dssgd" train --schedule "$s" --epochs 5 --eval-size 200 \
    --quiet --metrics "$tmp/$s.csv"
  read -r med spread < <(tail -n +2 "$tmp/$s.csv" | cut -d, -f2 | sort -g |
    awk '{ v[NR] = $1 } END { printf "%.3f %.0f%%\n", v[int((NR + 1) / 2)], 100 * (v[NR] - v[1]) / v[int((NR + 1) / 2)] }')
  [[ -z "$rr" ]] && rr=$med
  printf "%-12s %10s %10s %11.2fx\n" "$s" "$med" "$spread" "$(awk -v a="$rr" -v b="$med" 'BEGIN { print a / b }')"
done
