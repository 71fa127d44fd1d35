# shellcheck shell=bash
# Shared helpers of the dssgd job scripts (jobs/*.sbatch, jobs/sweep-local):
# where the project is, how to launch the MPI ranks, one log format.
# Sourced, never run. Expects the settings the sourcing script defines
# (LAUNCH, RANKS, DSSGD) to be set already.

# The checkout: PROJECT if set, else the directory above this file. (sbatch
# runs a copy of the job script from its spool directory, so the job scripts
# find this file through SLURM_SUBMIT_DIR: submit from the checkout.)
dssgd_project_dir() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  echo "${PROJECT:-$here}"
}

# Log lines name the job (under SLURM, $0 is a copy called slurm_script).
log() {
  local job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID}
  job=${job:-${SLURM_JOB_ID:-}}
  echo "[$(date +%H:%M:%S) ${job:+job $job }${SLURM_JOB_NAME:-$(basename "$0")}] $*" >&2
}
die() { log "error: $*"; exit 1; }

# Per-rank environment. One BLAS thread per rank, or the threads fight the ranks.
export OPENBLAS_NUM_THREADS=1
# More ranks on this node than cores (3 ranks on a 2-core test node): Open MPI
# only knows to yield in its waits when mpirun is told --oversubscribe; under
# SLURM it trusts the CPU count the node advertises and spins, which made
# srun runs 2.3x slower here. Ask for yielding whenever ranks outnumber cores.
tasks_here=${SLURM_TASKS_PER_NODE:-${RANKS:-3}}
tasks_here=${tasks_here%%[(,]*}
if [[ $tasks_here =~ ^[0-9]+$ ]] && (( tasks_here > $(nproc) )); then
  export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
fi
if [[ $(id -u) -eq 0 ]]; then
  # Open MPI refuses to run as root without both (harmless under srun).
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# Fills the array LAUNCHER with the command that starts the ranks.
#   inside a SLURM job:  LAUNCH=srun   -> srun --mpi=pmix   (ranks = --ntasks)
#                        LAUNCH=mpirun -> mpirun            (slots from SLURM)
#   outside SLURM:       mpirun --oversubscribe -np RANKS   (whatever LAUNCH says)
# shellcheck disable=SC2034  # LAUNCHER is read by the script that sources this
dssgd_launcher() {
  if [[ -z ${SLURM_JOB_ID:-} ]]; then
    LAUNCHER=(mpirun --oversubscribe -np "${RANKS:-3}")
    return
  fi
  case ${LAUNCH:-srun} in
    srun)   LAUNCHER=(srun --mpi=pmix) ;;
    mpirun) LAUNCHER=(mpirun) ;;
    *)      die "LAUNCH must be srun or mpirun, not '${LAUNCH}'" ;;
  esac
}

# Checks that the binary exists and is runnable; explains what to do if not.
dssgd_check_binary() {
  [[ -x $DSSGD ]] || die "no dssgd binary at '$DSSGD' (cwd $(pwd)): run 'make' in the checkout, submit from the checkout, or set DSSGD"
}

# Epoch stored in a checkpoint, or 0 when there is none.
dssgd_checkpoint_epoch() {
  [[ -f $1 ]] || { echo 0; return; }
  "$DSSGD" inspect "$1" | awk '$1 == "epoch" { print $2; found = 1 } END { if (!found) exit 1 }'
}
