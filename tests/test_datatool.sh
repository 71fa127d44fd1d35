#!/usr/bin/env bash
# dssgd data convert and split, checked with h5py against the IDX bytes:
# convert keeps every pixel and label byte; split writes site files whose
# examples are the source's, with the shard sizes asked, no example in two
# sites for iid and dirichlet, the same files for the same seed and other
# ones for another; the defaults are train's; bad input refused (status 2 for
# usage, 1 for failures) without touching any input. When `dssgd train`
# reads per-site files (--participant-data), training on the site files must
# give the same bits as training on the one file with the same partition.
# Usage: tests/test_datatool.sh BUILD_DIR   (about 10 s)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd) # the repository (the script cds away)
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
bin=$(cd "$build" && pwd)/dssgd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_datatool FAIL: $*"; exit 1; }
[[ -x $bin ]] || fail "no $bin (build it first)"
python=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import h5py' > /dev/null 2>&1; then python=$p; break; fi
done
[[ -n $python ]] || fail "no python3 with h5py (Debian package python3-h5py)"
cd "$tmp"

# ---- the first 1000 training and 200 test images, as IDX files
mkdir data
"$python" "$root/tests/cut-idx.py" /usr/share/datasets/fashion-mnist data 1000 200
cp -r data data.orig

# ---- convert: the pixel and label bytes of the IDX files, as uint8
"$bin" data convert --data-dir data --out fm.h5 > out 2>&1 || fail "convert: $(cat out)"
grep -qx "wrote fm.h5: /train 1000 and /test 200 examples of 1x28x28, 10 classes, pixels as uint8 (from data)" out \
  || fail "convert said: $(cat out)"
"$python" - fm.h5 data <<'EOF' || fail "convert: the file is not the IDX sets"
import sys, h5py, numpy as np
path, idx = sys.argv[1:3]
with h5py.File(path, "r") as f:
    assert sorted(f.keys()) == ["test", "train"], list(f.keys())
    assert int(f.attrs["classes"]) == 10, f.attrs["classes"]
    for group, prefix, n in (("train", "train", 1000), ("test", "t10k", 200)):
        x, y = f[group]["x"], f[group]["y"]
        assert x.dtype == np.uint8 and x.shape == (n, 1, 28, 28), (group, x.dtype, x.shape)
        assert y.shape == (n,) and y.dtype.kind in "iu", (group, y.dtype, y.shape)
        with open(f"{idx}/{prefix}-images-idx3-ubyte", "rb") as g:
            assert x[()].tobytes() == g.read()[16:], f"{group}: pixels differ from the IDX bytes"
        with open(f"{idx}/{prefix}-labels-idx1-ubyte", "rb") as g:
            labels = np.frombuffer(g.read()[8:], np.uint8)
        assert np.array_equal(y[()].astype(np.int64), labels), f"{group}: labels differ"
EOF

# ---- split: checks of the site files against the source, with h5py.
# check_split SOURCE PATTERN SITES SIZE DISJOINT DTYPE OUTPUT: every site file
# has only /train, the source's classes, x of DTYPE with SIZE examples of the
# source's shape, each example (pixels as loaded, and label) one of the
# source's, no example twice in a site (a shard is drawn without
# replacement), none in two sites when DISJOINT is 1, and the label counts
# that OUTPUT's line for the site prints. Prints the sites' source indices.
check_split() {
  "$python" - "$@" <<'EOF'
import sys, re, h5py, numpy as np
from collections import Counter
src, pattern, sites, size, disjoint, dtype, output = sys.argv[1:8]
sites, size, disjoint = int(sites), int(size), disjoint == "1"
def loaded(x):  # the floats dssgd loads: uint8 as b / 255 in float32
    x = x[()]
    return x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x
with h5py.File(src, "r") as f:
    sx, sy = loaded(f["train/x"]), f["train/y"][()]
    classes = int(f.attrs["classes"]) if "classes" in f.attrs else int(sy.max()) + 1
keys = [sx[i].tobytes() + bytes([int(sy[i])]) for i in range(len(sy))]
where = {k: i for i, k in enumerate(keys)}
assert len(where) == len(keys), "the source has duplicate examples: pick another"
lines = {int(m.group(1)): m for m in
         (re.match(r"site (\d+): (\S+), (\d+) examples, labels (.*)$", l)
          for l in open(output)) if m}
used = Counter()
for p in range(sites):
    path = pattern.replace("%d", str(p))
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == ["train"], (path, list(f.keys()))
        assert int(f.attrs["classes"]) == classes, (path, f.attrs["classes"])
        assert f["train/x"].dtype == np.dtype(dtype), (path, f["train/x"].dtype)
        x, y = loaded(f["train/x"]), f["train/y"][()]
    assert x.shape == (size,) + sx.shape[1:] and y.shape == (size,), (path, x.shape, y.shape)
    idx = []
    for i in range(size):
        k = x[i].tobytes() + bytes([int(y[i])])
        assert k in where, f"{path}: example {i} is not one of the source's"
        idx.append(where[k])
    assert len(set(idx)) == size, f"{path}: an example twice in one site"
    used.update(idx)
    m = lines.get(p)
    assert m and m.group(2) == path and int(m.group(3)) == size, f"site {p}'s line: {m}"
    counts = Counter(int(v) for v in y)
    want = " ".join(f"{c}:{counts[c]}" for c in range(classes))
    assert m.group(4) == want, f"site {p}'s label counts: printed {m.group(4)}, file has {want}"
    print(" ".join(map(str, idx)))
if disjoint:
    assert max(used.values()) == 1, "an example in two sites"
EOF
}

