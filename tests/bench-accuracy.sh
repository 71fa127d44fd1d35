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
# sync and async again with --local-steps K [""], TARGET [0.84], REPEATS
# rounds [3]: each round runs every schedule once, in turn, so a slow spell
# of the machine falls on all of them alike, and round i runs seed
# SEED + i - 1 (SEED [1]): near its plateau a curve's first crossing of the
# target is decided by the evaluation's sampling error (about 0.8 points on
# 2000 images), so one seed's crossing says more about that seed than about
# the schedule; a row gives the median, min and max over the rounds,
# ratio = round-robin's median / the schedule's median, and the epoch each
# round (each seed) reached the target at.
# usage: bench-accuracy.sh [BUILD [CSV DATE HOST]]; with CSV, appends rows.
set -euo pipefail
build=${1:-build}
csv=${2:-}
date=${3:-$(date +%F)}
host=${4:-unknown}
target=${TARGET:-0.84}
repeats=${REPEATS:-3}
seed0=${SEED:-1}
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "bench-accuracy: REPEATS=$repeats is not a count >= 1" >&2; exit 2; }
[[ $seed0 =~ ^[0-9]{1,9}$ ]] || { echo "bench-accuracy: SEED=$seed0 is not a seed (0 to 999999999)" >&2; exit 2; }
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
    --eval-size 2000 --quiet --metrics "$tmp/$name.csv" "$@" >/dev/null 2>"$tmp/$name.err" &
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
# report NAME LABEL RANKS REF: one row against the round-robin runs REF,
# over the rounds NAME-1..NAME-REPEATS ("never" if any round never got there)
report() {
  local name=$1 label=$2 ranks=$3 ref=$4 i secs epoch runs="" refs=""
  for i in $(seq 1 "$repeats"); do
    read -r secs epoch < "$tmp/$name-$i.result" || true
    runs+="${secs:-never}:${epoch:-never} "
    read -r secs epoch < "$tmp/$ref-$i.result" || true
    refs+="${secs:-never}:${epoch:-never} "
  done
  awk -v label="$label" -v runs="$runs" -v refs="$refs" -v target="$target" -v csv="$csv" -v seed0="$seed0" \
      -v date="$date" -v host="$host" -v ranks="$ranks" -v cores="$cores" -v max=$max_epochs '
    # stats(list, s): s["n"], s["med"], s["min"], s["max"], s["epochs"]; s["never"] if a
    # round never reached the target
    function stats(list, s,    n, i, j, t, f, v) {
      n = split(list, f, " "); s["never"] = 0; s["epochs"] = ""
      for (i = 1; i <= n; i++) {
        split(f[i], t, ":"); if (t[1] == "never") s["never"] = 1
        v[i] = t[1] + 0; s["epochs"] = s["epochs"] (i > 1 ? ", " : "") t[2]
      }
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t[0] = v[j]; v[j] = v[j - 1]; v[j - 1] = t[0] }
      s["n"] = n; s["min"] = v[1]; s["max"] = v[n]
      s["med"] = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    BEGIN {
      stats(runs, a); stats(refs, r)
      parallel = (label ~ /^(sync|async)/)
      need = (ranks >= 16 && cores >= 16) ? 6 : 1.7
      goal = parallel ? "ratio>=" need : ""
      never = a["never"] || r["never"]
      ratio = never ? 0 : r["med"] / a["med"]
      met = goal == "" ? "" : (ratio >= need ? "yes" : "NO")
      config = label " " ranks "ranks/" cores "cores to " target
      printf "%-6s %-40s %12s %6s  %-11s %-22s %12s %8.5g %-13s %s\n", "t2acc", config,
             a["never"] ? "never" : sprintf("%.5g", a["med"]),
             a["never"] ? "-" : sprintf("%.1f%%", 100 * (a["max"] - a["min"]) / a["med"]),
             "s", "round-robin", r["never"] ? "never" : sprintf("%.5g", r["med"]), ratio, goal, met
      printf "       # epochs reached, seeds %d-%d: %s (round-robin: %s; \"never\": not in %d epochs)\n",
             seed0, seed0 + a["n"] - 1, a["epochs"], r["epochs"], max
      if (csv != "") {
        getline load < "/proc/loadavg"; split(load, l, " ")
        printf "%s,%s,t2acc,%s,s,%s,%s,%s,%d,round-robin,%s,%s,%s,%d,%.6g,%s,%s,%.2f\n",
               date, host, config, a["never"] ? "" : a["med"], a["never"] ? "" : a["min"],
               a["never"] ? "" : a["max"], a["n"], r["never"] ? "" : r["med"],
               r["never"] ? "" : r["min"], r["never"] ? "" : r["max"], r["n"], ratio, goal,
               tolower(met), l[1] >> csv
      }
    }'
}
for ranks in ${RANKS:-3}; do
  for i in $(seq 1 "$repeats"); do
    seed=$((seed0 + i - 1))
    for s in round-robin random sync async; do
      measure "$s-$ranks-$i" "$ranks" --schedule "$s" --seed "$seed"
    done
    for k in ${LOCAL_STEPS:-}; do
      for s in sync async; do
        measure "$s-k$k-$ranks-$i" "$ranks" --schedule "$s" --local-steps "$k" --seed "$seed"
      done
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
