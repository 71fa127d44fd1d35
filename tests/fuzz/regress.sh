#!/usr/bin/env bash
# Runs every committed fuzz input once through its target (what CI runs):
# the corpus in tests/fuzz/corpus/<target>/ must all pass, and so must every
# file in tests/fuzz/regressions/<target>/, except those listed in
# tests/fuzz/known-crashes.txt (open bugs, reported as KNOWN, not failures).
# Skips with a message, and exit 0, when clang or libFuzzer is missing.
# Usage: tests/fuzz/regress.sh [BUILD_DIR]   (targets go to BUILD_DIR/fuzz)
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build}/fuzz
fuzz=tests/fuzz
targets=(idx wire checkpoint config h5data)

# Rebuild only when a source is newer than a binary (or a binary is missing).
stale=0
for t in "${targets[@]}"; do
  bin=$build/fuzz_$t
  if [[ ! -x $bin ]] || [[ -n $(find src include $fuzz -newer "$bin" \
        \( -name '*.c' -o -name '*.h' -o -name build.sh \) -print -quit) ]]; then
    stale=1
  fi
done
if ((stale)); then
  mkdir -p "$build"
  tests/fuzz/build.sh "$build" >"$build.log" 2>&1
  rc=$?
  if ((rc == 77)); then
    echo "fuzz regressions: SKIPPED: $(tail -1 "$build.log")"
    exit 0
  fi
  if ((rc != 0)); then
    cat "$build.log"
    echo "fuzz regressions: FAILED to build"
    exit 1
  fi
fi

# Precise leak stacks (slow unwinding through libhdf5) with only the
# HDF5-internal leak suppressed.
export ASAN_OPTIONS=fast_unwind_on_malloc=0
export LSAN_OPTIONS="suppressions=$PWD/$fuzz/lsan-hdf5.supp:print_suppressions=0"
# A crashing input is copied to -artifact_prefix: keep those in the build
# directory, not in the working directory.
mkdir -p "$build/artifacts"
opts=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$build/artifacts/")
failed=()
known=0
fixed=()

# known-crashes.txt: "<target>/<file>  <hdf5|src>  <why>" per line.
known_reason() {
  awk -v k="$1" '$1 == k { kind = $2; $1 = $2 = ""; sub(/^ +/, ""); print "(" kind ") " $0; exit }' \
    "$fuzz/known-crashes.txt" \
    2>/dev/null
}

for t in "${targets[@]}"; do
  bin=$build/fuzz_$t
  log=$build/regress-$t.log
  # The corpus in one process: libFuzzer runs each file once, stops at the first failure.
  mapfile -t corpus < <(find "$fuzz/corpus/$t" -type f 2>/dev/null | sort)
  if ((${#corpus[@]})); then
    if "$bin" "${opts[@]}" "${corpus[@]}" >"$log" 2>&1; then
      echo "fuzz $t: corpus ok (${#corpus[@]} inputs)"
    else
      bad=$(grep '^Running: ' "$log" | tail -1 | cut -d' ' -f2-)
      echo "fuzz $t: corpus FAILED on $bad (log: $log):"
      grep -m3 -E 'invariant failed|ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/    /'
      failed+=("$t/corpus")
    fi
  fi
  # Regressions one by one, so that known ones can be told apart.
  passed=0
  for f in $(find "$fuzz/regressions/$t" -type f ! -name '*.md' 2>/dev/null | sort); do
    name=$t/$(basename "$f")
    reason=$(known_reason "$name")
    flog=$build/regress-$t-$(basename "$f").log
    if "$bin" "${opts[@]}" "$f" >"$flog" 2>&1; then
      if [[ -n $reason ]]; then
        echo "fuzz $name: passes now: remove its line from $fuzz/known-crashes.txt"
        fixed+=("$name")
      else
        passed=$((passed + 1))
      fi
    elif [[ -n $reason ]]; then
      echo "fuzz $name: KNOWN, skipped: $reason"
      known=$((known + 1))
    else
      echo "fuzz $name: FAILED (log: $flog):"
      grep -m3 -E 'invariant failed|ERROR: |runtime error|SUMMARY' "$flog" | sed 's/^/    /'
      failed+=("$name")
    fi
  done
  ((passed)) && echo "fuzz $t: $passed regression input(s) ok"
done

if ((${#failed[@]})); then
  echo "fuzz regressions: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz regressions: passed ($known known open bug(s) skipped${fixed:+, ${#fixed[@]} fixed})"
