#!/usr/bin/env bash
# Figure 5: time to accuracy. Seconds of training (the metrics' `seconds`
# column: training and messages, evaluation excluded) until the global
# model first reaches TARGET test accuracy (default 0.84, on the first 2000
# test images), per schedule on 3 MPI ranks (server + 2 workers), against
# round-robin in the same run; ratio = round-robin's time / the schedule's
# (> 1: sooner). Fashion-MNIST, 30 participants x 600, MLP, theta_u = 0.1,
# default aggregation; at most 30 epochs ("never" past that).
# usage: bench-accuracy.sh [BUILD [CSV DATE HOST]]; with CSV, appends rows.
set -euo pipefail
build=${1:-build}
csv=${2:-}
date=${3:-$(date +%F)}
host=${4:-unknown}
target=${TARGET:-0.84}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_mpi_yield_when_idle=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ranks=3 max_epochs=30
if [[ -z "$csv" ]]; then
  printf "%-6s %-34s %12s %7s %-11s %-22s %12s %8s %-13s %s\n" figure config median spread unit \
    reference "ref median" ratio target met
fi
# seconds to the target and the epoch it was reached at ("" if never)
to_target() { awk -F, -v t="$target" 'NR > 1 { s += $2; if ($3 >= t) { printf "%.6g %d\n", s, $1; exit } }' "$1"; }
for s in round-robin random sync async; do
  # the run stops itself at the target: a second run would only repeat it
  mpirun --oversubscribe -np $ranks "$build/dssgd" train --schedule "$s" --epochs $max_epochs \
    --eval-size 2000 --quiet --metrics "$tmp/$s.csv" >/dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    [[ -n $(to_target "$tmp/$s.csv" 2>/dev/null) ]] && { kill "$pid" 2>/dev/null; break; }
    sleep 0.2
  done
  wait "$pid" 2>/dev/null || true
  read -r secs epoch < <(to_target "$tmp/$s.csv"; echo) || true
  echo "${secs:-} ${epoch:-}" > "$tmp/$s.result"
done

read -r rsecs repoch < "$tmp/round-robin.result"
for s in random sync async; do
  read -r secs epoch < "$tmp/$s.result" || true
  awk -v s="$s" -v secs="${secs:-}" -v epoch="${epoch:-}" -v rsecs="$rsecs" -v repoch="$repoch" \
      -v target="$target" -v csv="$csv" -v date="$date" -v host="$host" -v ranks=$ranks \
      -v cores="$(nproc)" -v max=$max_epochs '
    BEGIN {
      goal = (s == "sync" || s == "async") ? "ratio>=1.7" : ""
      never = (secs == "")
      ratio = never ? 0 : rsecs / secs
      met = goal == "" ? "" : (ratio >= 1.7 ? "yes" : "NO")
      config = s " " ranks "ranks/" cores "cores to " target
      printf "%-6s %-34s %12s %6s  %-11s %-22s %12.5g %8.5g %-13s %s\n", "t2acc", config,
             never ? "never" : sprintf("%.5g", secs), "-", "s", "round-robin", rsecs, ratio,
             goal, met
      printf "       # %s; round-robin at epoch %d\n",
             never ? "not reached in " max " epochs" : "reached at epoch " epoch, repoch
      if (csv != "") {
        getline load < "/proc/loadavg"; split(load, l, " ")
        printf "%s,%s,t2acc,%s,s,%s,%s,%s,1,round-robin,%.6g,%.6g,%.6g,1,%.6g,%s,%s,%.2f\n",
               date, host, config, never ? "" : secs, never ? "" : secs, never ? "" : secs,
               rsecs, rsecs, rsecs, ratio, goal, tolower(met), l[1] >> csv
      }
    }'
done
