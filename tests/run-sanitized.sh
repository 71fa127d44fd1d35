#!/usr/bin/env bash
# The suite's second half: the unit tests and the MPI tests built with
# AddressSanitizer + UndefinedBehaviorSanitizer, then the unit tests under
# valgrind (a build without -march=native: valgrind cannot run AVX-512).
# Usage: tests/run-sanitized.sh   (from the repository root; builds into build/asan, build/vg)
set -uo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
units=$(ls tests/test_*.c | sed 's|tests/\(.*\)\.c|\1|' | grep -v '^test_mpi$')
failed=()
# run_units KIND DIR CMD...: "CMD DIR/tests/UNIT" for every unit, two at a
# time (the machine's 2 cores; each unit is one process and deterministic,
# so a busy machine only makes it slower), logs in DIR/UNIT.log; a failure
# prints the log's tail and is listed as KIND/UNIT.
run_units() {
  local kind=$1 dir=$2 u
  shift 2
  for u in $units; do
    while (($(jobs -rp | wc -l) >= 2)); do wait -n || true; done
    echo "== $u ($kind)"
    ( "$@" "$dir/tests/$u" > "$dir/$u.log" 2>&1; echo $? > "$dir/$u.rc" ) &
  done
  wait
  for u in $units; do
    [[ $(cat "$dir/$u.rc" 2>/dev/null) == 0 ]] && continue
    echo "-- $u ($kind) failed:"
    tail -30 "$dir/$u.log"
    failed+=("$kind/$u")
  done
}

echo "== ASan + UBSan build"
make -s -j"$(nproc)" BUILD=build/asan SANITIZE=address build/asan/dssgd build/asan/tests/test_mpi \
  $(for u in $units; do echo "build/asan/tests/$u"; done) || failed+=("asan-build")
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ASAN_OPTIONS=detect_leaks=1 run_units asan build/asan timeout 600
echo "== test_mpi on 3 ranks (ASan + UBSan; leak checks off: Open MPI's own allocations)"
ASAN_OPTIONS=detect_leaks=0 timeout 900 mpirun --oversubscribe -np 3 build/asan/tests/test_mpi \
  > build/asan/test_mpi.log 2>&1 || { tail -30 build/asan/test_mpi.log; failed+=("asan/test_mpi"); }

if command -v valgrind > /dev/null; then
  echo "== valgrind build"
  make -s -j"$(nproc)" BUILD=build/vg OPT="-O1 -g" $(for u in $units; do echo "build/vg/tests/$u"; done) \
    || failed+=("vg-build")
  DSSGD_TEST_SKIP_SLOW=1 run_units valgrind build/vg timeout 900 valgrind -q --error-exitcode=99 \
    --leak-check=full --errors-for-leak-kinds=definite --child-silent-after-fork=yes
else
  echo "== valgrind: SKIPPED (not installed)"
fi

if ((${#failed[@]})); then
  echo "SANITIZED FAILED: ${failed[*]}"
  exit 1
fi
echo "sanitizers and valgrind: all clean"
