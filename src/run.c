/* run: roles, schedules, baselines and metrics over MPI. The protocol rules
 * live in server.c and participant.c; this file only decides who does what
 * when, and moves their messages. */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "dataset.h"
#include "err.h"
#include "model.h"
#include "participant.h"
#include "rng.h"
#include "select.h"
#include "server.h"
#include "sgd.h"

/* Tags on `comm`. Uploads travel on their own communicator, `up_comm`, each
 * under the tag of the turn it answers (turn_tag). */
enum { TAG_CMD = 1, TAG_DOWNLOAD, TAG_REQUEST, TAG_REPORT, TAG_STATE };
enum { CMD_STEP = 1, CMD_ASYNC, CMD_LOCAL, CMD_EVAL, CMD_GATHER, CMD_SCATTER, CMD_STOP };
#define EVAL_BATCH 500

typedef struct {
    const config_t *cfg;
    const run_hooks *hooks;
    MPI_Comm comm;
    MPI_Comm up_comm;             /* uploads only, tagged by turn */
    int rank, size;
    int tag_ub;                   /* largest tag MPI allows */
    size_t piece;                 /* largest piece of a message (bytes), see send_bytes */
    dataset_t train, test;
    model_t model;
    size_t n, k_up, k_down;
    dataset_shards shards;
    int local_count;              /* participants hosted on this rank */
    participant_t **local;        /* (local_count) by slot: p = rank-1 + slot*(size-1) */
    participant_ctx ctx;
    model_ws *eval_ws;
    uint8_t *down_buf;            /* (wire_size(n)) */
    uint8_t *up_buf;              /* (wire_size(n) + slack): tamper hooks may grow it */
    size_t down_cap, up_cap;
    server_t *server;             /* rank 0 */
    rng_t schedule_rng;           /* rank 0: order of the random schedule */
    double *part_acc;             /* (participants) rank 0 */
    double *part_eps;             /* (participants) cumulative epsilon, rank 0 */
    uint64_t bytes_up, bytes_down;/* this epoch */
    uint64_t refusals_logged;     /* rank 0: refusals printed so far (capped) */
} run_state;

/* ---- small helpers ----------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void mpi_check(int rc, const char *what, const run_state *st)
{
    if (rc == MPI_SUCCESS)
        return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "dssgd: rank %d: %s failed: %s\n", st->rank, what, msg);
    MPI_Abort(st->comm, 1);
}

static void fatal(const run_state *st, const char *msg)
{
    fprintf(stderr, "dssgd: rank %d: %s\n", st->rank, msg);
    MPI_Abort(st->comm, 1);
}

static int owner_of(const run_state *st, int p) { return st->size == 1 ? 0 : 1 + p % (st->size - 1); }
static int slot_of(const run_state *st, int p) { return st->size == 1 ? p : p / (st->size - 1); }

/* Participants hosted by worker rank r (> 0). */
static int hosted_by(const run_state *st, int r)
{
    int N = st->cfg->participants;
    return r - 1 < N ? (N - 1 - (r - 1)) / (st->size - 1) + 1 : 0;
}

static void drain_unsolicited(run_state *st, int source, int answer_tag);

/* The back-off of every waiting loop: a few quick rounds, then 20 us of
 * sleep a round. patience_wait returns 1 once `limit` seconds (0 = never)
 * have passed since patience_start. */
typedef struct { unsigned rounds; double start, limit; } patience;

static patience patience_start(double limit)
{
    return (patience){0, limit > 0 ? now_seconds() : 0, limit};
}

static int patience_wait(patience *p)
{
    if (++p->rounds <= 64)
        return 0;
    struct timespec pause = {0, 20000};
    nanosleep(&pause, NULL);
    return p->limit > 0 && now_seconds() - p->start > p->limit;
}

/* Ends the job when a worker rank has not answered within --rank-timeout. */
static void stop_unanswered(const run_state *st, int rank, double limit, const char *awaiting)
{
    char msg[512];
    snprintf(msg, sizeof msg, "rank %d has not answered for %g s (waiting for %s): stopping the "
             "job. If its work is that slow, raise --rank-timeout; --resume continues from the "
             "last checkpoint", rank, limit, awaiting);
    fatal(st, msg);
}

/* Blocking probe that yields the core while it waits: Open MPI's own
 * blocking calls spin, which starves co-located ranks on a small machine.
 * The server waits for a worker at most `limit` seconds (0 = forever): a rank
 * that hung, or whose node vanished without MPI noticing, must not hold
 * every other party's job hostage. `what` names the awaited reply. With
 * `drain`, the server meanwhile refuses the source's uploads under other
 * tags: a flooding rank blocked in its own large sends would otherwise never
 * send the awaited reply, each side waiting on the other. */
static void wait_message(run_state *st, MPI_Comm comm, int source, int tag, double limit,
                         int drain, const char *what, MPI_Status *status)
{
    patience wait = patience_start(limit);
    for (;;) {
        int flag = 0;
        mpi_check(MPI_Iprobe(source, tag, comm, &flag, status), "MPI_Iprobe", st);
        if (flag)
            return;
        if (drain)
            drain_unsolicited(st, source, comm == st->up_comm ? tag : -1);
        if (patience_wait(&wait))
            stop_unanswered(st, source, limit, what);
    }
}

/* Seconds the server waits for a reply that covers `units` participants. */
static double reply_limit(const run_state *st, int units)
{
    return st->cfg->rank_timeout * (units > 1 ? units : 1);
}

/* The tag of participant p's upload in `epoch`: unique within an epoch and
 * distinct from the previous epochs' for 2^31 turns under Open MPI (MPI
 * promises 32767), so a stale or flooded copy is never taken as an answer. */
static int turn_tag(const run_state *st, int epoch, int p)
{
    uint64_t turn = (uint64_t)epoch * (uint64_t)st->cfg->participants + (uint64_t)p;
    return (int)(turn % (uint64_t)st->tag_ub);
}

/* ---- messages of any size ----------------------------------------------
 * An MPI count is an int, so a message travels as pieces of at most
 * st->piece bytes under one tag, ended by a piece shorter than st->piece
 * (an empty one if the length is a multiple). MPI keeps the order of
 * messages between two ranks on one tag and communicator, so pieces arrive
 * in sequence. Floats travel as bytes: the ranks of one job share a format. */

static int pieces_of(const run_state *st, size_t len) { return (int)(len / st->piece) + 1; }

static void send_bytes(const run_state *st, MPI_Comm comm, int dest, int tag, const void *buf,
                       size_t len, const char *what)
{
    const uint8_t *at = buf;
    for (int i = pieces_of(st, len); i > 0; i--) {
        size_t piece = len < st->piece ? len : st->piece;
        mpi_check(MPI_Send(at, (int)piece, MPI_BYTE, dest, tag, comm), what, st);
        at += piece;
        len -= piece;
    }
}

