#!/usr/bin/env bash
# Crash safety of checkpoints: a run that checkpoints every epoch is killed
# with SIGKILL at random moments, again and again, resuming each time. After
# every kill the checkpoint on disk must be a whole one (dssgd inspect reads
# it), and the last resume must finish. Temporary files left after a kill
# show that it landed in the middle of a write; the next run removes them.
set -euo pipefail
build=${1:-build}
bin=$(realpath "$build/dssgd")
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
args=(--participants 12 --shard-size 100 --model d1024-relu,d10 --eval-size 100 --quiet
      --checkpoint ck.h5 --checkpoint-every 1 --metrics m.csv)
fail() { echo "crash test FAIL: $*"; exit 1; }

kills=0 mid_write=0
for i in $(seq 1 15); do
  resume=()
  [[ -f ck.h5 ]] && resume=(--resume ck.h5)
  "$bin" train "${args[@]}" "${resume[@]}" --epochs 100000 > out.log 2>&1 &
  pid=$!
  # The first run is killed only once it has written a checkpoint: on a
  # busy machine a first epoch can outlast every random delay below.
  if [[ ${#resume[@]} -eq 0 ]]; then
    for _ in $(seq 1 3000); do
      [[ -f ck.h5 ]] || ! kill -0 "$pid" 2>/dev/null && break
      sleep 0.1
    done
  fi
  sleep "$(( (RANDOM % 2) + 1 )).$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
  wait "$pid" 2>/dev/null || true
  # a kill during a write leaves its temporary file; the next run removes it
  mid_write=$((mid_write + $(find . -name 'ck.h5.tmp.*' | wc -l)))
  if [[ -f ck.h5 ]]; then
    "$bin" inspect ck.h5 > inspect.log 2>&1 || fail "after kill $i the checkpoint is unreadable: $(cat inspect.log)"
  fi
done
[[ -f ck.h5 ]] || fail "no checkpoint was ever written"
epoch=$("$bin" inspect ck.h5 | awk '$1 == "epoch" { print $2 }')
# Checkpoints take about half of each epoch here, so 15 kills all missing
# every write has odds near 2^-15.
[[ $mid_write -ge 1 ]] || fail "no kill landed during a write: the test proved nothing"
"$bin" train "${args[@]}" --resume ck.h5 --epochs $((epoch + 2)) > out.log 2>&1 ||
  fail "resume after the kills failed: $(cat out.log)"
[[ -z $(find . -name 'ck.h5.tmp.*') ]] || fail "the resumed run left partial checkpoints: $(ls)"
rows=$(tail -n +2 m.csv | wc -l)
[[ $rows -eq $((epoch + 2)) ]] || fail "metrics has $rows rows, want $((epoch + 2))"
cut -d, -f1 m.csv | tail -n +2 | awk '$1 != NR { exit 1 }' || fail "metrics epochs not 1..N in order"
# SIGTERM (or SIGINT, handled alike; a background job here ignores SIGINT)
# at any moment: the process removes the checkpoint it was writing before it
# dies, so no partial file is ever left, and the last whole checkpoint stays
# readable.
terms=0
for i in $(seq 1 8); do
  sig=TERM
  "$bin" train "${args[@]}" --resume ck.h5 --epochs 100000 > out.log 2>&1 &
  pid=$!
  sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"; sleep 1
  kill -s "$sig" "$pid" 2>/dev/null && terms=$((terms + 1))
  wait "$pid" 2>/dev/null || true
  [[ -z $(find . -name 'ck.h5.tmp.*') ]] || fail "SIG$sig $i left a partial checkpoint: $(ls)"
  "$bin" inspect ck.h5 > inspect.log 2>&1 || fail "after SIG$sig $i the checkpoint is unreadable"
done

echo "crash test: $kills kills, $mid_write during a write, checkpoint always whole; resumed from epoch $epoch to $((epoch + 2)); $terms SIGTERM, no partial file left"
