/* run: `dssgd train` over MPI: set-up, the worker ranks' loop, the modes
 * (DSSGD, centralized, standalone), evaluation, metrics and checkpoints.
 * The schedules' epochs live in schedule.c, the messages in transport.c,
 * the protocol's rules in server.c and participant.c. */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dpsgd.h"
#include "err.h"
#include "paths.h"
#include "run_internal.h"
#include "schedule.h"
#include "select.h"
#include "sgd.h"

#define EVAL_BATCH 500

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- set-up ------------------------------------------------------------ */

/* The data sets DP-SGD samples from: every participant's shard, or in
 * mode centralized the union of the shards. *sizes is allocated. */
static int dpsgd_sizes(run_state *st, size_t **sizes, int *count, char *err)
{
    const config_t *c = st->cfg;
    *count = c->mode == MODE_CENTRALIZED ? 1 : c->participants;
    if (!(*sizes = malloc((size_t)*count * sizeof **sizes)))
        return err_set(err, "out of memory");
    if (c->mode != MODE_CENTRALIZED) {
        memcpy(*sizes, st->shards.sizes, (size_t)*count * sizeof **sizes);
        return 0;
    }
    uint32_t *all = NULL;
    if (dataset_shards_union(&st->shards, st->train.count, &all, &(*sizes)[0], err)) {
        free(*sizes);
        return -1;
    }
    free(all);
    return 0;
}

/* --dpsgd: refuses data sets that cannot carry the plan, and resolves the
 * noise multiplier (--dp-noise, or the one that makes the planned run end
 * at --dp-target-epsilon). Every rank computes the same. */