# iid, equal shares (0): 3 sites of 333, together a subset of the source.
mkdir iid dir paper seed2
"$bin" data split --data-file fm.h5 --sites 3 --out 'iid/site-%d.h5' --partition iid \
  --shard-size 0 > iid.out 2>&1 || fail "split iid: $(cat iid.out)"
check_split fm.h5 'iid/site-%d.h5' 3 333 1 uint8 iid.out > iid.idx || fail "split iid"
grep -qx "split fm.h5: 999 of its 1000 training examples (1x28x28, 10 classes) into 3 site files, the shards of dssgd train --partition iid --participants 3 --shard-size 333 --seed 1; pixels as uint8 (every pixel is some k/255)" iid.out \
  || fail "split iid's last line: $(tail -1 iid.out)"
# Dirichlet label skew: disjoint, 300 each, labels not spread evenly.
"$bin" data split --data-file fm.h5 --sites 3 --out 'dir/site-%d.h5' --partition dirichlet \
  --alpha 0.5 --shard-size 300 > dir.out 2>&1 || fail "split dirichlet: $(cat dir.out)"
check_split fm.h5 'dir/site-%d.h5' 3 300 1 uint8 dir.out > dir.idx || fail "split dirichlet"
awk '/^site / { for (i = 7; i <= NF; i++) { split($i, a, ":"); if (a[2] > 60) skew = 1 } }
     END { exit !skew }' dir.out || fail "dirichlet 0.5: no label above 2x its even share: $(cat dir.out)"
# The defaults are train's (paper, 600, seed 1): overlapping shards are
# allowed there, and the same options spelled out give the same shards.
"$bin" data split --data-file fm.h5 --sites 3 --out 'paper/site-%d.h5' > paper.out 2>&1 ||
  fail "split with the defaults: $(cat paper.out)"
check_split fm.h5 'paper/site-%d.h5' 3 600 0 uint8 paper.out > paper.idx || fail "split paper"
"$bin" data split --data-file fm.h5 --sites 3 --out 'paper/again-%d.h5' --partition paper \
  --shard-size 600 --seed 1 --alpha 0.5 > again.out 2>&1 || fail "split paper: $(cat again.out)"
check_split fm.h5 'paper/again-%d.h5' 3 600 0 uint8 again.out > again.idx || fail "split again"
cmp -s paper.idx again.idx || fail "the defaults are not --partition paper --shard-size 600 --seed 1"
"$bin" train --help > train.help
for want in "--partition KIND.*\[paper\]" "--shard-size N.*\[600\]" "--seed S.*\[1\]" "--alpha A.*\[0.5\]"; do
  grep -q -- "$want" train.help || fail "dssgd train's default is no longer '$want': update this test"
done
"$bin" data split --help > split.help || fail "split --help exited non-zero"
for want in "--partition KIND.*\[paper\]" "--shard-size N.*\[600\]" "--seed S.*\[1\]" "--alpha A.*\[0.5\]" \
            "--data-file FILE.h5" "--sites N" "--out PATTERN"; do
  grep -q -- "$want" split.help || fail "split --help lacks '$want': $(cat split.help)"
done
# Another seed, other shards; the same seed, the same shards.
"$bin" data split --data-file fm.h5 --sites 3 --out 'seed2/site-%d.h5' --partition iid \
  --shard-size 0 --seed 2 > seed2.out 2>&1 || fail "split --seed 2: $(cat seed2.out)"
