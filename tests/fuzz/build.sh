#!/usr/bin/env bash
# Builds the libFuzzer targets (ASan + UBSan) into OUTDIR:
#   fuzz_idx fuzz_wire fuzz_checkpoint fuzz_config fuzz_h5data
# Usage: tests/fuzz/build.sh OUTDIR [TARGET...]
# Exits 77 (the "skipped" status of automake and meson) when clang or its
# libFuzzer runtime is missing: Debian packages clang and libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:?usage: tests/fuzz/build.sh OUTDIR [TARGET...]}
shift
targets=("$@")
((${#targets[@]})) || targets=(idx wire checkpoint config h5data)
CC=${FUZZ_CC:-clang}

if ! command -v "$CC" >/dev/null; then
  echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev); skipping" >&2
  exit 77
fi
mkdir -p "$out"
probe="$out/.probe"
if ! printf '%s\n' '#include <stdint.h>' '#include <stddef.h>' \
      'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' |
     "$CC" -x c -fsanitize=fuzzer,address,undefined - -o "$probe" 2>/dev/null; then
  echo "fuzz: $CC cannot link -fsanitize=fuzzer (apt-get install libclang-rt-14-dev); skipping" >&2
  exit 77
fi
rm -f "$probe"
if ! hdf5_cflags=$(pkg-config --cflags hdf5-openmpi) || ! hdf5_libs=$(pkg-config --libs hdf5-openmpi); then
  echo "fuzz: pkg-config cannot find hdf5-openmpi (run .ci/install-deps)" >&2
  exit 1
fi

# The project's own language level and warnings; -O1 and sanitizers as
# libFuzzer recommends; -fno-sanitize-recover so UBSan findings are crashes.
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
        -Iinclude -Itests/fuzz)
# Each target links only the modules its parser needs.
sources() {
  case $1 in
    idx) echo src/idx.c src/paths.c src/err.c ;;
    wire) echo src/wire.c ;;
    checkpoint) echo src/checkpoint.c src/checkpoint_read.c src/checkpoint_guard.c src/guard.c src/h5util.c src/rng.c src/err.c ;;
    config) echo src/config.c src/dataset.c src/idx.c src/paths.c src/rng.c src/err.c ;;
    h5data) echo src/h5data.c src/h5data_read.c src/guard.c src/h5util.c src/sha256.c src/dataset.c src/idx.c src/paths.c src/rng.c src/err.c ;;
    *) echo "fuzz: unknown target '$1'" >&2; return 1 ;;
  esac
}

for t in "${targets[@]}"; do
  srcs=$(sources "$t")
  echo "fuzz: building $out/fuzz_$t"
  # shellcheck disable=SC2086
  "$CC" "${cflags[@]}" $hdf5_cflags ${FUZZ_CFLAGS:-} "tests/fuzz/fuzz_$t.c" $srcs \
    $hdf5_libs -lz -lm -o "$out/fuzz_$t"
done
