/* participant: download, local training, selection of the top-theta_u
 * changes (or a random subset above tau), clipping and error feedback. */
#include "participant.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "rng.h"

struct participant {
    uint32_t id;
    size_t n;
    float *w;              /* (n) local parameters */
    float *residual;       /* (n) unsent part of past updates, or NULL */
    uint32_t *shard;       /* (shard_size) training example indices */
    uint32_t *order;       /* (shard_size) this epoch's visiting order */
    size_t shard_size;
    rng_t rng;             /* shuffling, random selection and DP noise */
    dp_ledger ledger;
    int budget_stopped;    /* the cap withheld the latest epoch's upload */
    /* DP-SGD: every step has the same q and sigma, so the steps taken are
     * the account's whole state (the account itself is made at first use) */
    uint64_t dp_steps;
    uint64_t dp_step_cap;  /* the most steps --dp-max-epsilon allows */
    int dp_ready;          /* account and dp_step_cap are made */
    dpsgd_account account;
};

int participant_ctx_init(participant_ctx *ctx, size_t n)
{
    ctx->before = err_calloc(n, sizeof(float));
    ctx->delta = err_calloc(n, sizeof(float));
    ctx->idx = err_calloc(n, sizeof(uint32_t));
    ctx->val = err_calloc(n, sizeof(float));
    ctx->sel = select_ws_create(n);
    ctx->perm = err_calloc(n, sizeof(uint32_t));
    ctx->dp = ctx->dpsgd ? dpsgd_ws_create(ctx->model, model_ws_max_batch(ctx->ws)) : NULL;
    if (!ctx->before || !ctx->delta || !ctx->idx || !ctx->val || !ctx->sel || !ctx->perm ||
        (ctx->dpsgd && !ctx->dp)) {
        participant_ctx_free(ctx);
        return -1;
    }
    return 0;
}

void participant_ctx_free(participant_ctx *ctx)
{
    free(ctx->before);
    free(ctx->delta);
    free(ctx->idx);
    free(ctx->val);
    select_ws_free(ctx->sel);
    free(ctx->perm);
    dpsgd_ws_free(ctx->dp);
    ctx->before = ctx->delta = ctx->val = NULL;
    ctx->idx = ctx->perm = NULL;
    ctx->sel = NULL;
    ctx->dp = NULL;
}

participant_t *participant_create(uint32_t id, size_t n, const uint32_t *shard, size_t count,
                                  uint64_t seed, int residual)
{
    participant_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->id = id;
    p->n = n;
    p->shard_size = count;
    p->w = err_calloc(n, sizeof *p->w);
    p->shard = err_calloc(count, sizeof *p->shard);
    p->order = err_calloc(count, sizeof *p->order);
    p->residual = residual ? err_calloc(n, sizeof *p->residual) : NULL;
    if (!p->w || !p->shard || !p->order || (residual && !p->residual)) {
        participant_free(p);
        return NULL;
    }
    memcpy(p->shard, shard, count * sizeof *shard);
    rng_init(&p->rng, seed, rng_participant_stream(id));
    return p;
}

void participant_free(participant_t *p)
{
    if (!p)
        return;
    free(p->w);
    free(p->residual);
    free(p->shard);
    free(p->order);
    free(p);
}

uint32_t participant_id(const participant_t *p) { return p->id; }
float *participant_params(participant_t *p) { return p->w; }
const float *participant_residual(const participant_t *p) { return p->residual; }
const dp_ledger *participant_ledger(const participant_t *p) { return &p->ledger; }
int participant_budget_stopped(const participant_t *p) { return p->budget_stopped; }
uint64_t participant_dp_steps(const participant_t *p) { return p->dp_steps; }

/* The DP-SGD account of p under ctx (q = batch / shard size), made once:
 * a resume keeps every input of it. Its arguments were validated with the
 * configuration, so it cannot fail in a run. */
static int dp_prepare(participant_t *p, const participant_ctx *ctx)
{
    if (p->dp_ready)
        return 0;
    double q = (double)ctx->batch / (double)p->shard_size;
    if (dpsgd_account_init(&p->account, q, ctx->dp_sigma, ctx->dp_delta, NULL))
        return -1;
    p->dp_step_cap = dpsgd_account_max_steps(&p->account, ctx->dp_max_epsilon);
    p->dp_ready = 1;
    return 0;
}

/* Up to `steps` DP-SGD steps on the shard, as many as the cap allows (it
 * sets budget_stopped when it allows fewer); the ledger then holds epsilon
 * after all steps so far. Returns the steps taken. */
