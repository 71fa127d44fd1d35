#!/usr/bin/env bash
# The suite's second half: the unit tests and the MPI tests built with
# AddressSanitizer + UndefinedBehaviorSanitizer, then the unit tests under
# valgrind (a build without -march=native: valgrind cannot run AVX-512).
# Usage: tests/run-sanitized.sh   (from the repository root; builds into build/asan, build/vg)
set -uo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
units=$(ls tests/test_*.c | sed 's|tests/\(.*\)\.c|\1|' | grep -v '^test_mpi$')
failed=()

echo "== ASan + UBSan build"
make -s BUILD=build/asan SANITIZE=address build/asan/dssgd build/asan/tests/test_mpi \
  $(for u in $units; do echo "build/asan/tests/$u"; done) || failed+=("asan-build")
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for u in $units; do
  echo "== $u (ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1 timeout 600 "build/asan/tests/$u" > "build/asan/$u.log" 2>&1 \
    || { tail -30 "build/asan/$u.log"; failed+=("asan/$u"); }
done
echo "== test_mpi on 3 ranks (ASan + UBSan; leak checks off: Open MPI's own allocations)"
ASAN_OPTIONS=detect_leaks=0 timeout 900 mpirun --oversubscribe -np 3 build/asan/tests/test_mpi \
  > build/asan/test_mpi.log 2>&1 || { tail -30 build/asan/test_mpi.log; failed+=("asan/test_mpi"); }

if command -v valgrind > /dev/null; then
  echo "== valgrind build"
  make -s BUILD=build/vg OPT="-O1 -g" $(for u in $units; do echo "build/vg/tests/$u"; done) \
    || failed+=("vg-build")
  for u in $units; do
    echo "== $u (valgrind)"
    DSSGD_TEST_SKIP_SLOW=1 timeout 900 valgrind -q --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite --child-silent-after-fork=yes "build/vg/tests/$u" \
      > "build/vg/$u.log" 2>&1 || { tail -30 "build/vg/$u.log"; failed+=("valgrind/$u"); }
  done
else
  echo "== valgrind: SKIPPED (not installed)"
fi

if ((${#failed[@]})); then
  echo "SANITIZED FAILED: ${failed[*]}"
  exit 1
fi
echo "sanitizers and valgrind: all clean"
