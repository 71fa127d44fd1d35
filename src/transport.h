/* transport: how the ranks of `dssgd train` talk over MPI. Internal to the
 * run module (run.c, schedule.c); no protocol rules live here.
 *
 * - Two duplicated communicators: `comm` for commands, downloads, reports
 *   and checkpoint state; `up_comm` for uploads only, each under the tag of
 *   the turn it answers (transport_turn_tag), so a stale or flooded copy can
 *   never pass as an answer.
 * - Messages of any size travel in pieces (MPI counts are ints).
 * - The server never waits on a worker forever (--rank-timeout) and, while
 *   it waits on a rank, refuses that rank's unasked uploads, so a flooding
 *   rank cannot deadlock it.
 * - A worker never waits on the server forever either: past its patience
 *   (longer than any silence of the server in a healthy run) it gives up
 *   and exits, so a rank cut off from rank 0 does not live on as an orphan.
 * - Waits yield the core: Open MPI's own blocking calls spin, which starves
 *   co-located ranks on a small machine. */
#ifndef DSSGD_TRANSPORT_H
#define DSSGD_TRANSPORT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

/* Tags on `comm`. */
enum { TAG_CMD = 1, TAG_DOWNLOAD, TAG_REQUEST, TAG_REPORT, TAG_STATE, TAG_AGREE, TAG_SHARE };
/* Commands from the server to a worker rank: {op, epoch, participant}.
 * CMD_STEP_AGAIN: a turn for participant p from the download the rank took
 * with its last CMD_STEP of the same turn (sync: one copy a rank). */
enum { CMD_STEP = 1, CMD_ASYNC, CMD_LOCAL, CMD_EVAL, CMD_GATHER, CMD_SCATTER, CMD_STOP,
       CMD_STEP_AGAIN };

typedef struct {
    MPI_Comm comm;            /* commands, downloads, reports, state */
    MPI_Comm up_comm;         /* uploads only, tagged by turn */
    int rank, size;
    int tag_ub;               /* largest tag MPI allows */
    size_t piece;             /* largest piece of a message (bytes) */
    int participants;         /* N, for turn tags */
    double rank_timeout;      /* seconds per participant a reply covers; 0 = forever */
    double patience;          /* ranks > 0: seconds without a word from rank 0 before
                                 giving up (transport_give_up); 0 = forever. Set to
                                 transport_reply_limit(participants + 2) by transport_open;
                                 the run widens it where its schedule needs (run.c) */
    size_t upload_cap;        /* the largest upload the protocol allows (bytes) */
    uint8_t *discard;         /* rank 0: refused uploads are read here; allocated at the
                                 first refusal (one piece of at most upload_cap bytes) */
    server_t *server;         /* rank 0: counts the refusals; NULL elsewhere */
    uint64_t refusals_logged; /* rank 0: refusals printed so far (capped) */
} transport_t;

/* Duplicates comm into t's two communicators (MPI errors returned, not
 * fatal) and reads rank, size and the tag bound. Collective. piece: the
 * largest piece of a message (> 0). The caller sets upload_cap and server
 * once it knows them. */
void transport_open(transport_t *t, MPI_Comm comm, size_t piece, int participants,
                    double rank_timeout);
void transport_close(transport_t *t);

/* Ends the whole job: prints "dssgd: rank R: <message>" and aborts every
 * rank (MPI_Abort; this process exits within TRANSPORT_ABORT_GRACE seconds
 * whatever MPI_Abort does). For faults no rank can recover from (a peer
 * that broke the protocol, out of memory mid-epoch, an MPI error). */
