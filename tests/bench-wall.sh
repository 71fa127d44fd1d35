#!/usr/bin/env bash
# Figure 8: what a user waits for. The default demo run (make demo: 30
# participants x 600, MLP, theta_u 0.1, round-robin, 20 epochs, 3 ranks)
# timed whole, from mpirun's start to its end, against the two parts a user
# cannot avoid, measured in the same run: start-up (mpirun's start to rank
# 0's "model ..." line, printed once every rank has loaded its data and built
# the model) plus training (the metrics' seconds summed: each epoch's
# training and messages). What is left is evaluation and shutdown.
# ratio = (start-up + training) / wall (1 = nothing else). Goal: wall at most
# 1.5x, ratio >= 0.667. 3 repeats.
# usage: bench-wall.sh [BUILD [CSV DATE HOST]]; with CSV, appends a row.
set -euo pipefail
build=${1:-build}
csv=${2:-}
date=${3:-$(date +%F)}
host=${4:-unknown}
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
repeats=3
py=python3
[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
walls=() parts=()
for r in $(seq $repeats); do
  # prints "WALL STARTUP": seconds from the start to the end, and to the model line
  read -r wall startup < <($py - "$tmp/m$r.csv" mpirun --oversubscribe -np 3 "$build/dssgd" train \
    --mode dssgd --participants 30 --shard-size 600 --partition paper --theta-u 0.1 --theta-d 1 \
    --schedule round-robin --epochs 20 <<'EOF'
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[2:] + ["--metrics", sys.argv[1]], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
startup = None
for line in p.stderr:
    if startup is None and line.startswith("model "):
        startup = time.monotonic() - t0
if p.wait() != 0 or startup is None:
    sys.exit("the demo run failed")
print(f"{time.monotonic() - t0:.4f} {startup:.4f}")
EOF
  )
  train=$(awk -F, 'NR > 1 { s += $2 } END { printf "%.4f", s }' "$tmp/m$r.csv")
  walls+=("$wall")
  parts+=("$(awk -v a="$startup" -v b="$train" 'BEGIN { print a + b }')")
  echo "       # run $r: wall $wall s = start-up $startup s + training $train s + the rest" >&2
done
[[ -z "$csv" ]] && printf "%-6s %-34s %12s %7s %-11s %-22s %12s %8s %-13s %s\n" figure config \
  median spread unit reference "ref median" ratio target met
awk -v w="${walls[*]}" -v p="${parts[*]}" -v csv="$csv" -v date="$date" -v host="$host" '
  function med(s, v, n, i, j, t) { n = split(s, v, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    lo = v[1]; hi = v[n]; return v[int((n + 1) / 2)] }
  BEGIN {
    mw = med(w); wlo = lo; whi = hi; mp = med(p); plo = lo; phi = hi
    ratio = mp / mw; met = ratio >= 0.667 ? "yes" : "NO"
    config = "demo run 3 ranks 20 epochs"
    printf "%-6s %-34s %12.4g %6.1f%%  %-11s %-22s %12.4g %8.5g %-13s %s\n", "wall", config,
           mw, 100 * (whi - wlo) / mw, "s", "start-up + training", mp, ratio, "ratio>=0.667", met
    if (csv != "") {
      getline load < "/proc/loadavg"; split(load, l, " ")
      printf "%s,%s,wall,%s,s,%.6g,%.6g,%.6g,%d,start-up + training,%.6g,%.6g,%.6g,%d,%.6g,ratio>=0.667,%s,%.2f\n",
             date, host, config, mw, wlo, whi, split(w, x, " "), mp, plo, phi, split(p, y, " "),
             ratio, tolower(met), l[1] >> csv
    }
  }'