/* Nonblocking send_bytes: starts pieces_of(len) requests in req. */
static void isend_bytes(const run_state *st, MPI_Comm comm, int dest, int tag, const void *buf,
                        size_t len, MPI_Request *req, const char *what)
{
    const uint8_t *at = buf;
    for (int i = 0, count = pieces_of(st, len); i < count; i++) {
        size_t piece = len < st->piece ? len : st->piece;
        mpi_check(MPI_Isend(at, (int)piece, MPI_BYTE, dest, tag, comm, &req[i]), what, st);
        at += piece;
        len -= piece;
    }
}

/* Receives one whole message from source/tag into buf (capacity cap), or
 * just discards it when buf is NULL. Returns its length, or SIZE_MAX when it
 * would pass cap (the rest of the message is left unread: callers stop). */
static size_t recv_bytes(run_state *st, MPI_Comm comm, int source, int tag, uint8_t *buf,
                         size_t cap, double limit, int drain, const char *what)
{
    size_t len = 0;
    for (;;) {
        MPI_Status status;
        int count = 0;
        wait_message(st, comm, source, tag, limit, drain, what, &status);
        MPI_Get_count(&status, MPI_BYTE, &count);
        size_t piece = (size_t)count;
        if (piece > st->piece || (buf && piece > cap - len))
            return SIZE_MAX;
        uint8_t *into = buf ? buf + len : st->up_buf; /* up_buf: scratch for discards */
        if (!buf && piece > st->up_cap)
            return SIZE_MAX;
        mpi_check(MPI_Recv(into, count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, comm,
                           MPI_STATUS_IGNORE), what, st);
        len += piece;
        if (piece < st->piece)
            return len;
        source = status.MPI_SOURCE; /* the rest comes from the same rank and tag */
        tag = status.MPI_TAG;
    }
}


/* Any rank's failure becomes every rank's: returns -1 on all if one failed. */
static int agree(run_state *st, int rc, char *err)
{
    int mine = rc != 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, st->comm);
    if (any && !mine)
        err_set(err, "another rank failed during set-up (see its message)");
    return any ? -1 : 0;
}

/* ---- set-up ------------------------------------------------------------ */

static int setup(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    const char *dir = c->data_dir[0] ? c->data_dir : dataset_default_dir(c->dataset);
    if (dataset_load(dir, 1, &st->train, err) || dataset_load(dir, 0, &st->test, err))
        return -1;
    if (model_build(&st->model, c->model, st->train.rows, st->train.cols, DATASET_NUM_CLASSES,
                    err))
        return -1;
    st->n = st->model.num_params;
    if (st->n >= UINT32_MAX)
        return err_set(err, "model of %zu parameters: the wire format counts parameters in "
                       "32 bits", st->n);
    st->k_up = select_count(c->theta_u, st->n);
    st->k_down = c->download == DOWNLOAD_ALL ? st->n : select_count(c->theta_d, st->n);

    rng_t part_rng;
    rng_init(&part_rng, c->seed, RNG_STREAM_PARTITION);
    if (dataset_partition_make(&st->train, c->partition, c->participants, c->shard_size,
                               c->alpha, &part_rng, &st->shards, err))
        return -1;

    st->eval_ws = model_ws_create(&st->model, EVAL_BATCH);
    if (!st->eval_ws)
        return err_set(err, "out of memory for the evaluation workspace");
    if (c->mode == MODE_CENTRALIZED)
        return 0;

    /* This rank's participants and their shared scratch. */
    int hosts = st->size == 1 || st->rank > 0;
    if (hosts) {
        int stride = st->size == 1 ? 1 : st->size - 1;
        int first = st->size == 1 ? 0 : st->rank - 1;
        st->local_count = first < c->participants ? (c->participants - 1 - first) / stride + 1 : 0;
        st->local = calloc((size_t)(st->local_count ? st->local_count : 1), sizeof *st->local);
        if (!st->local)
            return err_set(err, "out of memory");
        for (int s = 0; s < st->local_count; s++) {
            int p = first + s * stride;
            st->local[s] = participant_create((uint32_t)p, st->n, st->shards.indices[p],
                                              st->shards.sizes[p], c->seed, c->residual);
            if (!st->local[s])
                return err_set(err, "out of memory for participant %d (%zu parameters)", p,
                               st->n);
        }
        st->ctx.model = &st->model;
        st->ctx.train = &st->train;
        st->ctx.batch = c->batch;
        st->ctx.lr = (float)c->lr;
        st->ctx.k_up = st->k_up;
        st->ctx.select = c->select;
        st->ctx.tau = (float)c->tau;
        st->ctx.gamma = (float)c->gamma;
        st->ctx.dp_epsilon = c->dp_epsilon;
        st->ctx.dp_max_epsilon = c->dp_max_epsilon;
        st->ctx.ws = model_ws_create(&st->model, c->batch);
        if (!st->ctx.ws || participant_ctx_init(&st->ctx, st->n))
            return err_set(err, "out of memory for the training workspace");
    }
    st->down_cap = wire_size(st->n);
    st->up_cap = wire_size(st->n) + 64;
    st->down_buf = malloc(st->down_cap);
    st->up_buf = malloc(st->up_cap);
    if (!st->down_buf || !st->up_buf)
        return err_set(err, "out of memory for message buffers");
    if (st->rank == 0) {
        st->part_acc = calloc((size_t)c->participants, sizeof *st->part_acc);
        st->part_eps = calloc((size_t)c->participants, sizeof *st->part_eps);
        if (!st->part_acc || !st->part_eps)
            return err_set(err, "out of memory");
    }
    return 0;
}

static void teardown(run_state *st)
{
    for (int s = 0; s < st->local_count; s++)
        participant_free(st->local[s]);
    free(st->local);
    participant_ctx_free(&st->ctx);
    model_ws_free(st->ctx.ws);
    model_ws_free(st->eval_ws);
    server_free(st->server);
    free(st->down_buf);
    free(st->up_buf);
    free(st->part_acc);
    free(st->part_eps);
    dataset_shards_free(&st->shards);
    dataset_free(&st->train);
    dataset_free(&st->test);
}

/* ---- participant side (any rank hosting participants) ------------------ */