static uint64_t dp_train(participant_t *p, participant_ctx *ctx, uint64_t steps,
                         sgd_stats *stats)
{
    *stats = (sgd_stats){0};
    if (dp_prepare(p, ctx)) {
        p->budget_stopped = 1; /* no account, no release */
        return 0;
    }
    uint64_t allowed = p->dp_step_cap - (p->dp_step_cap < p->dp_steps ? p->dp_step_cap
                                                                       : p->dp_steps);
    if (steps > allowed) {
        steps = allowed;
        p->budget_stopped = 1;
    }
    dpsgd_params dp = {p->account.q, ctx->batch, ctx->dp_clip, ctx->dp_sigma, ctx->lr};
    dpsgd_train(ctx->model, p->w, ctx->ws, ctx->dp, ctx->train, p->shard, p->shard_size, steps,
                &dp, &p->rng, p->order, stats);
    p->dp_steps += steps;
    p->ledger.spent = dpsgd_account_epsilon(&p->account, p->dp_steps);
    return steps;
}

void participant_save(const participant_t *p, float *params, float *residual,
                      uint64_t rng[RNG_STATE_WORDS], double *epsilon)
{
    memcpy(params, p->w, p->n * sizeof *p->w);
    if (residual && p->residual)
        memcpy(residual, p->residual, p->n * sizeof *p->residual);
    rng_save(&p->rng, rng);
    *epsilon = p->ledger.spent;
}

int participant_restore(participant_t *p, const participant_ctx *ctx, const float *params,
                        const float *residual, const uint64_t rng[RNG_STATE_WORDS],
                        double epsilon)
{
    return participant_restore_at(p, ctx, params, residual, rng, epsilon, 0);
}

int participant_restore_at(participant_t *p, const participant_ctx *ctx, const float *params,
                           const float *residual, const uint64_t rng[RNG_STATE_WORDS],
                           double epsilon, uint64_t epochs_done)
{
    rng_t r;
    if (rng_restore(&r, rng) || r.seed != p->rng.seed || r.stream != p->rng.stream ||
        !(epsilon >= 0))
        return -1;
    uint64_t steps = 0;
    if (ctx->dpsgd) {
        /* every completed epoch took its ceil(shard / batch) steps, unless
         * the cap stopped the participant: epsilon says where */
        uint64_t most = epochs_done * dpsgd_epoch_steps(p->shard_size, ctx->batch);
        if (dp_prepare(p, ctx) || dpsgd_account_steps_for(&p->account, epsilon, most, &steps))
            return -1;
    }
    p->dp_steps = steps;
    p->rng = r;
    memcpy(p->w, params, p->n * sizeof *p->w);
    if (p->residual)
        memcpy(p->residual, residual, p->n * sizeof *p->residual);
    p->ledger.spent = ctx->dpsgd ? dpsgd_account_epsilon(&p->account, steps) : epsilon;
    /* spent is a sum of equal charges; a hostile file's huge one saturates */
    double charges = ctx->dp_epsilon > 0 ? epsilon / ctx->dp_epsilon : 0;
    p->ledger.epochs = charges < INT_MAX ? (int)lround(charges) : INT_MAX;
    p->budget_stopped = 0;
    return 0;
}

wire_reason participant_download(participant_t *p, participant_ctx *ctx, const uint8_t *msg,
                                 size_t len, uint32_t epoch)
{
    wire_expect e = {WIRE_DOWNLOAD, UINT32_MAX, epoch, (uint32_t)p->n, (uint32_t)p->n, INFINITY};
    wire_header h;
    wire_reason r = wire_unpack(msg, len, &e, &h, ctx->idx, ctx->val);
    if (r != WIRE_OK)
        return r;
    if (h.participant != p->id && h.participant != WIRE_ANY_PARTICIPANT)
        return WIRE_BAD_SENDER;
    for (uint32_t i = 0; i < h.count; i++)
        p->w[ctx->idx[i]] = ctx->val[i];
    return WIRE_OK;
}

/* The local epoch's visiting order: a fresh copy of the shard, shuffled,
 * so that it depends on the rng state alone, which a checkpoint keeps. */
static void draw_epoch_order(participant_t *p)
{
    memcpy(p->order, p->shard, p->shard_size * sizeof *p->order);
    rng_shuffle_u32(&p->rng, p->order, p->shard_size);
}

