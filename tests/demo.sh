#!/usr/bin/env bash
# The main job: a real DSSGD training on Fashion-MNIST. 30 participants with
# 600 images each (the paper's 1%), the paper's MLP, theta_u = 0.1,
# round-robin, 20 epochs, under mpirun with 3 ranks (server + 2 hosts).
set -euo pipefail
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
out=${DEMO_METRICS:-$build/demo-metrics.csv}
mpirun --oversubscribe -np 3 "$build/dssgd" train --mode dssgd --participants 30 \
  --shard-size 600 --partition paper --theta-u 0.1 --theta-d 1 --schedule round-robin \
  --epochs 20 --metrics "$out"
echo "metrics: $out"
tail -n 1 "$out" | awk -F, '{ printf "final global accuracy %.4f, participants %.4f [%.4f, %.4f]\n", $3, $5, $6, $7 }'