/* Applies a download (if any), trains, and packs the upload into up_buf. */
static size_t participant_step(run_state *st, participant_t *p, const uint8_t *down,
                               size_t down_len, int epoch)
{
    if (down) {
        wire_reason r = participant_download(p, &st->ctx, down, down_len, (uint32_t)epoch);
        if (r != WIRE_OK) {
            char msg[128];
            snprintf(msg, sizeof msg, "participant %u: malformed download from the server: %s",
                     participant_id(p), wire_reason_name(r));
            fatal(st, msg);
        }
    }
    sgd_stats stats;
    size_t len = participant_epoch(p, &st->ctx, (uint32_t)epoch, st->up_buf, st->up_cap, &stats);
    const run_hooks *h = st->hooks;
    if (h && h->tamper && st->rank > 0 && st->rank == h->tamper_rank)
        len = h->tamper(h->tamper_arg, participant_id(p), (uint32_t)epoch, st->up_buf, len,
                        st->up_cap);
    return len;
}

/* report[2s] = accuracy of local participant s, report[2s+1] = its
 * cumulative epsilon: what rank 0 needs for the metrics row. */
static void evaluate_local(run_state *st, double *report)
{
    for (int s = 0; s < st->local_count; s++) {
        sgd_stats stats;
        sgd_evaluate(&st->model, participant_params(st->local[s]), st->eval_ws, &st->test,
                     st->cfg->eval_size, &stats);
        report[2 * s] = stats.accuracy;
        report[2 * s + 1] = participant_ledger(st->local[s])->spent;
    }
}

static size_t recv_download(run_state *st)
{
    size_t len = recv_bytes(st, st->comm, 0, TAG_DOWNLOAD, st->down_buf, st->down_cap, 0, 0,
                            "a download");
    if (len == SIZE_MAX)
        fatal(st, "the server sent a download larger than the model");
    return len;
}

static void send_upload(run_state *st, size_t len, int tag)
{
    send_bytes(st, st->up_comm, 0, tag, st->up_buf, len, "MPI_Send(upload)");
    const run_hooks *h = st->hooks;
    if (h && st->rank > 0 && st->rank == h->tamper_rank)
        for (int i = 0; i < h->flood; i++)
            send_bytes(st, st->up_comm, 0, tag, st->up_buf, len, "MPI_Send(flood)");
}

/* ---- participant state for checkpoints -------------------------------- */

/* A participant's state travels as params (n floats), residual (n floats,
 * with --residual), rng (RNG_STATE_WORDS u64) and epsilon (1 double). The
 * scratch vectors of ctx are free between epochs and carry it. */
static void send_participant_state(run_state *st, participant_t *p)
{
    uint64_t rng[RNG_STATE_WORDS];
    double eps;
    size_t bytes = st->n * sizeof(float);
    participant_save(p, st->ctx.before, st->cfg->residual ? st->ctx.delta : NULL, rng, &eps);
    send_bytes(st, st->comm, 0, TAG_STATE, st->ctx.before, bytes, "MPI_Send(state)");
    if (st->cfg->residual)
        send_bytes(st, st->comm, 0, TAG_STATE, st->ctx.delta, bytes, "MPI_Send(state)");
    send_bytes(st, st->comm, 0, TAG_STATE, rng, sizeof rng, "MPI_Send(state)");
    send_bytes(st, st->comm, 0, TAG_STATE, &eps, sizeof eps, "MPI_Send(state)");
}

/* Receives one piece of participant state of exactly `bytes`. */
static void recv_state(run_state *st, int source, void *buf, size_t bytes, double limit,
                       const char *what)
{
    int drain = st->rank == 0; /* the server gathering from a worker */
    if (recv_bytes(st, st->comm, source, TAG_STATE, buf, bytes, limit, drain, what) != bytes) {
        char msg[200];
        snprintf(msg, sizeof msg, "rank %d sent %s of the wrong size", source, what);
        fatal(st, msg);
    }
}

static void receive_participant_state(run_state *st, participant_t *p)
{
    uint64_t rng[RNG_STATE_WORDS];
    double eps;
    size_t bytes = st->n * sizeof(float);
    recv_state(st, 0, st->ctx.before, bytes, 0, "participant parameters");
    if (st->cfg->residual)
        recv_state(st, 0, st->ctx.delta, bytes, 0, "a participant residual");
    recv_state(st, 0, rng, sizeof rng, 0, "a participant rng state");
    recv_state(st, 0, &eps, sizeof eps, 0, "a participant epsilon");
    if (participant_restore(p, st->ctx.before, st->ctx.delta, rng, eps))
        fatal(st, "checkpointed participant state refused (rng of another stream?)");
}

/* Ranks > 0: obey the server's commands until told to stop. */
static void worker_loop(run_state *st)
{
    double *acc = calloc(2 * (size_t)(st->local_count ? st->local_count : 1), sizeof *acc);
    if (!acc)
        fatal(st, "out of memory");
    for (;;) {
        MPI_Status status;
        int cmd[3];
        wait_message(st, st->comm, 0, TAG_CMD, 0, 0, "a command", &status);
        mpi_check(MPI_Recv(cmd, 3, MPI_INT, 0, TAG_CMD, st->comm, MPI_STATUS_IGNORE),
                  "MPI_Recv(cmd)", st);
        int op = cmd[0], epoch = cmd[1], p = cmd[2];
        if (op == CMD_STOP)
            break;
        if (op == CMD_STEP) {
            /* One participant's turn: a download (len > 0: apply it; for the
             * initial download p trains nothing) then maybe an upload. */
            if (p < 0 || p >= st->cfg->participants || owner_of(st, p) != st->rank)
                fatal(st, "server sent a step for a participant not hosted here");
            participant_t *part = st->local[slot_of(st, p)];
            size_t len = recv_download(st);
            if (epoch == 0) { /* initial full download: no training */
                if (participant_download(part, &st->ctx, st->down_buf, len, 0) != WIRE_OK)
                    fatal(st, "malformed initial download from the server");
                continue;
            }
            send_upload(st, participant_step(st, part, st->down_buf, len, epoch),
                        turn_tag(st, epoch, p));
        } else if (op == CMD_ASYNC) {
            /* The first participant asks; the server answers each upload
             * with the download of the rank's next participant, which saves
             * a round trip a turn. */
            if (st->local_count > 0) {
                int first = (int)participant_id(st->local[0]);
                mpi_check(MPI_Send(&first, 1, MPI_INT, 0, TAG_REQUEST, st->comm),
                          "MPI_Send(request)", st);
            }
            for (int s = 0; s < st->local_count; s++) {
                int who = (int)participant_id(st->local[s]);
                size_t len = recv_download(st);
                send_upload(st, participant_step(st, st->local[s], st->down_buf, len, epoch),
                            turn_tag(st, epoch, who));
            }
        } else if (op == CMD_LOCAL) {
            for (int s = 0; s < st->local_count; s++) {
                sgd_stats stats;
                participant_train(st->local[s], &st->ctx, &stats);
            }
            int done = 1; /* lets rank 0 time the epoch */
            mpi_check(MPI_Send(&done, 1, MPI_INT, 0, TAG_REPORT, st->comm), "MPI_Send(ack)", st);
        } else if (op == CMD_GATHER) {
            for (int s = 0; s < st->local_count; s++)
                send_participant_state(st, st->local[s]);
        } else if (op == CMD_SCATTER) {
            if (p < 0 || p >= st->cfg->participants || owner_of(st, p) != st->rank)
                fatal(st, "server sent state for a participant not hosted here");
            receive_participant_state(st, st->local[slot_of(st, p)]);
        } else if (op == CMD_EVAL) {
            evaluate_local(st, acc);
            mpi_check(MPI_Send(acc, 2 * st->local_count, MPI_DOUBLE, 0, TAG_REPORT, st->comm),
                      "MPI_Send(report)", st);
        } else {
            fatal(st, "unknown command from the server");
        }
    }
    free(acc);
}

