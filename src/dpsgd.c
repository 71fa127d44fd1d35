/* dpsgd: Poisson sampling, clipped per-example gradient sums, Gaussian
 * noise, the DP-SGD step; the plan (sigma for a target) and one party's
 * account, both through the Rényi-DP accountant (rdp.h). */
#include "dpsgd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* Ziggurat of the standard normal with 256 layers of equal area V; the
 * base layer (0) holds the tail beyond R. Marsaglia & Tsang's constants. */
#define ZIG_LAYERS 256
#define ZIG_R 3.6541528853610088
#define ZIG_V 0.00492867323399

/* Normals are drawn and applied in chunks of this many. */
#define NOISE_CHUNK 1024

struct dpsgd_ws {
    size_t n;
    int max_batch;
    float *grad;        /* (n) the clipped gradient sum of a step */
    double *sqnorm;     /* (max_batch) per-example squared norms of a chunk */
    float *weight;      /* (max_batch) their clipping factors */
    float *noise;       /* (NOISE_CHUNK) normals */
    /* the ziggurat: layer i spans x in [0, x[i]] and y in [f(x[i]), f(x[i+1])] */
    double x[ZIG_LAYERS + 1];
    double f[ZIG_LAYERS + 1];   /* exp(-x^2 / 2) */
    float ratio[ZIG_LAYERS];    /* x[i+1] / x[i]: below it a draw is under the curve */
    float width[ZIG_LAYERS];    /* x[i] * 2^-23: a 23-bit position times it is x */
};

static void zig_tables(dpsgd_ws *w)
{
    double fr = exp(-0.5 * ZIG_R * ZIG_R);
    w->x[0] = ZIG_V / fr; /* the base's rectangle has the tail's area beyond R */
    w->x[1] = ZIG_R;
    for (int i = 2; i < ZIG_LAYERS; i++)
        w->x[i] = sqrt(-2.0 * log(ZIG_V / w->x[i - 1] + exp(-0.5 * w->x[i - 1] * w->x[i - 1])));
    w->x[ZIG_LAYERS] = 0;
    for (int i = 0; i <= ZIG_LAYERS; i++)
        w->f[i] = exp(-0.5 * w->x[i] * w->x[i]);
    for (int i = 0; i < ZIG_LAYERS; i++) {
        w->ratio[i] = (float)(w->x[i + 1] / w->x[i]);
        w->width[i] = (float)(w->x[i] * 0x1p-23);
    }
}

dpsgd_ws *dpsgd_ws_create(const model_t *m, int max_batch)
{
    if (max_batch <= 0)
        return NULL;
    dpsgd_ws *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->n = m->num_params;
    w->max_batch = max_batch;
    w->grad = calloc(w->n ? w->n : 1, sizeof *w->grad);
    w->sqnorm = calloc((size_t)max_batch, sizeof *w->sqnorm);
    w->weight = calloc((size_t)max_batch, sizeof *w->weight);
    w->noise = calloc(NOISE_CHUNK, sizeof *w->noise);
    if (!w->grad || !w->sqnorm || !w->weight || !w->noise) {
        dpsgd_ws_free(w);
        return NULL;
    }
    zig_tables(w);
    return w;
}

void dpsgd_ws_free(dpsgd_ws *w)
{
    if (!w)
        return;
    free(w->grad);
    free(w->sqnorm);
    free(w->weight);
    free(w->noise);
    free(w);
}

/* ---- sampling -------------------------------------------------------------- */

size_t dpsgd_sample(rng_t *rng, double q, const uint32_t *records, size_t count,
                    uint32_t *batch)
{
    if (q >= 1) {
        memcpy(batch, records, count * sizeof *records);
        return count;
    }
    /* The records skipped before the next chosen one are Geometric(q):
     * P(gap >= k) = P(U <= (1-q)^k) = (1-q)^k for gap = floor(log U / log(1-q)). */
    double l = log1p(-q);
    size_t size = 0;
    for (size_t i = 0;;) {
        double gap = floor(log(rng_uniform_open(rng)) / l);
        if (!(gap < (double)(count - i)))
            break;
        i += (size_t)gap;
        batch[size++] = records[i++];
    }
    return size;
}

