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
# Each test's output is also kept, so the end of the run can say why a test
# failed: a CI log may show only its last lines.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# check NAME SECONDS COMMAND...: runs it, time-limited, and notes a failure.
check() {
  local name=$1 secs=$2
  shift 2
  # tee through a process substitution: a daemon a test leaves holding
  # its output cannot keep the suite waiting.
  local rc=0 t0=${EPOCHREALTIME/,/.}
  timeout "$secs" "$@" > >(tee "$logs/${name//\//_}.log") 2>&1 || rc=$?
  [[ $name == test_* && $name != test_mpi* ]] ||
    awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" -v n="$name" 'BEGIN { printf "-- %s took %.0f s\n", n, b - a }'
  ((rc == 0)) && return 0
  failed+=("$name")
  ((rc == 124)) && echo "timed out after $secs s" >> "$logs/${name//\//_}.status"
  echo "exit status $rc" >> "$logs/${name//\//_}.status"
}
# Why each failed test failed: its lines that say so, else its last lines.
explain() {
  local name log why
  for name in "${failed[@]}"; do
    log=$logs/${name//\//_}.log
    why=$(grep -aE 'FAIL|[Ee]rror|ERROR|Assertion|timed out|Killed' "$log" | tail -n 4)
    [[ -n $why ]] || why=$(tail -n 4 "$log")
    why+=$'\n'$(cat "$logs/${name//\//_}.status")
    echo "-- why $name failed:"
    sed 's/^/   /' <<< "$why" | cut -c1-400
  done
}

# The unit tests: every test binary but test_mpi, which needs mpirun.
SECONDS=0
for t in "$build"/tests/test_*; do
  [[ -x "$t" && "$t" != *.d && "$t" != *.o ]] || continue
  name=$(basename "$t")
  [[ "$name" == test_mpi ]] && continue
  echo "== $name"
  t0=${EPOCHREALTIME/,/.}
  check "$name" 300 "$t"
  awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" -v n="$name" 'BEGIN { printf "-- %s took %.1f s\n", n, b - a }'
done
echo "== the unit tests took ${SECONDS} s"

if [[ $only == unit ]]; then
  if ((${#failed[@]})); then
    explain
    echo "FAILED: ${failed[*]}"
    exit 1
  fi
  echo "UNIT TESTS PASSED"
  exit 0
fi

for np in 1 2 3; do
  echo "== test_mpi on $np rank(s)"
  check "test_mpi/np$np" 600 mpirun --oversubscribe -np "$np" "$build/tests/test_mpi"
done

echo "== checkpoint crash safety (SIGKILL and SIGTERM at each step of a save)"
check crash 300 bash tests/test_crash.sh "$build"

echo "== failures: a rank dies, the disk fills, memory runs out"
check failures 300 bash tests/test_failures.sh "$build"

echo "== across hosts (network namespaces): same bits, a cable cut, a frozen rank 0, a slow link"
check netns 300 bash tests/test_netns.sh "$build"

echo "== parallel schedules train (accuracy against round-robin; divergence guard)"
check schedules 600 bash tests/test_schedules.sh "$build"

echo "== privacy audit: it only reads (the same bits with and without --audit)"
check audit 300 bash tests/test_audit.sh "$build"

echo "== end-to-end"
check e2e 1800 bash tests/e2e.sh "$build"

echo "== result scripts: schedules-seeds' table, schedules' plots (made-up summaries)"
check jobs 60 bash tests/test_jobs.sh

echo "== data files: dssgd data convert and split (issue 19)"
check datatool 120 bash tests/test_datatool.sh "$build"

echo "== your own data: HDF5 files, one file per participant (same bits, who reads what, resume)"
check sites 300 bash tests/test_sites.sh "$build"

echo "== fuzz regressions: every corpus and regression input through its libFuzzer target"
check fuzz-regressions 600 bash tests/fuzz/regress.sh "$build"

echo "== SLURM job scripts on a one-node cluster (SKIP_SLURM=1 skips)"
if [[ ${SKIP_SLURM:-0} != 1 ]]; then
  check slurm 600 bash tests/slurm/test-slurm.sh "$build"
fi

echo "== sanitizers (ASan + UBSan) and valgrind"
check sanitized 3600 bash tests/run-sanitized.sh

if ((${#failed[@]})); then
  explain
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "ALL TESTS PASSED"
