#!/usr/bin/env bash
# Regenerates the hand-made seeds of tests/fuzz/corpus/ (and the generated
# inputs of tests/fuzz/regressions/) with the project's own writers
# (gen_seeds.c). Files the fuzzer added (named by their SHA-1) are left
# alone. The seeds written by ckpt_save differ at each run (HDF5 stores
# object times). Usage: tests/fuzz/gen-seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2046
"$CC" -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra -Wshadow -Iinclude \
  $(pkg-config --cflags hdf5-openmpi) tests/fuzz/gen_seeds.c src/checkpoint.c src/h5util.c src/rng.c \
  src/err.c src/idx.c src/paths.c src/wire.c $(pkg-config --libs hdf5-openmpi) -lz -lm -o "$work/gen_seeds"
mkdir -p tests/fuzz/corpus tests/fuzz/regressions
"$work/gen_seeds" tests/fuzz/corpus tests/fuzz/regressions
# The data-file seeds (h5data), from their own generator.
# shellcheck disable=SC2046
"$CC" -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra -Wshadow -Iinclude \
  $(pkg-config --cflags hdf5-openmpi) tests/fuzz/gen_seeds_h5data.c src/h5data.c src/h5data_read.c src/guard.c src/h5util.c \
  src/sha256.c src/dataset.c src/idx.c src/paths.c src/rng.c src/err.c \
  $(pkg-config --libs hdf5-openmpi) -lz -lm -o "$work/gen_seeds_h5data"
mkdir -p tests/fuzz/corpus/h5data
"$work/gen_seeds_h5data" tests/fuzz/corpus/h5data
for d in tests/fuzz/corpus/*/; do
  printf '%-28s %3d files, %s\n' "$d" "$(ls "$d" | wc -l)" "$(du -sh "$d" | cut -f1)"
done
