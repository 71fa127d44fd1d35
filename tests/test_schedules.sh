#!/usr/bin/env bash
# The parallel schedules train (issue 14), on one rank, where every figure is
# the same bits on every run: sync gives the same bits on any number of
# ranks, and async is simulated with --simulate-staleness (S uploads in
# flight, a seeded order). Fashion-MNIST, 30 participants x 600, theta_u 0.1.
#   - async at simulated staleness 15 ends within 2 points of round-robin's
#     accuracy after the same 20 epochs, uploads drawn at random and oldest
#     first (--simulate-order fifo), and at staleness 30 (all uploads in
#     flight, one participant per worker) its last-5-epoch mean is within 2
#     points of round-robin's, where the staleness weights do not train;
#   - sync (per-parameter mean, server momentum 0.7) also ends within 2
#     points of round-robin after 20 epochs, where the paper's sum diverges,
#     and the divergence guard stops that run at once, naming the rule; the
#     guard also stops --lr 1000;
#   - the simulation is deterministic, oldest first gives the staleness it
#     should, and the simulation is refused where it cannot apply.
# About two minutes on 2 cores. Usage: tests/test_schedules.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
bin=$(realpath "$build/dssgd")
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "schedules test FAIL: $*"; exit 1; }
train() { # name args...: a quiet run with its metrics in name.csv, stderr in name.err
  local name=$1; shift
  "$bin" train --eval-size 2000 --quiet --metrics "$name.csv" "$@" 2> "$name.err"
}
final() { tail -n 1 "$1.csv" | cut -d, -f3; }
last5() { tail -n 5 "$1.csv" | awk -F, '{ s += $3 } END { printf "%.4f", s / NR }'; }

train rr --epochs 20 || fail "round-robin: $(cat rr.err)"
train async --epochs 20 --schedule async --simulate-staleness 15 || fail "async: $(cat async.err)"
awk -v a="$(final async)" -v r="$(final rr)" 'BEGIN { exit !(a >= r - 0.02) }' ||
  fail "async at staleness 15 ends at $(final async), round-robin at $(final rr)"
# ... and as workers of equal speed, every upload 14 stale, as on 16 like ranks.
train fifo15 --epochs 20 --schedule async --simulate-staleness 15 --simulate-order fifo ||
  fail "async at staleness 15, oldest first: $(cat fifo15.err)"
awk -v a="$(final fifo15)" -v r="$(final rr)" 'BEGIN { exit !(a >= r - 0.02) }' ||
  fail "async at staleness 15 oldest first ends at $(final fifo15), round-robin at $(final rr)"
# Every participant downloads the same state: the mix rule (FedAsync's
# mixing per parameter, server momentum over turns) must still train.
train async30 --epochs 20 --schedule async --simulate-staleness 30 ||
  fail "async at staleness 30: $(cat async30.err)"
awk -v a="$(last5 async30)" -v r="$(last5 rr)" 'BEGIN { exit !(a >= r - 0.02) }' ||
  fail "async at staleness 30: last-5 mean $(last5 async30), round-robin $(last5 rr)"

train sync --epochs 20 --schedule sync || fail "sync: $(cat sync.err)"
awk -v s="$(final sync)" -v r="$(final rr)" 'BEGIN { exit !(s >= r - 0.02) }' ||
  fail "sync ends at $(final sync), round-robin at $(final rr)"

# The paper's sum under sync: every participant's change from the same state
# is added, the loss explodes in the first epoch, and the guard stops it.
set +e
train sum --epochs 5 --schedule sync --aggregate sum; rc=$?
set -e
[[ $rc -eq 1 ]] || fail "sync with --aggregate sum exited $rc, want 1 (the guard)"
grep -q "epoch 1: the global model diverged.*--aggregate mean" sum.err ||
  fail "guard message: $(cat sum.err)"
