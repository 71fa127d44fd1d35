/* server: global model and counters of DSSGD (Shokri & Shmatikov, sec. 4).
 * Every upload is untrusted: wire_check checks it whole before any write. */
#include "server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "rng.h"
#include "select.h"

/* What the server had when it packed a participant's download in a mix
 * turn: its parameters and the turn's per-entry upload counts. */
typedef struct {
    float *w;
    uint32_t *count;
} mix_snap;

struct server {
    server_opts opts;
    float *w;            /* (n) global parameters */
    double *stat;        /* (n) times each parameter was updated (decayed) */
    uint32_t *idx;       /* (max(k_up, n)) scratch indices */
    float *val;          /* (max(k_up, n)) scratch values */
    select_ws *sel;
    rng_t rng;           /* random downloads */
    uint64_t accepted, rejected, rejected_for[WIRE_REASONS];
    uint64_t *version;   /* (N) uploads applied when each participant's download was packed */
    uint64_t stale_count, stale_sum, stale_max;
    int in_round;        /* mean rule: uploads accumulate in round_sum/round_count */
    double *round_sum;   /* (n) mean: the round's sums; mix: the turn's changes */
    uint32_t *round_count; /* (n) mean, mix: the round's (turn's) uploads of each entry */
    float *velocity;     /* (n) mean and mix rules with a momentum only */
    /* mix rule, inside an async turn (server_async_begin .. server_round_end) */
    int in_turn;
    double *mix_weight;  /* (N + 1) eta_s (1 + c)^-a for c = 0..N */
    mix_snap *snaps;     /* a snapshot per download in flight; grows on demand */
    uint32_t snap_cap, *snap_free, free_count;
    int32_t *snap_of;    /* (N) the participant's snapshot this turn, -1: none */
};

server_t *server_create(const server_opts *opts, const float *init)
{
    server_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->opts = *opts;
    if (s->opts.server_lr == 0)
        s->opts.server_lr = 1;
    size_t n = opts->n;
    s->w = err_calloc(n, sizeof *s->w);
    s->stat = err_calloc(n, sizeof *s->stat);
    s->idx = err_calloc(n, sizeof *s->idx);
    s->val = err_calloc(n, sizeof *s->val);
    s->sel = select_ws_create(n);
    s->version = err_calloc(opts->participants ? opts->participants : 1, sizeof *s->version);
    int mix = opts->aggregate == AGGREGATE_MIX, mean = opts->aggregate == AGGREGATE_MEAN || mix;
    int momentum = mean && opts->server_momentum > 0;
    size_t N = opts->participants;
    if (mix) {
        s->mix_weight = err_calloc(N + 1, sizeof *s->mix_weight);
        s->snap_of = err_calloc(N ? N : 1, sizeof *s->snap_of);
        if (!s->mix_weight || !s->snap_of) {
            server_free(s);
            return NULL;
        }
        for (size_t c = 0; c <= N; c++)
            s->mix_weight[c] = s->opts.server_lr * pow(1.0 + (double)c, -opts->staleness_exponent);
        for (size_t p = 0; p < N; p++)
            s->snap_of[p] = -1;
    }
    if (mean) {
        s->round_sum = err_calloc(n, sizeof *s->round_sum);
        s->round_count = err_calloc(n, sizeof *s->round_count);
    }
    if (momentum)
        s->velocity = err_calloc(n, sizeof *s->velocity);
    if (!s->w || !s->stat || !s->idx || !s->val || !s->sel || !s->version ||
        (mean && (!s->round_sum || !s->round_count)) || (momentum && !s->velocity)) {
        server_free(s);
        return NULL;
    }
    memcpy(s->w, init, n * sizeof *s->w);
    rng_init(&s->rng, opts->seed, RNG_STREAM_SERVER);
    return s;
}

void server_free(server_t *s)
{
    if (!s)
        return;
    free(s->w);
    free(s->stat);
    free(s->idx);
    free(s->val);
    select_ws_free(s->sel);
    free(s->version);
    free(s->round_sum);
    free(s->round_count);
    free(s->velocity);
    free(s->mix_weight);
    for (uint32_t i = 0; i < s->snap_cap; i++) {
        free(s->snaps[i].w);
        free(s->snaps[i].count);
    }
    free(s->snaps);
    free(s->snap_free);
    free(s->snap_of);
    free(s);
}

