/* server: global model and counters of DSSGD (Shokri & Shmatikov, sec. 4).
 * Every upload is untrusted: wire_check checks it whole before any write. */
#include "server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* stat_fold adds 8 counters a step with AVX-512 where the compiler targets
 * it (-march=native on a recent x86), else one at a time. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__)
#include <immintrin.h>
#define STAT_FOLD_SIMD 1
#endif

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
    double *stat;        /* (n) times each parameter was updated (decayed), less pend */
    uint8_t *pend;       /* (n) updates not yet added to stat (stat_fold) */
    uint32_t pend_uploads; /* uploads applied since the last stat_fold: bounds pend */
    uint32_t *idx;       /* (n + 16) scratch indices (stat_fold stores 8 at a time) */
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
    int momentum_held;   /* server_hold_momentum: rounds and turns leave u alone */
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
    s->pend = err_calloc(n, sizeof *s->pend);
    s->idx = err_calloc(n + 16, sizeof *s->idx);
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
            s->mix_weight[c] = pow(1.0 + (double)c, -opts->staleness_exponent);
        for (size_t p = 0; p < N; p++)
            s->snap_of[p] = -1;
    }
    if (mean) {
        s->round_sum = err_calloc(n, sizeof *s->round_sum);
        s->round_count = err_calloc(n, sizeof *s->round_count);
    }
    if (momentum)
        s->velocity = err_calloc(n, sizeof *s->velocity);
    if (!s->w || !s->stat || !s->pend || !s->idx || !s->val || !s->sel || !s->version ||
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
    free(s->pend);
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

/* ---- stat: the update counters ---------------------------------------- */

/* An upload adds 1 to a byte of pend for each of its entries (an eighth of
 * the bytes of stat[j] += 1.0, so fewer lines, for the same bits): an
 * upload carries an index at most once, so after at most 255 uploads, or
 * before stat is read or decayed, pend is added to stat. Between decays
 * every change to stat[j] is + 1.0, so a direct stat[j] += 1.0 (the mix
 * rule's snapshot branch) gives the same bits in any order. */
#define PEND_MAX UINT8_MAX

/* x + 1.0, c times: at once while x is an integer below 2^52 (each sum is
 * exact), else one by one (the same roundings). */
static double add_ones(double x, unsigned c)
{
    if (x > -0x1p52 && x < 0x1p52 && x == (double)(int64_t)x)
        return x + c;
    for (; c > 0; c--)
        x += 1.0;
    return x;
}

/* The bit 8g + 7 of the result is set iff byte g of x is not 0. */
static uint64_t nonzero_bytes(uint64_t x)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
    return (((x & low7) + low7) | x) & ~low7;
}

/* stat[j] = add_ones(stat[j], pend[j]) where pend[j] != 0, pend emptied. */
static void fold_one(double *stat, uint8_t *pend, size_t j)
{
    stat[j] = add_ones(stat[j], pend[j]);
    pend[j] = 0;
}

#ifdef STAT_FOLD_SIMD
/* fold_one on each nonzero byte of pend[j..j+8), 8 lanes at a time where
 * stat is an integer below 2^52 (add_ones' fast case). */
static void fold_eight(double *stat, uint8_t *pend, size_t j)
{
    __m128i c8 = _mm_loadl_epi64((const __m128i *)(pend + j));
    __mmask8 lanes = (__mmask8)_mm_test_epi8_mask(c8, c8);
    __m512d add = _mm512_cvtepu64_pd(_mm512_cvtepu8_epi64(c8));
    __m512d x = _mm512_loadu_pd(stat + j);
    __mmask8 whole = _mm512_cmp_pd_mask(
        x, _mm512_roundscale_pd(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), _CMP_EQ_OQ);
    whole &= _mm512_cmp_pd_mask(_mm512_abs_pd(x), _mm512_set1_pd(0x1p52), _CMP_LT_OQ);
    _mm512_mask_storeu_pd(stat + j, lanes & whole, _mm512_add_pd(x, add));
    for (unsigned r = lanes & ~whole & 0xffu; r; r &= r - 1) { /* decayed: one by one */
        size_t t = j + (unsigned)__builtin_ctz(r);
        stat[t] = add_ones(stat[t], pend[t]);
    }
    memset(pend + j, 0, 8);
}
#endif

/* stat[j] += 1.0 for each pending update. With AVX-512 the touched 8-byte
 * words of pend are listed first, 64 bytes a step without a branch (after
 * one upload of density 0.01 half the steps find some, at random), then
 * folded 8 entries at a time; elsewhere the untouched words are skipped. */
