#!/usr/bin/env bash
# Fifth device run (2026-11-30): sync's one download per worker rank
# (d29bb16, the bundle) against the binary before it (169f3fd,
# .devbundle/old/dssgd), alternating; OpenBLAS's kernel choice; 2 cores
# (taskset) at 3 ranks. Each step packed into $OUT when it ends.
set -u
export DSSGD_KEEP_MPI_ENV=1
DEADLINE=${DEADLINE:-380}
res=/tmp/res5; mkdir -p "$res"
exec > >(tee "$res/device.log") 2>&1
pack() { tar czf "$OUT/device5.tgz" -C /tmp res5 2>/dev/null; cp "$res/device.log" "$OUT/device5.log" 2>/dev/null; }
trap pack EXIT
source .devbundle/setup.sh || exit 1
[[ -e /usr/share/datasets/fashion-mnist ]] || { mkdir -p /usr/share/datasets && ln -s "$DSSGD_DATA" /usr/share/datasets/fashion-mnist; }
nproc; grep -m1 'model name' /proc/cpuinfo; grep -m1 -o 'avx512f\|avx2' /proc/cpuinfo | head -2
new=/tmp/dssgd-rt/bin old=$PWD/.devbundle/old
for ct in "" Haswell SkylakeX; do
  echo "OPENBLAS_CORETYPE=$ct: $(env ${ct:+OPENBLAS_CORETYPE=$ct} OPENBLAS_VERBOSE=2 $new/dssgd train --epochs 1 --participants 2 --shard-size 100 --eval-size 100 --quiet 2>&1 | grep -m1 Core)"
done
echo "forwarded: $(OPENBLAS_CORETYPE=Haswell mpirun -np 1 env | grep CORETYPE)"
step() { if (( SECONDS > DEADLINE )); then echo "SKIP (at ${SECONDS}s): $*"; return; fi
  echo "== ${SECONDS}s: $*"; "$@"; echo "   rc=$? at ${SECONDS}s"; pack; }
# bench LABEL BUILD RANKS [COMMAND PREFIX...]: tests/bench-accuracy.sh under the prefix
bench() { local label=$1 build=$2 ranks=$3; shift 3
  echo "-- $label"; RANKS=$ranks "$@" bash tests/bench-accuracy.sh "$build" "$res/t2acc.csv" 2026-11-30 "$label" | tee -a "$res/t2acc.txt"; }
run20() { local name=$1 np=$2; shift 2
  mpirun --oversubscribe -np "$np" "$@" train --participants 30 --shard-size 600 --partition paper \
    --theta-u 0.1 --epochs 20 --seed 1 --quiet --metrics "$res/$name.csv" > "$res/$name.log" 2>&1
  awk -F, -v n="$name" 'NR>1{s+=$2; if(!hit && $3>=0.84){hit=1; t=s; e=$1}} NR>16{l+=$3; k++} END{printf "%s: training s %.3f, to 0.84 %s, last-5 %.4f\n", n, s, hit ? sprintf("%.3f (epoch %d)", t, e) : "never", l/k}' "$res/$name.csv"; }
for i in 1 2 3; do
  step bench "new-r16-$i" $new 16
  step bench "old-r16-$i" $old 16
done
step run20 rr-r16 16 $new/dssgd --schedule round-robin
step run20 sync-r16-new 16 $new/dssgd --schedule sync
step run20 sync-r16-old 16 $old/dssgd --schedule sync
for i in 1 2; do
  step bench "haswell-new-r16-$i" $new 16 env OPENBLAS_CORETYPE=Haswell
done
step run20 rr-r16-haswell 16 env OPENBLAS_CORETYPE=Haswell $new/dssgd --schedule round-robin
step run20 sync-r16-haswell 16 env OPENBLAS_CORETYPE=Haswell $new/dssgd --schedule sync
for i in 1 2; do
  step bench "new-2cores-r3-$i" $new 3 taskset -c 0,1
  step bench "old-2cores-r3-$i" $old 3 taskset -c 0,1
done
echo "done at ${SECONDS}s"