const float *server_params(const server_t *s) { return s->w; }
const double *server_stat(const server_t *s) { return s->stat; }
uint64_t server_accepted(const server_t *s) { return s->accepted; }
uint64_t server_rejected(const server_t *s) { return s->rejected; }
uint64_t server_rejected_for(const server_t *s, wire_reason r) { return s->rejected_for[r]; }

/* ---- mix: FedAsync's mixing, per parameter ------------------------------- */

/* Makes room for `more` snapshots beyond those in use; -1 if out of memory. */
static int mix_reserve(server_t *s, uint32_t more)
{
    uint32_t used = s->snap_cap - s->free_count;
    if (more <= s->free_count)
        return 0;
    uint32_t cap = used + more;
    mix_snap *snaps = realloc(s->snaps, cap * sizeof *snaps);
    if (!snaps)
        return -1;
    s->snaps = snaps;
    uint32_t *free_list = realloc(s->snap_free, cap * sizeof *free_list);
    if (!free_list)
        return -1;
    s->snap_free = free_list;
    for (; s->snap_cap < cap; s->snap_cap++) {
        mix_snap *m = &s->snaps[s->snap_cap];
        m->w = malloc(s->opts.n * sizeof *m->w);
        m->count = malloc(s->opts.n * sizeof *m->count);
        if (!m->w || !m->count) {
            free(m->w);
            free(m->count);
            return -1;
        }
        s->snap_free[s->free_count++] = s->snap_cap;
    }
    return 0;
}

/* Remembers w and the turn's counts for participant p's download. Without
 * a free snapshot (more in flight than server_async_begin was told, and no
 * memory for one) p has none and its upload is weighed by its staleness. */
static void mix_snapshot(server_t *s, uint32_t p)
{
    if (s->snap_of[p] < 0) {
        if (s->free_count == 0 && mix_reserve(s, 1) != 0)
            return;
        s->snap_of[p] = (int32_t)s->snap_free[--s->free_count];
    }
    mix_snap *m = &s->snaps[s->snap_of[p]];
    memcpy(m->w, s->w, s->opts.n * sizeof *m->w);
    memcpy(m->count, s->round_count, s->opts.n * sizeof *m->count);
}

static void mix_release(server_t *s, uint32_t p)
{
    if (p < s->opts.participants && s->snap_of && s->snap_of[p] >= 0) {
        s->snap_free[s->free_count++] = (uint32_t)s->snap_of[p];
        s->snap_of[p] = -1;
    }
}

static double mix_weight(const server_t *s, uint32_t c)
{
    return c <= s->opts.participants
               ? s->mix_weight[c]
               : s->opts.server_lr * pow(1.0 + (double)c, -s->opts.staleness_exponent);
}

int server_async_begin(server_t *s, uint32_t inflight)
{
    if (s->opts.aggregate != AGGREGATE_MIX)
        return 0;
    if (inflight > s->opts.participants)
        inflight = s->opts.participants;
    if (mix_reserve(s, inflight) != 0)
        return -1;
    s->in_turn = 1;
    return 0;
}

size_t server_pack_download(server_t *s, uint32_t participant, uint32_t epoch, int full,
                            uint8_t *buf, size_t cap)
{
    size_t n = s->opts.n, count;
    if (participant == WIRE_ANY_PARTICIPANT) {
        for (uint32_t p = 0; p < s->opts.participants; p++)
            s->version[p] = s->accepted;
    } else if (participant < s->opts.participants) {
        s->version[participant] = s->accepted;
        if (s->in_turn)
            mix_snapshot(s, participant);
    }
    wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_DOWNLOAD, participant, epoch, (uint32_t)n,
                     (uint32_t)n};
    if (full || s->opts.download == DOWNLOAD_ALL || s->opts.k_down >= n)
        return wire_pack_dense(buf, cap, &h, s->w); /* no index array: 4n bytes a turn */
    if (s->opts.download == DOWNLOAD_STAT) {
        count = select_largest_f64(s->stat, n, s->opts.k_down, s->idx, s->sel);
    } else {
        count = select_random(n, s->opts.k_down, &s->rng, s->idx);
    }
    for (size_t i = 0; i < count; i++)
        s->val[i] = s->w[s->idx[i]];
    h.count = (uint32_t)count;
    return wire_pack(buf, cap, &h, s->idx, s->val);
}