/* ---- server side (rank 0) ---------------------------------------------- */

/* Prints a refusal, the first 20 of a run only: a flooding rank must not
 * flood the log as well. */
static void log_refusal(run_state *st, int source, int participant, const char *why)
{
    if (st->refusals_logged < 20) {
        if (participant >= 0)
            fprintf(stderr, "dssgd: rejected upload of participant %d from rank %d: %s\n",
                    participant, source, why);
        else
            fprintf(stderr, "dssgd: rejected message from rank %d: %s\n", source, why);
    }
    else if (st->refusals_logged == 20)
        fprintf(stderr, "dssgd: further refusals are counted in the metrics, not logged\n");
    st->refusals_logged++;
}

/* Receives and refuses one upload under a tag no turn is waiting for: a
 * stale or flooded copy. One larger than any upload the protocol allows
 * cannot be drained piece by piece into the buffer, so it ends the job. */
static void refuse_unsolicited(run_state *st, int source, int tag)
{
    if (recv_bytes(st, st->up_comm, source, tag, NULL, 0, 0, 0, "an unsolicited upload") ==
        SIZE_MAX) {
        char msg[160];
        snprintf(msg, sizeof msg, "rank %d sent an unsolicited upload larger than the whole "
                 "model: stopping", source);
        fatal(st, msg);
    }
    server_count_rejection(st->server, WIRE_UNSOLICITED);
    log_refusal(st, source, -1, "unsolicited");
}

/* Refuses the uploads from `source` (or any rank) that are already waiting,
 * up to the first under `answer_tag` (-1: none), the answer to a download
 * being sent. Called before a rank is sent a download, while sends to it
 * complete, and at the end of each epoch, so a flooding rank cannot pile
 * messages up on the server. (Turn tags already keep a copy from passing as
 * an answer.) */
static void drain_unsolicited(run_state *st, int source, int answer_tag)
{
    for (;;) {
        int flag = 0;
        MPI_Status status;
        mpi_check(MPI_Iprobe(source, MPI_ANY_TAG, st->up_comm, &flag, &status), "MPI_Iprobe", st);
        if (!flag || status.MPI_TAG == answer_tag)
            return;
        refuse_unsolicited(st, status.MPI_SOURCE, status.MPI_TAG);
    }
}

/* Completes the server's sends to worker `dest`, refusing the uploads dest
 * sends unasked meanwhile: a flooding rank blocked in its own large sends
 * would otherwise never take our message, each side waiting on the other.
 * answer_tag: the tag of the upload these sends may already have provoked
 * (a download's sender can learn of its completion after the answer came),
 * or -1 if none. */

static void complete_sends(run_state *st, int dest, MPI_Request *req, int count, int answer_tag,
                           const char *what)
{
    patience wait = patience_start(reply_limit(st, 1));
    for (;;) {
        int done = 0;
        mpi_check(MPI_Testall(count, req, &done, MPI_STATUSES_IGNORE), "MPI_Testall", st);
        if (done)
            return;
        drain_unsolicited(st, dest, answer_tag);
        if (patience_wait(&wait)) {
            char awaiting[96];
            snprintf(awaiting, sizeof awaiting, "it to take %s", what);
            stop_unanswered(st, dest, wait.limit, awaiting);
        }
    }
}

/* Sends len bytes to worker dest and waits until they are taken. */
static void server_send(run_state *st, int dest, int tag, const void *buf, size_t len,
                        int answer_tag, const char *what)
{
    MPI_Request few[4], *req = few;
    int count = pieces_of(st, len);
    if (count > 4 && !(req = malloc((size_t)count * sizeof *req)))
        fatal(st, "out of memory");
    isend_bytes(st, st->comm, dest, tag, buf, len, req, what);
    complete_sends(st, dest, req, count, answer_tag, what);
    if (req != few)
        free(req);
}

static void send_cmd(run_state *st, int dest, int op, int epoch, int participant)
{
    int cmd[3] = {op, epoch, participant};
    MPI_Request req;
    mpi_check(MPI_Isend(cmd, 3, MPI_INT, dest, TAG_CMD, st->comm, &req), "MPI_Isend(cmd)", st);
    complete_sends(st, dest, &req, 1, -1, "a command");
}

/* Receives participant's upload for this turn from `source` and applies it,
 * or refuses (counts) it. */
static void receive_and_apply(run_state *st, int source, int participant, int epoch)
{
    char what[96];
    snprintf(what, sizeof what, "participant %d's upload in epoch %d", participant, epoch);
    size_t len = recv_bytes(st, st->up_comm, source, turn_tag(st, epoch, participant),
                            st->up_buf, st->up_cap, reply_limit(st, 1), 1, what);
    if (len == SIZE_MAX) {
        /* Larger than any message the protocol allows (the dense vector):
         * the sender would wait forever for the rest to be read, so end the
         * job and name the rank. */
        char msg[200];
        snprintf(msg, sizeof msg, "rank %d sent an upload for participant %d larger than the "
                 "whole model (%zu bytes): stopping", source, participant, st->up_cap);
        fatal(st, msg);
    }
    st->bytes_up += len;
    wire_reason r = server_apply_upload(st->server, st->up_buf, len, (uint32_t)participant,
                                        (uint32_t)epoch);
    if (r != WIRE_OK)
        log_refusal(st, source, participant, wire_reason_name(r));
}