/* ---- clipped per-example gradients ------------------------------------------- */

void dpsgd_clipped_sum(const model_t *m, const float *params, model_ws *ws, dpsgd_ws *dw,
                       const dataset_t *ds, const uint32_t *idx, size_t size, float clip,
                       float *sum, double *loss, int *correct)
{
    size_t chunk = (size_t)model_ws_max_batch(ws);
    if (chunk > (size_t)dw->max_batch)
        chunk = (size_t)dw->max_batch;
    double total = 0;
    for (size_t start = 0; start < size; start += chunk) {
        int b = (int)(size - start < chunk ? size - start : chunk);
        sgd_gather(ds, idx + start, b, ws);
        total += model_forward(m, params, ws, b, correct);
        model_example_sqnorms(m, params, ws, b, dw->sqnorm);
        for (int r = 0; r < b; r++) {
            /* min(1, C / ||g||): examples inside the ball pass unchanged */
            double norm = sqrt(dw->sqnorm[r]);
            dw->weight[r] = norm > (double)clip ? (float)((double)clip / norm) : 1.0f;
        }
        model_backward_weighted(m, params, ws, b, dw->weight, 1.0f, sum);
    }
    if (loss)
        *loss += total;
}

/* ---- Gaussian noise ------------------------------------------------------------ */

/* A draw u that missed the fast path, resolved: u's wedge test, or the
 * tail, drawing from rng as needed, then fresh draws until one is taken. */
static float zig_slow(const dpsgd_ws *w, rng_t *rng, uint32_t u)
{
    for (;;) {
        int i = (int)(u & 0xff);
        double sign = (u & 0x100) ? -1.0 : 1.0;
        double v = (double)(u >> 9) * 0x1p-23;
        if (v < w->x[i + 1] / w->x[i])
            return (float)(sign * v * w->x[i]);
        if (i == 0) { /* beyond R: Marsaglia's exponential rejection */
            double x, y;
            do {
                x = -log(rng_uniform_open(rng)) / ZIG_R;
                y = -log(rng_uniform_open(rng));
            } while (y + y < x * x);
            return (float)(sign * (ZIG_R + x));
        }
        double x = v * w->x[i];
        double y = w->f[i] + rng_uniform(rng) * (w->f[i + 1] - w->f[i]);
        if (y < exp(-0.5 * x * x))
            return (float)(sign * x);
        u = rng_u32(rng);
    }
}

/* The fast path over a chunk: o[j] for every draw u[j] under the curve's
 * inner rectangle; returns how many missed it, their positions (ascending)
 * in miss. The AVX2 loop gives the same bits as the scalar one (one
 * rounding, the multiply; the rest is exact), so a build with or without
 * it draws the same noise. */
static size_t zig_fast(const uint32_t *restrict u, size_t len, const float *restrict width,
                       const float *restrict ratio, float *restrict o, uint32_t *restrict miss)
{
    size_t misses = 0, j = 0;
#if defined(__AVX2__)
    /* the compiler will not gather from the tables by itself */
    const __m256i layer = _mm256_set1_epi32(0xff), sign = _mm256_set1_epi32(0x100);
    const __m256 unit = _mm256_set1_ps(0x1p-23f);
    for (; j + 8 <= len; j += 8) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(u + j));
        __m256i i = _mm256_and_si256(b, layer);
        __m256 v = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 9));
        __m256 x = _mm256_mul_ps(v, _mm256_i32gather_ps(width, i, 4));
        __m256i s = _mm256_slli_epi32(_mm256_and_si256(b, sign), 23); /* bit 8 to 31 */
        _mm256_storeu_ps(o + j, _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(x), s)));
        __m256 r = _mm256_i32gather_ps(ratio, i, 4);
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_mul_ps(v, unit), r,
                                                                _CMP_GE_OQ));
        for (; m; m &= m - 1)
            miss[misses++] = (uint32_t)(j + (size_t)__builtin_ctz(m));
    }
