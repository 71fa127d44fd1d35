/* dssgd: command-line entry point. `dssgd train [options]` under mpirun;
 * turns library errors into a message and an exit status. */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "blas_env.h"
#include "checkpoint.h"
#include "config.h"
#include "datatool.h"
#include "err.h"
#include "run.h"

#define DSSGD_VERSION "0.1.0"

static void usage_short(FILE *out)
{
    fprintf(out, "usage: dssgd train [options]   (dssgd train --help for all options)\n"
                 "       dssgd inspect FILE      (describe a checkpoint)\n"
                 "       dssgd data convert|split [options]   (data files: dssgd data --help)\n"
                 "       dssgd --version\n");
}

/* One warning line on stderr per option that the configuration ignores. */
static void warn_ignored(const config_t *cfg)
{
    char buf[4096];
    if (config_ignored(cfg, buf, sizeof buf) == 0)
        return;
    for (char *line = buf, *nl; *line && (nl = strchr(line, '\n')); line = nl + 1)
        fprintf(stderr, "dssgd: warning: %.*s\n", (int)(nl - line), line);
}

/* One warning line when OpenBLAS runs generic kernels on a CPU that has
 * better ones (blas_env.h): the user can fix it; dssgd cannot, since the
 * library chose before main. Silent when OPENBLAS_CORETYPE is set: the
 * kernels are then the user's choice (Prescott to keep earlier bits). */
static void warn_slow_blas(void)
{
    const char *chosen = getenv("OPENBLAS_CORETYPE");
    if (chosen && *chosen)
        return;
    char advice[32];
    const char *core = openblas_get_corename();
    if (blas_env_falls_short(core, blas_env_this_cpu(), advice, sizeof advice))
        fprintf(stderr, "dssgd: warning: OpenBLAS runs its %s kernels on a CPU with AVX2 and "
                "FMA (it does not know this CPU's model), so training runs about 2-3x slower than "
                "it could: set OPENBLAS_CORETYPE=%s in every rank's environment (mpirun -x "
                "OPENBLAS_CORETYPE=%s)\n", core, advice, advice);
}

/* SIGINT/SIGTERM (Ctrl-C, scancel, mpirun passing one on): remove the
 * checkpoint being written, then die of the signal as before. The last
 * whole checkpoint is untouched either way. */
/* TEST ONLY: DSSGD_TEST_FLOOD=RANK:COPIES (that rank sends COPIES extra
 * copies of every upload) and DSSGD_TEST_HANG=RANK (that rank stops
 * answering at its first training command), for tests/test_failures.sh:
 * a flooding rank must not keep a hung one from being noticed. A value that
 * does not parse is refused, never ignored (docs/DESIGN.md, Failure
 * handling). Returns 0, or -1 with err. */
static int test_hooks_from_env(run_hooks *h, int *armed, char *err)
{
    const char *flood = getenv("DSSGD_TEST_FLOOD"), *hang = getenv("DSSGD_TEST_HANG");
    *armed = 0;
    if (flood) {
        int rank, copies, end = 0;
        if (sscanf(flood, "%d:%d%n", &rank, &copies, &end) != 2 || flood[end] || rank < 1 ||
            copies < 1)
            return err_set(err, "DSSGD_TEST_FLOOD=\"%.40s\" is not RANK:COPIES with RANK >= 1 "
                           "and COPIES >= 1 (a test-only hook: unset it)", flood);
        h->tamper_rank = rank;
        h->flood = copies;
        *armed = 1;
    }
    if (hang) {
        int rank, end = 0;
        if (sscanf(hang, "%d%n", &rank, &end) != 1 || hang[end] || rank < 1)
            return err_set(err, "DSSGD_TEST_HANG=\"%.40s\" is not a RANK >= 1 (a test-only "
                           "hook: unset it)", hang);
        h->hang_rank = rank;
        *armed = 1;
    }
    return 0;
}

static void on_stop_signal(int sig)
{
    ckpt_unlink_partial();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    int stops[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        struct sigaction old;
        /* A signal ignored at start stays ignored (a background job's
         * SIGINT, nohup): the caller asked for that. */
        if (sigaction(stops[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(stops[i], &sa, NULL);
    }
}

int main(int argc, char **argv)
{
    /* `dssgd data` is one process's work and needs no MPI: it starts in a
     * blink and runs where MPI cannot start (a login node). */
    if (argc >= 2 && strcmp(argv[1], "data") == 0)
        return datatool_main(argc - 1, argv + 1);
    MPI_Init(&argc, &argv);
    catch_stop_signals();
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* One BLAS thread per rank unless the user says otherwise: ranks are
     * the parallelism, and threads would fight them for cores. */
    if (!getenv("OPENBLAS_NUM_THREADS"))
        openblas_set_num_threads(1);

    int status = 0;
    char err[ERR_LEN] = "";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (rank == 0) {
            if (argc < 2)
                usage_short(stderr);
            else
                config_usage(stdout);
        }
        status = argc < 2 ? 2 : 0;
    } else if (strcmp(argv[1], "--version") == 0) {
        if (rank == 0)
            printf("dssgd %s\n", DSSGD_VERSION);
    } else if (strcmp(argv[1], "inspect") == 0) {
        if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            if (rank == 0)
                printf("usage: dssgd inspect FILE\n"
                       "Prints what a checkpoint written by `dssgd train --checkpoint FILE`\n"
                       "holds: format, version, epoch, seed, parameters, participants,\n"
                       "residuals, the model and the configuration.\n"
                       "(A file named --help: dssgd inspect ./--help)\n");
        } else if (argc != 3) {
            if (rank == 0)
                fprintf(stderr, "usage: dssgd inspect FILE\n");
            status = 2;
        } else if (rank == 0 && ckpt_inspect(argv[2], stdout, err)) {
            fprintf(stderr, "dssgd: %s\n", err);
            status = 1;
        }
    } else if (strcmp(argv[1], "train") == 0) {
        config_t cfg;
        config_defaults(&cfg);
        int rc = config_parse(&cfg, argc - 1, argv + 1, rank == 0 ? stdout : NULL, err);
        if (rc < 0) {
            if (rank == 0)
                fprintf(stderr, "dssgd: %s\n", err);
            status = 2;
        } else if (rc == 0) {
            if (rank == 0) {
                warn_ignored(&cfg);
                warn_slow_blas();
            }
            run_hooks hooks = {0};
            int armed = 0;
            if (test_hooks_from_env(&hooks, &armed, err)) {
                if (rank == 0)
                    fprintf(stderr, "dssgd: %s\n", err);
                status = 2;
            } else {
                if (armed && rank == 0)
                    fprintf(stderr, "dssgd: test hooks armed: flood rank %d x %d, hang rank %d\n",
                            hooks.flood ? hooks.tamper_rank : 0, hooks.flood, hooks.hang_rank);
                if (run_train(&cfg, MPI_COMM_WORLD, armed ? &hooks : NULL, NULL, err)) {
                    fprintf(stderr, "dssgd: rank %d: %s\n", rank, err);
                    status = 1;
                }
            }
        }
    } else {
        if (rank == 0) {
            fprintf(stderr, "dssgd: unknown command '%s'\n", argv[1]);
            usage_short(stderr);
        }
        status = 2;
    }
    MPI_Finalize();
    return status;
}