void server_count_rejection(server_t *s, wire_reason reason)
{
    s->rejected++;
    s->rejected_for[reason < WIRE_REASONS ? reason : WIRE_TRUNCATED]++;
}

/* Indices decoded a block at a time. Small blocks let the decoding of one
 * overlap the scattered adds of the last (16 was the best of 8 to 256 on
 * the four uploads of bench --only apply, results/bench/README.md). */
#define APPLY_BLOCK 16

wire_reason server_apply_upload(server_t *s, const uint8_t *msg, size_t len,
                                uint32_t participant, uint32_t epoch)
{
    wire_expect e = {WIRE_UPLOAD, participant, epoch, (uint32_t)s->opts.n,
                     (uint32_t)s->opts.k_up, s->opts.gamma};
    wire_header h;
    wire_reader rd;
    wire_reason r = wire_check(msg, len, &e, &h, &rd);
    if (r != WIRE_OK) {
        if (s->in_turn)
            mix_release(s, participant);
        server_count_rejection(s, r);
        return r;
    }
    uint64_t stale =
        participant < s->opts.participants ? s->accepted - s->version[participant] : 0;
    s->stale_count++;
    s->stale_sum += stale;
    s->stale_max = stale > s->stale_max ? stale : s->stale_max;
    float step = s->opts.server_lr;
    const mix_snap *snap = NULL;
    if (s->in_turn) {
        if (participant < s->opts.participants && s->snap_of[participant] >= 0)
            snap = &s->snaps[s->snap_of[participant]];
        else /* no snapshot: FedAsync on the change, (1 + s)^-a */
            step = (float)mix_weight(s, (uint32_t)(stale < UINT32_MAX ? stale : UINT32_MAX));
    } else if (!s->in_round && s->opts.aggregate == AGGREGATE_STALENESS) {
        uint64_t late = stale > s->opts.staleness_tolerance
                            ? stale - s->opts.staleness_tolerance : 0;
        step = (float)(s->opts.server_lr * pow(1.0 + (double)late,
                                               -s->opts.staleness_exponent));
    }
    /* The whole message is valid: decode and apply in one pass, in the
     * message's order (so the same float operations as over the decoded
     * arrays). */
    float *restrict w = s->w;
    double *restrict stat = s->stat;
    uint32_t blk[2][APPLY_BLOCK];
    size_t at = 0, m = wire_read(&rd, blk[0], APPLY_BLOCK);
    for (int cur = 0; m > 0; cur ^= 1) {
        /* Software pipelining: the next block is decoded, and its lines
         * requested, while this block's are on their way. */
        const uint32_t *b = blk[cur];
        size_t next = wire_read(&rd, blk[cur ^ 1], APPLY_BLOCK);
        for (size_t i = 0; i < next; i++) {
            __builtin_prefetch(&w[blk[cur ^ 1][i]], 1);
            __builtin_prefetch(&stat[blk[cur ^ 1][i]], 1);
        }
        if (snap) {
            /* FedAsync: w_j <- w_j + alpha (w_j at the download + v - w_j),
             * alpha by the uploads of entry j since then. */
            for (size_t i = 0; i < m; i++) {
                uint32_t j = b[i];
                double d = mix_weight(s, s->round_count[j] - snap->count[j]) *
                           ((double)snap->w[j] + wire_value(&rd, at + i) - w[j]);
                w[j] = (float)(w[j] + d);
                s->round_sum[j] += d;
                s->round_count[j]++;
                stat[j] += 1.0;
            }
        } else if (s->in_round) {
            for (size_t i = 0; i < m; i++) {
                s->round_sum[b[i]] += wire_value(&rd, at + i);
                s->round_count[b[i]]++;
                stat[b[i]] += 1.0;
            }
        } else if (step == 1.0f && !s->in_turn) { /* the paper's rule, exactly */
            for (size_t i = 0; i < m; i++) {
                w[b[i]] += wire_value(&rd, at + i);
                stat[b[i]] += 1.0;
            }
        } else {
            for (size_t i = 0; i < m; i++) {
                w[b[i]] += step * wire_value(&rd, at + i);
                stat[b[i]] += 1.0;
                if (s->in_turn) { /* without a snapshot: still counted for the turn */
                    s->round_sum[b[i]] += step * wire_value(&rd, at + i);
                    s->round_count[b[i]]++;
                }
            }
        }
        at += m;
        m = next;
    }
    if (s->in_turn)
        mix_release(s, participant);
    s->accepted++;
    return WIRE_OK;
}

