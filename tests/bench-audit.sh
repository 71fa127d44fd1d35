#!/usr/bin/env bash
# Figure 7: the privacy audit's cost. Wall time of a default training
# (Fashion-MNIST, 30 participants x 600, MLP, round-robin, one process),
# 5 epochs, with --audit at its defaults (every 5 epochs: one audit;
# --audit-sample 200, --audit-holdout 2000), against the same run with
# --audit-holdout 2000 alone (the same shards and bits, no audit), timed
# alternately, 3 repeats each. ratio = the plain run's rate / the audited
# one's (1 = free). Goal: overhead within 20%, ratio >= 0.833.
# usage: bench-audit.sh [BUILD [CSV DATE HOST]]; with CSV, appends a row.
set -euo pipefail
build=${1:-build}
csv=${2:-}
date=${3:-$(date +%F)}
host=${4:-unknown}
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
repeats=3
common=(train --epochs 5 --quiet --audit-holdout 2000)
walls_plain=() walls_audit=()
for r in $(seq $repeats); do
  t0=$(date +%s.%N)
  "$build/dssgd" "${common[@]}" > /dev/null
  t1=$(date +%s.%N)
  "$build/dssgd" "${common[@]}" --audit "$tmp/audit-$r.csv" > /dev/null
  t2=$(date +%s.%N)
  walls_plain+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  walls_audit+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')")
done
[[ -z "$csv" ]] && printf "%-6s %-34s %12s %7s %-11s %-22s %12s %8s %-13s %s\n" figure config \
  median spread unit reference "ref median" ratio target met
awk -v a="${walls_audit[*]}" -v p="${walls_plain[*]}" -v csv="$csv" -v date="$date" \
    -v host="$host" '
  function med(s, v, n, i, j, t) { n = split(s, v, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    lo = v[1]; hi = v[n]; return v[int((n + 1) / 2)] }
  BEGIN {
    ma = med(a); alo = lo; ahi = hi; mp = med(p); plo = lo; phi = hi
    # rates: runs per second, so that ratio = audited rate / plain rate
    ratio = mp / ma; met = ratio >= 0.833 ? "yes" : "NO"
    config = "default run 5 epochs 1 audit"
    printf "%-6s %-34s %12.4g %6.1f%%  %-11s %-22s %12.4g %8.5g %-13s %s\n", "audit", config,
           1 / ma, 100 * (ahi - alo) / ma, "runs/s", "same run, no --audit", 1 / mp, ratio,
           "ratio>=0.833", met
    printf "       # wall: %.2f s with the audit, %.2f s without (medians of %d)\n", ma, mp, split(a, x, " ")
    if (csv != "") {
      getline load < "/proc/loadavg"; split(load, l, " ")
      printf "%s,%s,audit,%s,runs/s,%.6g,%.6g,%.6g,%d,same run no --audit,%.6g,%.6g,%.6g,%d,%.6g,ratio>=0.833,%s,%.2f\n",
             date, host, config, 1 / ma, 1 / ahi, 1 / alo, split(a, x, " "), 1 / mp, 1 / phi,
             1 / plo, split(p, y, " "), ratio, tolower(met), l[1] >> csv
    }
  }'