/* Sends participant p its download and, for epoch > 0, applies its upload. */
static void server_turn(run_state *st, int p, int epoch, int full)
{
    size_t len = server_pack_download(st->server, (uint32_t)p, (uint32_t)epoch, full,
                                      st->down_buf, st->down_cap);
    st->bytes_down += len;
    if (st->size == 1) {
        participant_t *part = st->local[p];
        if (epoch == 0) {
            participant_download(part, &st->ctx, st->down_buf, len, 0);
            return;
        }
        size_t up = participant_step(st, part, st->down_buf, len, epoch);
        st->bytes_up += up;
        wire_reason r = server_apply_upload(st->server, st->up_buf, up, (uint32_t)p,
                                            (uint32_t)epoch);
        if (r != WIRE_OK)
            log_refusal(st, 0, p, wire_reason_name(r));
        return;
    }
    int dest = owner_of(st, p);
    drain_unsolicited(st, dest, -1);
    send_cmd(st, dest, CMD_STEP, epoch, p);
    server_send(st, dest, TAG_DOWNLOAD, st->down_buf, len,
                epoch > 0 ? turn_tag(st, epoch, p) : -1, "a download");
    if (epoch > 0)
        receive_and_apply(st, dest, p, epoch);
}

static void epoch_sequential(run_state *st, int epoch, const int *order)
{
    for (int i = 0; i < st->cfg->participants; i++)
        server_turn(st, order[i], epoch, 0);
}

/* Everyone downloads the same state and trains in parallel; uploads are
 * applied in participant order. Each worker rank has at most one download
 * in flight, sent once its previous participant's upload is in: the server
 * never blocks on a send to a rank that is blocked sending it an upload. */
static void epoch_sync(run_state *st, int epoch)
{
    int N = st->cfg->participants;
    size_t len = server_pack_download(st->server, WIRE_ANY_PARTICIPANT, (uint32_t)epoch, 0,
                                      st->down_buf, st->down_cap);
    if (st->size == 1) {
        /* Keep every upload until all have trained on the same state. */
        uint8_t **held = calloc((size_t)N, sizeof *held);
        size_t *held_len = calloc((size_t)N, sizeof *held_len);
        if (!held || !held_len)
            fatal(st, "out of memory");
        for (int p = 0; p < N; p++) {
            st->bytes_down += len;
            held_len[p] = participant_step(st, st->local[p], st->down_buf, len, epoch);
            held[p] = malloc(held_len[p]);
            if (!held[p])
                fatal(st, "out of memory holding uploads");
            memcpy(held[p], st->up_buf, held_len[p]);
        }
        for (int p = 0; p < N; p++) {
            st->bytes_up += held_len[p];
            wire_reason r = server_apply_upload(st->server, held[p], held_len[p], (uint32_t)p,
                                                (uint32_t)epoch);
            if (r != WIRE_OK)
                log_refusal(st, 0, p, wire_reason_name(r));
            free(held[p]);
        }
        free(held);
        free(held_len);
        return;
    }
    int W = st->size - 1, per_rank = pieces_of(st, len);
    /* The pieces of each rank's download in flight: per_rank requests from
     * inflight + rank * per_rank. */
    MPI_Request *inflight = malloc((size_t)st->size * (size_t)per_rank * sizeof *inflight);
    if (!inflight)
        fatal(st, "out of memory");
    for (int i = 0; i < st->size * per_rank; i++)
        inflight[i] = MPI_REQUEST_NULL;
    /* MPI-3 allows concurrent sends from one buffer: all read the same bytes. */
    for (int p = 0; p < N; p++) {
        int dest = owner_of(st, p);
        MPI_Request *mine = inflight + (size_t)dest * (size_t)per_rank;
        if (p >= W) { /* the rank's previous participant must upload first */
            receive_and_apply(st, owner_of(st, p - W), p - W, epoch);
            complete_sends(st, dest, mine, per_rank, -1, "a download");
        }
        drain_unsolicited(st, dest, -1);
        send_cmd(st, dest, CMD_STEP, epoch, p);
        isend_bytes(st, st->comm, dest, TAG_DOWNLOAD, st->down_buf, len, mine,
                    "MPI_Isend(download)");
        st->bytes_down += len;
    }
    for (int p = N > W ? N - W : 0; p < N; p++)
        receive_and_apply(st, owner_of(st, p), p, epoch);
    for (int r = 1; r < st->size; r++)
        complete_sends(st, r, inflight + (size_t)r * (size_t)per_rank, per_rank, -1,
                       "a download");
    free(inflight);
}

/* Sends participant p (on rank src) its async download: the global model
 * as it is now. src owes no upload at this point (it asked for its first
 * participant, or its previous upload was just applied), so the server may
 * refuse src's stray uploads while the download goes: a flooding rank
 * blocked in sending a large copy would otherwise never take it. */
static void async_serve(run_state *st, int src, int p, int epoch, char *requested)
{
    requested[p] = 1;
    size_t len = server_pack_download(st->server, (uint32_t)p, (uint32_t)epoch, 0, st->down_buf,
                                      st->down_cap);
    st->bytes_down += len;
    server_send(st, src, TAG_DOWNLOAD, st->down_buf, len, turn_tag(st, epoch, p), "a download");
}

/* All participants at once: each rank asks for its first participant's
 * download, and every upload is answered with the download of the rank's
 * next participant; the server serves in arrival order. */
static void epoch_async(run_state *st, int epoch, const int *order)
{
    int N = st->cfg->participants;
    if (st->size == 1) { /* one process: arrival order is participant order */
        epoch_sequential(st, epoch, order);
        return;
    }
    for (int r = 1; r < st->size; r++)
        send_cmd(st, r, CMD_ASYNC, epoch, -1);
    char *uploaded = calloc((size_t)N, 1), *requested = calloc((size_t)N, 1);
    if (!uploaded || !requested)
        fatal(st, "out of memory");
    int done = 0;
    patience wait = patience_start(reply_limit(st, 1)); /* restarted by every message */
    while (done < N) {
        /* Requests come on comm, uploads on up_comm: poll both. */
        MPI_Status status;
        int is_request = 0, is_upload = 0;
        mpi_check(MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQUEST, st->comm, &is_request, &status),
                  "MPI_Iprobe", st);
        if (!is_request)
            mpi_check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, st->up_comm, &is_upload, &status),
                      "MPI_Iprobe", st);
        if (!is_request && !is_upload) {
            if (patience_wait(&wait)) {
                int p = 0;
                while (p < N && uploaded[p])
                    p++;
                char awaiting[160];
                snprintf(awaiting, sizeof awaiting, "participant %d's upload in epoch %d; no "
                         "rank has sent anything meanwhile, %d of %d uploads are in", p, epoch,
                         done, N);
                stop_unanswered(st, owner_of(st, p), wait.limit, awaiting);
            }
            continue;
        }
        wait = patience_start(wait.limit);
        int src = status.MPI_SOURCE;
        if (is_request) {
            int p = -1;
            mpi_check(MPI_Recv(&p, 1, MPI_INT, src, TAG_REQUEST, st->comm, MPI_STATUS_IGNORE),
                      "MPI_Recv(request)", st);
            if (p < 0 || p >= N || owner_of(st, p) != src || requested[p]) {
                /* Not answered: an honest rank asks once, for its own
                 * first participant. */
                server_count_rejection(st->server, WIRE_UNSOLICITED);
                log_refusal(st, src, -1, "a download request for a participant it does not "
                            "host or asked for already");
                continue;
            }
            async_serve(st, src, p, epoch, requested);
        } else {
            /* An upload answers a requested turn of src by its tag. */
            int p = -1;
            for (int q = src - 1; q < N; q += st->size - 1)
                if (requested[q] && !uploaded[q] && turn_tag(st, epoch, q) == status.MPI_TAG) {
                    p = q;
                    break;
                }
            if (p < 0) {
                refuse_unsolicited(st, src, status.MPI_TAG);
                continue;
            }
            receive_and_apply(st, src, p, epoch);
            uploaded[p] = 1;
            done++;
            int next = p + (st->size - 1);
            if (next < N && !requested[next])
                async_serve(st, src, next, epoch, requested);
        }
    }
    free(uploaded);
    free(requested);
}