void server_round_begin(server_t *s) { s->in_round = s->opts.aggregate == AGGREGATE_MEAN; }

/* The end of a mix turn: w += beta_s u, u <- beta_s u + the turn's change
 * (FedAvgM over turns); the turn's counts and snapshots are dropped. */
static void mix_turn_end(server_t *s)
{
    double beta = s->opts.server_momentum;
    for (size_t j = 0; j < s->opts.n; j++) {
        if (s->velocity) {
            double add = beta * s->velocity[j];
            s->w[j] = (float)(s->w[j] + add);
            s->velocity[j] = (float)(add + s->round_sum[j]);
        }
        s->round_sum[j] = 0;
        s->round_count[j] = 0;
    }
    for (uint32_t p = 0; p < s->opts.participants; p++)
        mix_release(s, p);
    s->in_turn = 0;
}

void server_round_end(server_t *s)
{
    if (s->in_turn)
        mix_turn_end(s);
    if (!s->in_round)
        return;
    double lr = s->opts.server_lr, beta = s->opts.server_momentum;
    if (s->velocity) {
        for (size_t j = 0; j < s->opts.n; j++) {
            double mean = s->round_count[j] ? s->round_sum[j] / s->round_count[j] : 0;
            s->velocity[j] = (float)(beta * s->velocity[j] + mean);
            s->w[j] += (float)(lr * s->velocity[j]);
            s->round_sum[j] = 0;
            s->round_count[j] = 0;
        }
    } else {
        for (size_t j = 0; j < s->opts.n; j++)
            if (s->round_count[j]) {
                s->w[j] += (float)(lr * s->round_sum[j] / s->round_count[j]);
                s->round_sum[j] = 0;
                s->round_count[j] = 0;
            }
    }
    s->in_round = 0;
}

void server_staleness(const server_t *s, uint64_t *count, uint64_t *sum, uint64_t *max)
{
    *count = s->stale_count;
    *sum = s->stale_sum;
    *max = s->stale_max;
}

void server_end_epoch(server_t *s)
{
    if (s->opts.stat_decay != 1.0)
        for (size_t i = 0; i < s->opts.n; i++)
            s->stat[i] *= s->opts.stat_decay;
}

void server_save(const server_t *s, uint64_t rng[RNG_STATE_WORDS], uint64_t counters[2])
{
    rng_save(&s->rng, rng);
    counters[0] = s->accepted;
    counters[1] = s->rejected;
}

const float *server_velocity(const server_t *s) { return s->velocity; }

int server_restore(server_t *s, const float *w, const double *stat,
                   const uint64_t rng[RNG_STATE_WORDS], const uint64_t counters[2],
                   const float *velocity)
{
    rng_t r;
    if (rng_restore(&r, rng) || r.seed != s->opts.seed || r.stream != RNG_STREAM_SERVER)
        return -1;
    s->rng = r;
    memcpy(s->w, w, s->opts.n * sizeof *s->w);
    memcpy(s->stat, stat, s->opts.n * sizeof *s->stat);
    s->accepted = counters[0];
    s->rejected = counters[1];
    if (s->velocity) {
        if (velocity)
            memcpy(s->velocity, velocity, s->opts.n * sizeof *s->velocity);
        else
            memset(s->velocity, 0, s->opts.n * sizeof *s->velocity);
    }
    return 0;
}