_Noreturn void transport_fatal(const transport_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* transport_fatal naming `what` unless rc is MPI_SUCCESS. */
void transport_check(const transport_t *t, int rc, const char *what);

/* Any rank's failure becomes every rank's: returns -1 on all ranks if rc
 * is nonzero on one (the others get a message saying so in err).
 * Collective, and bounded: rank 0 collects every rank's rc by one deadline
 * t->patience away (past it, transport_stop_unanswered names the first
 * silent rank), then sends the verdict; a worker waits for it at most
 * 2 * t->patience (rank 0's own set-up may be the slower one), then gives
 * up. */
int transport_agree(const transport_t *t, int rc, char *err);

/* Every rank's len bytes at `mine` into `all` (size * len bytes, rank r's
 * at r * len) on every rank. Collective, and bounded as transport_agree is:
 * rank 0 takes each rank's part within t->patience, then sends the whole
 * table to each; a rank silent past its limit ends the job, named. For the
 * small tables of set-up (what each rank read). */
void transport_allgather(transport_t *t, const void *mine, size_t len, void *all,
                         const char *what);

/* Seconds on a monotonic clock. */
double transport_now(void);

/* The back-off of every waiting loop: a few quick rounds, then 20 us of
 * sleep a round. transport_patience_wait returns 1 once `limit` seconds
 * (0 = never) have passed since transport_patience_start. */
typedef struct { unsigned rounds; double start, limit; } transport_patience;
transport_patience transport_patience_start(double limit);
int transport_patience_wait(transport_patience *p);

/* Ends the job because worker `rank` has not answered within `limit`
 * seconds; `awaiting` says what the server waited for. */
_Noreturn void transport_stop_unanswered(const transport_t *t, int rank, double limit,
                                         const char *awaiting);

/* A worker that has heard nothing from rank 0 for `limit` seconds (waiting
 * for `awaiting`): prints so, naming rank 0, and ends this process through
 * MPI_Abort, which ends the job where mpirun is reachable. Like every abort
 * here (transport_fatal too) it is bounded: should MPI_Abort not return
 * (its host's daemon not answering), the process exits with status 1
 * TRANSPORT_ABORT_GRACE seconds later. */
_Noreturn void transport_give_up(const transport_t *t, double limit, const char *awaiting);
#define TRANSPORT_ABORT_GRACE 5

/* Seconds the server waits for a reply that covers `units` participants. */
double transport_reply_limit(const transport_t *t, int units);

/* The tag of participant p's upload in `epoch`: unique within an epoch and
 * distinct from the previous epochs' for 2^31 turns under Open MPI (MPI
 * promises 32767). */
int transport_turn_tag(const transport_t *t, int epoch, int p);

/* Waits for a message from source/tag on comm (probe only), at most `limit`
 * seconds (0 = forever); `what` names it in the timeout message, which on
 * rank 0 stops the job naming the source (transport_stop_unanswered) and
 * on a worker gives up (transport_give_up). With `drain` (the server),
 * refuses the source's uploads under other tags meanwhile. */
void transport_wait(transport_t *t, MPI_Comm comm, int source, int tag, double limit, int drain,
                    const char *what, MPI_Status *status);

/* ---- messages of any size ----------------------------------------------
 * A message travels as pieces of at most t->piece bytes under one tag,
 * ended by a piece shorter than t->piece (an empty one if the length is a
 * multiple). MPI keeps the order of messages between two ranks on one tag
 * and communicator, so pieces arrive in sequence. Floats travel as bytes:
 * the ranks of one job share a format. */

/* Requests a nonblocking send of len bytes needs. */
int transport_pieces(const transport_t *t, size_t len);

/* A worker's send of a whole message to the server (rank dest), piece by
 * piece, each waited for at most t->patience (a piece not taken by then:
 * transport_give_up). MPI_Send would block forever on a large message to
 * an unreachable rank. */
void transport_send(const transport_t *t, MPI_Comm comm, int dest, int tag, const void *buf,
                    size_t len, const char *what);

/* The same for a small typed message (count items of type, one piece):
 * requests, acknowledgements, reports. */
void transport_send_small(const transport_t *t, MPI_Comm comm, int dest, int tag,
                          const void *buf, int count, MPI_Datatype type, const char *what);

/* Starts a nonblocking send: transport_pieces(len) requests into req. */
void transport_isend(const transport_t *t, MPI_Comm comm, int dest, int tag, const void *buf,
                     size_t len, MPI_Request *req, const char *what);

/* Receives one whole message from source/tag into buf (capacity cap), or
 * discards it when buf is NULL (at most t->upload_cap bytes). Waits as
 * transport_wait, for each piece's start and again for its transfer (a
 * large piece can stall mid-way when the link goes down).
 * Returns its length, or SIZE_MAX when it would pass cap (the rest is left
 * unread: callers stop the job). */
size_t transport_recv(transport_t *t, MPI_Comm comm, int source, int tag, uint8_t *buf,
                      size_t cap, double limit, int drain, const char *what);

/* ---- the server's side ------------------------------------------------- */

/* Prints a refusal, the first 20 of a run only: a flooding rank must not
 * flood the log as well. participant < 0: not attributable to one. */
void transport_log_refusal(transport_t *t, int source, int participant, const char *why);

/* Receives, counts and logs one upload under a tag no turn is waiting for
 * (a stale or flooded copy). One larger than any upload the protocol allows
 * cannot be read, so it ends the job. */
void transport_refuse_unsolicited(transport_t *t, int source, int tag);

/* Refuses the uploads from `source` (or MPI_ANY_SOURCE) already waiting,
 * up to the first under `answer_tag` (-1: none), the answer to a download
 * being sent. */
void transport_drain(transport_t *t, int source, int answer_tag);

/* Completes the sends in req[0..count) to worker dest, refusing the
 * uploads dest sends unasked meanwhile (a flooding rank blocked in its own
 * large sends would otherwise never take ours). answer_tag: the tag of the
 * upload these sends may already have provoked, or -1. */
void transport_complete(transport_t *t, int dest, MPI_Request *req, int count, int answer_tag,
                        const char *what);

/* Sends len bytes to worker dest and waits until they are taken. */
void transport_send_to_worker(transport_t *t, int dest, int tag, const void *buf, size_t len,
                              int answer_tag, const char *what);

/* Sends worker dest the command {op, epoch, participant}. */
void transport_send_cmd(transport_t *t, int dest, int op, int epoch, int participant);

#endif
