#!/usr/bin/env bash
# The job scripts under a real one-node SLURM cluster (tests/slurm/cluster.sh):
#   1. jobs/train.sbatch (srun --mpi=pmix): exit 0 and one metrics row per epoch;
#   2. jobs/sweep.sbatch as a 5-task array (mpirun): θ_u = 1, 0.1, 0.01 plus the
#      centralized and standalone baselines; every task's CSV; jobs/collect
#      makes summary.csv and the three PNGs; the collector names missing and
#      partial runs;
#   3. jobs/long.sbatch with --time=1 minute and --signal=B:USR1@20: the signal
#      stops the run after a checkpoint, the job requeues itself, the next start
#      resumes and finishes; every epoch is in the CSV exactly once.
# Usage: tests/slurm/test-slurm.sh BUILD_DIR     (as root; about 3 minutes)
# Installs the SLURM packages and gnuplot-nox if missing. The cluster lives in
# a temporary directory and is stopped at exit, whatever happens; on failure
# the directory is kept for its logs.
# Environment: SLURM_TEST_LONG_WORK  seconds of work in case 3     [50]
#              SLURM_TEST_KEEP=1     keep the temporary directory (logs, CSVs)
set -euo pipefail
build=$(realpath "${1:-build}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
[[ -x $build/dssgd ]] || { echo "test-slurm: no $build/dssgd (make first)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "test-slurm: must run as root (slurmd, apt-get)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dssgd-slurm-test.XXXXXX")
export DSSGD_SLURM_DIR=$tmp/cluster
cluster=tests/slurm/cluster.sh
failed=1
cleanup() {
  bash "$cluster" stop || true
  if ((failed)) || [[ ${SLURM_TEST_KEEP:-0} == 1 ]]; then echo "test-slurm: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

t_start=$SECONDS
step() { echo "== slurm: $* ($((SECONDS - t_start)) s)"; }
fail() {
  echo "test-slurm FAIL: $*" >&2
  for f in "$tmp"/*.log "$DSSGD_SLURM_DIR"/log/jobcomp.log; do
    [[ -f $f ]] && { echo "---- $f (last 15 lines)" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
# Fields of `scontrol show job -o`: field JOBID KEY -> value (JobState, ExitCode, Restarts...)
field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# A metrics CSV with exactly epochs 1..N, in order, 12 columns, accuracy filled.
check_csv() { # file epochs accuracy-column
  local f=$1 n=$2 col=$3
  [[ -f $f ]] || fail "$f missing"
  head -n 1 "$f" | grep -q '^epoch,seconds,global_acc' || fail "$f: bad header"
  awk -F, -v n="$n" -v c="$col" '
    NR > 1 { if (NF != 12 || $1 != NR - 1 || $c !~ /^0\.[0-9]+$/) { print FILENAME ": bad row " NR - 1 ": " $0; exit 1 } }
    END { if (NR - 1 != n) { print FILENAME ": " NR - 1 " epochs, want " n; exit 1 } }' "$f" ||
    fail "$f is not $n whole epochs"
}
is_png() { [[ -s $1 && $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; }

step "install (if missing) and start the cluster"
bash "$cluster" install gnuplot-nox
bash "$cluster" start
eval "$(bash "$cluster" env)"      # SLURM_CONF for sbatch, squeue, scontrol
jobcomp=$DSSGD_SLURM_DIR/log/jobcomp.log

# Small jobs: a tiny model and few images, so each run takes a few seconds.
export PROJECT=$repo DSSGD=$build/dssgd
export MODEL=d32-relu,d10 PARTICIPANTS=4 SHARD_SIZE=200 EVAL_SIZE=500 EPOCHS=2

# ---- 1. one run ---------------------------------------------------------------
step "1. jobs/train.sbatch (srun --mpi=pmix)"
rc=0
LAUNCH=srun OUT=$tmp/train timeout 180 \
  sbatch --wait --output="$tmp/train.log" jobs/train.sbatch || rc=$?
((rc == 0)) || fail "train job: sbatch --wait returned $rc"
check_csv "$tmp/train/metrics.csv" 2 3
grep -q '3 rank(s)' "$tmp/train.log" || fail "train job did not run on 3 ranks"
grep -q 'JobState=COMPLETED .*ExitCode=0:0' "$jobcomp" || fail "jobcomp has no COMPLETED job"
echo "ok: train job exited 0, metrics has epochs 1..2, 3 ranks"

# ---- 2. the sweep array ----------------------------------------------------------
step "2. jobs/sweep.sbatch as an array of 5 (mpirun)"
rc=0
LAUNCH=mpirun SWEEP=t RESULTS=$tmp/results THETAS="1 0.1 0.01" BASELINES="centralized standalone" \
  timeout 240 sbatch --wait --array=0-4 --output="$tmp/sweep-%a.log" jobs/sweep.sbatch || rc=$?
((rc == 0)) || fail "sweep array: sbatch --wait returned $rc"
sweep=$tmp/results/t
for r in theta-1 theta-0.1 theta-0.01 centralized; do check_csv "$sweep/runs/$r.csv" 2 3; done
check_csv "$sweep/runs/standalone.csv" 2 5        # no global model: participants' mean
grep -q '3 rank(s)' "$sweep/runs/theta-1.log" || fail "sweep task did not run on 3 ranks"
jobs/collect "$sweep" 2> "$tmp/collect.log" || fail "collect failed: $(cat "$tmp/collect.log")"
summary=$sweep/summary.csv
head -n 1 "$summary" | grep -q '^theta_u,final_acc,best_acc,bytes_up_total,epochs,seconds_total,epsilon' ||
  fail "summary.csv header: $(head -n 1 "$summary")"
got=$(tail -n +2 "$summary" | cut -d, -f1,5,9 | paste -sd ' ')
want="1,2,complete 0.1,2,complete 0.01,2,complete centralized,2,complete standalone,2,complete"
[[ $got == "$want" ]] || fail "summary rows (theta_u,epochs,status): got '$got', want '$want'"
# Uploads shrink with θ_u: bytes_up_total strictly decreasing over the θ rows.
awk -F, 'NR > 1 && NR <= 4 { if (NR > 2 && $4 + 0 >= prev) exit 1; prev = $4 + 0 }' "$summary" ||
  fail "bytes_up_total does not fall with θ_u"
for p in accuracy-vs-theta accuracy-per-epoch bytes-vs-theta; do
  is_png "$sweep/$p.png" || fail "$p.png missing or not a PNG"
done
echo "ok: 5 array tasks, 5 CSVs, summary.csv rows $got, 3 PNGs"

# The collector on a damaged copy: one run missing, one cut short mid-line.
cp -r "$sweep" "$tmp/damaged"
rm "$tmp/damaged/runs/theta-0.1.csv"
head -n 2 "$sweep/runs/theta-0.01.csv" > "$tmp/damaged/runs/theta-0.01.csv"
printf '2,0.0' >> "$tmp/damaged/runs/theta-0.01.csv"          # a torn last line
jobs/collect "$tmp/damaged" 2> "$tmp/collect-damaged.log" || fail "collect failed on a damaged sweep"
grep -q 'MISSING: theta-0.1' "$tmp/collect-damaged.log" || fail "collect did not name the missing run"
grep -q 'PARTIAL: theta-0.01 (1 of 2 epochs)' "$tmp/collect-damaged.log" || fail "collect did not name the partial run"
grep -q '^0.1,,,,,,,,missing$' "$tmp/damaged/summary.csv" || fail "summary has no 'missing' row"
is_png "$tmp/damaged/accuracy-vs-theta.png" || fail "no plot from a damaged sweep"
echo "ok: collect names the missing and the partial run and still plots"

# ---- 3. time limit -> USR1 -> stop -> requeue -> resume --------------------------
step "3. jobs/long.sbatch: calibrate"
# The run must outlast the warning, which comes 10-40 s after the start here:
# SLURM checks time limits every 30 s, so --signal=B:USR1@20 on a 1-minute job
# fires at the first check after 60-20-30 = 10 s. Size it to about
# SLURM_TEST_LONG_WORK seconds by timing 10 and 40 epochs on this machine now.
long_model=d64-relu,d10 long_participants=20 long_shard=1000 long_eval=1000
long_opts=(--model "$long_model" --participants "$long_participants"
           --shard-size "$long_shard" --eval-size "$long_eval")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
time_epochs() {
  local t0; t0=$(date +%s.%N)
  mpirun --oversubscribe -np 3 "$DSSGD" train "${long_opts[@]}" --epochs "$1" --quiet \
    --checkpoint "$tmp/cal.h5" --checkpoint-every 1 --metrics "$tmp/cal.csv" > /dev/null
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}
t10=$(time_epochs 10); t40=$(time_epochs 40)
long_epochs=$(awk -v w="${SLURM_TEST_LONG_WORK:-50}" -v a="$t10" -v b="$t40" \
  'BEGIN { e = (b > a) ? int(w * 30 / (b - a)) : 0; print (e < 60 ? 60 : e) }')
echo "10 epochs ${t10} s, 40 epochs ${t40} s -> $long_epochs epochs"

step "3. jobs/long.sbatch: submit ($long_epochs epochs, 1 minute limit)"
# sbatch --wait follows a requeued job to its end, but polls slowly and cannot
# act meanwhile, so this case polls scontrol itself.
run_dir=$tmp/long
job=$(LAUNCH=srun RUN_DIR=$run_dir EPOCHS=$long_epochs CHECKPOINT_EVERY=1 \
      MODEL=$long_model PARTICIPANTS=$long_participants SHARD_SIZE=$long_shard EVAL_SIZE=$long_eval \
      sbatch --parsable --time=0:01:00 --signal=B:USR1@20 --output="$tmp/long.log" jobs/long.sbatch)
echo "job $job"
lifted=0 state="" deadline=$((SECONDS + 300))
while ((SECONDS < deadline)); do
  state=$(field "$job" JobState)
  case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) break ;; esac
  # After the first stop that followed a checkpoint, lift the time limit, so
  # the resumed start runs to the end instead of being stopped again every
  # 10-40 s (that would work too, only longer).
  if ((!lifted)) && grep -q 'checkpoint at epoch [1-9]' "$run_dir/starts.log" 2>/dev/null; then
    scontrol update JobId="$job" TimeLimit=10 && lifted=1
    echo "stopped and requeued after a checkpoint ($(tail -n 1 "$run_dir/starts.log")); time limit lifted"
  fi
  sleep 1
done
[[ $state == COMPLETED ]] || fail "long job ended as '$state' (or still running after 300 s)"
[[ $(field "$job" ExitCode) == 0:0 ]] || fail "long job exit code $(field "$job" ExitCode)"
restarts=$(field "$job" Restarts)
((restarts >= 1)) || fail "long job was never requeued (Restarts=$restarts): the run finished before the signal; raise SLURM_TEST_LONG_WORK"
grep -q 'USR1: the time limit is near' "$tmp/long.log" || fail "job log shows no USR1"
grep -q 'requeueing job' "$tmp/long.log" || fail "job log shows no requeue"
grep -q "resuming from epoch [1-9]" "$tmp/long.log" || fail "job log shows no resume from a checkpoint"
check_csv "$run_dir/metrics.csv" "$long_epochs" 3
[[ $("$DSSGD" inspect "$run_dir/checkpoint.h5" | awk '$1 == "epoch" { print $2 }') == "$long_epochs" ]] ||
  fail "the final checkpoint is not at epoch $long_epochs"
grep -q "JobId=$job .*JobState=COMPLETED" "$jobcomp" || fail "jobcomp has no COMPLETED line for job $job"
echo "ok: job $job was requeued $restarts time(s), resumed ($(grep -o 'resuming from epoch [0-9]*' "$tmp/long.log" | tr '\n' ';')) and completed; epochs 1..$long_epochs each once"
sed 's/^/    starts.log: /' "$run_dir/starts.log"

failed=0
step "all SLURM tests passed"
