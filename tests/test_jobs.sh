#!/usr/bin/env bash
# The result scripts of issue 14 on made-up summaries, without training:
#   - jobs/schedules-seeds --table: each seed's last-5 mean, the mean gap to
#     round-robin with the same seed (in points), "within 1", the epochs to
#     the target, a run that did not complete named;
#   - jobs/schedules --plots finds each run's file: a run on defaults is
#     named without K even where the local_steps column holds the K in force
#     (sync's 5), and a LOCAL_STEPS variant after it with its -k<K>.
# usage: test_jobs.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_jobs FAIL: $*"; exit 1; }

header=schedule,ranks,simulate_staleness,theta_u,aggregate,server_lr,server_momentum,staleness_exponent,staleness_tolerance,epochs,final_acc,last5_acc,seconds_train,target,seconds_to_target,epoch_to_target,mean_staleness,max_staleness,wall_seconds,status,machine,date,commit,local_steps,simulate_order
# row SCHEDULE RANKS S THETA LAST5 EPOCH STATUS K
row() { echo "$1,$2,$3,$4,x,1,,,,20,0.8,$5,6.0,0.84,2.0,$6,,,9.0,$7,test machine,2026-11-30T00:00:00Z,abc1234,$8"; }

# ---- schedules-seeds --table ----------------------------------------------
mkdir -p "$tmp/seeds/seed1" "$tmp/seeds/seed2"
{ echo "$header"
  row round-robin 1 "" 0.1 0.8500 6 complete 0
  row sync 1 "" 0.1 0.8400 12 complete 5
  row async 1 30 0.1 0.8450 "" complete 5
  row sync 3 "" 0.1 0.8000 "" complete 5   # MPI rows are not in the table
} > "$tmp/seeds/seed1/summary.csv"
{ echo "$header"
  row round-robin 1 "" 0.1 0.8600 5 complete 0
  row sync 1 "" 0.1 0.8520 9 complete 5
  row async 1 30 0.1 0.8580 10 diverged 5
} > "$tmp/seeds/seed2/summary.csv"
SEEDS="1 2" OUT="$tmp/seeds" "$root/jobs/schedules-seeds" --table > /dev/null ||
  fail "schedules-seeds --table failed"
table=$tmp/seeds/table.md
grep -qx '| 0.1 | round-robin | 0.8500 0.8600 | — |  | 6, 5 |' "$table" ||
  fail "round-robin's row: $(grep round-robin "$table")"
# sync: (0.8400 - 0.8500 + 0.8520 - 0.8600) / 2 = -0.90 points: within
grep -qx '| 0.1 | sync | 0.8400 0.8520 | -0.90 | yes | 12, 9 |' "$table" ||
  fail "sync's row: $(grep '| sync' "$table")"
# async: (-0.50 - 0.20) / 2 = -0.35, never reached in seed 1, diverged in seed 2
grep -qx '| 0.1 | async, S = 30 (seed 2: diverged) | 0.8450 0.8580 | -0.35 | yes | —, 10 |' "$table" ||
  fail "async's row: $(grep async "$table")"
[[ $(grep -c '^| 0.1 ' "$table") -eq 3 ]] || fail "rows: $(cat "$table")"
{ echo "$header"; row round-robin 1 "" 1 0.8600 5 complete 0; row sync 1 "" 1 0.8450 13 complete 5; } \
  > "$tmp/seeds/seed1/summary.csv"
rm "$tmp/seeds/seed2/summary.csv"
SEEDS="1 2" OUT="$tmp/seeds" "$root/jobs/schedules-seeds" --table > /dev/null ||
  fail "schedules-seeds --table with one seed's summary failed"
grep -qx '| 1 | sync | 0.8450 | -1.50 | \*\*no\*\* | 13 |' "$table" ||
  fail "a gap past a point: $(grep '| sync' "$table")"
echo "schedules-seeds --table: per-seed last-5, mean gap, within 1, epochs, status"

# ---- schedules --plots --------------------------------------------------------
if command -v gnuplot > /dev/null; then
  out=$tmp/plots
  mkdir -p "$out/runs"
  metrics() { # FILE: 3 epochs of metrics
    printf 'epoch,seconds,global_acc,global_loss\n1,0.5,0.70,0.9\n2,0.5,0.80,0.6\n3,0.5,0.83,0.5\n' > "$1"
  }
  metrics "$out/runs/sync-r1-theta0.1.csv"     # on defaults: K = 5 in force, not in the name
  metrics "$out/runs/sync-r3-theta0.1.csv"
  metrics "$out/runs/sync-r3-k5-theta0.1.csv"  # the LOCAL_STEPS variant
  { echo "$header"
    row sync 1 "" 0.1 0.83 3 complete 5
    row sync 3 "" 0.1 0.83 3 complete 5
    row sync 3 "" 0.1 0.83 3 complete 5
  } | sed 's/,20,0.8,/,3,0.8,/' > "$out/summary.csv"
  OUT=$out "$root/jobs/schedules" --plots > "$tmp/plots.log" 2>&1 || fail "plots: $(cat "$tmp/plots.log")"
  [[ -s $out/accuracy-per-epoch.png && -s $out/accuracy-per-second.png ]] ||
    fail "no plots drawn: $(cat "$tmp/plots.log")"
  # Only a run on defaults whose K in force is not in its name: it alone
  # makes the plots (before the fix it was skipped, and nothing was drawn).
  rm -f "$out"/*.png "$out/runs/sync-r3"*
  head -2 "$out/summary.csv" > "$tmp/one.csv" && mv "$tmp/one.csv" "$out/summary.csv"
  OUT=$out "$root/jobs/schedules" --plots > "$tmp/plots.log" 2>&1 || fail "plots: $(cat "$tmp/plots.log")"
  [[ -s $out/accuracy-per-epoch.png ]] || fail "sync on defaults not drawn: $(cat "$tmp/plots.log")"
  echo "schedules --plots: runs on defaults found by name, variants by K"
else
  echo "schedules --plots: skipped (no gnuplot)"
fi
echo "test_jobs: all checks passed"
