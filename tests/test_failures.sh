#!/usr/bin/env bash
# Failure behaviour: a rank SIGKILLed mid-run ends the job promptly with a
# message naming it, the last checkpoint stays whole and --resume finishes
# the run; a checkpoint to a full disk fails with a clear message and the
# previous checkpoint survives; a run too big for its memory says so.
set -euo pipefail
build=${1:-build}
bin=$(realpath "$build/dssgd")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'umount "$tmp/small" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "failure test FAIL: $*"; exit 1; }
small=(--participants 6 --shard-size 300 --model d64-relu,d10 --eval-size 500 --quiet)

# 1. A rank dies.
mpirun --oversubscribe -np 3 "$bin" train "${small[@]}" --epochs 100000 --checkpoint ck.h5 \
  --checkpoint-every 1 > run.log 2>&1 &
job=$!
for _ in $(seq 1 100); do [[ -f ck.h5 ]] && break; sleep 0.1; done
[[ -f ck.h5 ]] || fail "no checkpoint after 10 s"
victim=""
for pid in $(pgrep -f "$bin train"); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=2"; then victim=$pid; fi
done
[[ -n "$victim" ]] || fail "could not find rank 2"
start=$(date +%s)
kill -9 "$victim"
set +e; timeout 60 bash -c "wait $job" 2>/dev/null; wait "$job"; rc=$?; set -e
took=$(( $(date +%s) - start ))
[[ $rc -ne 0 ]] || fail "the job survived the loss of a rank"
[[ $took -le 15 ]] || fail "the job took ${took}s to end after the loss of a rank"
grep -q "rank 2" run.log || fail "the message does not name rank 2: $(cat run.log)"
"$bin" inspect ck.h5 > inspect.log || fail "checkpoint unreadable after the loss: $(cat inspect.log)"
epoch=$(awk '$1 == "epoch" { print $2 }' inspect.log)
mpirun --oversubscribe -np 3 "$bin" train "${small[@]}" --resume ck.h5 --checkpoint ck.h5 \
  --epochs $((epoch + 2)) > resume.log 2>&1 || fail "resume after the loss failed: $(cat resume.log)"
echo "rank death: job ended ${took}s after rank 2 was killed (exit $rc), resumed from epoch $epoch"

# 2. The disk fills up while a checkpoint is written (a 3 MB tmpfs).
mkdir small
if mount -t tmpfs -o size=3M tmpfs small 2>/dev/null; then
  (cd small && "$bin" train "${small[@]}" --epochs 2 --checkpoint ck.h5) || fail "first checkpoint failed"
  set +e
  (cd small && "$bin" train "${small[@]}" --epochs 4 --resume ck.h5 --checkpoint ck.h5) > full.log 2>&1
  rc=$?
  set -e
  [[ $rc -eq 1 ]] || fail "a full disk gave exit $rc: $(cat full.log)"
  grep -q "ck.h5" full.log && grep -q "No space left" full.log || fail "unclear message: $(cat full.log)"
  "$bin" inspect small/ck.h5 | grep -qx "epoch     2" || fail "the previous checkpoint did not survive"
  [[ -z $(find small -name 'ck.h5.tmp.*') ]] || fail "a temporary file was left behind"
  umount small
  echo "full disk: refused with a message naming the file; the epoch-2 checkpoint survived"
else
  echo "full disk: SKIPPED (cannot mount a tmpfs here)"
fi

# 3. Not enough memory: 30 participants of a 15.9M-parameter model in 1.5 GB.
set +e
(ulimit -v 1500000; "$bin" train --participants 30 --model 784-20000-10 --epochs 1 --quiet) > mem.log 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "out of memory gave exit $rc: $(head -5 mem.log)"
grep -q "out of memory for participant" mem.log || fail "unclear message: $(head -5 mem.log)"
echo "memory: refused with '$(grep -o 'out of memory for participant [0-9]* ([0-9]* parameters)' mem.log)'"
