#!/usr/bin/env bash
# Line and branch coverage of each parser's source file by the committed
# corpus (clang source-based coverage, on the sanitizer build). Prints llvm-cov's
# report per target. Usage: tests/fuzz/coverage.sh [OUTDIR] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/fuzz-cov}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(idx wire checkpoint config h5data)
for tool in llvm-profdata llvm-cov; do
  command -v "$tool" >/dev/null || { echo "coverage: $tool not found (Debian: llvm)" >&2; exit 77; }
done
FUZZ_CFLAGS="-fprofile-instr-generate -fcoverage-mapping" tests/fuzz/build.sh "$out" "${targets[@]}" \
  >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
# The file each target is about (the others it links are incidental).
subject() {
  case $1 in
    idx) echo src/idx.c ;; wire) echo src/wire.c ;;
    checkpoint) echo src/checkpoint.c src/checkpoint_read.c src/checkpoint_guard.c src/guard.c src/h5util.c ;;
    config) echo src/config.c ;;
    h5data) echo src/h5data_read.c src/guard.c src/h5util.c ;;
  esac
}
for t in "${targets[@]}"; do
  rm -f "$out/$t".profraw
  mapfile -t files < <(find tests/fuzz/corpus/"$t" -type f | sort)
  LLVM_PROFILE_FILE="$out/$t.profraw" ASAN_OPTIONS=detect_leaks=0 \
    "$out/fuzz_$t" "${files[@]}" >"$out/$t.run.log" 2>&1 || true
  llvm-profdata merge -sparse "$out/$t.profraw" -o "$out/$t.profdata"
  echo "== $t (${#files[@]} corpus inputs)"
  llvm-cov report "$out/fuzz_$t" -instr-profile="$out/$t.profdata" $(subject "$t") | tail -n +3
done