static void epoch_standalone(run_state *st)
{
    if (st->size == 1) {
        for (int s = 0; s < st->local_count; s++) {
            sgd_stats stats;
            participant_train(st->local[s], &st->ctx, &stats);
        }
        return;
    }
    for (int r = 1; r < st->size; r++)
        send_cmd(st, r, CMD_LOCAL, 0, -1);
    for (int r = 1; r < st->size; r++) {
        MPI_Status status;
        int done;
        wait_message(st, st->comm, r, TAG_REPORT, reply_limit(st, hosted_by(st, r)), 1,
                     "the end of its standalone training", &status);
        mpi_check(MPI_Recv(&done, 1, MPI_INT, r, TAG_REPORT, st->comm, MPI_STATUS_IGNORE),
                  "MPI_Recv(ack)", st);
    }
}

/* Global model (rank 0) and local models (where they live). */
static void evaluate_epoch(run_state *st, metrics_row *row, const float *global)
{
    int N = st->cfg->participants;
    if (st->size > 1)
        for (int r = 1; r < st->size; r++)
            send_cmd(st, r, CMD_EVAL, row->epoch, -1);
    if (global) {
        sgd_stats stats;
        sgd_evaluate(&st->model, global, st->eval_ws, &st->test, st->cfg->eval_size, &stats);
        row->has_global = 1;
        row->global_acc = stats.accuracy;
        row->global_loss = stats.loss;
    }
    double *report = calloc(2 * (size_t)N, sizeof *report);
    if (!report)
        fatal(st, "out of memory");
    if (st->size == 1) {
        evaluate_local(st, report);
        for (int p = 0; p < N; p++) {
            st->part_acc[p] = report[2 * p];
            st->part_eps[p] = report[2 * p + 1];
        }
    } else {
        for (int r = 1; r < st->size; r++) {
            MPI_Status status;
            int hosted = hosted_by(st, r);
            wait_message(st, st->comm, r, TAG_REPORT, reply_limit(st, hosted), 1,
                         "its participants' evaluation", &status);
            mpi_check(MPI_Recv(report, 2 * hosted, MPI_DOUBLE, r, TAG_REPORT, st->comm,
                               MPI_STATUS_IGNORE), "MPI_Recv(report)", st);
            for (int s = 0; s < hosted; s++) {
                st->part_acc[r - 1 + s * (st->size - 1)] = report[2 * s];
                st->part_eps[r - 1 + s * (st->size - 1)] = report[2 * s + 1];
            }
        }
    }
    free(report);
    row->epsilon = 0;
    for (int p = 0; p < N; p++)
        row->epsilon = fmax(row->epsilon, st->part_eps[p]);
    row->has_part = 1;
    row->part_acc_min = INFINITY;
    row->part_acc_max = -INFINITY;
    double sum = 0;
    for (int p = 0; p < N; p++) {
        sum += st->part_acc[p];
        row->part_acc_min = fmin(row->part_acc_min, st->part_acc[p]);
        row->part_acc_max = fmax(row->part_acc_max, st->part_acc[p]);
    }
    row->part_acc_mean = sum / N;
}

static int emit_row(run_state *st, FILE *metrics, metrics_row *row, run_result *result,
                    char *err)
{
    if (metrics && metrics_write(metrics, row, err))
        return -1;
    if (!st->cfg->quiet)
        metrics_progress(stderr, row, st->cfg->epochs);
    if (result && result->rows)
        result->rows[row->epoch - 1] = *row;
    return 0;
}

/* ---- modes ------------------------------------------------------------- */

static int run_centralized(run_state *st, FILE *metrics, run_result *result, char *err)
{
    const config_t *c = st->cfg;
    uint32_t *order = NULL;
    size_t count = 0;
    if (dataset_shards_union(&st->shards, st->train.count, &order, &count, err))
        return -1;
    float *w = err_calloc(st->n, sizeof *w);
    uint32_t *epoch_order = err_calloc(count, sizeof *epoch_order);
    model_ws *ws = model_ws_create(&st->model, c->batch);
    if (!w || !ws || !epoch_order) {
        free(order); free(w); free(epoch_order); model_ws_free(ws);
        return err_set(err, "out of memory");
    }
    rng_t init, shuffle;
    rng_init(&init, c->seed, RNG_STREAM_INIT);
    rng_init(&shuffle, c->seed, RNG_STREAM_CENTRAL);
    model_init_params(&st->model, w, &init);
    if (!c->quiet)
        fprintf(stderr, "centralized: %zu distinct training examples (union of %d shards)\n",
                count, c->participants);
    int rc = 0;
    for (int e = 1; e <= c->epochs && rc == 0; e++) {
        double t0 = now_seconds();
        sgd_stats train_stats, stats;
        memcpy(epoch_order, order, count * sizeof *order); /* order from the rng alone */
        sgd_epoch(&st->model, w, ws, &st->train, epoch_order, count, c->batch, (float)c->lr,
                  &shuffle, &train_stats);
        metrics_row row = {.epoch = e, .seconds = now_seconds() - t0};
        sgd_evaluate(&st->model, w, st->eval_ws, &st->test, c->eval_size, &stats);
        row.has_global = 1;
        row.global_acc = stats.accuracy;
        row.global_loss = stats.loss;
        rc = emit_row(st, metrics, &row, result, err);
    }
    if (result && rc == 0) {
        result->params = w;
        w = NULL;
    }
    free(w);
    free(order);
    free(epoch_order);
    model_ws_free(ws);
    return rc;
}

