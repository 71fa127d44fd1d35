#!/usr/bin/env bash
# Runs across hosts, and network faults (issue 17). Three hosts h1, h2, h3
# are network namespaces, each with a veth cable to a bridge in a fourth
# namespace (the switch), addresses in 10.77.7.0/24 that exist only inside
# them and /etc/netns/<ns>/hosts for their names. Open MPI starts from h1
# with `mpirun --host h1,h2,h3`: an agent script stands in for ssh and
# enters the host's namespace (ip netns exec, plus unshare --uts for its own
# hostname); MPI and Open MPI's own traffic go over TCP on that subnet only.
# Rank 0 runs on h1, rank 1 on h2, rank 2 on h3.
#   a. round-robin and sync across the hosts give the same bits as one rank
#      (every metrics figure but the time; the final checkpoint's server and
#      participant parameters), through a checkpoint and a resume;
#   b. h3's cable is pulled at the switch (its port set down) once every job
#      below has written a checkpoint and run on past it (the metrics grow),
#      in three jobs at once, round-robin, sync and async, --rank-timeout 5
#      and a checkpoint every epoch. Each ends non-zero within
#      rank-timeout + 30 s, rank 0 naming rank 2; no process is left on any
#      host once the workers' patience has passed; the last checkpoint is
#      whole and a resume on the healed network finishes. Meanwhile a fourth
#      job on h1 and h2 has its rank 0 frozen (SIGSTOP): its worker gives up
#      after its patience, naming rank 0, and that ends the job;
#   c. a slow, lossy link to h3 (tc netem delay 50ms loss 1% both ways)
#      gives the same bits; the epoch time is reported. Without netem in the
#      kernel this case runs on a slow link only (tbf), and says so.
# Open MPI's runtime (mpirun, orted) notices a lost host only when TCP gives
# up on it: keepalives cover idle connections only, and an unacknowledged
# one retries for net.ipv4.tcp_retries2 (15: about 15 minutes). The hosts
# here set it to 4 (about 6 s), as a cluster that wants lost nodes noticed
# would; it is a per-namespace setting, nothing outside changes.
# Needs root; without network namespaces it prints SKIP and succeeds. About
# 50 s on 2 cores. Usage: tests/test_netns.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd) # the repository (the script cds away)
build=${1:-build}
bin=$(realpath "$build/dssgd")
skip() { echo "SKIP: test_netns: $*"; exit 0; }
fail() { echo "netns test FAIL: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || skip "needs root to make network namespaces"
command -v ip > /dev/null && command -v unshare > /dev/null || skip "needs ip (iproute2) and unshare"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset DSSGD_TEST_KILL_AT

P=dn$$                      # prefix of every namespace and link made here
net=10.77.7                 # the hosts' /24, inside the namespaces only
hosts=(h1 h2 h3)
namespaces=("${hosts[@]/#/$P}" "${P}sw")
tmp=$(mktemp -d)
jobs_started=()
cleanup() {
  local ns pid i
  for pid in "${jobs_started[@]}"; do kill -9 "$pid" 2> /dev/null || true; done
  for ns in "${namespaces[@]}"; do
    for pid in $(ip netns pids "$ns" 2> /dev/null); do kill -9 "$pid" 2> /dev/null || true; done
  done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2> /dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  for i in 1 2 3; do ip link del "${P}e$i" 2> /dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# A command that fails outside fail() says which, so a CI log explains it.
# While the hosts are being built, such a failure means this machine cannot
# host them (a kernel without veth or bridges, a sandbox that forbids a
# mount, no route between namespaces): the test says so and skips. Once
# they are up and Open MPI has started a job across them, it fails.
phase=hosts
trap 'rc=$?; if [[ $phase == hosts ]]; then echo "SKIP: test_netns: the test hosts cannot be built here: line $LINENO: \"$BASH_COMMAND\" exited $rc"; exit 0; fi; echo "netns test FAIL: line $LINENO: \"$BASH_COMMAND\" exited $rc"' ERR
trap 'exit 1' INT TERM
ip netns add "${P}sw" 2> "$tmp/probe.err" ||
  skip "cannot create a network namespace here: $(cat "$tmp/probe.err")"
cd "$tmp"
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- the hosts --------------------------------------------------------------
ip -n "${P}sw" link add br0 type bridge
ip -n "${P}sw" link set br0 up
for i in 1 2 3; do
  h=h$i ns=$P$h
  ip netns add "$ns"
  ip link add "${P}e$i" type veth peer name "${P}p$i"
  ip link set "${P}e$i" netns "$ns"
  ip link set "${P}p$i" netns "${P}sw"
  ip -n "$ns" link set "${P}e$i" name eth0
  ip -n "${P}sw" link set "${P}p$i" name "$h" master br0 up # the switch's port for h$i
  ip -n "$ns" addr add "$net.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  # /proc/sys/net is the namespace's own (no sysctl: procps may be absent)
  ip netns exec "$ns" sh -c 'echo 4 > /proc/sys/net/ipv4/tcp_retries2'
  mkdir -p "/etc/netns/$ns" "$tmp/$h"
  printf '127.0.0.1 localhost\n%s.1 h1\n%s.2 h2\n%s.3 h3\n' "$net" "$net" "$net" \
    > "/etc/netns/$ns/hosts"
done
# Stands in for ssh: "agent HOST WORDS..." runs the words as a shell command
# line in HOST's namespace, under HOST's name; Open MPI's session files go
# to the test's directory, one per job (NETNS_JOB) for jobs that run at
# once: Open MPI makes its session directory (ompi.HOST.UID) with a check
# then a mkdir, and two jobs starting together on a host can race there.
cat > agent <<EOF
#!/bin/sh
host=\$1
shift
export TMPDIR=$tmp/\$host\${NETNS_JOB:+/\$NETNS_JOB}
mkdir -p "\$TMPDIR"
exec ip netns exec "$P\$host" unshare --uts -- sh -c 'hostname "\$0" && eval "exec \$1"' "\$host" "\$*"
EOF
chmod +x agent
# mpi HOSTS ARGS...: mpirun from h1 with one rank per host (NETNS_JOB set:
# session files of their own, see agent).
mpi() {
  local hostlist=$1 dir=$tmp/h1${NETNS_JOB:+/$NETNS_JOB}
  shift
  mkdir -p "$dir"
  TMPDIR=$dir ip netns exec "${P}h1" unshare --uts -- sh -c 'hostname h1 && exec "$@"' sh \
    mpirun --host "$hostlist" -np $(($(tr -cd , <<< "$hostlist" | wc -c) + 1)) --bind-to none \
    --mca plm_rsh_agent "$tmp/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24" \
    "$@"
}
# reachable I: h1 reaches h$I (a refused connection is an answer).
reachable() {
  local out
  out=$(ip netns exec "${P}h1" timeout 2 bash -c "exec 3<> /dev/tcp/$net.$1/9" 2>&1 || true)
  [[ $out == *refused* ]]
}
# up: host $1 reachable from h1 within 10 s (a link takes a moment to come up)
up() {
  local _
  for _ in $(seq 1 50); do reachable "$1" && return 0; sleep 0.2; done
  return 1
}
for i in 2 3; do up $i || skip "the test hosts cannot reach each other: h1 cannot reach h$i"; done
alive() { # the names of the processes left in host $1's namespace
  local pid
  for pid in $(ip netns pids "$P$1"); do cat "/proc/$pid/comm" 2> /dev/null || true; done | tr '\n' ' '
}

# Open MPI can start a job across the hosts (each rank runs under its
# host's name): the last part of building them.
mpi h1,h2,h3 hostname > smoke.log 2>&1 ||
  skip "Open MPI cannot start a job across the test hosts here: $(tail -n 3 smoke.log)"
[[ $(sort smoke.log | tr '\n' ' ') == "h1 h2 h3 " ]] ||
  skip "a job across the test hosts did not run one rank on each: $(tr '\n' ' ' < smoke.log)"
phase=test

# ---- data: the first 1000 training and 200 test images (each rank loads it)
mkdir data
python3 "$root/tests/cut-idx.py" /usr/share/datasets/fashion-mnist data 1000 200
cfg=(--data-dir "$tmp/data" --participants 3 --shard-size 100 --model d16-relu,d10
     --eval-size 200 --quiet)
figures() { cut -d, -f1,3- "$1"; } # every metrics column but the time
same_bits() { # what a b: b's metrics and final checkpoint are a's
  cmp -s <(figures "$2.csv") <(figures "$3.csv") ||
    fail "$1: metrics differ from one rank's: $(diff <(figures "$2.csv") <(figures "$3.csv"))"
  local d
  for d in /server/params /participants/params; do
    h5diff "$2.h5" "$3.h5" "$d" "$d" > /dev/null ||
      fail "$1: $d differs from one rank's: $(h5diff -r "$2.h5" "$3.h5" "$d" "$d" | tail -3)"
  done
}

# ---- a. the same bits across three hosts, through a checkpoint and resume --
for s in round-robin sync; do
  "$bin" train "${cfg[@]}" --schedule "$s" --epochs 4 --metrics "one-$s.csv" \
    --checkpoint "one-$s.h5" || fail "$s on one rank"
  mpi h1,h2,h3 "$bin" train "${cfg[@]}" --schedule "$s" --epochs 2 --metrics "$tmp/three-$s.csv" \
    --checkpoint "$tmp/three-$s.h5" > "three-$s.log" 2>&1 || fail "$s on 3 hosts: $(cat "three-$s.log")"
  mpi h1,h2,h3 "$bin" train "${cfg[@]}" --schedule "$s" --epochs 4 --metrics "$tmp/three-$s.csv" \
    --resume "$tmp/three-$s.h5" --checkpoint "$tmp/three-$s.h5" > "three-$s.log" 2>&1 ||
    fail "$s resumed on 3 hosts: $(cat "three-$s.log")"
  same_bits "$s on 3 hosts" "one-$s" "three-$s"
  echo "same bits: $s on 3 hosts (2 epochs, checkpoint, resume to 4) = one rank"
done

# ---- b. a cable pulled mid-run; a frozen rank 0 -------------------------------
R=5
patience=$((R * (3 + 2))) # the workers' patience: R x (participants + 2)
grace=5                    # TRANSPORT_ABORT_GRACE: a worker's MPI_Abort, bounded
cuts=(round-robin sync async)
declare -A job
for s in "${cuts[@]}" frozen; do
  hostlist=h1,h2,h3
  [[ $s == frozen ]] && hostlist=h1,h2
  sched=$s
  [[ $s == frozen ]] && sched=round-robin
  NETNS_JOB=$s mpi "$hostlist" --output-filename "$tmp/out-$s" "$bin" train "${cfg[@]}" --schedule "$sched" \
    --epochs 1000000 --checkpoint "$tmp/$s.h5" --checkpoint-every 1 --metrics "$tmp/$s.csv" \
    --rank-timeout $R > "$s.log" 2>&1 &
  job[$s]=$!
  jobs_started+=("$!")
done
# The trigger: every job has a checkpoint and has finished an epoch since.
start=$(now)
for s in "${cuts[@]}" frozen; do
  rows=
  while :; do
    if [[ -z $rows ]]; then # the checkpoint follows its epoch's row
      [[ -f $s.h5 ]] && rows=$(wc -l < "$s.csv")
    elif (($(wc -l < "$s.csv") > rows)); then
      break
    fi
    kill -0 "${job[$s]}" 2> /dev/null || fail "$s ended before the cut: $(cat "$s.log")"
    (($(since "$start" | cut -d. -f1) < 120)) || fail "$s: no checkpoint and epoch after 120 s"
    sleep 0.05
  done
done
for pid in $(ip netns pids "${P}h1"); do # the frozen job's rank 0
  if [[ $(cat "/proc/$pid/comm" 2> /dev/null) == dssgd ]] && grep -qa frozen.h5 "/proc/$pid/cmdline"; then
    frozen=$pid
  fi
done
[[ -n ${frozen:-} ]] || fail "no rank 0 of the frozen job on h1"
ip -n "${P}sw" link set h3 down
kill -STOP "$frozen"
t0=$(now)
declare -A took
while :; do
  for s in "${cuts[@]}" frozen; do
    if [[ -z ${took[$s]:-} ]] && ! kill -0 "${job[$s]}" 2> /dev/null; then took[$s]=$(since "$t0"); fi
  done
  left="$(alive h1)$(alive h2)$(alive h3)"
  [[ -z ${left// /} && ${#took[@]} -eq 4 ]] && break
  elapsed=$(since "$t0")
  (($(cut -d. -f1 <<< "$elapsed") < patience + grace + 30)) ||
    fail "$elapsed s after the cut: still alive on h1: $(alive h1); h2: $(alive h2); h3: $(alive h3)"
  sleep 0.2
done
gone=$(since "$t0")
epoch=()
for s in "${cuts[@]}" frozen; do
  rc=0
  wait "${job[$s]}" || rc=$?
  [[ $rc -ne 0 ]] || fail "$s: the job exited 0 after the fault"
done
for s in "${cuts[@]}"; do
  (($(cut -d. -f1 <<< "${took[$s]}") <= R + 30)) || fail "$s: the job took ${took[$s]} s to end after the cut"
  grep -q "rank 0: rank 2 has not answered for [0-9.]* s" "$s.log" ||
    fail "$s: rank 0 did not name rank 2: $(cat "$s.log")"
  worker=$(cat "out-$s"/*/rank.2/stderr 2> /dev/null || true)
  if grep -q "rank 2: no word from rank 0 for $patience s" <<< "$worker"; then
    how="gave up after its patience"
  else # it had an upload in flight when the cable went: TCP gave up first
    how="ended by Open MPI ($(sed -n '1s/.*\] //p' <<< "$worker"))"
  fi
  "$bin" inspect "$s.h5" > inspect.log || fail "$s: checkpoint unreadable after the cut: $(cat inspect.log)"
  epoch[${#epoch[@]}]=$(awk '$1 == "epoch" { print $2 }' inspect.log)
  echo "cable cut, $s: job ended ${took[$s]} s after (rank-timeout $R), naming rank 2; h3's rank $how"
done
(($(cut -d. -f1 <<< "${took[frozen]}") <= patience + grace + 30)) ||
  fail "frozen rank 0: the job took ${took[frozen]} s to end"
grep -q "rank 1: no word from rank 0 for $patience s" "frozen.log" ||
  fail "frozen rank 0: the worker did not give up naming rank 0: $(cat frozen.log)"
"$bin" inspect frozen.h5 > /dev/null || fail "frozen rank 0: checkpoint unreadable"
echo "frozen rank 0: its worker gave up after $patience s, job ended ${took[frozen]} s after the freeze"
echo "no process left on any host $gone s after the cut (patience $patience s)"
ip -n "${P}sw" link set h3 up
up 3 || fail "h3 unreachable after the cable went back"
i=0
for s in "${cuts[@]}"; do
  e=${epoch[$i]}
  i=$((i + 1))
  mpi h1,h2,h3 "$bin" train "${cfg[@]}" --schedule "$s" --resume "$tmp/$s.h5" \
    --checkpoint "$tmp/$s.h5" --epochs $((e + 2)) --rank-timeout $R > "resume-$s.log" 2>&1 ||
    fail "$s: resume from epoch $e on the healed network: $(cat "resume-$s.log")"
  echo "cable cut, $s: resumed from epoch $e on the healed network and finished"
done

# ---- c. a slow, lossy link ------------------------------------------------------
# Both directions of h3's cable: h3's end and the switch's port.
shape() { # tc qdisc arguments for both ends
  ip netns exec "${P}h3" tc qdisc add dev eth0 root "$@" 2> shape.err &&
    ip netns exec "${P}sw" tc qdisc add dev h3 root "$@" 2>> shape.err
}
unshape() {
  ip netns exec "${P}h3" tc qdisc del dev eth0 root 2> /dev/null || true
  ip netns exec "${P}sw" tc qdisc del dev h3 root 2> /dev/null || true
}
if shape netem delay 50ms loss 1%; then
  link="netem delay 50ms loss 1%"
else
  echo "SKIP: slow, lossy link: tc has no netem here ($(head -1 shape.err)): the kernel lacks sch_netem (CONFIG_NET_SCH_NETEM)"
  unshape
  shape tbf rate 2mbit burst 16kb latency 2s || fail "tc tbf: $(cat shape.err)"
  link="tbf 2 Mbit/s, without delay or loss"
fi
mpi h1,h2,h3 "$bin" train "${cfg[@]}" --epochs 3 --metrics "$tmp/slow.csv" \
  --checkpoint "$tmp/slow.h5" > slow.log 2>&1 || fail "slow link: $(cat slow.log)"
"$bin" train "${cfg[@]}" --epochs 3 --metrics one-slow.csv --checkpoint one-slow.h5 ||
  fail "one rank for the slow link"
same_bits "slow link ($link)" one-slow slow
mean() { awk -F, 'NR > 1 { s += $2; n++ } END { printf "%.3f", s / n }' "$1"; }
echo "slow link ($link): same bits as one rank; epoch $(mean slow.csv) s on average, $(mean three-round-robin.csv) s on the clean link"
echo "NETNS TEST PASSED"