check_split fm.h5 'seed2/site-%d.h5' 3 333 1 uint8 seed2.out > seed2.idx || fail "split seed 2"
! cmp -s iid.idx seed2.idx || fail "--seed 2 drew the shards of --seed 1"
"$bin" data split --data-file fm.h5 --sites 3 --out 'iid/site-%d.h5' --partition iid \
  --shard-size 0 > iid2.out 2>&1 || fail "split iid again: $(cat iid2.out)"
check_split fm.h5 'iid/site-%d.h5' 3 333 1 uint8 iid2.out > iid2.idx || fail "split iid again"
cmp -s iid.idx iid2.idx || fail "the same seed drew other shards"

# ---- the storage type: float32 pixels stay float32 unless each is k/255
"$python" - <<'EOF'
import h5py, numpy as np
rng = np.random.default_rng(5)
y = rng.integers(0, 3, 60).astype(np.int32)
b = rng.integers(0, 256, (60, 3, 4, 4)).astype(np.uint8)
for name, x in (("float.h5", rng.random((60, 3, 4, 4), dtype=np.float32)),
                ("bytes.h5", b.astype(np.float32) / np.float32(255))):
    with h5py.File(name, "w") as f:
        f["train/x"], f["train/y"] = x, y
with h5py.File("testonly.h5", "w") as f:  # a file without /train
    f["test/x"], f["test/y"] = b, y
EOF
mkdir fl by
"$bin" data split --data-file float.h5 --sites 2 --out 'fl/s-%d.h5' --partition iid \
  --shard-size 0 > fl.out 2>&1 || fail "split float.h5: $(cat fl.out)"
check_split float.h5 'fl/s-%d.h5' 2 30 1 float32 fl.out > /dev/null || fail "split float.h5"
grep -q "pixels as float32 (not every pixel is some k/255)" fl.out || fail "float.h5: $(cat fl.out)"
"$bin" data split --data-file bytes.h5 --sites 2 --out 'by/s-%d.h5' --partition iid \
  --shard-size 0 > by.out 2>&1 || fail "split bytes.h5: $(cat by.out)"
check_split bytes.h5 'by/s-%d.h5' 2 30 1 uint8 by.out > /dev/null || fail "split bytes.h5"

# ---- refusals: status 2 for usage errors, 1 for failures; inputs untouched
cp fm.h5 in-0.h5 && cp fm.h5 fm.orig && ln in-0.h5 hard-0.h5
refuse() { # status phrase args...
  local want=$1 phrase=$2
  shift 2
  set +e; "$bin" data "$@" > out 2>&1; local rc=$?; set -e
  [[ $rc -eq $want ]] || fail "'data $*' exited $rc, wanted $want: $(cat out)"
  grep -qF -- "$phrase" out || fail "'data $*' message lacks '$phrase': $(cat out)"
}
split=(split --data-file fm.h5 --sites 3)
refuse 2 "usage: dssgd data convert"
refuse 2 "unknown data command 'merge'" merge
refuse 2 "unknown option '--bogus'" "${split[@]}" --out 's-%d.h5' --bogus 1
refuse 2 "ambiguous option '--s' (could be --sites, --shard-size, --seed)" "${split[@]}" --out 's-%d.h5' --s 1
refuse 2 "unexpected argument 'extra'" "${split[@]}" --out 's-%d.h5' extra
refuse 2 "dssgd data split needs --out PATTERN" "${split[@]}"
refuse 2 "dssgd data split needs --sites N" split --data-file fm.h5 --out 's-%d.h5'
refuse 2 "dssgd data convert needs --out FILE.h5" convert --data-dir data
refuse 2 "--out needs a value" "${split[@]}" --out
refuse 2 "--out: empty path" "${split[@]}" --out ''
refuse 2 "--data-file: empty path" split --data-file '' --sites 3 --out 's-%d.h5'
for pattern in 's.h5' 's-%d-%d.h5' 's-%s.h5' 's-%d%%.h5' 's-%.h5' '%' 's-%5d.h5'; do
  refuse 2 "--out '$pattern': a site file pattern" "${split[@]}" --out "$pattern"
done
for v in 0 -1 100001 10x ' 3' +3 '' 3.0 99999999999999999999; do
  refuse 2 "--sites: " split --data-file fm.h5 --out 's-%d.h5' --sites "$v"
done
for v in -5 1e3 0x10 2147483649; do
  refuse 2 "--shard-size: " "${split[@]}" --out 's-%d.h5' --shard-size "$v"
done
for v in abc -1 18446744073709551616 9223372036854775808; do
  refuse 2 "--seed: " "${split[@]}" --out 's-%d.h5' --seed "$v"
