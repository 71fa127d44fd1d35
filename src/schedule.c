/* schedule: the epochs of each schedule, on the server (see schedule.h). */
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the two primitives ------------------------------------------------- */

/* Gives participant p the download in st->down_buf (len bytes) for `epoch`
 * (0: the initial full model; nothing to train, nothing to upload). Here:
 * p applies it and trains at once. Elsewhere: a step command, then the
 * download, whose send completes here. */
static void deliver_download(run_state *st, int p, int epoch, size_t len)
{
    transport_t *t = &st->tr;
    int dest = run_rank_of(t->size, p);
    st->bytes_down += len;
    if (dest == t->rank) {
        participant_t *part = st->local[run_slot_of(t->size, p)];
        if (epoch == 0) {
            if (participant_download(part, &st->ctx, st->down_buf, len, 0) != WIRE_OK)
                transport_fatal(t, "malformed initial download from the server");
            return;
        }
        /* Its upload waits, as the server would receive it, until collected. */
        size_t up = run_participant_step(st, part, st->down_buf, len, epoch);
        free(st->held[p]);
        if (!(st->held[p] = malloc(up ? up : 1)))
            transport_fatal(t, "out of memory holding an upload");
        memcpy(st->held[p], st->up_buf, up);
        st->held_len[p] = up;
        return;
    }
    transport_drain(t, dest, -1);
    transport_send_cmd(t, dest, CMD_STEP, epoch, p);
    transport_send_to_worker(t, dest, TAG_DOWNLOAD, st->down_buf, len,
                             epoch > 0 ? transport_turn_tag(t, epoch, p) : -1, "a download");
}

/* Takes participant p's upload for `epoch` and applies it, or refuses and
 * counts it (server_apply_upload). */
static void collect_upload(run_state *st, int p, int epoch)
{
    transport_t *t = &st->tr;
    int source = run_rank_of(t->size, p);
    size_t len;
    const uint8_t *msg = st->up_buf;
    if (source == t->rank) {
        if (!st->held[p])
            transport_fatal(t, "internal error: participant %d's upload was not delivered", p);
        msg = st->held[p];
        len = st->held_len[p];
    } else {
        char what[160], turn[64];
        snprintf(what, sizeof what, "participant %d's upload in %s", p,
                 run_turn_name(st, epoch, turn, sizeof turn));
        len = transport_recv(t, t->up_comm, source, transport_turn_tag(t, epoch, p), st->up_buf,
                             st->up_cap, transport_reply_limit(t, 1), 1, what);
        /* Larger than any message the protocol allows (the dense vector):
         * the sender would wait forever for the rest to be read. */
        if (len == SIZE_MAX)
            transport_fatal(t, "rank %d sent an upload for participant %d larger than the "
                            "whole model (%zu bytes): stopping", source, p, st->up_cap);
    }
    st->bytes_up += len;
    /* --audit: the server's view of the upload, before it is applied (the
     * audit reads msg and copies nothing back). */
    if (st->audit && audit_upload(st->audit, (uint32_t)p, epoch, msg, len))
        transport_fatal(t, "out of memory for the audit");
    wire_reason r = server_apply_upload(st->server, msg, len, (uint32_t)p, (uint32_t)epoch);
    if (r != WIRE_OK)
        transport_log_refusal(t, source, p, wire_reason_name(r));
    if (source == t->rank) {
        free(st->held[p]);
        st->held[p] = NULL;
    }
}

/* --audit: remembers the state participant p (WIRE_ANY_PARTICIPANT: every
 * one) downloads in `turn`, for the server view of its upload. */
static void note_download(run_state *st, uint32_t p, int turn)
{
    if (st->audit && audit_note_download(st->audit, p, turn, server_params(st->server)))
        transport_fatal(&st->tr, "out of memory for the audit");
}

/* ---- the schedules ------------------------------------------------------ */

void schedule_initial(run_state *st)
{
    for (int p = 0; p < st->cfg->participants; p++) {
        size_t len = server_pack_download(st->server, (uint32_t)p, 0, 1, st->down_buf,
                                          st->down_cap);
        deliver_download(st, p, 0, len);
    }
}

void schedule_sequential(run_state *st, int epoch, const int *order)
{
    for (int i = 0; i < st->cfg->participants; i++) {
        int p = order[i];
        size_t len = server_pack_download(st->server, (uint32_t)p, (uint32_t)epoch, 0,
                                          st->down_buf, st->down_cap);
        note_download(st, (uint32_t)p, epoch);
        deliver_download(st, p, epoch, len);
        collect_upload(st, p, epoch);
    }
}

/* Every participant trains from the same packed download, so each rank
 * hosting participants takes one copy of it per round: its first
 * participant's CMD_STEP, a CMD_STEP_AGAIN for each of the others, then the
 * download, sent without waiting. The commands go before the download, so
 * the rank owes no upload while they are sent (anything it sends then is
 * refused as unsolicited). Uploads are applied in participant order, which
 * is all that the result depends on: the same bits on any number of ranks.
 * bytes_down still counts the download once per participant (the
 * protocol's figure, docs/DESIGN.md, Metrics). */
