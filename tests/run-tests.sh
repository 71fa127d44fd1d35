#!/usr/bin/env bash
# Runs the whole suite: every unit test binary, then the MPI tests under
# mpirun with 1, 2 and 3 ranks, then end-to-end checks of the dssgd binary.
# With "unit", only the unit test binaries (what `make unit` runs).
# Usage: tests/run-tests.sh BUILD_DIR [unit]
set -uo pipefail
build=${1:-build}
only=${2:-}
[[ -z $only || $only == unit ]] || { echo "usage: tests/run-tests.sh BUILD_DIR [unit]" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# A test-only hook (docs/DESIGN.md, Failure handling): never armed by accident.
unset DSSGD_TEST_KILL_AT DSSGD_TEST_FLOOD DSSGD_TEST_HANG
failed=()

# The unit tests: every test binary but test_mpi, which needs mpirun.
SECONDS=0
for t in "$build"/tests/test_*; do
  [[ -x "$t" && "$t" != *.d && "$t" != *.o ]] || continue
  name=$(basename "$t")
  [[ "$name" == test_mpi ]] && continue
  echo "== $name"
  t0=${EPOCHREALTIME/,/.}
  if ! timeout 300 "$t"; then failed+=("$name"); fi
  awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" -v n="$name" 'BEGIN { printf "-- %s took %.1f s\n", n, b - a }'
done
echo "== the unit tests took ${SECONDS} s"

if [[ $only == unit ]]; then
  if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
  fi
  echo "UNIT TESTS PASSED"
  exit 0
fi

for np in 1 2 3; do
  echo "== test_mpi on $np rank(s)"
  if ! timeout 600 mpirun --oversubscribe -np "$np" "$build/tests/test_mpi"; then
    failed+=("test_mpi/np$np")
  fi
done

echo "== checkpoint crash safety (SIGKILL and SIGTERM at each step of a save)"
if ! timeout 300 bash tests/test_crash.sh "$build"; then failed+=("crash"); fi

echo "== failures: a rank dies, the disk fills, memory runs out"
if ! timeout 300 bash tests/test_failures.sh "$build"; then failed+=("failures"); fi

echo "== across hosts (network namespaces): same bits, a cable cut, a frozen rank 0, a slow link"
if ! timeout 300 bash tests/test_netns.sh "$build"; then failed+=("netns"); fi

echo "== parallel schedules train (accuracy against round-robin; divergence guard)"
if ! timeout 600 bash tests/test_schedules.sh "$build"; then failed+=("schedules"); fi

echo "== privacy audit: it only reads (the same bits with and without --audit)"
if ! timeout 300 bash tests/test_audit.sh "$build"; then failed+=("audit"); fi

echo "== end-to-end"
if ! bash tests/e2e.sh "$build"; then failed+=("e2e"); fi

echo "== fuzz regressions: every corpus and regression input through its libFuzzer target"
if ! timeout 600 bash tests/fuzz/regress.sh "$build"; then failed+=("fuzz-regressions"); fi

echo "== SLURM job scripts on a one-node cluster (SKIP_SLURM=1 skips)"
if [[ ${SKIP_SLURM:-0} != 1 ]]; then
  if ! timeout 600 bash tests/slurm/test-slurm.sh "$build"; then failed+=("slurm"); fi
fi

echo "== sanitizers (ASan + UBSan) and valgrind"
if ! bash tests/run-sanitized.sh; then failed+=("sanitized"); fi

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "ALL TESTS PASSED"