[[ $(tail -n +2 sum.csv | wc -l) -eq 1 ]] || fail "the diverged epoch's row is missing"
set +e
train lr --epochs 5 --lr 1000; rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "diverged.*lower --lr" lr.err || fail "--lr 1000: exit $rc, $(cat lr.err)"
train off --epochs 2 --lr 1000 --divergence-factor 0 || fail "--divergence-factor 0 still stops"

# Deterministic: the same seed gives the same figures (seconds aside, and
# the participants' accuracy, scored on a sample but on the whole test set
# at a run's last epoch).
train again --epochs 3 --schedule async --simulate-staleness 15
cmp <(head -n 4 async.csv | cut -d, -f1,3,4,8-) <(cut -d, -f1,3,4,8- again.csv) ||
  fail "the simulation is not deterministic"

# ... and resumes bit-exactly (the order's stream is in the checkpoint).
small=(--participants 8 --shard-size 100 --model d16-relu,d10 --eval-size 500
       --schedule async --simulate-staleness 5)
train whole "${small[@]}" --epochs 4 --checkpoint whole.h5
train part "${small[@]}" --epochs 2 --checkpoint part.h5
train part "${small[@]}" --epochs 4 --checkpoint part.h5 --resume part.h5
cmp <(cut -d, -f1,3- whole.csv) <(cut -d, -f1,3- part.csv) || fail "resumed simulation differs"
"$bin" inspect whole.h5 | grep -v 'metrics = ' > whole.txt
"$bin" inspect part.h5 | grep -v 'metrics = ' > part.txt
cmp whole.txt part.txt || fail "resumed simulation's checkpoint differs"
h5diff -q whole.h5 part.h5 /server/params /server/params ||
  fail "resumed simulation's parameters differ"

# --simulate-order fifo collects the oldest upload in flight (workers of
# equal speed): in each epoch of 8 uploads with 3 in flight the first three
# are 0, 1 and 2 uploads stale and every later one exactly 2, so 13 / 8 an
# epoch and never more than 2. Drawn at random, the total is the same (it
# depends only on when downloads go out) but one upload waits longer.
staleness() { grep -o 'mean [0-9.]*, max [0-9]* over [0-9]* uploads' "$1"; }
three=(--participants 8 --shard-size 100 --model d16-relu,d10 --eval-size 500
       --schedule async --simulate-staleness 3 --epochs 2)
"$bin" train "${three[@]}" --simulate-order fifo 2> fifo.err > /dev/null
[[ $(staleness fifo.err) == "mean 1.62, max 2 over 16 uploads" ]] ||
  fail "fifo order: $(staleness fifo.err), want mean 1.62 (26 / 16), max 2 over 16 uploads"
"$bin" train "${three[@]}" 2> drawn.err > /dev/null
[[ $(staleness drawn.err) =~ ^"mean 1.62, max "[3-9]" over 16 uploads"$ ]] ||
  fail "random order: $(staleness drawn.err), want mean 1.62 and a max above 2"

set +e
"$bin" train --schedule sync --simulate-staleness 4 > refused.err 2>&1; rc=$?
set -e
[[ $rc -eq 2 ]] && grep -q "async only" refused.err || fail "sync with a simulation: $rc"
set +e
"$bin" train --schedule sync --aggregate mix > refused.err 2>&1; rc=$?
set -e
[[ $rc -eq 2 ]] && grep -q "mix applies to --schedule async only" refused.err ||
  fail "sync with --aggregate mix: exit $rc, $(cat refused.err)"
set +e
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 "$bin" \
  train --schedule async --simulate-staleness 4 --epochs 1 > refused.err 2>&1; rc=$?
set -e
[[ $rc -ne 0 ]] && grep -q "runs in one process" refused.err ||
  fail "a simulation on 2 ranks: exit $rc, $(cat refused.err)"
echo "schedules after 20 epochs: round-robin $(final rr), async at staleness 15 $(final async)" \
     "($(final fifo15) oldest first)," \
     "at 30 $(final async30) (last-5 $(last5 async30) against $(last5 rr)), sync $(final sync);" \
     "sum under sync and --lr 1000 stopped by the guard"