done
for v in 0 -1 nan inf 1x 1e7 1e-400 ''; do
  refuse 2 "--alpha: " "${split[@]}" --out 's-%d.h5' --partition dirichlet --alpha "$v"
done
refuse 2 "--partition: unknown value 'skew' (choose from iid, paper, dirichlet)" "${split[@]}" \
  --out 's-%d.h5' --partition skew
refuse 2 "--dataset: unknown value 'cifar'" convert --dataset cifar --out c.h5
refuse 2 "--dataset mnist needs --data-dir DIR" convert --dataset mnist --out c.h5
refuse 2 "--help takes no value" split --help=1
refuse 1 "--data-file nowhere.h5: cannot open" split --data-file nowhere.h5 --sites 3 --out 's-%d.h5'
refuse 1 "data/nowhere" convert --data-dir data/nowhere --out c.h5
[[ ! -e c.h5 ]] || fail "a failed convert left c.h5"
refuse 1 "--data-file and --out name the same file (in-0.h5)" split --data-file in-0.h5 \
  --sites 2 --out 'in-%d.h5'
refuse 1 "--data-file and --out name the same file (in-0.h5 and hard-0.h5)" split \
  --data-file in-0.h5 --sites 2 --out 'hard-%d.h5'
refuse 1 "--data-file and --out name the same file (in-0.h5 and ./in-0.h5)" split \
  --data-file in-0.h5 --sites 2 --out './in-%d.h5'
[[ ! -e in-1.h5 && ! -e hard-1.h5 ]] || fail "a refused split wrote a site file"
refuse 1 "a data file and --out name the same file" convert --data-dir data \
  --out data/train-labels-idx1-ubyte
refuse 1 "a data file and --out name the same file" convert --data-dir data \
  --out data/../data/t10k-images-idx3-ubyte
refuse 1 "directory nodir does not exist" "${split[@]}" --out 'nodir/s-%d.h5'
refuse 1 "3 disjoint shards of 400 need 1200 examples, have 1000" "${split[@]}" \
  --out 's-%d.h5' --partition iid --shard-size 400
refuse 1 "shard size 2000 exceeds the 1000 training examples" "${split[@]}" --out 's-%d.h5' \
  --shard-size 2000
refuse 1 "testonly.h5" split --data-file testonly.h5 --sites 2 --out 'x-%d.h5'
ls s-*.h5 x-*.h5 > /dev/null 2>&1 && fail "a refused split wrote: $(ls s-*.h5 x-*.h5)"
cmp -s in-0.h5 fm.orig && cmp -s fm.h5 fm.orig || fail "a refused split changed its input"
diff -r data data.orig > /dev/null || fail "a refused convert changed an IDX file"
"$bin" data split --data-file fm.h5 --sites 3 --out 'w-%d.h5' --partition iid --shard-size 10 \
  --alpha 0.3 > out 2>&1 || fail "split with an ignored --alpha: $(cat out)"
grep -q "warning: --alpha 0.3 is ignored: it has an effect only with --partition dirichlet" out \
  || fail "no warning for an ignored --alpha: $(cat out)"
for cmd in "" convert split; do
  "$bin" data $cmd --help > out 2>&1 || fail "data $cmd --help exited non-zero"
  grep -q "usage: dssgd data" out || fail "data $cmd --help: $(cat out)"
done

# ---- training on the site files gives the bits of training on the one file
if grep -q -- "--participant-data" train.help; then
  common=(--dataset h5 --data-file fm.h5 --participants 3 --epochs 2 --model d16-relu,d10
          --eval-size 200 --quiet)
  "$bin" train "${common[@]}" --partition dirichlet --alpha 0.5 --shard-size 300 \
    --metrics one.csv --checkpoint one.h5 > out 2>&1 || fail "train on fm.h5: $(cat out)"
  "$bin" train "${common[@]}" --participant-data 'dir/site-%d.h5' --metrics sites.csv \
    --checkpoint sites.h5 > out 2>&1 || fail "train on the site files: $(cat out)"
  cmp -s <(cut -d, -f1,3- one.csv) <(cut -d, -f1,3- sites.csv) ||
    fail "site files: metrics differ from one file's: $(diff one.csv sites.csv)"
  for d in /server/params /participants/params; do
    h5diff one.h5 sites.h5 "$d" "$d" > /dev/null || fail "site files: $d differs from one file's"
  done
else
  echo "test_datatool: SKIP training on site files (dssgd train has no --participant-data yet)"
fi
echo "test_datatool: all checks passed"