void schedule_sync(run_state *st, int epoch)
{
    transport_t *t = &st->tr;
    int N = st->cfg->participants, lanes = run_hosts(t->size);
    size_t len = server_pack_download(st->server, WIRE_ANY_PARTICIPANT, (uint32_t)epoch, 0,
                                      st->down_buf, st->down_cap);
    note_download(st, WIRE_ANY_PARTICIPANT, epoch);
    int per_rank = transport_pieces(t, len);
    /* The pieces of each rank's download: per_rank requests from inflight +
     * rank * per_rank. MPI-3 allows concurrent sends from one buffer: all
     * read the same bytes. */
    MPI_Request *inflight = malloc((size_t)t->size * (size_t)per_rank * sizeof *inflight);
    if (!inflight)
        transport_fatal(t, "out of memory");
    for (int i = 0; i < t->size * per_rank; i++)
        inflight[i] = MPI_REQUEST_NULL;
    server_round_begin(st->server);
    for (int p = 0; p < N; p++) {
        int dest = run_rank_of(t->size, p);
        if (dest == t->rank) { /* trains at once; its upload is held */
            deliver_download(st, p, epoch, len);
            continue;
        }
        if (p >= lanes) /* the rank's copy went with its first participant */
            continue;
        transport_drain(t, dest, -1);
        transport_send_cmd(t, dest, CMD_STEP, epoch, p);
        st->bytes_down += len;
        for (int q = p + lanes; q < N; q += lanes) {
            transport_send_cmd(t, dest, CMD_STEP_AGAIN, epoch, q);
            st->bytes_down += len;
        }
        transport_isend(t, t->comm, dest, TAG_DOWNLOAD, st->down_buf, len,
                        inflight + (size_t)dest * (size_t)per_rank, "MPI_Isend(download)");
    }
    for (int p = 0; p < N; p++)
        collect_upload(st, p, epoch);
    server_round_end(st->server);
    for (int r = 0; r < t->size; r++)
        transport_complete(t, r, inflight + (size_t)r * (size_t)per_rank, per_rank, -1,
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
    note_download(st, (uint32_t)p, epoch);
    st->bytes_down += len;
    transport_send_to_worker(&st->tr, src, TAG_DOWNLOAD, st->down_buf, len,
                             transport_turn_tag(&st->tr, epoch, p), "a download");
}

/* Async in one process, with `inflight` uploads outstanding: downloads go
 * out in participant order, each packed from the model as it is then; the
 * upload collected next is drawn uniformly among those in flight (the
 * schedule's stream), or with --simulate-order fifo is the oldest, and its
 * place goes to the next download. Drawn, an upload is 0 to about
 * 2 * inflight uploads stale, as with that many workers of random speeds;
 * oldest first, every upload but a turn's first inflight is inflight - 1
 * stale, as with workers of equal speed. Either way the run is the same
 * bits for a seed. */
static void async_simulated(run_state *st, int epoch, int inflight)
{
    int N = st->cfg->participants, next = 0, count = 0;
    uint32_t *flying = malloc((size_t)(inflight < N ? inflight : N) * sizeof *flying);
    if (!flying)
        transport_fatal(&st->tr, "out of memory");
    for (;;) {
        while (count < inflight && next < N) {
            size_t len = server_pack_download(st->server, (uint32_t)next, (uint32_t)epoch, 0,
                                              st->down_buf, st->down_cap);
            note_download(st, (uint32_t)next, epoch);
            deliver_download(st, next, epoch, len);
            flying[count++] = (uint32_t)next++;
        }
        if (count == 0)
            break;
        uint32_t i = 0;
        if (st->cfg->simulate_order == SIMULATE_FIFO) { /* the oldest: the lowest id */
            for (int k = 1; k < count; k++)
                if (flying[k] < flying[i])
                    i = (uint32_t)k;
        } else {
            i = rng_below(&st->schedule_rng, (uint32_t)count);
        }
        int p = (int)flying[i];
        flying[i] = flying[--count];
        collect_upload(st, p, epoch);
    }
    free(flying);
}

/* Ends the job when a rank that still owes uploads has sent nothing valid
 * for `limit` seconds. */
static void check_deadlines(run_state *st, int epoch, const double *heard, const int *owed,
                            const char *uploaded, double limit, int done)
{
    const transport_t *t = &st->tr;
    double now = transport_now();
    for (int r = 1; r < t->size; r++) {
        if (owed[r] == 0 || now - heard[r] <= limit)
            continue;
        int p = -1, N = st->cfg->participants;
        for (int s = 0; s < run_hosted_by(t->size, N, r) && p < 0; s++)
            if (!uploaded[run_participant_at(t->size, r, s)])
                p = run_participant_at(t->size, r, s);
        char awaiting[224], turn[64];
        snprintf(awaiting, sizeof awaiting, "participant %d's upload in %s; %d of %d "
                 "uploads are in", p, run_turn_name(st, epoch, turn, sizeof turn), done, N);
        transport_stop_unanswered(t, r, limit, awaiting);
    }
}

/* Each rank asks for its first participant's download, and every upload is
 * answered with the download of the rank's next participant (a round trip
 * less a turn); the server serves in arrival order. The turn is the
 * server's (server_async_begin .. server_round_end): each worker rank, or
 * simulated slot, has at most one download in flight. */
void schedule_async(run_state *st, int epoch, const int *order)
{
    transport_t *t = &st->tr;
    int N = st->cfg->participants, S = st->cfg->simulate_staleness;
    int inflight = t->size > 1 ? run_hosts(t->size) : S > 0 ? S : 1;
    if (server_async_begin(st->server, (uint32_t)inflight) != 0)
        transport_fatal(t, "out of memory for the server's snapshots of %d downloads", inflight);
    if (t->size == 1) {
        if (S > 0)
            async_simulated(st, epoch, S);
        else /* one process: arrival order is participant order */
            schedule_sequential(st, epoch, order);
        server_round_end(st->server);
        return;
    }
    for (int r = 1; r < t->size; r++)
        transport_send_cmd(t, r, CMD_ASYNC, epoch, -1);
    char *uploaded = calloc((size_t)N, 1), *requested = calloc((size_t)N, 1);
    if (!uploaded || !requested)
        transport_fatal(t, "out of memory");
    /* Every rank that still owes uploads has its own deadline, restarted
     * only by its own valid messages: refused copies from a flooding rank
     * must not keep another, hung rank's limit from running out. */
    double limit = transport_reply_limit(t, 1), *heard = malloc((size_t)t->size * sizeof *heard);
    int *owed = malloc((size_t)t->size * sizeof *owed);
    if (!heard || !owed)
        transport_fatal(t, "out of memory");
    for (int r = 0; r < t->size; r++) {
        heard[r] = transport_now();
        owed[r] = r == 0 ? 0 : run_hosted_by(t->size, N, r);
    }
    int done = 0;
    transport_patience idle = transport_patience_start(0); /* back-off only */
    while (done < N) {
        if (limit > 0)
            check_deadlines(st, epoch, heard, owed, uploaded, limit, done);
        /* Requests come on comm, uploads on up_comm: poll both. */
        MPI_Status status;
        int is_request = 0, is_upload = 0;
        transport_check(t, MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQUEST, t->comm, &is_request, &status),
                        "MPI_Iprobe");
        if (!is_request)
            transport_check(t, MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, t->up_comm, &is_upload,
                                          &status), "MPI_Iprobe");
        if (!is_request && !is_upload) {
            transport_patience_wait(&idle);
            continue;
        }
        idle = transport_patience_start(0);
        int src = status.MPI_SOURCE;
        if (is_request) {
            int p = -1;
            transport_check(t, MPI_Recv(&p, 1, MPI_INT, src, TAG_REQUEST, t->comm,
                                        MPI_STATUS_IGNORE), "MPI_Recv(request)");
            if (p < 0 || p >= N || run_rank_of(t->size, p) != src || requested[p]) {
                /* Not answered: an honest rank asks once, for its own
                 * first participant. */
                server_count_rejection(st->server, WIRE_UNSOLICITED);
                transport_log_refusal(t, src, -1, "a download request for a participant it "
                                      "does not host or asked for already");
                continue;
            }
            heard[src] = transport_now();
            async_serve(st, src, p, epoch, requested);
        } else {
            /* An upload answers a requested turn of src by its tag. */
            int p = -1, hosted = run_hosted_by(t->size, N, src);
            for (int s = 0; s < hosted && p < 0; s++) {
                int q = run_participant_at(t->size, src, s);
                if (requested[q] && !uploaded[q] &&
                    transport_turn_tag(t, epoch, q) == status.MPI_TAG)
                    p = q;
            }
            if (p < 0) {
                transport_refuse_unsolicited(t, src, status.MPI_TAG);
                continue;
            }
            collect_upload(st, p, epoch);
            uploaded[p] = 1;
            done++;
            owed[src]--;
            heard[src] = transport_now();
            int next = run_participant_at(t->size, src, run_slot_of(t->size, p) + 1);
            if (next < N && !requested[next])
                async_serve(st, src, next, epoch, requested);
        }
    }
    server_round_end(st->server);
    free(uploaded);
    free(requested);
    free(heard);
    free(owed);
}

void schedule_standalone(run_state *st)
{
    transport_t *t = &st->tr;
    for (int r = run_first_host(t->size); r < t->size; r++) {
        if (r == t->rank)
            run_train_local(st);
        else
            transport_send_cmd(t, r, CMD_LOCAL, 0, -1);
    }
    for (int r = run_first_host(t->size); r < t->size; r++) {
        if (r == t->rank)
            continue;
        MPI_Status status;
        int done;
        transport_wait(t, t->comm, r, TAG_REPORT,
                       transport_reply_limit(t, run_hosted_by(t->size, st->cfg->participants, r)),
                       1, "the end of its standalone training", &status);
        transport_check(t, MPI_Recv(&done, 1, MPI_INT, r, TAG_REPORT, t->comm, MPI_STATUS_IGNORE),
                        "MPI_Recv(ack)");
    }
}
