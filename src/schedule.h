/* schedule: the server's side of an epoch under each schedule (rank 0).
 * Who trains when and on which state; the rules of an upload or a download
 * live in server.c and participant.c, the messages in transport.c.
 *
 * Every schedule is written once, on two primitives: "deliver a download"
 * and "collect an upload". With MPI they move messages to and from the
 * participant's rank; with one rank the participant is in this process,
 * trains when its download is delivered and its upload waits in up_buf
 * until it is collected. */
#ifndef DSSGD_SCHEDULE_H
#define DSSGD_SCHEDULE_H

#include "run_internal.h"

/* Before the first epoch every participant downloads the whole initial
 * model, so all start equal (standalone ones too). */
void schedule_initial(run_state *st);

/* round-robin and random: one participant at a time in `order`, each
 * training on the global model as its predecessors left it (the paper's
 * protocol). */
void schedule_sequential(run_state *st, int epoch, const int *order);

/* sync: every participant downloads the same state and trains in parallel;
 * uploads are applied in participant order. */
void schedule_sync(run_state *st, int epoch);

/* async: all participants at once, each downloading the global model as it
 * is when its rank asks; uploads are applied in arrival order. With one
 * rank, arrival order is participant order. */
void schedule_async(run_state *st, int epoch, const int *order);

/* standalone mode: every participant trains on its own data, nothing is
 * exchanged. */
void schedule_standalone(run_state *st);

#endif
