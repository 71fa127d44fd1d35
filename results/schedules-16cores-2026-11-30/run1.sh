#!/usr/bin/env bash
# Fourth device run (2026-11-30): the current defaults at 16 cores.
# Priority order, each step packed into $OUT as soon as it ends; a step is
# skipped once the run is past DEADLINE seconds.
#  1. t2acc at 16 ranks (bench-accuracy.sh, LOCAL_STEPS=2), three repetitions
#     interleaved with
#  2. jobs/schedules: sync + async at 16 ranks, async at 31, theta 0.1 1 0.01,
#     seeds 1 2 3 (sync only on seed 1: its bits do not depend on ranks),
#     round-robin at 16 ranks theta 0.1 seed 1 as the time reference.
set -u
export DSSGD_KEEP_MPI_ENV=1
DEADLINE=${DEADLINE:-470}
res=/tmp/res4; mkdir -p "$res"
exec > >(tee "$res/device.log") 2>&1
pack() { tar czf "$OUT/device4.tgz" -C /tmp res4 2>/dev/null; cp "$res/device.log" "$OUT/device4.log" 2>/dev/null; }
trap pack EXIT
source .devbundle/setup.sh || exit 1
[[ -e /usr/share/datasets/fashion-mnist ]] || { mkdir -p /usr/share/datasets && ln -s "$DSSGD_DATA" /usr/share/datasets/fashion-mnist; }
nproc; grep -m1 'model name' /proc/cpuinfo; free -g | head -2
export DSSGD=$DSSGD_BIN
step() { if (( SECONDS > DEADLINE )); then echo "SKIP (at ${SECONDS}s): $*"; return; fi
  echo "== ${SECONDS}s: $*"; "$@"; echo "   rc=$? at ${SECONDS}s"; pack; }
bench() { RANKS=16 LOCAL_STEPS=2 bash tests/bench-accuracy.sh /tmp/dssgd-rt/bin "$res/t2acc.csv" 2026-11-30 device16 | tee -a "$res/t2acc.txt"; }
sched() { local seed=$1 ranks=$2 scheds=$3 thetas=$4
  SEED=$seed ONE_RANK=no RANKS=$ranks MPI_SCHEDULES=$scheds THETAS=$thetas \
    OUT=$res/seed$seed-r$ranks-${scheds// /_} jobs/schedules > "$res/seed$seed-r$ranks-${scheds// /_}.out" 2>&1; }
step bench
step sched 1 16 "sync async" "0.1 1 0.01"
step sched 1 31 async "0.1 1 0.01"
step sched 1 16 round-robin 0.1
step bench
step sched 2 16 async "0.1 1 0.01"
step sched 2 31 async "0.1 1 0.01"
step bench
step sched 3 16 async "0.1 1 0.01"
step sched 3 31 async "0.1 1 0.01"
echo "done at ${SECONDS}s"
