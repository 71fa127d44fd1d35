#!/usr/bin/env bash
# Users' own data (issue 19): HDF5 data files and one training file per
# participant, end to end.
#   a. a synthetic set with a known answer (3 x 8 x 8 images, 3 classes: the
#      class is the channel that carries a bright square) is learnt by a
#      multi-channel convolution to at least 0.9 accuracy;
#   b. the IDX set and its `dssgd data convert` copy train to the same bits;
#   c. one file with --partition iid or dirichlet and the per-site files that
#      `dssgd data split` makes of it train to the same bits, and the site
#      files give the same bits on 1, 2 and 3 ranks (metrics and the final
#      checkpoint's parameters), also when the sites differ in size;
#   d. each site file is opened only by the rank that hosts its participant
#      (strace of a 3-rank run): rank 0 opens none;
#   e. a checkpoint records the files: a resume from moved files with the
#      same bytes finishes; one changed site file is refused, naming the
#      participant and both digests;
#   f. refusals: a missing site file, one of another image shape, a pattern
#      without %d, an output naming a site file, --audit with site files.
# About 40 s on 2 cores. Usage: tests/test_sites.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd) # the repository (the script cds away)
build=${1:-build}
bin=$(realpath "$build/dssgd")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap "rm -rf \"$tmp\"" EXIT
fail() { echo "sites test FAIL: $*"; exit 1; }
# Debian's python3 has h5py (python3-h5py); another python3 first on PATH may not.
py=python3
[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
cd "$tmp"

figures() { cut -d, -f1,3- "$1"; } # every metrics column but the time
same_bits() { # what a b: b's metrics and final checkpoint are a's
  cmp -s <(figures "$2.csv") <(figures "$3.csv") ||
    fail "$1: metrics differ: $(diff <(figures "$2.csv") <(figures "$3.csv") | head -5)"
  local d
  for d in /server/params /participants/params; do
    h5diff "$2.h5" "$3.h5" "$d" "$d" > /dev/null ||
      fail "$1: $d differs: $(h5diff -r "$2.h5" "$3.h5" "$d" "$d" | tail -3)"
  done
}
refused() { # phrase status command...: the command fails with that status, saying phrase
  local phrase=$1 want=$2 rc=0
  shift 2
  timeout 120 "$@" > out.log 2>&1 || rc=$?
  [[ $rc -eq $want ]] || fail "'$*' exited $rc, wanted $want: $(tail -3 out.log)"
  grep -qF -- "$phrase" out.log || fail "'$*' does not say '$phrase': $(tail -3 out.log)"
}

# ---- a. a known answer on 3-channel images ------------------------------------
$py - <<'EOF'
import h5py, numpy as np
rng = np.random.default_rng(7)
def make(n):
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 0.3, (n, 3, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, s = rng.integers(0, 5, 2)
        x[i, c, r:r + 3, s:s + 3] += 0.7
    return x, y.astype(np.int64)
with h5py.File("rgb.h5", "w") as f:
    for g, n in (("train", 600), ("test", 300)):
        x, y = make(n)
        f[f"{g}/x"] = x
        f[f"{g}/y"] = y
    f.attrs["classes"] = 3
EOF
"$bin" train --dataset h5 --data-file rgb.h5 --model c3x4-relu-p2,d3 --participants 3 \
  --shard-size 200 --partition iid --epochs 6 --lr 0.1 --theta-u 0.5 --metrics rgb.csv --quiet ||
  fail "training on rgb.h5"
acc=$(tail -1 rgb.csv | cut -d, -f3)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }' ||
  fail "3-channel known answer: accuracy $acc after 6 epochs, want >= 0.9"
echo "3 x 8 x 8 images, 3 classes: global accuracy $acc after 6 epochs (>= 0.9)"

# ---- b. IDX and its HDF5 copy -------------------------------------------------
mkdir idx
$py "$root/tests/cut-idx.py" /usr/share/datasets/fashion-mnist idx 2000 300
"$bin" data convert --data-dir idx --out all.h5 > convert.log 2>&1 || fail "convert: $(cat convert.log)"
cfg=(--participants 4 --model d16-relu,d10 --epochs 3 --quiet)
shard=(--shard-size 300) # one training set only: site files are the shards
"$bin" train "${cfg[@]}" "${shard[@]}" --data-dir idx --metrics idx.csv --checkpoint idx.h5 ||
  fail "IDX run"
"$bin" train "${cfg[@]}" "${shard[@]}" --dataset h5 --data-file all.h5 --metrics h5.csv \
  --checkpoint h5.h5 ||
  fail "HDF5 run"
same_bits "IDX and its HDF5 copy" idx h5
echo "same bits: the IDX set and its HDF5 copy"

# ---- c. one file with a partition = the same shards as site files ---------------
h5=(--dataset h5 --data-file all.h5)
for kind in iid dirichlet; do
  mkdir "sites-$kind"
  "$bin" data split --data-file all.h5 --sites 4 --shard-size 300 --partition "$kind" \
    --out "sites-$kind/site-%d.h5" > "split-$kind.log" 2>&1 || fail "split $kind: $(cat "split-$kind.log")"
  "$bin" train "${cfg[@]}" "${shard[@]}" "${h5[@]}" --partition "$kind" --metrics "one-$kind.csv" \
    --checkpoint "one-$kind.h5" || fail "one file, $kind"
  "$bin" train "${cfg[@]}" "${h5[@]}" --participant-data "sites-$kind/site-%d.h5" \
    --metrics "site-$kind.csv" --checkpoint "site-$kind.h5" || fail "site files, $kind"
  same_bits "--partition $kind and its site files" "one-$kind" "site-$kind"
  echo "same bits: --partition $kind on one file = its 4 site files (1 rank)"
done
for np in 2 3; do
  mpirun -np $np "$bin" train "${cfg[@]}" "${h5[@]}" --participant-data "sites-iid/site-%d.h5" \
    --metrics "$tmp/np$np.csv" --checkpoint "$tmp/np$np.h5" > "np$np.log" 2>&1 ||
    fail "site files on $np ranks: $(cat "np$np.log")"
  same_bits "site files on $np ranks" site-iid "np$np"
  echo "same bits: site files on $np ranks = 1 rank"
done

# Shards of different sizes (sites hold what they hold): same bits on 1 and
# 3 ranks, also with --local-steps, whose rounds the largest shard sets.
cp -r sites-iid uneven
$py - <<'EOF'
import h5py
for site, keep in ((1, 120), (3, 250)):
    with h5py.File(f"uneven/site-{site}.h5", "r+") as f:
        x, y = f["train/x"][:keep], f["train/y"][:keep]
        del f["train/x"], f["train/y"]
        f["train/x"], f["train/y"] = x, y
EOF
uneven=("${cfg[@]}" "${h5[@]}" --participant-data "uneven/site-%d.h5" --schedule sync --local-steps 3)
"$bin" train "${uneven[@]}" --metrics uneven1.csv --checkpoint uneven1.h5 || fail "uneven sites, 1 rank"
mpirun -np 3 "$bin" train "${uneven[@]}" --metrics "$tmp/uneven3.csv" --checkpoint "$tmp/uneven3.h5" \
  > uneven3.log 2>&1 || fail "uneven sites on 3 ranks: $(cat uneven3.log)"
same_bits "sites of 300, 120, 300 and 250 examples with --local-steps 3" uneven1 uneven3
echo "same bits: sites of different sizes (300, 120, 300, 250), sync, --local-steps 3, on 1 and 3 ranks"

# ---- d. who opens which file ------------------------------------------------------
if ! command -v strace > /dev/null; then
  echo "SKIP: who opens which file: strace is not installed"
elif ! strace -f -qq -o /dev/null true 2> strace-probe.log; then
  echo "SKIP: who opens which file: strace cannot trace here ($(head -n 1 strace-probe.log))"
else
  strace -f -qq -e trace=open,openat,execve,clone,clone3,fork,vfork -o trace.log \
    mpirun -np 3 "$bin" train "${cfg[@]}" "${h5[@]}" --participant-data "$tmp/sites-iid/site-%d.h5" \
    --epochs 1 > strace-run.log 2>&1 || fail "the traced run: $(cat strace-run.log)"
  # ranks 1 and 2 host participants {0, 2} and {1, 3}; rank 0 none. A rank's
  # files include those of the children it forks (the guarded parse).
  $py - trace.log <<'EOF' || fail "a site file was opened outside its participant's rank"
import collections, re, sys
parent, ranks, opened = {}, set(), collections.defaultdict(set)
for line in open(sys.argv[1]):
    pid = int(line.split()[0])
    m = re.search(r"\b(?:clone3?|v?fork)\b.*= (\d+)$", line)  # resumed calls too
    if m:
        parent[int(m.group(1))] = pid
    if re.search(r'execve\("[^"]*/dssgd"', line):
        ranks.add(pid)
    m = re.search(r'open(?:at)?\(.*?"([^"]*)"', line)
    if m and "= -1" not in line:
        opened[pid].add(m.group(1))
def rank_of(pid):
    while pid not in ranks and pid in parent:
        pid = parent[pid]
    return pid if pid in ranks else None
files = collections.defaultdict(set)
for pid, names in opened.items():
    if rank_of(pid) is not None:
        files[rank_of(pid)] |= names
sites = {r: {int(m.group(1)) for f in names for m in [re.search(r"sites-iid/site-(\d+)\.h5$", f)] if m}
         for r, names in files.items()}
groups = sorted(sorted(s) for s in sites.values())
if len(ranks) != 3 or groups != [[], [0, 2], [1, 3]]:
    print("ranks:", sorted(ranks), "sites each opened:", groups)
    sys.exit(1)
EOF
  echo "each site file opened only by its participant's rank; rank 0 opened none"
fi

# ---- e. the checkpoint records the files --------------------------------------------
site=("${cfg[@]}" "${h5[@]}" --participant-data)
"$bin" train "${site[@]}" "sites-iid/site-%d.h5" --epochs 2 --checkpoint ck.h5 || fail "epochs 1-2"
"$bin" inspect ck.h5 | grep -q "site 3 [0-9]* [0-9a-f]\{64\} sites-iid/site-3.h5" ||
  fail "inspect does not list site 3's file: $("$bin" inspect ck.h5 | tail -6)"
cp -r sites-iid moved
"$bin" train "${site[@]}" "moved/site-%d.h5" --epochs 3 --resume ck.h5 --checkpoint ck2.h5 ||
  fail "a resume from moved, unchanged files"
$py - <<'EOF'
import h5py
with h5py.File("moved/site-2.h5", "r+") as f:
    y = f["train/y"][...]
    y[0] = (y[0] + 1) % 10
    f["train/y"][...] = y
EOF
refused "participant 2's training file changed since the checkpoint" 1 \
  "$bin" train "${site[@]}" "moved/site-%d.h5" --epochs 3 --resume ck.h5
grep -q "sha256 [0-9a-f]\{64\}; the checkpoint's run read sites-iid/site-2.h5" out.log ||
  fail "the refusal does not give both digests: $(cat out.log)"
refused "the checkpoint's run read participant 0's training file" 1 \
  "$bin" train "${cfg[@]}" "${h5[@]}" --epochs 3 --resume ck.h5
echo "resume: moved files accepted; a changed site file and a missing one refused"

# ---- f. refusals -------------------------------------------------------------------
refused "participant 4" 1 "$bin" train "${site[@]}" "sites-iid/site-%d.h5" --participants 5
refused "needs exactly one %d" 2 "$bin" train "${site[@]}" "sites-iid/site.h5"
refused "needs --data-file" 2 "$bin" train --dataset h5
refused "apply to --dataset h5" 2 "$bin" train --data-file all.h5
refused "--audit needs the participants' records" 2 \
  "$bin" train "${site[@]}" "sites-iid/site-%d.h5" --audit a.csv
refused "--metrics and a data file name the same file" 1 \
  "$bin" train "${site[@]}" "sites-iid/site-%d.h5" --metrics sites-iid/site-1.h5
$py - <<'EOF'
import h5py, numpy as np
with h5py.File("small.h5", "w") as f:
    f["train/x"] = np.zeros((10, 1, 27, 27), np.float32)
    f["train/y"] = np.zeros(10, np.int64)
    f.attrs["classes"] = 10
EOF
mkdir odd && cp sites-iid/site-*.h5 odd/ && cp small.h5 odd/site-1.h5
refused "participant 1" 1 "$bin" train "${site[@]}" "odd/site-%d.h5"
grep -q "1x27x27" out.log || fail "the shape refusal does not name the shape: $(cat out.log)"
echo "refusals: a missing site file, another shape, a pattern without %d, --audit, an output on a site file"
echo "SITES TEST PASSED"
