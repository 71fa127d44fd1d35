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

# Hostile paths: refused when parsed (status 2) or by rank 0 before the first
# epoch (status 1, no progress line), never a hang (timeout).
tiny=(--participants 2 --shard-size 100 --epochs 2 --model d16-relu,d10 --eval-size 200)
refuse_run() { # expected-phrase args...
  local phrase=$1; shift
  set +e; timeout 60 "$bin" train "${tiny[@]}" "$@" > "$tmp/out" 2>&1; local rc=$?; set -e
  [[ $rc -eq 1 ]] || fail "'$*' exited $rc, wanted 1: $(cat "$tmp/out")"
  grep -qF -- "$phrase" "$tmp/out" || fail "'$*' message lacks '$phrase': $(cat "$tmp/out")"
  ! grep -q "^epoch 1/" "$tmp/out" || fail "'$*' trained before refusing"
}
for opt in --checkpoint --resume --metrics --data-dir; do
  refuse "$opt: empty path" "$opt" ""
done
refuse_run "directory $tmp/nowhere does not exist" --checkpoint "$tmp/nowhere/ck.h5"
refuse_run "file name too long for its temporary file" --checkpoint "$tmp/$(printf 'c%.0s' {1..250})"
ln -s "$tmp/real.h5" "$tmp/link.h5"
refuse_run "is a symbolic link (to $tmp/real.h5)" --checkpoint "$tmp/link.h5"
refuse_run "exists and is a character device" --checkpoint /dev/null
refuse_run "--audit /dev/null: exists and is a character device" --audit /dev/null
refuse_run "is a symbolic link" --metrics /dev/stdout
refuse_run "--checkpoint and --metrics name the same file" --checkpoint "$tmp/x" --metrics "$tmp/x"
refuse_run "--resume and --metrics name the same file" --resume "$tmp/x" --metrics "$tmp/./x"
mkdir "$tmp/data" && cp /usr/share/datasets/fashion-mnist/* "$tmp/data/"
refuse_run "--metrics and a data file name the same file" --data-dir "$tmp/data" \
  --metrics "$tmp/data/t10k-labels-idx1-ubyte.gz"
refuse_run "--checkpoint and a data file name the same file" --data-dir "$tmp/data" \
  --checkpoint "$tmp/data/../data/train-images-idx3-ubyte.gz"
cmp -s "$tmp/data/t10k-labels-idx1-ubyte.gz" /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ||
  fail "a refused run changed a data file"
mkdir "$tmp/fifo" && mkfifo "$tmp/fifo/train-images-idx3-ubyte" && : > "$tmp/fifo/train-labels-idx1-ubyte"
refuse_run "train-images-idx3-ubyte: cannot open: not a regular file (a FIFO)" --dataset mnist \
  --data-dir "$tmp/fifo"
# A run on the outputs of a running one is refused naming its pid; the
# refused run leaves no lock file, nor does one that ends.
"$bin" train "${tiny[@]}" --epochs 100000 --checkpoint "$tmp/lk.h5" --metrics "$tmp/lk.csv" \
  --quiet > "$tmp/first" 2>&1 &
first=$!
for _ in {1..600}; do [[ -s "$tmp/lk.csv.lock" ]] && break; sleep 0.1; done
refuse_run "in use by another run (pid $first on " --checkpoint "$tmp/lk2.h5" --metrics "$tmp/lk.csv"
kill "$first"; wait "$first" || true
[[ ! -e "$tmp/lk2.h5.lock" ]] || fail "a refused run left its lock file"
"$bin" train "${tiny[@]}" --checkpoint "$tmp/lk.h5" --metrics "$tmp/lk.csv" --quiet \
  || fail "a stale lock file blocked a run"
[[ -z $(find "$tmp" -name '*.lock') ]] || fail "lock files left: $(find "$tmp" -name '*.lock')"

mpirun --oversubscribe -np 3 "$bin" train --participants 4 --shard-size 200 --epochs 2 \
  --model d32-relu,d10 --eval-size 500 --theta-u 0.05 --schedule sync --lr 0.1 \
  --metrics "$tmp/m.csv" 2> "$tmp/err" || fail "DSSGD run failed: $(tail "$tmp/err")"
head -1 "$tmp/m.csv" | grep -qx "epoch,seconds,global_acc,global_loss,part_acc_mean,part_acc_min,part_acc_max,bytes_up,bytes_down,uploads_accepted,uploads_rejected,epsilon" \
  || fail "CSV header: $(head -1 "$tmp/m.csv")"
[[ $(wc -l < "$tmp/m.csv") -eq 3 ]] || fail "CSV should have 2 rows"
grep -q "^epoch 2/2" "$tmp/err" || fail "no progress line"
# sync exchanges every 5 mini-batches by default: 2 uploads a participant an epoch here
awk -F, 'NR > 1 && ($3 < 0.3 || $10 != 8 || $11 != 0) { exit 1 }' "$tmp/m.csv" \
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

# Training and test images of different sizes are refused before training,
# naming both shapes (27x27 training images under 28x28 test images once
# overflowed the evaluation buffer). IDX files written here: magic 0x0803
# (images) or 0x0801 (labels), big-endian dimensions, then the bytes.
be32() { local s; for s in 24 16 8 0; do printf "\\$(printf %03o $(($1 >> s & 255)))"; done; }
write_split() { # dir prefix count rows cols
  { printf '\0\0\10\3'; be32 "$3"; be32 "$4"; be32 "$5"; head -c $(($3 * $4 * $5)) /dev/zero; } \
    > "$1/$2-images-idx3-ubyte"
  { printf '\0\0\10\1'; be32 "$3"; head -c "$3" /dev/zero; } > "$1/$2-labels-idx1-ubyte"
}
for shapes in "27 28" "28 27"; do
  read -r train_side test_side <<< "$shapes"
  mkdir -p "$tmp/shapes$train_side"
  write_split "$tmp/shapes$train_side" train 20 "$train_side" "$train_side"
  write_split "$tmp/shapes$train_side" t10k 20 "$test_side" "$test_side"
  set +e; "$bin" train --data-dir "$tmp/shapes$train_side" --participants 2 --shard-size 10 \
    --epochs 1 --quiet > "$tmp/out" 2>&1; rc=$?; set -e
  [[ $rc -eq 1 ]] || fail "train ${train_side}x$train_side, test ${test_side}x$test_side exited $rc"
  grep -q "training images are 1x${train_side}x$train_side but the test images are 1x${test_side}x$test_side" \
    "$tmp/out" || fail "shape mismatch not named: $(cat "$tmp/out")"
done

# Smaller refusals: an ambiguous abbreviation, inspect's own --help, and a
# warning (not a refusal) for an option the mode ignores.
refuse "ambiguous option '--dp' (could be --dp-epsilon, --dp-max-epsilon, --dpsgd" --dp 1
"$bin" inspect --help > "$tmp/out" 2>&1 || fail "inspect --help exited non-zero"
grep -q "usage: dssgd inspect FILE" "$tmp/out" || fail "inspect --help: $(cat "$tmp/out")"
set +e; "$bin" train --mode centralized --theta-u 0.2 --data-dir "$tmp/nowhere" > "$tmp/out" 2>&1
set -e
grep -q "warning: --theta-u 0.2 is ignored: it has an effect only with --mode dssgd" "$tmp/out" \
  || fail "no warning for an ignored option: $(cat "$tmp/out")"
set +e; "$bin" train --model d16-relu,d10, --epochs 1 > "$tmp/out" 2>&1; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "empty layer after the final ','" "$tmp/out" \
  || fail "a trailing comma in --model: exit $rc, $(cat "$tmp/out")"
# OpenBLAS's kernels (blas_env): dssgd warns, naming the OPENBLAS_CORETYPE
# that fits, exactly when the check (test_blas_env's answer for this
# machine) says its kernels fall short; a chosen OPENBLAS_CORETYPE silences it.
blas_run() { set +e; env "$@" "$bin" train --participants 2 --shard-size 100 --epochs 1 \
  --eval-size 100 --quiet > "$tmp/out" 2>&1; local rc=$?; set -e
  [[ $rc -eq 0 ]] || fail "a small run exited $rc: $(cat "$tmp/out")"; }
answer=$(env -u OPENBLAS_CORETYPE "$build/tests/test_blas_env" 2>&1 | grep -o 'falls short\|fits' | head -1)
[[ -n $answer ]] || fail "test_blas_env printed no answer for this machine"
blas_run -u OPENBLAS_CORETYPE
if [[ $answer == "falls short" ]]; then
  grep -Eq "warning: OpenBLAS runs its .* kernels .* set OPENBLAS_CORETYPE=(Haswell|SkylakeX)" \
    "$tmp/out" || fail "no warning although the kernels fall short: $(cat "$tmp/out")"
else
  ! grep -q "OPENBLAS_CORETYPE" "$tmp/out" || fail "a warning although the kernels fit: $(cat "$tmp/out")"
fi
blas_run OPENBLAS_CORETYPE=Prescott
! grep -q "OPENBLAS_CORETYPE" "$tmp/out" || fail "warned with OPENBLAS_CORETYPE set: $(cat "$tmp/out")"
echo "e2e: all checks passed"