static int resolve_dpsgd(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    size_t *sizes;
    int count, rc;
    if (dpsgd_sizes(st, &sizes, &count, err))
        return -1;
    rc = dpsgd_check_sizes(sizes, count, c->batch, c->dp_delta,
                           c->mode == MODE_CENTRALIZED ? "the union of the shards, data set"
                                                       : "the shard of participant", err);
    st->dp_sigma = c->dp_noise;
    if (rc == 0 && c->dp_noise < 0)
        rc = dpsgd_plan_sigma(sizes, count, c->batch, c->epochs, c->dp_delta,
                              c->dp_target_epsilon, &st->dp_sigma, err);
    free(sizes);
    return rc;
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* A Poisson batch rarely passes its mean by 3 standard deviations; larger
 * ones are processed in chunks of this. */
static int dpsgd_max_batch(int batch)
{
    return batch + (int)ceil(3.0 * sqrt((double)batch)) + 1;
}

/* The test images every evaluation covers: --eval-size of them, or all. */
static size_t evaluated_count(const run_state *st)
{
    size_t limit = st->cfg->eval_size;
    return limit && limit < st->test.count ? limit : st->test.count;
}

/* Whether the participants' models are scored on a sample between full
 * evaluations: the same answer on every rank. */
static int eval_sampled(const run_state *st)
{
    size_t n = st->cfg->eval_participants;
    return n > 0 && n < evaluated_count(st);
}

/* A uniform sample of `size` of the first `count` test images, without
 * replacement, in ascending order (drawn once from the seed's evaluation
 * stream, so every epoch and every rank scores the same images). */
static int draw_eval_sample(const dataset_t *test, size_t count, size_t size, uint64_t seed,
                            dataset_t *out)
{
    uint32_t *idx = err_calloc(count, sizeof *idx);
    *out = *test;
    out->count = size;
    out->x = err_calloc(size * test->dim, sizeof *out->x);
    out->y = err_calloc(size, sizeof *out->y);
    if (!idx || !out->x || !out->y) {
        free(idx);
        dataset_free(out);
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        idx[i] = (uint32_t)i;
    rng_t rng;
    rng_init(&rng, seed, RNG_STREAM_EVAL);
    for (size_t i = 0; i < size; i++) { /* partial Fisher-Yates */
        size_t j = i + rng_below(&rng, (uint32_t)(count - i));
        uint32_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
    }
    qsort(idx, size, sizeof *idx, compare_u32);
    for (size_t i = 0; i < size; i++) {
        memcpy(out->x + i * test->dim, test->x + (size_t)idx[i] * test->dim,
               test->dim * sizeof *out->x);
        out->y[i] = test->y[idx[i]];
    }
    free(idx);
    return 0;
}

static int setup(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    const transport_t *t = &st->tr;
    /* the test set's shape, which every training file has (run_data_load) */
    if (model_build(&st->model, c->model, st->test.channels, st->test.rows, st->test.cols,
                    st->classes, err))
        return -1;
    st->n = st->model.num_params;
    if (st->n >= UINT32_MAX)
        return err_set(err, "model of %zu parameters: the wire format counts parameters in "
                       "32 bits", st->n);
    st->k_up = select_count(c->theta_u, st->n);
    st->k_down = c->download == DOWNLOAD_ALL ? st->n : select_count(c->theta_d, st->n);

    rng_t part_rng;
    rng_init(&part_rng, c->seed, RNG_STREAM_PARTITION);
    if (!st->sites && dataset_partition_make(&st->train, c->partition, c->participants,
                                             c->shard_size, c->alpha, &part_rng, &st->shards,
                                             err))
        return -1;
    if (run_data_load_hosted_pixels(st, err))
        return -1;

    /* --local-steps K: exchanges per epoch, set by the largest shard. */
    st->rounds = 1;
    int local_steps = config_local_steps(c);
    if (local_steps > 0) {
        size_t largest = 0;
        for (int p = 0; p < c->participants; p++)
            largest = st->shards.sizes[p] > largest ? st->shards.sizes[p] : largest;
        size_t batches = (largest + (size_t)c->batch - 1) / (size_t)c->batch;
        size_t rounds = (batches + (size_t)local_steps - 1) / (size_t)local_steps;
        /* Turns number the messages (32 bits) and the MPI tags. */
        if (rounds > 1 && (uint64_t)rounds * (uint64_t)c->epochs >= INT32_MAX / 2)
            return err_set(err, "--local-steps %d: %zu exchanges per epoch over %d epochs "
                           "is more than the protocol counts", local_steps, rounds,
                           c->epochs);
        st->rounds = rounds ? (uint32_t)rounds : 1;
    }

    if (c->dpsgd && resolve_dpsgd(st, err))
        return -1;

    st->eval_ws = model_ws_create(&st->model, EVAL_BATCH);
    if (!st->eval_ws)
        return err_set(err, "out of memory for the evaluation workspace (or a batch of %d "
                       "whose convolution outputs pass 2^31 floats)", EVAL_BATCH);
    if (c->mode == MODE_CENTRALIZED)
        return 0;

    /* This rank's participants and their shared scratch. */
    st->local_count = run_hosted_by(t->size, c->participants, t->rank);
    st->local = calloc((size_t)(st->local_count ? st->local_count : 1), sizeof *st->local);
    st->told_budget = calloc((size_t)(st->local_count ? st->local_count : 1), 1);
    st->scores = calloc((size_t)(st->local_count ? st->local_count : 1), sizeof *st->scores);
    if (!st->local || !st->told_budget || !st->scores)
        return err_set(err, "out of memory");
    for (int s = 0; s < st->local_count; s++)
        st->scores[s].how = -1;
    for (int s = 0; s < st->local_count; s++) {
        int p = run_participant_at(t->size, t->rank, s);
        st->local[s] = participant_create((uint32_t)p, st->n, st->shards.indices[p],
                                          st->shards.sizes[p], c->seed, c->residual);
        if (!st->local[s])
            return err_set(err, "out of memory for participant %d (%zu parameters)", p, st->n);
    }
    if (st->local_count > 0 && eval_sampled(st) &&
        draw_eval_sample(&st->test, evaluated_count(st), c->eval_participants, c->seed,
                         &st->eval_sample))
        return err_set(err, "out of memory for the evaluation sample");
    if (st->local_count > 0) {
        st->ctx.model = &st->model;
        st->ctx.train = &st->train;
        st->ctx.batch = c->batch;
        st->ctx.local_steps = local_steps;
        st->ctx.rounds = st->rounds;
        st->ctx.lr = (float)c->lr;
        st->ctx.k_up = st->k_up;
        st->ctx.select = c->select;
        st->ctx.tau = (float)c->tau;
        st->ctx.gamma = (float)c->gamma;
        st->ctx.dp_epsilon = c->dp_epsilon;
        st->ctx.dp_max_epsilon = c->dp_max_epsilon;
        st->ctx.dpsgd = c->dpsgd;
        st->ctx.dp_clip = (float)c->dp_clip;
        st->ctx.dp_sigma = st->dp_sigma;
        st->ctx.dp_delta = c->dp_delta;
        st->ctx.ws = model_ws_create(&st->model, c->dpsgd ? dpsgd_max_batch(c->batch) : c->batch);
        if (!st->ctx.ws || participant_ctx_init(&st->ctx, st->n))
            return err_set(err, "out of memory for the training workspace");
    }
    st->down_cap = wire_size(st->n);
    st->up_cap = wire_size(st->n) + 64;
    st->down_buf = malloc(st->down_cap);
    st->up_buf = malloc(st->up_cap);
    if (!st->down_buf || !st->up_buf)
        return err_set(err, "out of memory for message buffers");
    st->tr.upload_cap = st->up_cap;
    if (t->size == 1) {
        st->held = calloc((size_t)c->participants, sizeof *st->held);
        st->held_len = calloc((size_t)c->participants, sizeof *st->held_len);
        if (!st->held || !st->held_len)
            return err_set(err, "out of memory");
    }
    if (c->simulate_staleness && t->size > 1)
        return err_set(err, "--simulate-staleness runs in one process: start dssgd with one "
                       "rank (without mpirun, or mpirun -np 1); with more ranks, async has the "
                       "real staleness of its %d workers", t->size - 1);
    if (t->rank == 0) {
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
    free(st->told_budget);
    free(st->scores);
    for (int p = 0; st->held && p < st->cfg->participants; p++)
        free(st->held[p]);
    free(st->held);
    free(st->held_len);
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
    dataset_free(&st->holdout);
    dataset_free(&st->eval_sample);
    free(st->sites);
    free(st->data_manifest);
    audit_free(st->audit);
}

/* ---- participant side (any rank hosting participants) ------------------ */

const char *run_turn_name(const run_state *st, int turn, char *buf, size_t len)
{
    if (st->rounds <= 1 || turn <= 0)
        snprintf(buf, len, "epoch %d", turn);
    else
        snprintf(buf, len, "epoch %d, exchange %d of %u", (turn - 1) / (int)st->rounds + 1,
                 (turn - 1) % (int)st->rounds + 1, st->rounds);
    return buf;
}

size_t run_participant_step(run_state *st, participant_t *part, const uint8_t *down,
                            size_t down_len, int epoch)
{
    wire_reason r = participant_download(part, &st->ctx, down, down_len, (uint32_t)epoch);
    if (r != WIRE_OK)
        transport_fatal(&st->tr, "participant %u: malformed download from the server: %s",
                        participant_id(part), wire_reason_name(r));
    sgd_stats stats;
    size_t len = participant_epoch(part, &st->ctx, (uint32_t)epoch, st->up_buf, st->up_cap,
                                   &stats);
    int slot = run_slot_of(st->tr.size, (int)participant_id(part));
    st->scores[slot].how = -1; /* its model changed */
    if (participant_budget_stopped(part) && !st->told_budget[slot]) {
        char turn[64];
        if (st->ctx.dpsgd)
            fprintf(stderr, "dssgd: participant %u stops training and uploading in %s, after "
                    "%llu DP-SGD steps: another step would take its epsilon from %g past the "
                    "cap %g\n", participant_id(part), run_turn_name(st, epoch, turn, sizeof turn),
                    (unsigned long long)participant_dp_steps(part),
                    participant_ledger(part)->spent, st->ctx.dp_max_epsilon);
        else
            fprintf(stderr, "dssgd: participant %u stops uploading at epoch %d: another epoch "
                    "would take its epsilon from %g past the cap %g\n", participant_id(part),
                    epoch, participant_ledger(part)->spent, st->ctx.dp_max_epsilon);
        st->told_budget[slot] = 1;
    }
    const run_hooks *h = st->hooks;
    if (h && h->tamper && st->tr.rank > 0 && st->tr.rank == h->tamper_rank)
        len = h->tamper(h->tamper_arg, participant_id(part), (uint32_t)epoch, st->up_buf, len,
                        st->up_cap);
    return len;
}

void run_train_local(run_state *st)
{
    for (int s = 0; s < st->local_count; s++) {
        sgd_stats stats;
        participant_train(st->local[s], &st->ctx, &stats);
        if (participant_budget_stopped(st->local[s]) && !st->told_budget[s]) {
            fprintf(stderr, "dssgd: participant %u stops training after %llu DP-SGD steps: "
                    "another step would take its epsilon from %g past the cap %g\n",
                    participant_id(st->local[s]),
                    (unsigned long long)participant_dp_steps(st->local[s]),
                    participant_ledger(st->local[s])->spent, st->ctx.dp_max_epsilon);
            st->told_budget[s] = 1;
        }
    }
}

/* How an epoch scores the participants' models (the participant field of
 * CMD_EVAL): not at all (--eval-every), on the sample, or on every
 * evaluated test image. */
enum { EVAL_NONE, EVAL_SAMPLE, EVAL_ALL };

/* The kind of epoch `epoch`'s evaluation: every rank computes the same. */
static int eval_kind(const run_state *st, int epoch)
{
    const config_t *c = st->cfg;
    return epoch >= c->epochs ? EVAL_ALL
           : epoch % c->eval_every ? EVAL_NONE
           : eval_sampled(st) ? EVAL_SAMPLE : EVAL_ALL;
}

/* The images an evaluation of kind `how` scores a participant on. */
static const dataset_t *scored_set(const run_state *st, int how, size_t *count)
{
    *count = how == EVAL_SAMPLE ? st->eval_sample.count : evaluated_count(st);
    return how == EVAL_SAMPLE ? &st->eval_sample : &st->test;
}

/* Scores one more batch of local participant s's scoring, at the batch
 * starts sgd_evaluate uses (so the same figures); returns whether more is
 * left. */
static int score_some(run_state *st, int s)
{
    run_score *sc = &st->scores[s];
    size_t count, max = (size_t)model_ws_max_batch(st->eval_ws);
    if (sc->how < 0)
        return 0;
    const dataset_t *ds = scored_set(st, sc->how, &count);
    if (sc->next >= count)
        return 0;
    size_t b = count - sc->next < max ? count - sc->next : max;
    sgd_evaluate_batch(&st->model, participant_params(st->local[s]), st->eval_ws, ds, sc->next,
                       b, &sc->correct);
    sc->next += b;
    return sc->next < count;
}

/* Local participant s's accuracy, scored as `how` says: what a scoring
 * begun after its last turn (score_after_turn) left, finished here. */
static double score_local(run_state *st, int s, int how)
{
    if (how == EVAL_NONE)
        return NAN;
    run_score *sc = &st->scores[s];
    if (sc->how != how)
        *sc = (run_score){how, 0, 0};
    while (score_some(st, s))
        ;
    size_t count;
    scored_set(st, how, &count);
    return count ? (double)sc->correct / (double)count : 0.0;
}

/* A worker under a sequential schedule waits through the other ranks'
 * turns: after a participant's last turn of an epoch (its upload sent),
 * its scoring for the epoch's evaluation begins, and goes on batch by
 * batch while no command waits (score_while_idle). The figures are those
 * of scoring at the epoch's end: the model does not change before its next
 * turn, which comes after that evaluation (any turn before it would start
 * the scoring over: run_participant_step). */
static void score_after_turn(run_state *st, int slot, int turn)
{
    config_schedule sched = st->cfg->schedule;
    if (st->tr.rank == 0 || (sched != SCHEDULE_ROUND_ROBIN && sched != SCHEDULE_RANDOM) ||
        turn <= 0 || turn % (int)st->rounds)
        return;
    int how = eval_kind(st, turn / (int)st->rounds);
    if (how != EVAL_NONE)
        st->scores[slot] = (run_score){how, 0, 0};
}

/* Scores a batch at a time until a command from rank 0 waits or nothing is
 * left: a command waits at most one batch (EVAL_BATCH images). */
static void score_while_idle(run_state *st)
{
    for (int s = 0; s < st->local_count; s++) {
        for (;;) {
            int waiting = 0;
            transport_check(&st->tr, MPI_Iprobe(0, TAG_CMD, st->tr.comm, &waiting,
                                                MPI_STATUS_IGNORE), "MPI_Iprobe");
            if (waiting)
                return;
            if (!score_some(st, s))
                break;
        }
    }
}

/* report[2s] = accuracy of local participant s (NaN with EVAL_NONE),
 * report[2s+1] = its cumulative epsilon: what rank 0 needs for the metrics
 * row. */
static void evaluate_local(run_state *st, double *report, int how)
{
    for (int s = 0; s < st->local_count; s++) {
        report[2 * s] = score_local(st, s, how);
        report[2 * s + 1] = participant_ledger(st->local[s])->spent;
        st->scores[s].how = -1; /* every other change of a model comes after this */
    }
}

static size_t recv_download(run_state *st)
{
    size_t len = transport_recv(&st->tr, st->tr.comm, 0, TAG_DOWNLOAD, st->down_buf,
                                st->down_cap, st->tr.patience, 0, "a download");
    if (len == SIZE_MAX)
        transport_fatal(&st->tr, "the server sent a download larger than the model");
    return len;
}

static void send_upload(run_state *st, size_t len, int tag)
{
    transport_t *t = &st->tr;
    transport_send(t, t->up_comm, 0, tag, st->up_buf, len, "an upload");
    const run_hooks *h = st->hooks;
    if (h && t->rank > 0 && t->rank == h->tamper_rank)
        for (int i = 0; i < h->flood; i++)
            transport_send(t, t->up_comm, 0, tag, st->up_buf, len, "a flooded copy");
}

/* ---- participant state for checkpoints --------------------------------
 * A participant's state travels as params (n floats), residual (n floats,
 * with --residual), rng (RNG_STATE_WORDS u64) and epsilon (1 double). */

typedef struct {
    float *params, *residual;     /* (n) each; residual NULL without --residual */
    uint64_t rng[RNG_STATE_WORDS];
    double epsilon;
} part_state;

/* Buffers for one participant's state, on a worker rank that gathers or
 * scatters it. -1 if out of memory. */
static int part_state_alloc(part_state *ps, size_t n, int residual)
{
    memset(ps, 0, sizeof *ps);
    ps->params = malloc(n * sizeof(float));
    ps->residual = residual ? malloc(n * sizeof(float)) : NULL;
    return ps->params && (ps->residual || !residual) ? 0 : -1;
}

static void part_state_free(part_state *ps)
{
    free(ps->params);
    free(ps->residual);
}

static void send_participant_state(run_state *st, participant_t *p, part_state *ps)
{
    transport_t *t = &st->tr;
    size_t bytes = st->n * sizeof(float);
    participant_save(p, ps->params, ps->residual, ps->rng, &ps->epsilon);
    transport_send(t, t->comm, 0, TAG_STATE, ps->params, bytes, "participant parameters");
    if (ps->residual)
        transport_send(t, t->comm, 0, TAG_STATE, ps->residual, bytes, "a participant residual");
    transport_send(t, t->comm, 0, TAG_STATE, ps->rng, sizeof ps->rng, "a participant rng state");
    transport_send(t, t->comm, 0, TAG_STATE, &ps->epsilon, sizeof ps->epsilon,
                   "a participant epsilon");
}

/* Receives one piece of participant state of exactly `bytes`. */
static void recv_state(run_state *st, int source, void *buf, size_t bytes, double limit,
                       const char *what)
{
    transport_t *t = &st->tr;
    int drain = t->rank == 0; /* the server gathering from a worker */
    if (transport_recv(t, t->comm, source, TAG_STATE, buf, bytes, limit, drain, what) != bytes)
        transport_fatal(t, "rank %d sent %s of the wrong size", source, what);
}

static void receive_participant_state(run_state *st, participant_t *p, part_state *ps,
                                      int epochs_done)
{
    size_t bytes = st->n * sizeof(float);
    double limit = st->tr.patience;
    recv_state(st, 0, ps->params, bytes, limit, "participant parameters");
    if (ps->residual)
        recv_state(st, 0, ps->residual, bytes, limit, "a participant residual");
    recv_state(st, 0, ps->rng, sizeof ps->rng, limit, "a participant rng state");
    recv_state(st, 0, &ps->epsilon, sizeof ps->epsilon, limit, "a participant epsilon");
    st->scores[run_slot_of(st->tr.size, (int)participant_id(p))].how = -1;
    if (participant_restore_at(p, &st->ctx, ps->params, ps->residual, ps->rng, ps->epsilon,
                               (uint64_t)epochs_done))
        transport_fatal(&st->tr, "checkpointed participant state refused (rng of another "
                        "stream, or an epsilon that no DP-SGD step count gives?)");
}

/* The participant hosted here that the server named in a command. */
static participant_t *hosted_participant(run_state *st, int p, const char *what)
{
    const transport_t *t = &st->tr;
    if (p < 0 || p >= st->cfg->participants || run_rank_of(t->size, p) != t->rank)
        transport_fatal(t, "server sent %s for a participant not hosted here", what);
    return st->local[run_slot_of(t->size, p)];
}

/* How long a worker waits for a word from rank 0 before it gives up:
 * longer than rank 0 may leave it alone in a healthy run, counted in
 * --rank-timeout R (docs/DESIGN.md, Failure handling, has the case by
 * case bound): R x (T + 2), T the participant turns rank 0 may serve
 * between two words to this rank, the 2 for an epoch's end (every rank's
 * evaluation at once, rank 0's own steps) and the small terms. T: N; with
 * --local-steps 2N (a random order may serve the rank first in one
 * exchange and last in the next); for a rank hosting no participant,
 * every turn of an epoch, plus one for rank 0's loading a checkpoint
 * before its first word. R = 0: forever. */
static double worker_patience(const run_state *st)
{
    double N = st->cfg->participants, turns = N;
    if (st->local_count == 0)
        turns = N * (double)st->rounds + 1;
    else if (st->rounds > 1)
        turns = 2 * N;
    return st->tr.rank_timeout * (turns + 2);
}

/* Ranks > 0: obey the server's commands until told to stop, or until rank
 * 0 has been silent longer than any healthy run allows. */
static void worker_loop(run_state *st)
{
    transport_t *t = &st->tr;
    t->patience = worker_patience(st);
    double *acc = calloc(2 * (size_t)(st->local_count ? st->local_count : 1), sizeof *acc);
    if (!acc)
        transport_fatal(t, "out of memory");
    part_state ps = {0};
    int down_turn = 0;   /* the turn of the download in down_buf (0: none to reuse) */
    size_t down_len = 0;
    for (;;) {
        MPI_Status status;
        int cmd[3];
        score_while_idle(st);
        transport_wait(t, t->comm, 0, TAG_CMD, t->patience, 0, "a command", &status);
        transport_check(t, MPI_Recv(cmd, 3, MPI_INT, 0, TAG_CMD, t->comm, MPI_STATUS_IGNORE),
                        "MPI_Recv(cmd)");
        int op = cmd[0], epoch = cmd[1], p = cmd[2];
        if (op == CMD_STOP)
            break;
        if ((op == CMD_GATHER || op == CMD_SCATTER) && !ps.params &&
            part_state_alloc(&ps, st->n, st->cfg->residual))
            transport_fatal(t, "out of memory for a participant's checkpoint state");
        if (st->hooks && st->hooks->hang_rank == t->rank && epoch > 0 &&
            (op == CMD_STEP || op == CMD_STEP_AGAIN || op == CMD_ASYNC))
            for (;;) /* test only: a hung node, which answers nothing */
                pause();
        if (op == CMD_STEP || op == CMD_STEP_AGAIN) {
            /* One participant's turn: a download (CMD_STEP; for the initial
             * download p trains nothing), or the one this rank took for the
             * same turn (CMD_STEP_AGAIN: participants only read down_buf);
             * then the upload. */
            participant_t *part = hosted_participant(st, p, "a step");
            if (op == CMD_STEP) {
                down_len = recv_download(st);
                down_turn = 0;
                if (epoch == 0) { /* initial full download: no training */
                    if (participant_download(part, &st->ctx, st->down_buf, down_len, 0) !=
                        WIRE_OK)
                        transport_fatal(t, "malformed initial download from the server");
                    continue;
                }
                down_turn = epoch;
            } else if (epoch <= 0 || epoch != down_turn) {
                transport_fatal(t, "the server asked participant %d to train in turn %d from "
                                "a download this rank does not hold", p, epoch);
            }
            send_upload(st, run_participant_step(st, part, st->down_buf, down_len, epoch),
                        transport_turn_tag(t, epoch, p));
            score_after_turn(st, run_slot_of(t->size, p), epoch);
        } else if (op == CMD_ASYNC) {
            /* The first participant asks; the server answers each upload
             * with the download of the rank's next participant, which saves
             * a round trip a turn. */
            if (st->local_count > 0) {
                int first = (int)participant_id(st->local[0]);
                transport_send_small(t, t->comm, 0, TAG_REQUEST, &first, 1, MPI_INT,
                                     "a download request");
            }
            down_turn = 0;
            for (int s = 0; s < st->local_count; s++) {
                int who = (int)participant_id(st->local[s]);
                size_t len = recv_download(st);
                send_upload(st, run_participant_step(st, st->local[s], st->down_buf, len, epoch),
                            transport_turn_tag(t, epoch, who));
            }
        } else if (op == CMD_LOCAL) {
            run_train_local(st);
            int done = 1; /* lets rank 0 time the epoch */
            transport_send_small(t, t->comm, 0, TAG_REPORT, &done, 1, MPI_INT,
                                 "its training report");
        } else if (op == CMD_GATHER) {
            for (int s = 0; s < st->local_count; s++)
                send_participant_state(st, st->local[s], &ps);
        } else if (op == CMD_SCATTER) {
            receive_participant_state(st, hosted_participant(st, p, "state"), &ps, epoch);
        } else if (op == CMD_EVAL) {
            if (p < EVAL_NONE || p > EVAL_ALL || (p == EVAL_SAMPLE && !st->eval_sample.count))
                transport_fatal(t, "an evaluation command of unknown kind %d", p);
            evaluate_local(st, acc, p);
            transport_send_small(t, t->comm, 0, TAG_REPORT, acc, 2 * st->local_count,
                                 MPI_DOUBLE, "an evaluation report");
        } else {
            transport_fatal(t, "unknown command from the server");
        }
    }
    part_state_free(&ps);
    free(acc);
}

/* ---- evaluation and metrics --------------------------------------------- */

/* Global model (rank 0) and local models (where they live): the global
 * model every epoch on every evaluated test image; the participants' as
 * --eval-every and --eval-participants say, always all at the last epoch.
 * Their epsilon is reported every epoch. */
static void evaluate_epoch(run_state *st, metrics_row *row, const float *global)
{
    transport_t *t = &st->tr;
    const config_t *c = st->cfg;
    int N = c->participants;
    int how = eval_kind(st, row->epoch);
    for (int r = run_first_host(t->size); r < t->size; r++)
        if (r != t->rank)
            transport_send_cmd(t, r, CMD_EVAL, row->epoch, how);
    if (global) {
        sgd_stats stats;
        sgd_evaluate(&st->model, global, st->eval_ws, &st->test, st->cfg->eval_size, &stats);
        row->has_global = 1;
        row->global_acc = stats.accuracy;
        row->global_loss = stats.loss;
    }
    double *report = calloc(2 * (size_t)N, sizeof *report);
    if (!report)
        transport_fatal(t, "out of memory");
    for (int r = run_first_host(t->size); r < t->size; r++) {
        int hosted = run_hosted_by(t->size, N, r);
        if (r == t->rank) {
            evaluate_local(st, report, how);
        } else {
            MPI_Status status;
            transport_wait(t, t->comm, r, TAG_REPORT, transport_reply_limit(t, hosted), 1,
                           "its participants' evaluation", &status);
            transport_check(t, MPI_Recv(report, 2 * hosted, MPI_DOUBLE, r, TAG_REPORT, t->comm,
                                        MPI_STATUS_IGNORE), "MPI_Recv(report)");
        }
        for (int s = 0; s < hosted; s++) {
            int p = run_participant_at(t->size, r, s);
            st->part_acc[p] = report[2 * s];
            st->part_eps[p] = report[2 * s + 1];
        }
    }
    free(report);
    row->epsilon = 0;
    for (int p = 0; p < N; p++)
        row->epsilon = fmax(row->epsilon, st->part_eps[p]);
    if (how == EVAL_NONE)
        return;
    row->has_part = 1;
    row->part_sample = how == EVAL_SAMPLE ? c->eval_participants : 0;
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

/* The divergence guard's reference: the test loss of the model this job
 * starts from (the initial one, or the resumed one). */
static double start_loss(run_state *st, const float *w)
{
    sgd_stats stats;
    sgd_evaluate(&st->model, w, st->eval_ws, &st->test, st->cfg->eval_size, &stats);
    return stats.loss;
}

/* The divergence guard: after each epoch, stops the run (-1, message in
 * err) when the global loss is not finite or has grown past
 * --divergence-factor times the loss this job started from. The epoch's
 * row is written first; the checkpoint keeps the last good epoch. */
static int check_divergence(run_state *st, const metrics_row *row, double reference, char *err)
{
    const config_t *c = st->cfg;
    if (!row->has_global || c->divergence_factor == 0)
        return 0;
    if (isfinite(row->global_loss) && row->global_loss <= c->divergence_factor * reference)
        return 0;
    config_aggregate rule = config_aggregate_rule(c);
    const char *hint =
        c->mode == MODE_CENTRALIZED ? "lower --lr"
        : rule == AGGREGATE_SUM && c->schedule == SCHEDULE_SYNC
            ? "--aggregate sum adds every participant's change made from the same state: use "
              "--aggregate mean (the default for sync), or lower --lr"
        : rule == AGGREGATE_SUM && c->schedule == SCHEDULE_ASYNC
            ? "--aggregate sum adds stale changes at full weight: use --aggregate mix (the "
              "default for async), or lower --lr"
            : "lower --lr or --server-lr";
    return err_set(err, "epoch %d: the global model diverged (test loss %g, %g at the start; "
                   "--divergence-factor %g): %s.%s", row->epoch, row->global_loss, reference,
                   c->divergence_factor, hint,
                   c->checkpoint[0] ? " The checkpoint holds the last epoch saved before this "
                                      "one." : "");
}

/* ---- centralized mode ---------------------------------------------------- */

static void print_dpsgd(run_state *st, FILE *out, const double *eps);

static int run_centralized(run_state *st, FILE *metrics, run_result *result, char *err)
{
    const config_t *c = st->cfg;
    uint32_t *order = NULL;
    size_t count = 0;
    if (dataset_shards_union(&st->shards, st->train.count, &order, &count, err))
        return -1;
    float *w = err_calloc(st->n, sizeof *w);
    uint32_t *epoch_order = err_calloc(count, sizeof *epoch_order);
    model_ws *ws = model_ws_create(&st->model, c->dpsgd ? dpsgd_max_batch(c->batch) : c->batch);
    /* --dpsgd: Poisson sampling over the union, q = batch / its size, from
     * the centralized stream; one account, for the one model */
    dpsgd_ws *dw = c->dpsgd ? dpsgd_ws_create(&st->model, model_ws_max_batch(ws)) : NULL;
    dpsgd_account account;
    dpsgd_params dp = {(double)c->batch / (double)count, c->batch, (float)c->dp_clip,
                       st->dp_sigma, (float)c->lr};
    uint64_t dp_steps = 0, dp_cap = 0, dp_epoch = dpsgd_epoch_steps(count, c->batch);
    double epsilon = 0;
    int told_cap = 0;
    if (c->dpsgd && dw) {
        if (dpsgd_account_init(&account, dp.q, dp.noise, c->dp_delta, err)) {
            free(order); free(w); free(epoch_order); model_ws_free(ws); dpsgd_ws_free(dw);
            return -1;
        }
        dp_cap = dpsgd_account_max_steps(&account, c->dp_max_epsilon);
    }
    if (!w || !ws || !epoch_order || (c->dpsgd && !dw)) {
        free(order); free(w); free(epoch_order); model_ws_free(ws); dpsgd_ws_free(dw);
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
    double reference = c->divergence_factor > 0 ? start_loss(st, w) : 0;
    for (int e = 1; e <= c->epochs && rc == 0; e++) {
        double t0 = now_seconds();
        sgd_stats train_stats, stats;
        if (c->dpsgd) {
            uint64_t left = dp_cap - dp_steps, steps = left < dp_epoch ? left : dp_epoch;
            if (steps < dp_epoch && !told_cap) {
                fprintf(stderr, "dssgd: the central model stops training in epoch %d, after "
                        "%llu DP-SGD steps: another step would take its epsilon past the cap "
                        "%g\n", e, (unsigned long long)dp_cap, c->dp_max_epsilon);
                told_cap = 1;
            }
            dpsgd_train(&st->model, w, ws, dw, &st->train, order, count, steps, &dp, &shuffle,
                        epoch_order, &train_stats);
            dp_steps += steps;
            epsilon = dpsgd_account_epsilon(&account, dp_steps);
        } else {
            memcpy(epoch_order, order, count * sizeof *order); /* order from the rng alone */
            sgd_epoch(&st->model, w, ws, &st->train, epoch_order, count, c->batch,
                      (float)c->lr, &shuffle, &train_stats);
        }
        metrics_row row = {.epoch = e, .seconds = now_seconds() - t0, .epsilon = epsilon};
        sgd_evaluate(&st->model, w, st->eval_ws, &st->test, c->eval_size, &stats);
        row.has_global = 1;
        row.global_acc = stats.accuracy;
        row.global_loss = stats.loss;
        rc = emit_row(st, metrics, &row, result, err);
        if (rc == 0)
            rc = check_divergence(st, &row, reference, err);
    }
    if (c->dpsgd && rc == 0)
        print_dpsgd(st, stderr, &epsilon);
    if (result && rc == 0) {
        result->params = w;
        w = NULL;
    }
    free(w);
    free(order);
    free(epoch_order);
    model_ws_free(ws);
    dpsgd_ws_free(dw);
    return rc;
}

/* ---- checkpoints: gather and scatter ------------------------------------ */

/* Rank 0: gathers every participant's state and writes the checkpoint. */
static int save_checkpoint(run_state *st, int epoch, char *err)
{
    const config_t *c = st->cfg;
    transport_t *t = &st->tr;
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
    if (st->data_manifest && !(cs.data = strdup(st->data_manifest))) {
        ckpt_state_free(&cs);
        return err_set(err, "checkpoint: out of memory");
    }
    cs.epoch = (uint64_t)epoch;
    cs.seed = c->seed;
    memcpy(cs.server_params, server_params(st->server), n * sizeof(float));
    memcpy(cs.server_stat, server_stat(st->server), n * sizeof(double));
    if (server_velocity(st->server)) {
        if (ckpt_state_alloc_momentum(&cs)) {
            ckpt_state_free(&cs);
            return err_set(err, "checkpoint: out of memory");
        }
        memcpy(cs.server_momentum, server_velocity(st->server), n * sizeof(float));
    }
    server_save(st->server, cs.server_rng[0], cs.counters);
    rng_save(&st->schedule_rng, cs.server_rng[1]);
    for (int r = run_first_host(t->size); r < t->size; r++)
        if (r != t->rank)
            transport_send_cmd(t, r, CMD_GATHER, epoch, -1);
    double limit = transport_reply_limit(t, 1);
    size_t bytes = n * sizeof(float);
    for (int r = run_first_host(t->size); r < t->size; r++)
        for (int s = 0; s < run_hosted_by(t->size, N, r); s++) {
            int p = run_participant_at(t->size, r, s);
            float *params = cs.part_params + (size_t)p * n;
            float *res = c->residual ? cs.part_residual + (size_t)p * n : NULL;
            uint64_t *rng = cs.part_rng + (size_t)p * RNG_STATE_WORDS;
            if (r == t->rank) {
                participant_save(st->local[s], params, res, rng, &cs.part_epsilon[p]);
                continue;
            }
            recv_state(st, r, params, bytes, limit, "participant parameters");
            if (res)
                recv_state(st, r, res, bytes, limit, "a participant residual");
            recv_state(st, r, rng, RNG_STATE_WORDS * sizeof(uint64_t), limit,
                       "a participant rng state");
            recv_state(st, r, &cs.part_epsilon[p], sizeof(double), limit,
                       "a participant epsilon");
        }
    int rc = cs.model ? ckpt_save(c->checkpoint, &cs, err) : err_set(err, "out of memory");
    ckpt_state_free(&cs);
    return rc;
}

/* ---- privacy audit (rank 0) ------------------------------------------ */

/* Rank 0 with --audit: draws the samples and opens the files. */
static int audit_start(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    audit_opts o = {.model = &st->model, .train = &st->train, .holdout = &st->holdout,
                    .shards = &st->shards, .seed = c->seed, .sample = c->audit_sample,
                    .every = c->audit_every, .epochs = c->epochs, .rounds = st->rounds,
                    .k_up = st->k_up, .path = c->audit, .scores_path = c->audit_scores,
                    .append = c->resume[0] != '\0'};
    st->audit = audit_create(&o, err);
    return st->audit ? 0 : -1;
}

/* An audit epoch's loss attacks: on the global model, and on every
 * participant's own model, which the workers send as they do for a
 * checkpoint (CMD_GATHER: they copy their state out and change nothing).
 * The server view was scored as the epoch's first uploads came in. */
static int audit_epoch(run_state *st, int epoch, const float *global, char *err)
{
    const config_t *c = st->cfg;
    transport_t *t = &st->tr;
    int N = c->participants;
    size_t bytes = st->n * sizeof(float);
    if (global)
        audit_global(st->audit, global);
    for (int r = run_first_host(t->size); r < t->size; r++)
        if (r != t->rank)
            transport_send_cmd(t, r, CMD_GATHER, epoch, -1);
    float *params = malloc(bytes), *residual = c->residual ? malloc(bytes) : NULL;
    if (!params || (c->residual && !residual))
        transport_fatal(t, "out of memory for the audit");
    double limit = transport_reply_limit(t, 1);
    for (int r = run_first_host(t->size); r < t->size; r++)
        for (int s = 0; s < run_hosted_by(t->size, N, r); s++) {
            int p = run_participant_at(t->size, r, s);
            if (r == t->rank) {
                audit_participant(st->audit, (uint32_t)p, participant_params(st->local[s]));
                continue;
            }
            uint64_t rng[RNG_STATE_WORDS];
            double eps;
            recv_state(st, r, params, bytes, limit, "participant parameters");
            if (residual)
                recv_state(st, r, residual, bytes, limit, "a participant residual");
            recv_state(st, r, rng, sizeof rng, limit, "a participant rng state");
            recv_state(st, r, &eps, sizeof eps, limit, "a participant epsilon");
            audit_participant(st->audit, (uint32_t)p, params);
        }
    free(params);
    free(residual);
    return audit_write_epoch(st->audit, epoch, err);
}

/* The participant of the checkpoint that has spent the most epsilon (the
 * first of equals); -1 if it has none. */
static int most_spent(const ckpt_state *cs)
{
    int most = -1;
    for (uint32_t p = 0; p < cs->participants; p++)
        if (most < 0 || cs->part_epsilon[p] > cs->part_epsilon[most])
            most = (int)p;
    return most;
}

/* Rank 0: loads a checkpoint, checks it belongs to this run, restores the
 * server and sends every participant its state. Sets *done_epochs. */
static int resume_checkpoint(run_state *st, int *done_epochs, char *err)
{
    const config_t *c = st->cfg;
    transport_t *t = &st->tr;
    int N = c->participants;
    size_t n = st->n;
    ckpt_state cs;
    if (ckpt_load(c->resume, &cs, err))
        return -1;
    int rc = -1, most;
    rng_t sched;
    if (config_check_resume(c, cs.config, err)) {
        err_prefix(err, "%s", c->resume);
    } else if (run_data_check_resume(st, cs.data, c->resume, err)) {
        /* err says which file */
    } else if (strcmp(cs.model, st->model.spec) != 0) {
        err_set(err, "%s: model %s with %llu parameters, this run builds %s with %zu on "
                "%dx%dx%d images", c->resume, cs.model, (unsigned long long)cs.n,
                st->model.spec, n, st->test.channels, st->test.rows, st->test.cols);
    } else if (cs.n != n) {
        err_set(err, "%s: the checkpoint was made on images of another shape or classes: "
                "model %s has %llu parameters there, %zu on this run's %dx%dx%d images of "
                "%d classes", c->resume, cs.model, (unsigned long long)cs.n, n,
                st->test.channels, st->test.rows, st->test.cols, st->classes);
    } else if (cs.participants != (uint32_t)N || cs.has_residual != (c->residual != 0)) {
        err_set(err, "%s: %u participants%s, this run has %d%s", c->resume, cs.participants,
                cs.has_residual ? " with residuals" : "", N, c->residual ? " with residuals" : "");
    } else if ((most = most_spent(&cs)) >= 0 && cs.part_epsilon[most] > c->dp_max_epsilon) {
        err_set(err, "%s: participant %d has already spent epsilon %g, more than "
                "--dp-max-epsilon %g (give at least %g)", c->resume, most,
                cs.part_epsilon[most], c->dp_max_epsilon, cs.part_epsilon[most]);
    } else if (cs.epoch >= (uint64_t)c->epochs) {
        err_set(err, "%s: already at epoch %llu; --epochs (the total) must be larger", c->resume,
                (unsigned long long)cs.epoch);
    } else if ((server_velocity(st->server) != NULL) != (cs.has_momentum != 0)) {
        err_set(err, "%s: the checkpoint %s a server momentum, this run %s", c->resume,
                cs.has_momentum ? "has" : "has no",
                server_velocity(st->server) ? "has one" : "has none");
    } else if (server_restore(st->server, cs.server_params, cs.server_stat, cs.server_rng[0],
                              cs.counters, cs.server_momentum) ||
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
            int dest = run_rank_of(t->size, p);
            if (dest == t->rank) {
                if (participant_restore_at(st->local[run_slot_of(t->size, p)], &st->ctx, params,
                                           res, rng, cs.part_epsilon[p], cs.epoch))
                    rc = err_set(err, "%s: participant %d's state is refused (rng of another "
                                 "stream, or an epsilon that no DP-SGD step count of %llu "
                                 "epochs gives)", c->resume, p,
                                 (unsigned long long)cs.epoch);
                continue;
            }
            size_t bytes = n * sizeof(float);
            transport_send_cmd(t, dest, CMD_SCATTER, (int)cs.epoch, p);
            transport_send_to_worker(t, dest, TAG_STATE, params, bytes, -1,
                                     "participant parameters");
            if (res)
                transport_send_to_worker(t, dest, TAG_STATE, res, bytes, -1,
                                         "a participant residual");
            transport_send_to_worker(t, dest, TAG_STATE, rng, RNG_STATE_WORDS * sizeof(uint64_t),
                                     -1, "a participant rng state");
            transport_send_to_worker(t, dest, TAG_STATE, &cs.part_epsilon[p], sizeof(double), -1,
                                     "a participant epsilon");
        }
        *done_epochs = (int)cs.epoch;
    }
    ckpt_state_free(&cs);
    return rc;
}

/* ---- DSSGD and standalone modes ----------------------------------------- */

/* --dpsgd, rank 0: the plan at the start (eps NULL), or at the end what
 * each party spent, eps[i] for data set i (the participants' shards, or
 * the central model's union), with the steps that bought it. */
static void print_dpsgd(run_state *st, FILE *out, const double *eps)
{
    const config_t *c = st->cfg;
    size_t *sizes;
    int count;
    char err[ERR_LEN];
    if (dpsgd_sizes(st, &sizes, &count, err)) {
        fprintf(out, "DP-SGD: %s\n", err);
        return;
    }
    size_t lo = SIZE_MAX, hi = 0;
    for (int i = 0; i < count; i++) {
        lo = sizes[i] < lo ? sizes[i] : lo;
        hi = sizes[i] > hi ? sizes[i] : hi;
    }
    const char *of = c->mode == MODE_CENTRALIZED ? "union" : "shard";
    char sigma[96], q[96];
    if (c->dp_target_epsilon > 0)
        snprintf(sigma, sizeof sigma, "%.6g (for epsilon %g after %d epochs)", st->dp_sigma,
                 c->dp_target_epsilon, c->epochs);
    else
        snprintf(sigma, sizeof sigma, "%.6g", st->dp_sigma);
    if (lo == hi)
        snprintf(q, sizeof q, "%d/%zu = %.4g", c->batch, lo, (double)c->batch / (double)lo);
    else
        snprintf(q, sizeof q, "%d/%zu..%d/%zu = %.4g..%.4g", c->batch, hi, c->batch, lo,
                 (double)c->batch / (double)hi, (double)c->batch / (double)lo);
    uint64_t s_lo = dpsgd_epoch_steps(lo, c->batch), s_hi = dpsgd_epoch_steps(hi, c->batch);
    char steps[96];
    if (s_lo == s_hi)
        snprintf(steps, sizeof steps, "%llu steps a local epoch, %llu in %d epochs",
                 (unsigned long long)s_lo, (unsigned long long)(s_lo * (uint64_t)c->epochs),
                 c->epochs);
    else
        snprintf(steps, sizeof steps, "%llu..%llu steps a local epoch, %llu..%llu in %d epochs",
                 (unsigned long long)s_lo, (unsigned long long)s_hi,
                 (unsigned long long)(s_lo * (uint64_t)c->epochs),
                 (unsigned long long)(s_hi * (uint64_t)c->epochs), c->epochs);
    if (!eps) {
        fprintf(out, "DP-SGD: noise multiplier sigma %s, clip C %g, delta %g; q = batch / %s "
                "size = %s; %s; cap %g\n", sigma, c->dp_clip, c->dp_delta, of, q, steps,
                c->dp_max_epsilon);
        free(sizes);
        return;
    }
    fprintf(out, "privacy (DP-SGD; Renyi-DP accountant, Balle et al. 2020 conversion; "
            "record-level (epsilon, delta) with delta %g):\n"
            "  noise multiplier sigma %s, clip C %g, q = batch / %s size = %s; cap %g\n",
            c->dp_delta, sigma, c->dp_clip, of, q, c->dp_max_epsilon);
    double e_lo = INFINITY, e_hi = 0;
    for (int i = 0; i < count; i++) {
        e_lo = fmin(e_lo, eps[i]);
        e_hi = fmax(e_hi, eps[i]);
    }
    fprintf(out, "  TOTAL epsilon per %s (the guarantee): min %g, max %g\n",
            c->mode == MODE_CENTRALIZED ? "model" : "participant", e_lo, e_hi);
    dpsgd_account a;
    size_t made = 0; /* the size whose account a holds; shards often share one */
    for (int i = 0; i < count; i++) {
        uint64_t most = dpsgd_epoch_steps(sizes[i], c->batch) * (uint64_t)c->epochs, took;
        if (made != sizes[i] && dpsgd_account_init(&a, (double)c->batch / (double)sizes[i],
                                                   st->dp_sigma, c->dp_delta, NULL) == 0)
            made = sizes[i];
        int known = made == sizes[i] && dpsgd_account_steps_for(&a, eps[i], most, &took) == 0;
        if (c->mode == MODE_CENTRALIZED)
            fprintf(out, "    the central model: %g", eps[i]);
        else
            fprintf(out, "    participant %d: %g", i, eps[i]);
        if (known)
            fprintf(out, " after %llu steps", (unsigned long long)took);
        fputc('\n', out);
    }
    free(sizes);
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

/* One epoch of the configured mode and schedule, on the server: with
 * --local-steps, st->rounds turns of the schedule, numbered on from the
 * previous epoch's (the messages' epoch field and tags carry the turn). */
static void run_epoch(run_state *st, int epoch, int *order)
{
    const config_t *c = st->cfg;
    int N = c->participants;
    if (c->mode != MODE_DSSGD) {
        schedule_standalone(st);
        return;
    }
    server_hold_momentum(st->server, epoch <= config_momentum_warmup(c));
    for (uint32_t r = 0; r < st->rounds; r++) {
        int turn = (epoch - 1) * (int)st->rounds + (int)r + 1;
        for (int p = 0; p < N; p++)
            order[p] = p;
        if (c->schedule == SCHEDULE_RANDOM)
            rng_shuffle_u32(&st->schedule_rng, (uint32_t *)order, (size_t)N);
        if (c->schedule == SCHEDULE_SYNC)
            schedule_sync(st, turn);
        else if (c->schedule == SCHEDULE_ASYNC)
            schedule_async(st, turn, order);
        else
            schedule_sequential(st, turn, order);
    }
    if (st->tr.size > 1)
        transport_drain(&st->tr, MPI_ANY_SOURCE, -1);
    server_end_epoch(st->server);
}

static int run_distributed(run_state *st, FILE *metrics, run_result *result, char *err)
{
    int start = 1;
    const config_t *c = st->cfg;
    transport_t *t = &st->tr;
    int N = c->participants, dssgd = c->mode == MODE_DSSGD, rc = 0;
    if (t->rank > 0) {
        worker_loop(st);
        return 0;
    }
    float *init = err_calloc(st->n, sizeof *init);
    int *order = calloc((size_t)N, sizeof *order);
    if (!init || !order)
        transport_fatal(t, "out of memory");
    rng_t init_rng;
    rng_init(&init_rng, c->seed, RNG_STREAM_INIT);
    rng_init(&st->schedule_rng, c->seed, RNG_STREAM_SCHEDULE);
    model_init_params(&st->model, init, &init_rng);
    server_opts so = {.n = st->n, .k_up = st->k_up, .k_down = st->k_down,
                      .gamma = (float)c->gamma, .download = c->download,
                      .stat_decay = c->stat_decay, .seed = c->seed,
                      .aggregate = config_aggregate_rule(c), .server_lr = (float)config_server_lr(c),
                      .server_momentum = (float)config_server_momentum(c),
                      .staleness_exponent = c->staleness_exponent,
                      .staleness_tolerance = (uint32_t)c->staleness_tolerance,
                      .participants = (uint32_t)N};
    st->server = server_create(&so, init);
    if (!st->server)
        transport_fatal(t, "out of memory for the server");
    t->server = st->server;
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
        schedule_initial(st);
    }
    if (rc == 0 && c->audit[0])
        rc = audit_start(st, err);

    double reference = dssgd && rc == 0 && c->divergence_factor > 0
                           ? start_loss(st, server_params(st->server)) : 0;
    for (int e = start; e <= c->epochs && rc == 0; e++) {
        double t0 = now_seconds();
        uint64_t rejected0 = server_rejected(st->server), accepted0 = server_accepted(st->server);
        run_epoch(st, e, order);
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
        if (rc == 0)
            rc = check_divergence(st, &row, reference, err);
        if (rc == 0 && st->audit && audit_epoch_due(st->audit, e))
            rc = audit_epoch(st, e, dssgd ? server_params(st->server) : NULL, err);
        if (rc == 0 && c->checkpoint[0] &&
            (e == c->epochs || (c->checkpoint_every && e % c->checkpoint_every == 0)))
            rc = save_checkpoint(st, e, err);
    }
    if (c->resume[0] && metrics)
        fclose(metrics);
    for (int r = 1; r < t->size; r++)
        transport_send_cmd(t, r, CMD_STOP, 0, -1);
    if (c->select == SELECT_SVT && dssgd && rc == 0)
        print_privacy_summary(st, stderr);
    if (c->dpsgd && rc == 0)
        print_dpsgd(st, stderr, st->part_eps);
    if (dssgd && c->schedule == SCHEDULE_ASYNC && !c->quiet) {
        uint64_t count, sum, max;
        server_staleness(st->server, &count, &sum, &max);
        if (count)
            fprintf(stderr, "async staleness (uploads applied between a participant's download "
                    "and its upload): mean %.2f, max %llu over %llu uploads\n",
                    (double)sum / (double)count, (unsigned long long)max,
                    (unsigned long long)count);
    }
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

/* Rank 0: what the run trains on, as the data gave it. */
static void print_data(const run_state *st, FILE *out)
{
    const config_t *c = st->cfg;
    uint64_t examples = st->train.count;
    if (st->sites) {
        examples = 0;
        for (int p = 0; p < c->participants; p++)
            examples += st->sites[p].count;
    }
    fprintf(out, "data: %dx%dx%d examples (channels x rows x cols), %d classes; %llu training "
            "examples%s, %zu test examples\n", st->test.channels, st->test.rows, st->test.cols,
            st->classes, (unsigned long long)examples,
            st->sites ? " in the participants' files" : "", st->test.count);
}

/* Rank 0, before the first epoch: an output that the first save would fail
 * on (missing or unwritable directory, a name too long for its temporary
 * file, a symbolic link, a device or FIFO), or that another run is writing,
 * is refused now rather than after every epoch has run; so are two options
 * naming one file. The locks are held until run_train returns. */
enum { RUN_OUTPUTS = 4 };

static int claim_paths(const config_t *c, paths_lock_t locks[RUN_OUTPUTS], char *err)
{
    const char *outputs[RUN_OUTPUTS] = {c->checkpoint, c->metrics, c->audit, c->audit_scores};
    const char *names[RUN_OUTPUTS] = {"--checkpoint", "--metrics", "--audit", "--audit-scores"};
    /* --resume may name the checkpoint itself (a run resumed in place),
     * never another output */
    const char *resumed[RUN_OUTPUTS] = {c->resume, c->metrics, c->audit, c->audit_scores};
    const char *resumed_names[RUN_OUTPUTS] = {"--resume", "--metrics", "--audit",
                                              "--audit-scores"};
    if (paths_check_distinct(outputs, names, RUN_OUTPUTS, err) ||
        paths_check_distinct(resumed, resumed_names, RUN_OUTPUTS, err))
        return -1;
    /* An output must not replace the data it trains on. */
    char data[DATASET_PATH_LEN];
    for (int d = 0; run_data_path(c, d, data, sizeof data); d++)
        for (int i = 0; i < RUN_OUTPUTS; i++) {
            const char *pair[2] = {outputs[i], data}, *what[2] = {names[i], "a data file"};
            if (outputs[i][0] && paths_check_distinct(pair, what, 2, err))
                return -1;
        }
    for (int i = 0; i < RUN_OUTPUTS; i++) {
        if (!outputs[i][0])
            continue;
        if (paths_check_output(outputs[i], names[i], err))
            return -1;
        int rc = paths_lock(outputs[i], names[i], &locks[i], err);
        if (rc < 0)
            return -1;
        if (rc > 0)
            fprintf(stderr, "dssgd: warning: %s\n", err);
        /* Ours alone now: temporaries of killed saves can go. */
        if (rc == 0 && i == 0 && paths_remove_stale_temps(outputs[i]) > 0 && !c->quiet)
            fprintf(stderr, "dssgd: removed the partial checkpoint(s) %s.tmp.* of an "
                    "interrupted run\n", outputs[i]);
    }
    return 0;
}

int run_train(const config_t *cfg_given, MPI_Comm comm, const run_hooks *hooks,
              run_result *result, char *err)
{
    /* The run's configuration with what set-up resolves (--dpsgd's sigma):
     * what is printed, checkpointed and checked on resume. */
    config_t resolved = *cfg_given;
    const config_t *cfg = &resolved;
    MPI_Comm_size(comm, &resolved.ranks); /* async's defaults depend on it */
    run_state st = {.cfg = cfg, .hooks = hooks};
    transport_open(&st.tr, comm, hooks && hooks->piece_bytes ? hooks->piece_bytes
                                                             : RUN_PIECE_BYTES,
                   cfg->participants, cfg->rank_timeout);
    const transport_t *t = &st.tr;
    if (result)
        memset(result, 0, sizeof *result);

    int rc = transport_agree(t, run_data_load(&st, err), err);
    if (rc == 0)
        rc = transport_agree(t, run_data_share(&st, err), err);
    if (rc == 0)
        rc = transport_agree(t, setup(&st, err), err);
    if (rc == 0 && cfg->dpsgd)
        resolved.dp_noise = st.dp_sigma;
    FILE *metrics = NULL;
    paths_lock_t locks[RUN_OUTPUTS] = {{0}};
    if (rc == 0 && t->rank == 0) {
        rc = claim_paths(cfg, locks, err);
        if (rc == 0 && !cfg->quiet) {
            config_print(cfg, stderr);
            print_data(&st, stderr);
            fprintf(stderr, "model %s: %zu parameters; upload k = %zu, download k = %zu; "
                    "%d rank(s)\n", st.model.spec, st.n, st.k_up, st.k_down, t->size);
            if (cfg->dpsgd)
                print_dpsgd(&st, stderr, NULL);
        }
        if (rc == 0 && cfg->metrics[0] && !cfg->resume[0] &&
            !(metrics = metrics_open(cfg->metrics, err)))
            rc = -1;
        if (result) {
            result->n = st.n;
            result->epochs = cfg->epochs;
            result->rows = calloc((size_t)cfg->epochs, sizeof *result->rows);
        }
    }
    rc = transport_agree(t, rc, err);
    if (rc == 0) {
        if (cfg->mode == MODE_CENTRALIZED)
            rc = t->rank == 0 ? run_centralized(&st, metrics, result, err) : 0;
        else
            rc = run_distributed(&st, metrics, result, err);
    }
    if (metrics)
        fclose(metrics);
    for (int i = 0; i < RUN_OUTPUTS; i++)
        paths_unlock(&locks[i]);
    teardown(&st);
    transport_close(&st.tr);
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
