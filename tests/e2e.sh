#!/usr/bin/env bash
# End-to-end checks of the dssgd binary: --help, refusals of bad input with a
# message and status 2, a DSSGD run under mpirun whose CSV has the designed
# columns and one row per epoch, and a refused bad data directory.
set -euo pipefail
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
bin="$build/dssgd"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e FAIL: $*"; exit 1; }

"$bin" train --help > "$tmp/help" || fail "--help exited non-zero"
for opt in --dataset --data-dir --model --mode --participants --partition --shard-size \
           --alpha --schedule --epochs --lr --batch --seed --theta-u --theta-d --select \
           --download --gamma --tau --stat-decay --residual --metrics --eval-size \
           --dp-epsilon --dp-max-epsilon; do
  grep -q -- "$opt" "$tmp/help" || fail "--help does not mention $opt"
done

refuse() { # expected-phrase args...
  local phrase=$1; shift
  set +e; "$bin" train "$@" > "$tmp/out" 2>&1; local rc=$?; set -e
  [[ $rc -eq 2 ]] || fail "'$*' exited $rc, wanted 2"
  grep -q -- "$phrase" "$tmp/out" || fail "'$*' message lacks '$phrase': $(cat "$tmp/out")"
}
refuse "--lr" --lr -1
refuse "--batch" --batch 0
refuse "unknown value 'cifar'" --dataset cifar
refuse "--theta-u" --theta-u 0
refuse "unknown option" --bogus
refuse "needs --data-dir" --dataset mnist
refuse "needs --dp-epsilon" --select svt --gamma 0.01
refuse "finite --gamma" --select svt --dp-epsilon 1
refuse "--dp-epsilon" --select svt --dp-epsilon 0 --gamma 0.01
refuse "only with --select svt" --dp-epsilon 5

set +e; "$bin" train --data-dir "$tmp/nowhere" --epochs 1 > "$tmp/out" 2>&1; rc=$?; set -e
[[ $rc -eq 1 ]] || fail "missing data dir exited $rc"
grep -q "$tmp/nowhere" "$tmp/out" || fail "missing data dir not named: $(cat "$tmp/out")"

mpirun --oversubscribe -np 3 "$bin" train --participants 4 --shard-size 200 --epochs 2 \
  --model d32-relu,d10 --eval-size 500 --theta-u 0.05 --schedule sync --lr 0.1 \
  --metrics "$tmp/m.csv" 2> "$tmp/err" || fail "DSSGD run failed: $(tail "$tmp/err")"
head -1 "$tmp/m.csv" | grep -qx "epoch,seconds,global_acc,global_loss,part_acc_mean,part_acc_min,part_acc_max,bytes_up,bytes_down,uploads_accepted,uploads_rejected,epsilon" \
  || fail "CSV header: $(head -1 "$tmp/m.csv")"
[[ $(wc -l < "$tmp/m.csv") -eq 3 ]] || fail "CSV should have 2 rows"
grep -q "^epoch 2/2" "$tmp/err" || fail "no progress line"
awk -F, 'NR > 1 && ($3 < 0.3 || $10 != 4 || $11 != 0) { exit 1 }' "$tmp/m.csv" \
  || fail "unexpected figures: $(cat "$tmp/m.csv")"
# The DP cap: each participant says once, on its own rank, that it stops
# uploading (epsilon 2 per epoch, cap 5: epochs 1 and 2 spend, 3 and 4 not).
mpirun --oversubscribe -np 3 "$bin" train --participants 4 --shard-size 100 --epochs 4 \
  --model d16-relu,d10 --eval-size 200 --select svt --gamma 0.01 --dp-epsilon 2 \
  --dp-max-epsilon 5 --quiet 2> "$tmp/err" || fail "DP run failed: $(tail "$tmp/err")"
for p in 0 1 2 3; do
  [[ $(grep -c "participant $p stops uploading at epoch 3: another epoch would take its epsilon from 4 past the cap 5" "$tmp/err") -eq 1 ]] \
    || fail "participant $p: want one budget stop at epoch 3: $(cat "$tmp/err")"
done
[[ $(grep -c "stops uploading" "$tmp/err") -eq 4 ]] || fail "budget stops repeated: $(cat "$tmp/err")"
echo "e2e: all checks passed"
