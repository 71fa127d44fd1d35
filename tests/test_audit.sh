#!/usr/bin/env bash
# The privacy audit (issue 16) only reads: a run with --audit trains the same
# bits as the same run with the same holdout and no audit (--audit-holdout N
# alone): the metrics but the seconds column, and the final checkpoint's
# /server/params (h5diff), on one rank (round-robin, simulated async,
# --local-steps, standalone) and on 3 ranks (round-robin, sync: the
# participants' models travel to rank 0 for the loss attack). Also: the
# audit file has its rows at the audit epochs, a resume appends to it, and
# a holdout as large as the data is refused. Fashion-MNIST, small settings;
# about 30 s on 2 cores. Usage: tests/test_audit.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
bin=$(realpath "$build/dssgd")
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "audit test FAIL: $*"; exit 1; }
base=(--participants 5 --shard-size 200 --eval-size 1000 --quiet)
small=("${base[@]}" --epochs 3 --audit-holdout 500)

# same NAME NP ARGS...: NAME.plain without the audit, NAME.audit with it.
same() {
  local name=$1 np=$2; shift 2
  local run=("$bin")
  ((np > 1)) && run=(mpirun --oversubscribe -np "$np" "$bin")
  "${run[@]}" train "${small[@]}" "$@" --metrics "$name.plain.csv" \
    --checkpoint "$name.plain.h5" 2> "$name.plain.err" || fail "$name: $(cat "$name.plain.err")"
  "${run[@]}" train "${small[@]}" "$@" --metrics "$name.audit.csv" \
    --checkpoint "$name.audit.h5" --audit "$name.csv" --audit-every 1 \
    --audit-scores "$name.scores.csv" 2> "$name.audit.err" || fail "$name: $(cat "$name.audit.err")"
  cmp <(cut -d, -f1,3- "$name.plain.csv") <(cut -d, -f1,3- "$name.audit.csv") ||
    fail "$name: the metrics differ with --audit"
  h5diff -q "$name.plain.h5" "$name.audit.h5" /server/params ||
    fail "$name: the final global model differs with --audit"
  # Rows at every epoch (--audit-every 1); the loss attack on every
  # participant's model and on the global model; AUCs in [0, 1].
  for e in 1 2 3; do
    grep -q "^$e,loss,4," "$name.csv" || fail "$name: no loss row of participant 4 at epoch $e"
  done
  awk -F, 'NR > 1 && !($4 >= 0 && $4 <= 1 && $5 >= 0 && $5 <= 1) { exit 1 }' "$name.csv" ||
    fail "$name: an AUC or TPR outside [0, 1]"
}

same rr 1 --theta-u 1
grep -q '^3,loss,global,' rr.csv || fail "rr: no loss row of the global model"
grep -q '^3,server,worst,' rr.csv || fail "rr: no server-view row"
# 5 participants x 200 members and 200 non-members, 3 attacks, 3 epochs
[[ $(($(wc -l < rr.scores.csv) - 1)) == $((5 * 400 * 3 * 3)) ]] || fail "rr: scores count"
same async 1 --schedule async --simulate-staleness 2
same steps 1 --local-steps 4 --theta-u 0.1
same standalone 1 --mode standalone
grep -q ',server,' standalone.csv && fail "standalone: a server view without a server"
same rr3 3 --theta-u 0.1
same sync3 3 --schedule sync

# A resume appends its epochs to the audit file.
"$bin" train "${small[@]}" --epochs 2 --checkpoint r.h5 --audit r.csv --audit-every 1 ||
  fail "resume: first part"
"$bin" train "${small[@]}" --epochs 3 --resume r.h5 --checkpoint r.h5 --audit r.csv \
  --audit-every 1 || fail "resume: second part"
[[ $(grep -c '^epoch,' r.csv) == 1 ]] || fail "resume: the header repeated"
[[ $(cut -d, -f1 r.csv | sort -u | tr '\n' ' ') == "1 2 3 epoch " ]] ||
  fail "resume: epochs $(cut -d, -f1 r.csv | sort -u | tr '\n' ' ')"
# The holdout decides the partition: resuming without it is refused.
if "$bin" train "${base[@]}" --epochs 3 --resume r.h5 2> refused.err; then
  fail "a resume without the checkpoint's holdout was accepted"
fi
grep -q -- '--audit-holdout differs' refused.err || fail "resume refusal: $(cat refused.err)"

if "$bin" train --audit-holdout 60000 --epochs 1 --quiet 2> big.err; then
  fail "a holdout of the whole training set was accepted"
fi
grep -q -- '--audit-holdout 60000' big.err || fail "big holdout: $(cat big.err)"
echo "audit test passed"