void participant_train(participant_t *p, participant_ctx *ctx, sgd_stats *stats)
{
    if (ctx->dpsgd) {
        p->budget_stopped = 0;
        dp_train(p, ctx, dpsgd_epoch_steps(p->shard_size, ctx->batch), stats);
        return;
    }
    draw_epoch_order(p);
    sgd_batches(ctx->model, p->w, ctx->ws, ctx->train, p->order, p->shard_size, ctx->batch,
                ctx->lr, stats);
}

/* Round `round` of a local epoch of `total` units taken `per` a round
 * (0: all in one round): sets *first and returns how many, 0 once the
 * epoch is used up (shards of other sizes set the number of rounds). */
static size_t round_span(size_t total, size_t per, uint32_t round, size_t *first)
{
    if (per == 0)
        per = total;
    *first = (size_t)round * per;
    if (*first >= total)
        return 0;
    return total - *first < per ? total - *first : per;
}

/* Trains round `round` of the local epoch: --local-steps K steps of it
 * (all of them without --local-steps). Returns the units trained (DP-SGD:
 * steps, each sampling the whole shard afresh; plain SGD: examples of the
 * order drawn at round 0), 0 once the epoch is used up. */
static size_t train_round(participant_t *p, participant_ctx *ctx, uint32_t round,
                          sgd_stats *stats)
{
    size_t first, count;
    *stats = (sgd_stats){0};
    if (ctx->dpsgd) {
        count = round_span(dpsgd_epoch_steps(p->shard_size, ctx->batch),
                           (size_t)ctx->local_steps, round, &first);
        return count ? (size_t)dp_train(p, ctx, count, stats) : 0;
    }
    if (round == 0)
        draw_epoch_order(p);
    count = round_span(p->shard_size, (size_t)ctx->local_steps * (size_t)ctx->batch, round,
                       &first);
    if (count)
        sgd_batches(ctx->model, p->w, ctx->ws, ctx->train, p->order + first, count, ctx->batch,
                    ctx->lr, stats);
    return count;
}

size_t participant_epoch(participant_t *p, participant_ctx *ctx, uint32_t turn, uint8_t *buf,
                         size_t cap, sgd_stats *stats)
{
    size_t n = p->n;
    uint32_t round = ctx->rounds > 1 && turn > 0 ? (turn - 1) % ctx->rounds : 0;
    memcpy(ctx->before, p->w, n * sizeof *p->w);
    p->budget_stopped = 0;
    if (train_round(p, ctx, round, stats) == 0) {
        /* Nothing learnt, nothing released: an empty upload, no charge. */
        wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, p->id, turn, (uint32_t)n, 0};
        return wire_pack(buf, cap, &h, ctx->idx, ctx->val);
    }

    float *d = ctx->delta;
    for (size_t i = 0; i < n; i++) {
        d[i] = p->w[i] - ctx->before[i];
        if (p->residual)
            d[i] += p->residual[i];
        if (!isfinite(d[i])) /* a diverged step is not shared */
            d[i] = 0.0f;
    }

    size_t count = 0;
    if (ctx->select == SELECT_SVT) {
        /* The mechanism picks and noises the values itself; nothing else
         * about d leaves the participant. It cannot fail once charged. */
        if (dp_ledger_spend(&p->ledger, ctx->dp_epsilon, ctx->dp_max_epsilon)) {
            dp_svt_params dp = {ctx->dp_epsilon, ctx->k_up, ctx->gamma, ctx->tau};
            count = dp_svt_select(d, n, &dp, &p->rng, ctx->perm, ctx->idx, ctx->val);
        } else {
            p->budget_stopped = 1; /* the driver tells the user */
        }
    } else {
        if (ctx->select == SELECT_LARGEST)
            count = select_largest_abs(d, n, ctx->k_up, ctx->idx, ctx->sel);
        else
            count = select_random_above(d, n, ctx->k_up, ctx->tau, &p->rng, ctx->idx);
        for (size_t i = 0; i < count; i++)
            ctx->val[i] = select_clip(d[ctx->idx[i]], ctx->gamma);
    }

    if (p->residual) {
        /* Keep what was not sent: everything, minus the sent (clipped) values. */
        memcpy(p->residual, d, n * sizeof *d);
        for (size_t i = 0; i < count; i++)
            p->residual[ctx->idx[i]] -= ctx->val[i];
    }

    wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, p->id, turn, (uint32_t)n,
                     (uint32_t)count};
    return wire_pack(buf, cap, &h, ctx->idx, ctx->val);
}
