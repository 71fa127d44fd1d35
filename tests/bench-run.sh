#!/usr/bin/env bash
# bench-run: what `make bench` runs. The C benchmarks (figures 1-4), then the
# schedules' time to accuracy under mpirun (figure 5), the privacy audit's
# cost (figure 7; figure 6, DP-SGD, is in the C benchmark), the whole demo
# run's wall time against its start-up and training (figure 8), all into
# results/bench/<date>.csv
# (written aside and renamed at the end: today's file is replaced whole).
# usage: bench-run.sh [BUILD]
set -euo pipefail
build=${1:-build}
export OPENBLAS_NUM_THREADS=1
date=$(date +%F)
dir=results/bench
out=$dir/$date.csv
# The CPU's name (no commas: it is a CSV field) and its core count.
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null | tr -s ', ' ' ')
host="${cpu:-unknown} x$(nproc)"
# The source measured: the commit, "+dirty" when src/ or include/ differ from it.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include 2>/dev/null || commit="$commit+dirty"
mkdir -p "$dir"
tmp=$(mktemp "$dir/.$date.csv.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "date,host_cpu,figure,config,unit,median,min,max,repeats,reference,reference_median,reference_min,reference_max,reference_repeats,ratio,target,meets_target,load1,commit" >"$tmp"

start=$(date +%s)
echo "make bench: $host, $(date '+%F %T'), source $commit, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The BLAS kernels every figure ran on (OpenBLAS says at load with
# OPENBLAS_VERBOSE=2); dssgd's start-up warning about them is shown once.
kernels=$(OPENBLAS_VERBOSE=2 "$build/dssgd" --version 2>&1 | sed -n 's/^Core: //p' | head -1)
echo "OpenBLAS kernels: ${kernels:-not reported}${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}"
"$build/dssgd" train --participants 1 --shard-size 32 --epochs 1 --eval-size 10 --quiet 2>&1 | grep 'warning: OpenBLAS' || true
quiet_blas() { grep -v '^dssgd: warning: OpenBLAS runs its' >&2 || true; }
echo "Every figure is the median of its repeats; spread = (max - min) / median;"
echo "ratio = median / reference median, both measured in this run."
echo
"$build/bench" --csv "$tmp" --date "$date" --host "$host"
bash tests/bench-accuracy.sh "$build" "$tmp" "$date" "$host" 2> >(quiet_blas)
bash tests/bench-audit.sh "$build" "$tmp" "$date" "$host" 2> >(quiet_blas)
bash tests/bench-wall.sh "$build" "$tmp" "$date" "$host" 2> >(quiet_blas)
# Every row gets the commit column.
sed -i "2,\$s/\$/,$commit/" "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT

echo
echo "Targets ($out, $(( $(date +%s) - start )) s, load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
awk -F, 'NR > 1 && $16 != "" {
  printf "  %-6s %-34s %-13s median %-11.6g (spread %5.1f%%) ratio %-9.5g %s\n", $3, $4, $16,
         $6, 100 * ($8 - $7) / $6, $15, ($17 == "yes" ? "met" : "NOT MET") }' "$out"