/* Rank 0: gathers every participant's state and writes the checkpoint. */
static int save_checkpoint(run_state *st, int epoch, char *err)
{
    const config_t *c = st->cfg;
    int N = c->participants;
    size_t n = st->n;
    ckpt_state cs = {0};
    char *text = malloc(1 << 16);
    if (!text || ckpt_state_alloc(&cs, n, (uint32_t)N, c->residual) ||
        config_to_text(c, text, 1 << 16) < 0) {
        free(text);
        ckpt_state_free(&cs);
        return err_set(err, "checkpoint: out of memory");
    }
    cs.config = text;
    cs.model = strdup(st->model.spec);
    cs.epoch = (uint64_t)epoch;
    cs.seed = c->seed;
    memcpy(cs.server_params, server_params(st->server), n * sizeof(float));
    memcpy(cs.server_stat, server_stat(st->server), n * sizeof(double));
    server_save(st->server, cs.server_rng[0], cs.counters);
    rng_save(&st->schedule_rng, cs.server_rng[1]);
    if (st->size == 1) {
        for (int p = 0; p < N; p++)
            participant_save(st->local[p], cs.part_params + (size_t)p * n,
                             c->residual ? cs.part_residual + (size_t)p * n : NULL,
                             cs.part_rng + (size_t)p * RNG_STATE_WORDS, &cs.part_epsilon[p]);
    } else {
        for (int r = 1; r < st->size; r++)
            send_cmd(st, r, CMD_GATHER, epoch, -1);
        double limit = reply_limit(st, 1);
        size_t bytes = n * sizeof(float);
        for (int r = 1; r < st->size; r++)
            for (int p = r - 1; p < N; p += st->size - 1) {
                recv_state(st, r, cs.part_params + (size_t)p * n, bytes, limit,
                           "participant parameters");
                if (c->residual)
                    recv_state(st, r, cs.part_residual + (size_t)p * n, bytes, limit,
                               "a participant residual");
                recv_state(st, r, cs.part_rng + (size_t)p * RNG_STATE_WORDS,
                           RNG_STATE_WORDS * sizeof(uint64_t), limit, "a participant rng state");
                recv_state(st, r, &cs.part_epsilon[p], sizeof(double), limit,
                           "a participant epsilon");
            }
    }
    int rc = cs.model ? ckpt_save(c->checkpoint, &cs, err) : err_set(err, "out of memory");
    ckpt_state_free(&cs);
    return rc;
}

/* Rank 0: loads a checkpoint, checks it belongs to this run, restores the
 * server and sends every participant its state. Sets *done_epochs. */
static int resume_checkpoint(run_state *st, int *done_epochs, char *err)
{
    const config_t *c = st->cfg;
    int N = c->participants;
    size_t n = st->n;
    ckpt_state cs;
    if (ckpt_load(c->resume, &cs, err))
        return -1;
    int rc = -1;
    rng_t sched;
    if (config_check_resume(c, cs.config, err)) {
        err_prefix(err, "%s", c->resume);
    } else if (strcmp(cs.model, st->model.spec) != 0 || cs.n != n) {
        err_set(err, "%s: model %s with %llu parameters, this run builds %s with %zu", c->resume,
                cs.model, (unsigned long long)cs.n, st->model.spec, n);
    } else if (cs.participants != (uint32_t)N || cs.has_residual != (c->residual != 0)) {
        err_set(err, "%s: %u participants%s, this run has %d%s", c->resume, cs.participants,
                cs.has_residual ? " with residuals" : "", N, c->residual ? " with residuals" : "");
    } else if (cs.epoch >= (uint64_t)c->epochs) {
        err_set(err, "%s: already at epoch %llu; --epochs (the total) must be larger", c->resume,
                (unsigned long long)cs.epoch);
    } else if (server_restore(st->server, cs.server_params, cs.server_stat, cs.server_rng[0],
                              cs.counters) ||
               rng_restore(&sched, cs.server_rng[1]) || sched.seed != c->seed ||
               sched.stream != RNG_STREAM_SCHEDULE) {
        err_set(err, "%s: the server's random state belongs to another run", c->resume);
    } else {
        st->schedule_rng = sched;
        rc = 0;
        for (int p = 0; p < N && rc == 0; p++) {
            const float *params = cs.part_params + (size_t)p * n;
            const float *res = c->residual ? cs.part_residual + (size_t)p * n : NULL;
            const uint64_t *rng = cs.part_rng + (size_t)p * RNG_STATE_WORDS;
            if (st->size == 1) {
                if (participant_restore(st->local[p], params, res, rng, cs.part_epsilon[p]))
                    rc = err_set(err, "%s: participant %d's state is refused (rng of another "
                                 "stream)", c->resume, p);
                continue;
            }
            int dest = owner_of(st, p);
            size_t bytes = n * sizeof(float);
            send_cmd(st, dest, CMD_SCATTER, 0, p);
            server_send(st, dest, TAG_STATE, params, bytes, -1, "participant parameters");
            if (res)
                server_send(st, dest, TAG_STATE, res, bytes, -1, "a participant residual");
            server_send(st, dest, TAG_STATE, rng, RNG_STATE_WORDS * sizeof(uint64_t), -1,
                        "a participant rng state");
            server_send(st, dest, TAG_STATE, &cs.part_epsilon[p], sizeof(double), -1,
                        "a participant epsilon");
        }
        *done_epochs = (int)cs.epoch;
    }
    ckpt_state_free(&cs);
    return rc;
}

/* The ledger at the end of a DP run, labelled so that the total epsilon
 * (the guarantee) and the paper's per-parameter figure are not confused. */
static void print_privacy_summary(run_state *st, FILE *out)
{
    const config_t *c = st->cfg;
    int N = c->participants;
    double lo = INFINITY, hi = 0;
    for (int p = 0; p < N; p++) {
        lo = fmin(lo, st->part_eps[p]);
        hi = fmax(hi, st->part_eps[p]);
    }
    fprintf(out, "privacy (sparse vector technique, basic composition over epochs):\n"
            "  epsilon per participant per epoch: %g; cap: %g\n"
            "  TOTAL epsilon spent per participant (the guarantee): min %g, max %g\n",
            c->dp_epsilon, c->dp_max_epsilon, lo, hi);
    for (int p = 0; p < N; p++)
        fprintf(out, "    participant %d: %g\n", p, st->part_eps[p]);
    fprintf(out, "  per parameter, the paper's figure (epsilon per epoch / c, c = %zu): %g "
            "-- not a guarantee on its own\n", st->k_up, c->dp_epsilon / (double)st->k_up);
}