static void stat_fold(server_t *s)
{
    if (s->pend_uploads == 0)
        return;
    uint8_t *pend = s->pend;
    double *stat = s->stat;
    size_t n = s->opts.n, j0 = 0;
#ifdef STAT_FOLD_SIMD
    uint32_t *list = s->idx; /* touched words: at most n / 8, stored 8 at a time */
    size_t k = 0;
    __m256i at = _mm256_set_epi32(56, 48, 40, 32, 24, 16, 8, 0);
    for (; j0 + 64 <= n; j0 += 64) {
        __m512i v = _mm512_loadu_si512(pend + j0);
        __mmask8 some = _mm512_test_epi64_mask(v, v); /* word w of the 8 is not 0 */
        _mm256_storeu_si256((__m256i *)(list + k), _mm256_maskz_compress_epi32(some, at));
        k += (size_t)__builtin_popcount(some);
        at = _mm256_add_epi32(at, _mm256_set1_epi32(64));
    }
    for (size_t i = 0; i < k; i++)
        fold_eight(stat, pend, list[i]);
#endif
    for (; j0 + 8 <= n; j0 += 8) {
        uint64_t x;
        memcpy(&x, pend + j0, sizeof x);
        if (x == 0)
            continue;
        for (uint64_t some = nonzero_bytes(x); some; some &= some - 1)
            fold_one(stat, pend, j0 + (size_t)__builtin_ctzll(some) / 8);
    }
    for (; j0 < n; j0++)
        if (pend[j0])
            fold_one(stat, pend, j0);
    s->pend_uploads = 0;
}

const float *server_params(const server_t *s) { return s->w; }
const double *server_stat(server_t *s)
{
    stat_fold(s);
    return s->stat;
}
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
               : pow(1.0 + (double)c, -s->opts.staleness_exponent);
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
        stat_fold(s);
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

/* Indices decoded a block at a time, the next while this one's adds wait on
 * their lines (wire_read decodes 32 bytes a step with AVX-512; 64 was the
 * best of 32 to 256 on the uploads of bench --only apply). */
#define APPLY_BLOCK 64
/* From this many parameters on (w and pend past about 1.3 MB, a 2 MB L2's
 * worth with the rest) the next block's lines are prefetched; below, the
 * prefetches cost more than they save (results/bench/README.md). */
#define APPLY_PREFETCH_N ((size_t)1 << 18)

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
    uint8_t *restrict pend = s->pend;
    const uint8_t *vs = rd.values;
    if (s->pend_uploads == PEND_MAX)
        stat_fold(s);
    s->pend_uploads++;
    const int far = s->opts.n >= APPLY_PREFETCH_N;
    uint32_t blk[2][APPLY_BLOCK];
    size_t at = 0, m = wire_read(&rd, blk[0], APPLY_BLOCK);
    for (int cur = 0; m > 0; cur ^= 1) {
        /* Software pipelining: the next block is decoded (and, far, its
         * lines requested) while this block's are on their way. */
        const uint32_t *b = blk[cur];
        size_t next = wire_read(&rd, blk[cur ^ 1], APPLY_BLOCK);
        for (size_t i = 0; far && i < next; i++) {
            __builtin_prefetch(&w[blk[cur ^ 1][i]], 1);
            __builtin_prefetch(&pend[blk[cur ^ 1][i]], 1);
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
                s->round_sum[b[i]] += wire_value_at(vs, at + i);
                s->round_count[b[i]]++;
                pend[b[i]]++;
            }
        } else if (step == 1.0f && !s->in_turn) { /* the paper's rule, exactly */
            for (size_t i = 0; i < m; i++) {
                w[b[i]] += wire_value_at(vs, at + i);
                pend[b[i]]++;
            }
        } else {
            for (size_t i = 0; i < m; i++) {
                w[b[i]] += step * wire_value_at(vs, at + i);
                pend[b[i]]++;
                if (s->in_turn) { /* without a snapshot: still counted for the turn */
                    s->round_sum[b[i]] += step * wire_value_at(vs, at + i);
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

/* The end of a mix turn, as a round of mean ends with the turn's change m
 * (already in w) in place of the round's mean: u <- beta_s u + m and
 * w <- w - m + eta_s u (FedAvgM over turns), so w += eta_s beta_s u_old +
 * (eta_s - 1) m; without a momentum (or while it is held) w += (eta_s - 1) m.
 * The turn's counts and snapshots are dropped. */
static void mix_turn_end(server_t *s)
{
    double beta = s->opts.server_momentum, lr = s->opts.server_lr;
    int momentum = s->velocity && !s->momentum_held;
    for (size_t j = 0; j < s->opts.n; j++) {
        double m = s->round_sum[j];
        if (momentum) {
            double add = beta * s->velocity[j];
            /* eta_s = 1: the same operations, so the same bits, as before the step */
            s->w[j] = lr == 1.0 ? (float)(s->w[j] + add)
                                : (float)(s->w[j] + lr * add + (lr - 1.0) * m);
            s->velocity[j] = (float)(add + m);
        } else if (lr != 1.0) {
            s->w[j] = (float)(s->w[j] + (lr - 1.0) * m);
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
    if (s->velocity && !s->momentum_held) {
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

void server_hold_momentum(server_t *s, int held) { s->momentum_held = held != 0; }

void server_staleness(const server_t *s, uint64_t *count, uint64_t *sum, uint64_t *max)
{
    *count = s->stale_count;
    *sum = s->stale_sum;
    *max = s->stale_max;
}

void server_end_epoch(server_t *s)
{
    if (s->opts.stat_decay != 1.0) {
        stat_fold(s);
        for (size_t i = 0; i < s->opts.n; i++)
            s->stat[i] *= s->opts.stat_decay;
    }
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
    memset(s->pend, 0, s->opts.n * sizeof *s->pend);
    s->pend_uploads = 0;
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
