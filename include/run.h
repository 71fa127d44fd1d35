/* run: the MPI driver of `dssgd train`. Rank 0 hosts the server; ranks
 * 1..P-1 host the participants (p lives on rank 1 + p mod (P-1)); with one
 * rank, everything runs in one process through the same protocol code. */
#ifndef DSSGD_RUN_H
#define DSSGD_RUN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "wire.h"

/* Test hook: on rank `tamper_rank` (> 0), every upload passes through
 * tamper() (if set) before it is sent; it may rewrite the message in place
 * (buffer capacity cap) and returns the new length; then `flood` extra
 * copies follow it. For hostile-participant tests. */
typedef struct {
    int tamper_rank;
    size_t (*tamper)(void *arg, uint32_t participant, uint32_t epoch, uint8_t *msg, size_t len,
                     size_t cap);
    void *tamper_arg;
    int flood;                /* extra copies of every upload tamper_rank sends */
    size_t piece_bytes;       /* largest piece of a message; 0 = RUN_PIECE_BYTES */
    int hang_rank;            /* > 0: that rank stops answering at its first training
                                 command (a hung node); 0 = none */
} run_hooks;

/* Messages longer than this travel in pieces (MPI counts are ints). */
#define RUN_PIECE_BYTES ((size_t)1 << 30)

typedef struct {
    size_t n;                 /* parameters */
    float *params;            /* (n) final global model (centralized: its model); rank 0 */
    int epochs;
    metrics_row *rows;        /* (epochs) rank 0 */
    double *part_epsilon;     /* (participants) cumulative epsilon, rank 0 */
    uint64_t rejected_for[WIRE_REASONS];
} run_result;

/* Runs the configured training. Collective over comm. result and hooks may
 * be NULL; result is filled on rank 0 only. Returns:
 *   - set-up (data, model, memory, the metrics file): -1 on every rank if
 *     any rank failed, with the message in err on the rank that failed and
 *     "another rank failed" on the others;
 *   - later, rank 0: 0, or -1 with a message in err (writing metrics,
 *     saving a checkpoint or resuming from one failed); it stops the other
 *     ranks either way;
 *   - later, ranks > 0: 0 once rank 0 stops them, also after rank 0 failed
 *     (its return value is the job's verdict), and at once in centralized
 *     mode, where rank 0 trains alone.
 * Errors of the protocol or of MPI mid-run (a malformed message, a rank
 * that stops answering, a failed MPI call) do not return: that rank prints
 * the reason and aborts the whole job (MPI_Abort). */
int run_train(const config_t *cfg, MPI_Comm comm, const run_hooks *hooks, run_result *result,
              char *err);

void run_result_free(run_result *r);

#endif