static int run_distributed(run_state *st, FILE *metrics, run_result *result, char *err)
{
    int start = 1;
    const config_t *c = st->cfg;
    int N = c->participants, dssgd = c->mode == MODE_DSSGD, rc = 0;
    if (st->rank > 0) {
        worker_loop(st);
        return 0;
    }
    float *init = err_calloc(st->n, sizeof *init);
    int *order = calloc((size_t)N, sizeof *order);
    if (!init || !order) {
        free(init); free(order);
        fatal(st, "out of memory");
    }
    rng_t init_rng;
    rng_init(&init_rng, c->seed, RNG_STREAM_INIT);
    rng_init(&st->schedule_rng, c->seed, RNG_STREAM_SCHEDULE);
    model_init_params(&st->model, init, &init_rng);
    server_opts so = {st->n, st->k_up, st->k_down, (float)c->gamma, c->download, c->stat_decay,
                      c->seed};
    st->server = server_create(&so, init);
    if (!st->server)
        fatal(st, "out of memory for the server");
    free(init);

    if (c->resume[0]) {
        int done = 0;
        rc = resume_checkpoint(st, &done, err);
        start = done + 1;
        if (rc == 0 && c->metrics[0] && !(metrics = metrics_open_resume(c->metrics, done, err)))
            rc = -1;
        if (rc == 0 && !c->quiet)
            fprintf(stderr, "resumed from %s after epoch %d\n", c->resume, done);
    } else {
        /* Before the first epoch every participant downloads the whole
         * initial model, so all start equal (standalone ones too). */
        for (int p = 0; p < N; p++)
            server_turn(st, p, 0, 1);
    }

    for (int e = start; e <= c->epochs && rc == 0; e++) {
        double t0 = now_seconds();
        for (int p = 0; p < N; p++)
            order[p] = p;
        if (c->schedule == SCHEDULE_RANDOM && dssgd)
            rng_shuffle_u32(&st->schedule_rng, (uint32_t *)order, (size_t)N);
        uint64_t rejected0 = server_rejected(st->server), accepted0 = server_accepted(st->server);
        if (!dssgd)
            epoch_standalone(st);
        else if (c->schedule == SCHEDULE_SYNC)
            epoch_sync(st, e);
        else if (c->schedule == SCHEDULE_ASYNC)
            epoch_async(st, e, order);
        else
            epoch_sequential(st, e, order);
        if (dssgd) {
            if (st->size > 1)
                drain_unsolicited(st, MPI_ANY_SOURCE, -1);
            server_end_epoch(st->server);
        }
        metrics_row row = {.epoch = e, .seconds = now_seconds() - t0};
        if (dssgd) {
            row.bytes_up = st->bytes_up;
            row.bytes_down = st->bytes_down;
            row.uploads_accepted = server_accepted(st->server) - accepted0;
            row.uploads_rejected = server_rejected(st->server) - rejected0;
        }
        st->bytes_up = st->bytes_down = 0;
        evaluate_epoch(st, &row, dssgd ? server_params(st->server) : NULL);
        rc = emit_row(st, metrics, &row, result, err);
        if (rc == 0 && c->checkpoint[0] &&
            (e == c->epochs || (c->checkpoint_every && e % c->checkpoint_every == 0)))
            rc = save_checkpoint(st, e, err);
    }
    if (c->resume[0] && metrics)
        fclose(metrics);
    for (int r = 1; r < st->size; r++)
        send_cmd(st, r, CMD_STOP, 0, -1);
    if (c->select == SELECT_SVT && dssgd && rc == 0)
        print_privacy_summary(st, stderr);
    if (result && rc == 0) {
        result->part_epsilon = malloc((size_t)N * sizeof *result->part_epsilon);
        if (result->part_epsilon)
            memcpy(result->part_epsilon, st->part_eps, (size_t)N * sizeof *st->part_eps);
        for (int r = 0; r < WIRE_REASONS; r++)
            result->rejected_for[r] = server_rejected_for(st->server, (wire_reason)r);
        if (dssgd) {
            result->params = malloc(st->n * sizeof(float));
            if (result->params)
                memcpy(result->params, server_params(st->server), st->n * sizeof(float));
        }
    }
    free(order);
    return rc;
}

int run_train(const config_t *cfg, MPI_Comm comm, const run_hooks *hooks, run_result *result,
              char *err)
{
    run_state st = {.cfg = cfg, .hooks = hooks};
    MPI_Comm_dup(comm, &st.comm);
    MPI_Comm_dup(comm, &st.up_comm);
    MPI_Comm_set_errhandler(st.comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(st.up_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(st.comm, &st.rank);
    MPI_Comm_size(st.comm, &st.size);
    int *tag_ub = NULL, has_ub = 0;
    MPI_Comm_get_attr(st.comm, MPI_TAG_UB, &tag_ub, &has_ub);
    st.tag_ub = has_ub && *tag_ub > 0 ? *tag_ub : 32767;
    st.piece = hooks && hooks->piece_bytes ? hooks->piece_bytes : RUN_PIECE_BYTES;
    if (result)
        memset(result, 0, sizeof *result);

    int rc = agree(&st, setup(&st, err), err);
    FILE *metrics = NULL;
    if (rc == 0 && st.rank == 0) {
        if (!cfg->quiet) {
            config_print(cfg, stderr);
            fprintf(stderr, "model %s: %zu parameters; upload k = %zu, download k = %zu; "
                    "%d rank(s)\n", st.model.spec, st.n, st.k_up, st.k_down, st.size);
        }
        if (cfg->metrics[0] && !cfg->resume[0] && !(metrics = metrics_open(cfg->metrics, err)))
            rc = -1;
        if (result) {
            result->n = st.n;
            result->epochs = cfg->epochs;
            result->rows = calloc((size_t)cfg->epochs, sizeof *result->rows);
        }
    }
    rc = agree(&st, rc, err);
    if (rc == 0) {
        if (cfg->mode == MODE_CENTRALIZED)
            rc = st.rank == 0 ? run_centralized(&st, metrics, result, err) : 0;
        else
            rc = run_distributed(&st, metrics, result, err);
    }
    if (metrics)
        fclose(metrics);
    teardown(&st);
    MPI_Comm_free(&st.up_comm);
    MPI_Comm_free(&st.comm);
    return rc;
}

void run_result_free(run_result *r)
{
    if (!r)
        return;
    free(r->params);
    free(r->rows);
    free(r->part_epsilon);
    memset(r, 0, sizeof *r);
}
