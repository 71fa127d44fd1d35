#!/usr/bin/env bash
# The server's step η_s (--server-lr) against θ_u: where every upload of a
# round comes from one state (sync; async with every participant in flight)
# and is averaged, which step trains as round-robin does? Fashion-MNIST,
# 30 participants x 600, the default MLP, 20 epochs, the whole test set,
# seeds SEEDS, one process each (sync is the same bits on any number of
# ranks; async is simulated, deterministic). Each run's metrics go to
# runs/NAME-sSEED.csv; summary.csv has one row per run, table.txt the
# gaps to round-robin's last-5-epoch mean (points, mean over the seeds)
# and the epochs to 0.84.
# usage: results/server-step/run.sh [BUILD]   (from the checkout; BUILD [build])
# Settings: SEEDS ["1 2 3"], JOBS runs at once [2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-build}")/dssgd
seeds=${SEEDS:-1 2 3} jobs=${JOBS:-2}
[[ -x $bin ]] || { echo "run.sh: no $bin (make first)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1
mkdir -p "$here/runs"
# name theta args...: one line per run and seed
list() {
  local s t
  for s in $seeds; do
    for t in 1 0.5 0.25 0.1 0.01; do echo "rr $t $s --schedule round-robin"; done
    for l in 1 1.25 1.5 2 2.5; do echo "sync-lr$l 1 $s --schedule sync --server-lr $l"; done
    for l in 1 1.25 1.5 2; do echo "sync-lr$l 0.5 $s --schedule sync --server-lr $l"; done
    for l in 1 1.25 1.5 2; do echo "sync-lr$l 0.25 $s --schedule sync --server-lr $l"; done
    for l in 1 1.1 1.2; do echo "sync-lr$l 0.1 $s --schedule sync --server-lr $l"; done
    for l in 1 1.01; do echo "sync-lr$l 0.01 $s --schedule sync --server-lr $l"; done
    for l in 1 2; do echo "sync-k0-lr$l 1 $s --schedule sync --local-steps 0 --server-lr $l"; done
    for t in 1 0.1 0.01; do
      echo "async-s30-lr1 $t $s --schedule async --simulate-staleness 30 --server-lr 1"
      echo "async-s30-default $t $s --schedule async --simulate-staleness 30"
    done
    for S in 4 8 15; do
      for l in 1 2; do
        echo "async-fifo$S-lr$l 1 $s --schedule async --simulate-staleness $S --simulate-order fifo --server-lr $l"
      done
    done
  done
}
one() {
  local name=$1 theta=$2 seed=$3; shift 3
  local f="$here/runs/$name-theta$theta-s$seed.csv"
  [[ -s $f ]] || "$bin" train --epochs 20 --quiet --seed "$seed" --theta-u "$theta" \
    --metrics "$f" "$@" > /dev/null 2> "${f%.csv}.err" || { echo "$name θ$theta seed $seed failed" >&2; return 1; }
  awk -F, -v n="$name" -v t="$theta" -v s="$seed" 'NR > 1 { if ($1 > 15) { m += $3; k++ }
      if (!e && $3 >= 0.84) e = $1 }
    END { printf "%s,%s,%s,%.4f,%s\n", n, t, s, m / k, e }' "$f"
}
export -f one; export bin here
echo "name,theta_u,seed,last5_acc,epoch_to_0.84" > "$here/summary.csv"
list | xargs -P "$jobs" -L 1 bash -c 'one "$@"' _ | sort -t, -k2,2gr -k1,1 -k3,3n >> "$here/summary.csv"
# the table: each setting's last-5 gap to round-robin's (same θ_u, same seed)
awk -F, 'NR > 1 { key = $1 SUBSEP $2; l5[key, $3] = $4; ep[key] = ep[key] (ep[key] == "" ? "" : " ") ($5 == "" ? "-" : $5)
    seen[key] = 1; if ($1 == "rr") rr[$2, $3] = $4; seeds[$3] = 1 }
  END {
    printf "%-22s %-6s %8s  %s\n", "setting", "θ_u", "gap", "epochs to 0.84 (per seed)"
    for (key in seen) {
      split(key, k, SUBSEP); g = 0; n = 0
      for (s in seeds) if ((key, s) in l5) { g += 100 * (l5[key, s] - rr[k[2], s]); n++ }
      printf "%-22s %-6s %+8.2f  %s\n", k[1], k[2], g / n, ep[key] | "sort -k2,2gr -k1,1"
    }
  }' "$here/summary.csv" > "$here/table.txt"
cat "$here/table.txt"
