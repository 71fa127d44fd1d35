#!/usr/bin/env bash
# Builds the fuzz targets and fuzzes each for SECONDS, two at a time, then
# prints executions, exec/s, coverage (libFuzzer's cov and ft) and crashes,
# triages every crash (its log lands next to it) and merges the inputs that
# add coverage into tests/fuzz/corpus/<target>/ (MERGE=0 to skip that).
# Usage: tests/fuzz/run.sh SECONDS [TARGET...]
#        tests/fuzz/run.sh --triage RUN_DIR   (only group the crashes of a past run)
# Environment: FUZZ_BUILD (default build/fuzz), FUZZ_JOBS (default 2).
set -uo pipefail
cd "$(dirname "$0")/../.."

triage_only=
if [[ ${1:-} == --triage ]]; then
  triage_only=${2:?usage: tests/fuzz/run.sh --triage RUN_DIR}
  set -- 0 $(cd "$triage_only" && ls -d */ | tr -d /)
fi
secs=${1:?usage: tests/fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
((${#targets[@]})) || targets=(idx wire checkpoint config h5data)
build=${FUZZ_BUILD:-build/fuzz}
jobs=${FUZZ_JOBS:-2}
merge=${MERGE:-1}
fuzz=tests/fuzz

if [[ -z $triage_only ]]; then
  tests/fuzz/build.sh "$build" "${targets[@]}"
  rc=$?
  ((rc == 77)) && exit 77
  ((rc == 0)) || { echo "fuzz: build failed" >&2; exit 1; }
  out=$build/runs/$(date +%Y%m%d-%H%M%S)
  mkdir -p "$out"
  echo "fuzz: ${#targets[@]} target(s), ${secs}s each, $jobs at a time; logs in $out"
else
  out=$triage_only
  merge=0
fi

# Options every run shares (the checkpoint target's HDF5 needs the limits).
common=(-rss_limit_mb=2048 -timeout=10)

# Fuzzes one target in fork mode, so a crash is recorded and fuzzing goes on.
# New inputs go to $build/work/<t>, kept between runs; the committed corpus
# is read only.
fuzz_one() {
  local t=$1 dir=$out/$1
  local work=$build/work/$t
  mkdir -p "$dir/artifacts" "$work" "$fuzz/corpus/$t"
  local opts=("${common[@]}" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1
              -max_total_time="$secs" -artifact_prefix="$dir/artifacts/")
  [[ -f $fuzz/dict/$t.dict ]] && opts+=(-dict="$fuzz/dict/$t.dict")
  LSAN_OPTIONS="suppressions=$PWD/$fuzz/lsan-hdf5-fast.supp:print_suppressions=0" \
    "$build/fuzz_$t" "${opts[@]}" "$work" "$fuzz/corpus/$t" >"$dir/fuzz.log" 2>&1
  echo "fuzz: $t finished (exit $?)"
}

running=0
for t in "${targets[@]}"; do
  [[ -n $triage_only ]] && break
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
  echo "fuzz: $t started"
  fuzz_one "$t" &
  running=$((running + 1))
done
wait

# A crash is re-run alone with precise leak stacks; its log lands next to it. Prints "kind | where | API call",
# where is the first named frame (in src/, libhdf5 or zlib) and API call the
# library function that our code called.
triage() {
  local t=$1 f=$2
  timeout 120 env ASAN_OPTIONS=fast_unwind_on_malloc=0 \
    LSAN_OPTIONS="suppressions=$PWD/$fuzz/lsan-hdf5.supp:print_suppressions=0" \
    "$build/fuzz_$t" "${common[@]}" -artifact_prefix="$out/$t/triage-" "$f" >"$f.log" 2>&1
  local kind where api
  kind=$(grep -m1 -oE 'invariant failed: [^:]*|SUMMARY: [A-Za-z]+: [A-Za-z-]+|ERROR: libFuzzer: [a-z-]+|runtime error: [a-z -]+' "$f.log" |
         sed -E 's/^SUMMARY: //; s/^ERROR: //')
  frames=$(grep -E '^ +#[0-9]+ ' "$f.log" | grep -vE ' in (__|fuzzer::|malloc|calloc|realloc|free|operator|mem|str|abort|raise)')
  where=$(grep -m1 -oE ' in (H5[A-Za-z_0-9]*|inflate[A-Za-z_]*|gz[a-z_]*|[a-z_]+ /[^ ]*/src/[a-z_]+\.c:[0-9]+)' <<<"$frames" | sed 's/^ in //; s| /[^ ]*/src/| src/|')
  api=$(grep -B1 -m1 -E '/src/[a-z_]+\.c:' <<<"$frames" | head -1 | grep -oE ' in [A-Za-z_0-9]+' | sed 's/^ in //')
  echo "${kind:-does not reproduce alone} | ${where:--} | ${api:--}"
}

printf '\n%-11s %8s %12s %8s %6s %6s %7s %8s\n' target seconds executions exec/s cov ft corpus crashes
for t in "${targets[@]}"; do
  last=$(grep -E '^#[0-9]+: cov:' "$out/$t/fuzz.log" | tail -1)
  execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
  cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$last")
  ft=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$last")
  corp=$(sed -E 's/.* corp: ([0-9]+).*/\1/' <<<"$last")
  eps=$(sed -E 's/.* exec\/s:? ([0-9]+).*/\1/' <<<"$last")
  took=$(sed -E 's/.* time: ([0-9]+)s.*/\1/' <<<"$last")
  crashes=$(find "$out/$t/artifacts" -type f ! -name '*.log' | wc -l)
  printf '%-11s %8s %12s %8s %6s %6s %7s %8s\n' "$t" "${took:-?}" "${execs:-?}" "${eps:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
done

# Crashes grouped by what and where, with the smallest input of each group.
for t in "${targets[@]}"; do
  files=$(find "$out/$t/artifacts" -type f ! -name '*.log' | sort)
  [[ -z $files ]] && continue
  echo
  echo "$t: $(wc -l <<<"$files") crash artifact(s) in $out/$t/artifacts (logs: <file>.log):"
  while read -r f; do
    printf '%s\t%s\t%s\n' "$(triage "$t" "$f")" "$(stat -c %s "$f")" "$(basename "$f")"
  done <<<"$files" | sort -t$'\t' -k1,1 -k2,2n |
    awk -F'\t' '{ n[$1]++; if (!($1 in ex)) ex[$1] = $3 " (" $2 " bytes)" }
                END { for (k in n) printf "  %4d  %s   e.g. %s\n", n[k], k, ex[k] }' |
    sort -rn
done

if [[ $merge == 1 ]]; then
  echo
  for t in "${targets[@]}"; do
    before=$(ls "$fuzz/corpus/$t" | wc -l)
    # An input that crashes here (alone) stays out of the committed corpus.
    LSAN_OPTIONS="suppressions=$PWD/$fuzz/lsan-hdf5-fast.supp:print_suppressions=0" \
      "$build/fuzz_$t" "${common[@]}" -artifact_prefix="$out/$t/merge-" -merge=1 \
      "$fuzz/corpus/$t" "$build/work/$t" \
      >"$out/$t/merge.log" 2>&1
    after=$(ls "$fuzz/corpus/$t" | wc -l)
    echo "fuzz: merged $t: $((after - before)) new input(s) in $fuzz/corpus/$t ($(du -sh "$fuzz/corpus/$t" | cut -f1))"
  done
fi