#endif
    for (; j < len; j++) {
        /* Bits: 0-7 the layer, 8 the sign, 9-31 the position in the layer. */
        uint32_t b = u[j];
        int32_t i = (int32_t)(b & 0xff);
        float v = (float)(int32_t)(b >> 9);
        float x = v * width[i];
        o[j] = (b & 0x100) ? -x : x;
        miss[misses] = (uint32_t)j;
        misses += v * 0x1p-23f >= ratio[i];
    }
    return misses;
}

void dpsgd_normals(const dpsgd_ws *w, rng_t *rng, float *out, size_t n)
{
    uint32_t u[NOISE_CHUNK], miss[NOISE_CHUNK];
    for (size_t start = 0; start < n; start += NOISE_CHUNK) {
        size_t len = n - start < NOISE_CHUNK ? n - start : NOISE_CHUNK;
        float *o = out + start;
        for (size_t j = 0; j < len; j++)
            u[j] = rng_u32(rng);
        size_t misses = zig_fast(u, len, w->width, w->ratio, o, miss);
        for (size_t k = 0; k < misses; k++) /* about 1% */
            o[miss[k]] = zig_slow(w, rng, u[miss[k]]);
    }
}

/* ---- the step ---------------------------------------------------------------------- */

size_t dpsgd_step(const model_t *m, float *params, model_ws *ws, dpsgd_ws *dw,
                  const dataset_t *ds, const uint32_t *records, size_t count,
                  const dpsgd_params *p, rng_t *rng, uint32_t *batch_buf, double *loss,
                  int *correct)
{
    size_t n = dw->n;
    size_t size = dpsgd_sample(rng, p->q, records, count, batch_buf);
    memset(dw->grad, 0, n * sizeof *dw->grad);
    dpsgd_clipped_sum(m, params, ws, dw, ds, batch_buf, size, p->clip, dw->grad, loss, correct);
    /* Divided by the EXPECTED batch size: dividing by the sampled size
     * would make the step depend on whether one record was sampled. */
    float scale = p->lr / (float)p->batch;
    if (p->noise > 0) {
        float std = (float)(p->noise * (double)p->clip);
        for (size_t start = 0; start < n; start += NOISE_CHUNK) {
            size_t len = n - start < NOISE_CHUNK ? n - start : NOISE_CHUNK;
            dpsgd_normals(dw, rng, dw->noise, len);
            float *w = params + start;
            const float *g = dw->grad + start;
            for (size_t j = 0; j < len; j++)
                w[j] -= scale * (g[j] + std * dw->noise[j]);
        }
    } else {
        for (size_t j = 0; j < n; j++)
            params[j] -= scale * dw->grad[j];
    }
    return size;
}

void dpsgd_train(const model_t *m, float *params, model_ws *ws, dpsgd_ws *dw,
                 const dataset_t *ds, const uint32_t *records, size_t count, uint64_t steps,
                 const dpsgd_params *p, rng_t *rng, uint32_t *batch_buf, sgd_stats *stats)
{
    double loss = 0;
    int correct = 0;
    size_t seen = 0;
    for (uint64_t s = 0; s < steps; s++)
        seen += dpsgd_step(m, params, ws, dw, ds, records, count, p, rng, batch_buf, &loss,
                           &correct);
    stats->count = seen;
    stats->loss = seen ? loss / (double)seen : 0.0;
    stats->accuracy = seen ? (double)correct / (double)seen : 0.0;
}

/* ---- the plan ------------------------------------------------------------------------ */

int dpsgd_check_sizes(const size_t *sizes, int count, int batch, double delta,
                      const char *what, char *err)
{
    for (int i = 0; i < count; i++) {
        if ((size_t)batch > sizes[i])
            return err_set(err, "--dpsgd: --batch %d is larger than %s %d (%zu examples): the "
                           "sampling rate batch / size would exceed 1", batch, what, i,
                           sizes[i]);
        if (delta >= 1.0 / (double)sizes[i])
            return err_set(err, "--dp-delta %g is not below 1 / %zu, the size of %s %d: such a "
                           "delta allows publishing a record outright", delta, sizes[i], what,
                           i);
    }
    return 0;
}

