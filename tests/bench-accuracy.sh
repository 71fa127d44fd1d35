#!/usr/bin/env bash
# Figure 5: time to accuracy. Seconds of training (the metrics' `seconds`
# column: training and messages, evaluation excluded) until the global
# model first reaches TARGET test accuracy (default 0.84, on the first 2000
# test images), per schedule, against round-robin on the same number of MPI
# ranks in the same run; ratio = round-robin's time / the schedule's (> 1:
# sooner). Fashion-MNIST, 30 participants x 600, MLP, theta_u = 0.1,
# default aggregation; at most 30 epochs ("never" past that).
# Goal: sync and async ratio >= 1.7; >= 6 at 16 ranks or more on a machine
# of 16 cores or more.
# Settings (environment): RANKS rank counts ["3"], LOCAL_STEPS: for each K,
# sync and async again with --local-steps K [""], TARGET [0.84].
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
max_epochs=30 cores=$(nproc)
if [[ -z "$csv" ]]; then
  printf "%-6s %-40s %12s %7s %-11s %-22s %12s %8s %-13s %s\n" figure config median spread unit \
    reference "ref median" ratio target met
fi
# seconds to the target and the epoch it was reached at ("" if never)
to_target() { awk -F, -v t="$target" 'NR > 1 { s += $2; if ($3 >= t) { printf "%.6g %d\n", s, $1; exit } }' "$1"; }
# measure NAME RANKS ARGS...: one run, stopped at the target; NAME.result
# holds "seconds epoch" (empty when never reached)
measure() {
  local name=$1 ranks=$2; shift 2
  mpirun --oversubscribe -np "$ranks" "$build/dssgd" train --epochs $max_epochs \
    --eval-size 2000 --quiet --metrics "$tmp/$name.csv" "$@" >/dev/null &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    [[ -n $(to_target "$tmp/$name.csv" 2>/dev/null) ]] && { kill "$pid" 2>/dev/null; break; }
    sleep 0.2
  done
  wait "$pid" 2>/dev/null || true
  local secs epoch
  read -r secs epoch < <(to_target "$tmp/$name.csv"; echo) || true
  echo "${secs:-} ${epoch:-}" > "$tmp/$name.result"
}
# report NAME LABEL RANKS REF: one row against the round-robin run REF
report() {
  local name=$1 label=$2 ranks=$3 ref=$4 secs epoch rsecs repoch
  read -r secs epoch < "$tmp/$name.result" || true
  read -r rsecs repoch < "$tmp/$ref.result" || true
  awk -v label="$label" -v secs="${secs:-}" -v epoch="${epoch:-}" -v rsecs="${rsecs:-}" \
      -v repoch="${repoch:-}" -v target="$target" -v csv="$csv" -v date="$date" \
      -v host="$host" -v ranks="$ranks" -v cores="$cores" -v max=$max_epochs '
    BEGIN {
      parallel = (label ~ /^(sync|async)/)
      need = (ranks >= 16 && cores >= 16) ? 6 : 1.7
      goal = parallel ? "ratio>=" need : ""
      never = (secs == "") || (rsecs == "")
      ratio = never ? 0 : rsecs / secs
      met = goal == "" ? "" : (ratio >= need ? "yes" : "NO")
      config = label " " ranks "ranks/" cores "cores to " target
      printf "%-6s %-40s %12s %6s  %-11s %-22s %12s %8.5g %-13s %s\n", "t2acc", config,
             secs == "" ? "never" : sprintf("%.5g", secs), "-", "s", "round-robin",
             rsecs == "" ? "never" : sprintf("%.5g", rsecs), ratio, goal, met
      printf "       # %s; round-robin %s\n",
             secs == "" ? "not reached in " max " epochs" : "reached at epoch " epoch,
             rsecs == "" ? "never reached it" : "at epoch " repoch
      if (csv != "") {
        getline load < "/proc/loadavg"; split(load, l, " ")
        printf "%s,%s,t2acc,%s,s,%s,%s,%s,1,round-robin,%s,%s,%s,1,%.6g,%s,%s,%.2f\n",
               date, host, config, secs, secs, secs, rsecs, rsecs, rsecs, ratio, goal,
               tolower(met), l[1] >> csv
      }
    }'
}
for ranks in ${RANKS:-3}; do
  for s in round-robin random sync async; do
    measure "$s-$ranks" "$ranks" --schedule "$s"
  done
  for k in ${LOCAL_STEPS:-}; do
    for s in sync async; do
      measure "$s-k$k-$ranks" "$ranks" --schedule "$s" --local-steps "$k"
    done
  done
  for s in random sync async; do
    report "$s-$ranks" "$s" "$ranks" "round-robin-$ranks"
  done
  for k in ${LOCAL_STEPS:-}; do
    for s in sync async; do
      report "$s-k$k-$ranks" "$s --local-steps $k" "$ranks" "round-robin-$ranks"
    done
  done
done
