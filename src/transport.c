/* transport: the MPI messages of `dssgd train` (see transport.h). */
#include "transport.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

double transport_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void transport_open(transport_t *t, MPI_Comm comm, size_t piece, int participants,
                    double rank_timeout)
{
    memset(t, 0, sizeof *t);
    MPI_Comm_dup(comm, &t->comm);
    MPI_Comm_dup(comm, &t->up_comm);
    MPI_Comm_set_errhandler(t->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(t->up_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(t->comm, &t->rank);
    MPI_Comm_size(t->comm, &t->size);
    int *tag_ub = NULL, has_ub = 0;
    MPI_Comm_get_attr(t->comm, MPI_TAG_UB, &tag_ub, &has_ub);
    t->tag_ub = has_ub && *tag_ub > 0 ? *tag_ub : 32767;
    t->piece = piece;
    t->participants = participants;
    t->rank_timeout = rank_timeout;
    t->patience = transport_reply_limit(t, participants + 2);
}

void transport_close(transport_t *t)
{
    free(t->discard);
    MPI_Comm_free(&t->up_comm);
    MPI_Comm_free(&t->comm);
    t->discard = NULL;
}

static void exit_now(int sig)
{
    (void)sig;
    _exit(1);
}

/* MPI_Abort, bounded. It needs only this host's Open MPI daemon (orted)
 * to answer: measured on a host cut off from mpirun, the process ended in
 * 30 ms; with its orted stopped it waited forever. So a timer ends this
 * process regardless (docs/DESIGN.md, Failure handling). */
static _Noreturn void abort_job(const transport_t *t)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_now;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(TRANSPORT_ABORT_GRACE);
    MPI_Abort(t->comm, 1);
    _exit(1); /* MPI_Abort does not return; the compiler cannot know */
}

_Noreturn void transport_fatal(const transport_t *t, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dssgd: rank %d: %s\n", t->rank, msg);
    abort_job(t);
}

void transport_check(const transport_t *t, int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    transport_fatal(t, "%s failed: %s", what, msg);
}

/* Waits until req[0..count) complete, at most `limit` seconds (0 =
 * forever); past it, rank 0 stops the job naming `peer` and a worker gives
 * up. Neither MPI_Wait nor a blocking call has a limit. */
static void await_requests(const transport_t *t, MPI_Request *req, int count, int peer,
                           double limit, const char *awaiting)
{
    transport_patience wait = transport_patience_start(limit);
    for (;;) {
        int done = 0;
        transport_check(t, MPI_Testall(count, req, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (done)
            return;
        if (transport_patience_wait(&wait)) {
            if (t->rank == 0)
                transport_stop_unanswered(t, peer, limit, awaiting);
            transport_give_up(t, limit, awaiting);
        }
    }
}

/* Point to point rather than MPI_Allreduce, which has no limit: a rank cut
 * off during set-up would hang every other rank in it. */
int transport_agree(const transport_t *t, int rc, char *err)
{
    int mine = rc != 0, any = mine;
    if (t->size > 1 && t->rank == 0) {
        int *rcs = calloc((size_t)t->size, sizeof *rcs);
        MPI_Request *req = calloc((size_t)t->size, sizeof *req);
        if (!rcs || !req)
            transport_fatal(t, "out of memory");
        for (int r = 1; r < t->size; r++)
            transport_check(t, MPI_Irecv(&rcs[r], 1, MPI_INT, r, TAG_AGREE, t->comm, &req[r]),
                            "MPI_Irecv");
        /* one deadline for all: the ranks do the same set-up at once */
        transport_patience wait = transport_patience_start(t->patience);
        for (int r = 1; r < t->size; r++) {
            for (;;) {
                int done = 0;
                transport_check(t, MPI_Test(&req[r], &done, MPI_STATUS_IGNORE), "MPI_Test");
                if (done)
                    break;
                if (transport_patience_wait(&wait))
                    transport_stop_unanswered(t, r, t->patience, "the end of its set-up");
            }
            any |= rcs[r] != 0;
        }
        for (int r = 1; r < t->size; r++) {
            transport_check(t, MPI_Isend(&any, 1, MPI_INT, r, TAG_AGREE, t->comm, &req[r]),
                            "MPI_Isend");
            await_requests(t, &req[r], 1, r, t->patience, "it to take the set-up's verdict");
        }
        free(rcs);
        free(req);
    } else if (t->size > 1) {
        MPI_Request req;
        transport_send_small(t, t->comm, 0, TAG_AGREE, &mine, 1, MPI_INT,
                             "this rank's set-up result");
        transport_check(t, MPI_Irecv(&any, 1, MPI_INT, 0, TAG_AGREE, t->comm, &req), "MPI_Irecv");
        /* rank 0 waits up to its patience for the slowest rank, after its
         * own set-up, which may be the slower one */
        await_requests(t, &req, 1, 0, 2 * t->patience, "the end of its set-up");
    }
    if (any && !mine)
        err_set(err, "another rank failed during set-up (see its message)");
    return any ? -1 : 0;
}

void transport_allgather(transport_t *t, const void *mine, size_t len, void *all,
                         const char *what)
{
    uint8_t *table = all;
    size_t whole = (size_t)t->size * len;
    if (t->rank == 0) {
        memcpy(table, mine, len);
        for (int r = 1; r < t->size; r++) {
            size_t got = transport_recv(t, t->comm, r, TAG_SHARE, table + (size_t)r * len, len,
                                        t->patience, 0, what);
            if (got != len)
                transport_fatal(t, "rank %d sent %s of another size (%zu bytes, want %zu)", r,
                                what, got == SIZE_MAX ? 0 : got, len);
        }
        for (int r = 1; r < t->size; r++)
            transport_send_to_worker(t, r, TAG_SHARE, table, whole, -1, what);
    } else {
        transport_send(t, t->comm, 0, TAG_SHARE, mine, len, what);
        size_t got = transport_recv(t, t->comm, 0, TAG_SHARE, table, whole, 2 * t->patience, 0,
                                    what);
        if (got != whole)
            transport_fatal(t, "rank 0 sent %s of another size", what);
    }
}

transport_patience transport_patience_start(double limit)
{
    return (transport_patience){0, limit > 0 ? transport_now() : 0, limit};
}

int transport_patience_wait(transport_patience *p)
{
    if (++p->rounds <= 64)
        return 0;
    struct timespec pause = {0, 20000};
    nanosleep(&pause, NULL);
    return p->limit > 0 && transport_now() - p->start > p->limit;
}

_Noreturn void transport_stop_unanswered(const transport_t *t, int rank, double limit,
                                         const char *awaiting)
{
    transport_fatal(t, "rank %d has not answered for %g s (waiting for %s): stopping the job. "
                    "If its work is that slow, raise --rank-timeout; --resume continues from "
                    "the last checkpoint", rank, limit, awaiting);
}

_Noreturn void transport_give_up(const transport_t *t, double limit, const char *awaiting)
{
    fprintf(stderr, "dssgd: rank %d: no word from rank 0 for %g s (waiting for %s): rank 0 "
            "or the network to it is gone, so this rank stops. If rank 0 is only that slow "
            "(evaluation, checkpoint writes), raise --rank-timeout\n", t->rank, limit, awaiting);
    abort_job(t);
}

double transport_reply_limit(const transport_t *t, int units)
{
    return t->rank_timeout * (units > 1 ? units : 1);
}

int transport_turn_tag(const transport_t *t, int epoch, int p)
{
    uint64_t turn = (uint64_t)epoch * (uint64_t)t->participants + (uint64_t)p;
    return (int)(turn % (uint64_t)t->tag_ub);
}

void transport_wait(transport_t *t, MPI_Comm comm, int source, int tag, double limit, int drain,
                    const char *what, MPI_Status *status)
{
    transport_patience wait = transport_patience_start(limit);
    for (;;) {
        int flag = 0;
        transport_check(t, MPI_Iprobe(source, tag, comm, &flag, status), "MPI_Iprobe");
        if (flag)
            return;
        if (drain)
            transport_drain(t, source, comm == t->up_comm ? tag : -1);
        if (transport_patience_wait(&wait)) {
            if (t->rank == 0)
                transport_stop_unanswered(t, source, limit, what);
            transport_give_up(t, limit, what);
        }
    }
}

/* ---- messages of any size ---------------------------------------------- */

int transport_pieces(const transport_t *t, size_t len) { return (int)(len / t->piece) + 1; }

void transport_send(const transport_t *t, MPI_Comm comm, int dest, int tag, const void *buf,
                    size_t len, const char *what)
{
    char awaiting[96];
    snprintf(awaiting, sizeof awaiting, "it to take %s", what);
    const uint8_t *at = buf;
    for (int i = transport_pieces(t, len); i > 0; i--) {
        size_t piece = len < t->piece ? len : t->piece;
        MPI_Request req;
        transport_check(t, MPI_Isend(at, (int)piece, MPI_BYTE, dest, tag, comm, &req), what);
        await_requests(t, &req, 1, dest, t->patience, awaiting);
        at += piece;
        len -= piece;
    }
}

void transport_send_small(const transport_t *t, MPI_Comm comm, int dest, int tag,
                          const void *buf, int count, MPI_Datatype type, const char *what)
{
    char awaiting[96];
    snprintf(awaiting, sizeof awaiting, "it to take %s", what);
    MPI_Request req;
    transport_check(t, MPI_Isend(buf, count, type, dest, tag, comm, &req), what);
    await_requests(t, &req, 1, dest, t->patience, awaiting);
}

void transport_isend(const transport_t *t, MPI_Comm comm, int dest, int tag, const void *buf,
                     size_t len, MPI_Request *req, const char *what)
{
    const uint8_t *at = buf;
    for (int i = 0, count = transport_pieces(t, len); i < count; i++) {
        size_t piece = len < t->piece ? len : t->piece;
        transport_check(t, MPI_Isend(at, (int)piece, MPI_BYTE, dest, tag, comm, &req[i]), what);
        at += piece;
        len -= piece;
    }
}

/* Where a discarded piece is read: its own buffer, so that refusing a copy
 * while a real upload arrives in pieces never overwrites that upload. */
static uint8_t *discard_buffer(transport_t *t)
{
    if (!t->discard) {
        size_t cap = t->upload_cap < t->piece ? t->upload_cap : t->piece;
        if (!(t->discard = malloc(cap ? cap : 1)))
            transport_fatal(t, "out of memory for refusing an upload");
    }
    return t->discard;
}

size_t transport_recv(transport_t *t, MPI_Comm comm, int source, int tag, uint8_t *buf,
                      size_t cap, double limit, int drain, const char *what)
{
    size_t len = 0;
    if (!buf)
        cap = t->upload_cap;
    for (;;) {
        MPI_Status status;
        int count = 0;
        transport_wait(t, comm, source, tag, limit, drain, what, &status);
        MPI_Get_count(&status, MPI_BYTE, &count);
        size_t piece = (size_t)count;
        if (piece > t->piece || piece > cap - len)
            return SIZE_MAX;
        uint8_t *into = buf ? buf + len : discard_buffer(t);
        MPI_Request req;
        transport_check(t, MPI_Irecv(into, count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG,
                                     comm, &req), what);
        await_requests(t, &req, 1, status.MPI_SOURCE, limit, what);
        len += piece;
        if (piece < t->piece)
            return len;
        source = status.MPI_SOURCE; /* the rest comes from the same rank and tag */
        tag = status.MPI_TAG;
    }
}

/* ---- the server's side ------------------------------------------------- */

void transport_log_refusal(transport_t *t, int source, int participant, const char *why)
{
    if (t->refusals_logged < 20) {
        if (participant >= 0)
            fprintf(stderr, "dssgd: rejected upload of participant %d from rank %d: %s\n",
                    participant, source, why);
        else
            fprintf(stderr, "dssgd: rejected message from rank %d: %s\n", source, why);
    } else if (t->refusals_logged == 20) {
        fprintf(stderr, "dssgd: further refusals are counted in the metrics, not logged\n");
    }
    t->refusals_logged++;
}

void transport_refuse_unsolicited(transport_t *t, int source, int tag)
{
    /* its start is already here (probed): the rest comes at once from a
     * rank that still answers */
    if (transport_recv(t, t->up_comm, source, tag, NULL, 0, transport_reply_limit(t, 1), 0,
                       "the rest of an unsolicited upload") == SIZE_MAX)
        transport_fatal(t, "rank %d sent an unsolicited upload larger than the whole model: "
                        "stopping", source);
    server_count_rejection(t->server, WIRE_UNSOLICITED);
    transport_log_refusal(t, source, -1, "unsolicited");
}

void transport_drain(transport_t *t, int source, int answer_tag)
{
    for (;;) {
        int flag = 0;
        MPI_Status status;
        transport_check(t, MPI_Iprobe(source, MPI_ANY_TAG, t->up_comm, &flag, &status),
                        "MPI_Iprobe");
        if (!flag || status.MPI_TAG == answer_tag)
            return;
        transport_refuse_unsolicited(t, status.MPI_SOURCE, status.MPI_TAG);
    }
}

void transport_complete(transport_t *t, int dest, MPI_Request *req, int count, int answer_tag,
                        const char *what)
{
    transport_patience wait = transport_patience_start(transport_reply_limit(t, 1));
    for (;;) {
        int done = 0;
        transport_check(t, MPI_Testall(count, req, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (done)
            return;
        transport_drain(t, dest, answer_tag);
        if (transport_patience_wait(&wait)) {
            char awaiting[96];
            snprintf(awaiting, sizeof awaiting, "it to take %s", what);
            transport_stop_unanswered(t, dest, wait.limit, awaiting);
        }
    }
}

void transport_send_to_worker(transport_t *t, int dest, int tag, const void *buf, size_t len,
                              int answer_tag, const char *what)
{
    MPI_Request few[4], *req = few;
    int count = transport_pieces(t, len);
    if (count > 4 && !(req = malloc((size_t)count * sizeof *req)))
        transport_fatal(t, "out of memory");
    transport_isend(t, t->comm, dest, tag, buf, len, req, what);
    transport_complete(t, dest, req, count, answer_tag, what);
    if (req != few)
        free(req);
}

void transport_send_cmd(transport_t *t, int dest, int op, int epoch, int participant)
{
    int cmd[3] = {op, epoch, participant};
    MPI_Request req;
    transport_check(t, MPI_Isend(cmd, 3, MPI_INT, dest, TAG_CMD, t->comm, &req),
                    "MPI_Isend(cmd)");
    transport_complete(t, dest, &req, 1, -1, "a command");
}