int dpsgd_plan_sigma(const size_t *sizes, int count, int batch, int epochs, double delta,
                     double target, double *sigma, char *err)
{
    double most = 0;
    for (int i = 0; i < count; i++) {
        int seen = 0; /* shards often share a size: each size once */
        for (int j = 0; j < i && !seen; j++)
            seen = sizes[j] == sizes[i];
        if (seen)
            continue;
        double q = (double)batch / (double)sizes[i], s;
        uint64_t steps = (uint64_t)epochs * dpsgd_epoch_steps(sizes[i], batch);
        char why[ERR_LEN];
        int rc = rdp_find_sigma(q, (int64_t)steps, delta, target, &s, why);
        if (rc == RDP_EUNREACHABLE || (rc == RDP_OK && s > DPSGD_SIGMA_MAX))
            return err_set(err, "--dp-target-epsilon %g is unreachable: %llu steps at q = %g "
                           "and delta %g need a noise multiplier above %g (fewer --epochs, a "
                           "smaller --batch or a larger epsilon)", target,
                           (unsigned long long)steps, q, delta, DPSGD_SIGMA_MAX);
        if (rc != RDP_OK)
            return err_set(err, "--dp-target-epsilon %g: %s", target, why);
        most = s > most ? s : most;
    }
    *sigma = most;
    return 0;
}

/* ---- the account --------------------------------------------------------------------- */

int dpsgd_account_init(dpsgd_account *a, double q, double sigma, double delta, char *err)
{
    if (!(q > 0 && q <= 1) || !(sigma >= 0) || !isfinite(sigma) || !(delta > 0 && delta < 1))
        return err_set(err, "dpsgd: no account for q = %g, sigma = %g, delta = %g", q, sigma,
                       delta);
    a->q = q;
    a->sigma = sigma;
    a->delta = delta;
    for (size_t i = 0; i < RDP_NORDERS; i++) {
        a->orders[i] = rdp_order(i);
        a->step_rdp[i] = INFINITY; /* sigma = 0: no noise, no privacy */
        if (sigma > 0 && rdp_sgm(q, sigma, a->orders[i], &a->step_rdp[i], err) != RDP_OK)
            return -1;
    }
    return 0;
}

double dpsgd_account_epsilon(const dpsgd_account *a, uint64_t steps)
{
    if (steps == 0)
        return 0; /* nothing released (the conversion alone has a floor above 0) */
    double r[RDP_NORDERS], eps = INFINITY;
    for (size_t i = 0; i < RDP_NORDERS; i++)
        r[i] = (double)steps * a->step_rdp[i];
    rdp_epsilon(a->orders, r, RDP_NORDERS, a->delta, RDP_CONV_BALLE, &eps, NULL, NULL);
    return eps;
}

/* The largest T in [lo, hi] with epsilon(T) <= cap, given epsilon(lo) <= cap
 * < epsilon(hi + 1) or hi the end of the range. */
static uint64_t last_within(const dpsgd_account *a, double cap, uint64_t lo, uint64_t hi)
{
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (dpsgd_account_epsilon(a, mid) <= cap)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

uint64_t dpsgd_account_max_steps(const dpsgd_account *a, double cap)
{
    if (cap == INFINITY)
        return UINT64_MAX;
    if (!(dpsgd_account_epsilon(a, 1) <= cap))
        return 0;
    uint64_t hi = 2;
    while (dpsgd_account_epsilon(a, hi) <= cap) {
        if (hi >= ((uint64_t)1 << 62))
            return UINT64_MAX; /* epsilon grows without bound; not in practice */
        hi *= 2;
    }
    return last_within(a, cap, hi / 2, hi - 1);
}

int dpsgd_account_steps_for(const dpsgd_account *a, double epsilon, uint64_t most,
                            uint64_t *steps)
{
    const double tol = 1e-9;
    double hi = epsilon * (1 + tol), lo = epsilon * (1 - tol);
    if (!(epsilon >= 0))
        return -1;
    if (dpsgd_account_epsilon(a, most) <= hi) {
        if (!(dpsgd_account_epsilon(a, most) >= lo))
            return -1;
        *steps = most;
        return 0;
    }
    uint64_t t = last_within(a, hi, 0, most - 1);
    if (!(dpsgd_account_epsilon(a, t) >= lo))
        return -1;
    *steps = t;
    return 0;
}
