/* test_dpsgd: DP-SGD's mechanism against independent references, its noise
 * and Poisson sampling against their distributions, the account against
 * the accountant, and a participant's DP-SGD turns, cap and resume.
 *
 * Each of these mutants of src/dpsgd.c fails at least one assertion, named
 * where it is made:
 *   - forgetting to clip:                 [clip] in check_clipped_sum
 *   - clipping per layer, not globally:   [global] in check_clipped_sum
 *   - noising the mean instead of the sum: [sum-noise] in test_noise_is_...
 *   - fixed-size (not Poisson) batches:   [poisson] in test_batch_sizes_...
 * Statistical tests use fixed seeds, so they are deterministic; each states
 * the significance at which it would reject a correct implementation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dpsgd.h"
#include "err.h"
#include "model.h"
#include "participant.h"
#include "rdp.h"
#include "rng.h"
#include "sgd.h"

/* ---- fixtures ------------------------------------------------------------ */

/* count random side x side images in [0, 1), random labels. */
static dataset_t random_data(size_t count, int side, uint64_t seed)
{
    dataset_t ds = {.count = count, .channels = 1, .rows = side, .cols = side,
                    .dim = (size_t)side * side, .classes = DATASET_IDX_CLASSES};
    ds.x = malloc(count * ds.dim * sizeof *ds.x);
    ds.y = malloc(count);
    rng_t r;
    rng_init(&r, seed, 9);
    for (size_t i = 0; i < count * ds.dim; i++)
        ds.x[i] = (float)rng_uniform(&r);
    for (size_t i = 0; i < count; i++)
        ds.y[i] = (uint8_t)rng_below(&r, 10);
    return ds;
}

static void free_data(dataset_t *ds)
{
    free(ds->x);
    free(ds->y);
}

/* Glorot weights and small nonzero biases, so every gradient is exercised. */
static float *random_params(const model_t *m, uint64_t seed)
{
    rng_t r;
    rng_init(&r, seed, 3);
    float *w = calloc(m->num_params, sizeof *w);
    model_init_params(m, w, &r);
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        size_t outs = (size_t)l->out_c;
        if (l->param_count)
            for (size_t j = l->param_count - outs; j < l->param_count; j++)
                w[l->param_offset + j] = (float)(0.2 * rng_uniform(&r) - 0.1);
    }
    return w;
}

static model_t build(const char *spec, int side)
{
    model_t m;
    char err[ERR_LEN];
    if (model_build(&m, spec, 1, side, side, 10, err))
        fail_msg("%s", err);
    return m;
}

static double norm2(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return sqrt(s);
}

static double dist2(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

/* ---- the independent reference -------------------------------------------- */

/* Example e's own gradient, through the plain backward pass on a batch of
 * one (its mean loss is its loss), in double. */
static void example_gradient(const model_t *m, const float *w, model_ws *ws1,
                             const dataset_t *ds, uint32_t e, float *scratch, double *g)
{
    sgd_gather(ds, &e, 1, ws1);
    model_forward(m, w, ws1, 1, NULL);
    memset(scratch, 0, m->num_params * sizeof *scratch);
    model_backward(m, w, ws1, 1, 1.0f, scratch);
    for (size_t i = 0; i < m->num_params; i++)
        g[i] = scratch[i];
}

enum { CLIP_NONE, CLIP_GLOBAL, CLIP_PER_LAYER };

/* sum over idx of each example's gradient, clipped as `how` says: by its
 * norm over all parameters, by each layer's norm separately (the mutant),
 * or not at all. */
static void reference_sum(const model_t *m, const float *w, const dataset_t *ds,
                          const uint32_t *idx, size_t size, double clip, int how, double *sum)
{
    size_t n = m->num_params;
    model_ws *ws1 = model_ws_create(m, 1);
    float *scratch = malloc(n * sizeof *scratch);
    double *g = malloc(n * sizeof *g);
    memset(sum, 0, n * sizeof *sum);
    for (size_t e = 0; e < size; e++) {
        example_gradient(m, w, ws1, ds, idx[e], scratch, g);
        if (how == CLIP_GLOBAL) {
            double s = fmin(1.0, clip / norm2(g, n));
            for (size_t i = 0; i < n; i++)
                g[i] *= s;
        } else if (how == CLIP_PER_LAYER) {
            for (int l = 0; l < m->num_layers; l++) {
                const model_layer *L = &m->layers[l];
                double *gl = g + L->param_offset;
                double s = L->param_count ? fmin(1.0, clip / norm2(gl, L->param_count)) : 1;
                for (size_t i = 0; i < L->param_count; i++)
                    gl[i] *= s;
            }
        }
        for (size_t i = 0; i < n; i++)
            sum[i] += g[i];
    }
    free(scratch);
    free(g);
    model_ws_free(ws1);
}

/* The median of the examples' gradient norms: a clip that clips about half. */
static double median_norm(const model_t *m, const float *w, const dataset_t *ds,
                          const uint32_t *idx, size_t size)
{
    size_t n = m->num_params;
    model_ws *ws1 = model_ws_create(m, 1);
    float *scratch = malloc(n * sizeof *scratch);
    double *g = malloc(n * sizeof *g), *norms = malloc(size * sizeof *norms);
    for (size_t e = 0; e < size; e++) {
        example_gradient(m, w, ws1, ds, idx[e], scratch, g);
        norms[e] = norm2(g, n);
    }
    for (size_t i = 1; i < size; i++) /* insertion sort: few examples */
        for (size_t j = i; j > 0 && norms[j] < norms[j - 1]; j--) {
            double t = norms[j]; norms[j] = norms[j - 1]; norms[j - 1] = t;
        }
    double med = norms[size / 2];
    free(scratch); free(g); free(norms);
    model_ws_free(ws1);
    return med;
}

/* dpsgd_clipped_sum over 23 examples in chunks of 5 (the workspace's max
 * batch) equals the reference to 1e-5 relative (L2 over the whole vector),
 * with a clip that clips about half of them. The reference's clipped sum is
 * also shown to differ by far more than the tolerance from the unclipped
 * and the per-layer-clipped sums, so the comparison has the power to catch
 * either mutant. */
static void check_clipped_sum(const char *spec, int side)
{
    model_t m = build(spec, side);
    size_t n = m.num_params;
    dataset_t ds = random_data(40, side, 5);
    uint32_t idx[23];
    for (uint32_t i = 0; i < 23; i++)
        idx[i] = (i * 7) % 40;
    float *w = random_params(&m, 8);
    double clip = median_norm(&m, w, &ds, idx, 23);

    model_ws *ws = model_ws_create(&m, 5);
    dpsgd_ws *dw = dpsgd_ws_create(&m, 5);
    float *sum = calloc(n, sizeof *sum);
    double loss = 0;
    int correct = 0;
    dpsgd_clipped_sum(&m, w, ws, dw, &ds, idx, 23, (float)clip, sum, &loss, &correct);

    double *got = malloc(n * sizeof *got), *ref = malloc(n * sizeof *ref);
    double *unclipped = malloc(n * sizeof *ref), *per_layer = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++)
        got[i] = sum[i];
    reference_sum(&m, w, &ds, idx, 23, clip, CLIP_GLOBAL, ref);
    reference_sum(&m, w, &ds, idx, 23, clip, CLIP_NONE, unclipped);
    reference_sum(&m, w, &ds, idx, 23, clip, CLIP_PER_LAYER, per_layer);
    double scale = norm2(ref, n), err = dist2(got, ref, n) / scale;
    print_message("%s: clip %.4g, relative error %.2e; unclipped %.2e and per-layer %.2e away\n",
                  spec, clip, err, dist2(unclipped, ref, n) / scale,
                  dist2(per_layer, ref, n) / scale);
    /* [clip] [global] the clipped sum is the reference's */
    if (!(err <= 1e-5))
        fail_msg("%s: clipped sum differs from the reference by %.3e relative", spec, err);
    /* the mutants' sums lie far outside that tolerance */
    assert_true(dist2(unclipped, ref, n) > 1e-2 * scale);
    assert_true(dist2(per_layer, ref, n) > 1e-2 * scale);
    assert_true(loss > 0 && correct >= 0 && correct <= 23);

    free(got); free(ref); free(unclipped); free(per_layer); free(sum); free(w);
    dpsgd_ws_free(dw);
    model_ws_free(ws);
    free_data(&ds);
}

static void test_clipped_sum_matches_reference_mlp(void **state)
{
    (void)state;
    check_clipped_sum("d24-relu,d16-tanh,d10", 8);
}

/* Two convolutions (the first without an input gradient, the second with
 * one), pooling, padding and a dense layer. */
static void test_clipped_sum_matches_reference_cnn(void **state)
{
    (void)state;
    check_clipped_sum("pad1,c3x4-tanh-p2,c3x6-relu,d10", 8);
}

/* The paper's MLP at a realistic size, the dense norms at scale. */
static void test_clipped_sum_matches_reference_paper_mlp(void **state)
{
    (void)state;
    check_clipped_sum("mlp", 28);
}

/* ---- a step ------------------------------------------------------------------ */

/* sigma = 0, C = inf, q = 1: one DP-SGD step is one step of plain
 * full-batch SGD (the mean gradient of all records), to 1e-5 relative in
 * the change (float sums in another order). The DP workspace takes 6 at a
 * time, the plain one all 20. */
static void test_step_without_noise_or_clip_is_full_batch_sgd(void **state)
{
    (void)state;
    model_t m = build("d16-relu,d12-tanh,d10", 6);
    size_t n = m.num_params;
    dataset_t ds = random_data(30, 6, 2);
    uint32_t records[20];
    for (uint32_t i = 0; i < 20; i++)
        records[i] = i + 5;
    float *w0 = random_params(&m, 4);
    float *dp = malloc(n * sizeof *dp), *plain = malloc(n * sizeof *plain);
    memcpy(dp, w0, n * sizeof *dp);
    memcpy(plain, w0, n * sizeof *plain);

    model_ws *small = model_ws_create(&m, 6), *whole = model_ws_create(&m, 20);
    dpsgd_ws *dw = dpsgd_ws_create(&m, 6);
    uint32_t buf[20];
    rng_t rng;
    rng_init(&rng, 1, 1);
    dpsgd_params p = {.q = 1, .batch = 20, .clip = INFINITY, .noise = 0, .lr = 1.0f};
    assert_int_equal(dpsgd_step(&m, dp, small, dw, &ds, records, 20, &p, &rng, buf, NULL, NULL),
                     20);
    sgd_stats stats;
    sgd_batches(&m, plain, whole, &ds, records, 20, 20, 1.0f, &stats);

    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < n; i++) {
        a[i] = (double)dp[i] - w0[i];
        b[i] = (double)plain[i] - w0[i];
    }
    double err = dist2(a, b, n) / norm2(b, n);
    print_message("q = 1, sigma = 0, C = inf: step differs from SGD by %.2e relative\n", err);
    assert_true(norm2(b, n) > 0.01);
    assert_true(err <= 1e-5);
    free(a); free(b); free(w0); free(dp); free(plain);
    dpsgd_ws_free(dw);
    model_ws_free(small);
    model_ws_free(whole);
    free_data(&ds);
}

/* sigma = 0, q < 1: the step is -lr / B times the clipped sum over the
 * batch that Poisson sampling chose (reproduced with a copy of the rng),
 * divided by the EXPECTED batch size B, not the sampled one. Batches larger
 * than the workspace's max batch (4) go in chunks. */
static void test_step_divides_the_sampled_sum_by_the_expected_batch(void **state)
{
    (void)state;
    model_t m = build("d12-relu,d10", 6);
    size_t n = m.num_params;
    dataset_t ds = random_data(50, 6, 3);
    uint32_t records[50], buf[50], chosen[50];
    for (uint32_t i = 0; i < 50; i++)
        records[i] = 49 - i;
    float *w = random_params(&m, 6), *w0 = malloc(n * sizeof *w0);
    model_ws *ws = model_ws_create(&m, 4);
    dpsgd_ws *dw = dpsgd_ws_create(&m, 4);
    double *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    rng_t rng;
    rng_init(&rng, 21, 2);
    dpsgd_params p = {.q = 0.2, .batch = 10, .clip = 0.5f, .noise = 0, .lr = 2.0f};
    int sizes_differ = 0;
    for (int t = 0; t < 5; t++) {
        memcpy(w0, w, n * sizeof *w);
        rng_t copy = rng;
        size_t size = dpsgd_sample(&copy, p.q, records, 50, chosen);
        assert_int_equal(dpsgd_step(&m, w, ws, dw, &ds, records, 50, &p, &rng, buf, NULL, NULL),
                         size);
        /* sigma = 0 draws nothing more (compared field by field through
         * rng_save: the struct's padding is not initialised) */
        uint64_t drawn[RNG_STATE_WORDS], sampled[RNG_STATE_WORDS];
        rng_save(&rng, drawn);
        rng_save(&copy, sampled);
        assert_memory_equal(drawn, sampled, sizeof drawn);
        sizes_differ |= size != 10;
        reference_sum(&m, w0, &ds, chosen, size, p.clip, CLIP_GLOBAL, ref);
        for (size_t i = 0; i < n; i++) {
            ref[i] *= -(double)p.lr / p.batch;
            got[i] = (double)w[i] - w0[i];
        }
        double scale = norm2(ref, n);
        if (size > 0 && !(dist2(got, ref, n) <= 1e-5 * scale + 1e-7))
            fail_msg("step %d (batch of %zu): %.3e from the reference", t, size,
                     dist2(got, ref, n) / scale);
    }
    assert_true(sizes_differ); /* the test saw a batch whose size is not B */
    free(ref); free(got); free(w); free(w0);
    dpsgd_ws_free(dw);
    model_ws_free(ws);
    free_data(&ds);
}

/* ---- the noise ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

/* Kolmogorov-Smirnov statistic of x[0..n) (sorted here) against cdf. */
static double ks_statistic(double *x, size_t n, double (*cdf)(double))
{
    qsort(x, n, sizeof *x, cmp_double);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double f = cdf(x[i]);
        d = fmax(d, fmax(f - (double)i / n, (double)(i + 1) / n - f));
    }
    return d;
}

/* KS critical value at significance 0.001 for large n. */
static double ks_critical(size_t n) { return 1.949 / sqrt((double)n); }

/* The sampler alone: 10^6 draws against the normal CDF (KS at 0.001), and
 * the tail beyond the ziggurat's base R = 3.654 (drawn by its own path) as
 * often as it should be: expected 258, within 5 standard deviations. */
static void test_normals_are_standard_normal(void **state)
{
    (void)state;
    model_t m = build("d10", 2);
    dpsgd_ws *dw = dpsgd_ws_create(&m, 1);
    const size_t N = 1000000;
    float *z = malloc(N * sizeof *z);
    double *x = malloc(N * sizeof *x);
    rng_t rng;
    rng_init(&rng, 5, 5);
    dpsgd_normals(dw, &rng, z, N);
    size_t tail = 0;
    double sum = 0, sq = 0;
    for (size_t i = 0; i < N; i++) {
        x[i] = z[i];
        tail += fabs(x[i]) > 3.6541528853610088;
        sum += x[i];
        sq += x[i] * x[i];
    }
    double d = ks_statistic(x, N, normal_cdf);
    double p_tail = erfc(3.6541528853610088 / sqrt(2.0)), expect = p_tail * N;
    print_message("normals: KS D %.5f (critical %.5f), tail %zu (expected %.0f), mean %.4f, "
                  "var %.4f\n", d, ks_critical(N), tail, expect, sum / N, sq / N);
    assert_true(d < ks_critical(N));
    assert_true(fabs((double)tail - expect) < 5 * sqrt(expect));
    assert_true(fabs(sum / N) < 0.005 && fabs(sq / N - 1) < 0.01); /* about 5 sigma each */
    free(z);
    free(x);
    dpsgd_ws_free(dw);
}

/* In a real step, what the noise adds to each coordinate is
 * N(0, sigma^2 C^2 / B^2) times -lr: the same step from the same rng state
 * with sigma = 0 (same batch, since sampling comes first) is subtracted,
 * the difference scaled by -B / (lr sigma C) and KS-tested against N(0, 1)
 * over all 9,940 coordinates (significance 0.001). [sum-noise]: noise added
 * to the mean (sum / B + sigma C z) would have B = 16 times this spread. */
static void test_noise_is_normal_with_std_sigma_c_over_b(void **state)
{
    (void)state;
    model_t m = build("d64-relu,d10", 12);
    size_t n = m.num_params;
    dataset_t ds = random_data(100, 12, 4);
    uint32_t records[100], buf[100];
    for (uint32_t i = 0; i < 100; i++)
        records[i] = i;
    float *w = random_params(&m, 2), *clean = malloc(n * sizeof *clean);
    memcpy(clean, w, n * sizeof *w);
    model_ws *ws = model_ws_create(&m, 16);
    dpsgd_ws *dw = dpsgd_ws_create(&m, 16);
    rng_t a, b;
    rng_init(&a, 17, 1);
    b = a;
    dpsgd_params p = {.q = 0.16, .batch = 16, .clip = 0.7f, .noise = 1.3, .lr = 0.1f};
    dpsgd_step(&m, w, ws, dw, &ds, records, 100, &p, &a, buf, NULL, NULL);
    p.noise = 0;
    dpsgd_step(&m, clean, ws, dw, &ds, records, 100, &p, &b, buf, NULL, NULL);
    double *z = malloc(n * sizeof *z), scale = -(double)16 / (0.1f * 1.3 * 0.7f);
    for (size_t i = 0; i < n; i++)
        z[i] = ((double)w[i] - clean[i]) * scale;
    double d = ks_statistic(z, n, normal_cdf);
    print_message("step noise / (sigma C / B): KS D %.4f (critical %.4f) over %zu coordinates\n",
                  d, ks_critical(n), n);
    assert_true(d < ks_critical(n)); /* [sum-noise] */
    free(z); free(w); free(clean);
    dpsgd_ws_free(dw);
    model_ws_free(ws);
    free_data(&ds);
}

/* ---- Poisson sampling ------------------------------------------------------------ */

/* Binomial(n, q) pmf at k, through lgamma. */
static double binom_pmf(int n, int k, double q)
{
    return exp(lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0) + k * log(q) +
               (n - k) * log1p(-q));
}

/* The chi-square quantile at 0.999 (Wilson-Hilferty; z_0.999 = 3.0902). */
static double chi2_critical(int df)
{
    double k = df, t = 1 - 2 / (9 * k) + 3.0902 * sqrt(2 / (9 * k));
    return k * t * t * t;
}

/* The sizes of 4,000 real steps' batches over 60 records at q = 0.15 are
 * Binomial(60, 0.15): chi-square at significance 0.001, bins merged until
 * each expects at least 5. [poisson]: fixed batches of B = 9 would put all
 * 4,000 in one bin (and make the variance 0, asserted too). Each record is
 * also chosen in about q of the steps (within 5 standard deviations). */
static void test_batch_sizes_are_binomial(void **state)
{
    (void)state;
    enum { RECORDS = 60, STEPS = 4000 };
    model_t m = build("d10", 4);
    dataset_t ds = random_data(RECORDS, 4, 6);
    uint32_t records[RECORDS], buf[RECORDS];
    for (uint32_t i = 0; i < RECORDS; i++)
        records[i] = i;
    float *w = random_params(&m, 1);
    model_ws *ws = model_ws_create(&m, 8);
    dpsgd_ws *dw = dpsgd_ws_create(&m, 8);
    rng_t rng;
    rng_init(&rng, 3, 3);
    const double q = 0.15;
    dpsgd_params p = {.q = q, .batch = 9, .clip = 1, .noise = 1, .lr = 0.01f};
    int count[RECORDS + 1] = {0};
    double sum = 0, sq = 0;
    for (int t = 0; t < STEPS; t++) {
        size_t s = dpsgd_step(&m, w, ws, dw, &ds, records, RECORDS, &p, &rng, buf, NULL, NULL);
        count[s]++;
        sum += (double)s;
        sq += (double)s * s;
    }
    double mean = sum / STEPS, var = sq / STEPS - mean * mean;
    /* merged bins: [0, lo], ..., [hi, 60], each expecting >= 5 */
    double chi2 = 0, expect = 0;
    int obs = 0, bins = 0;
    for (int k = 0; k <= RECORDS; k++) {
        expect += STEPS * binom_pmf(RECORDS, k, q);
        obs += count[k];
        double rest = 0;
        for (int j = k + 1; j <= RECORDS; j++)
            rest += STEPS * binom_pmf(RECORDS, j, q);
        if ((expect >= 5 && rest >= 5) || k == RECORDS) {
            chi2 += (obs - expect) * (obs - expect) / expect;
            bins++;
            expect = 0;
            obs = 0;
        }
    }
    print_message("batch sizes: mean %.3f (9), variance %.3f (7.65), chi2 %.1f on %d df "
                  "(critical %.1f)\n", mean, var, chi2, bins - 1, chi2_critical(bins - 1));
    assert_true(var > 1); /* [poisson] */
    assert_true(chi2 < chi2_critical(bins - 1)); /* [poisson] */

    /* each record's inclusion frequency, straight from the sampler */
    int chosen[RECORDS] = {0};
    for (int t = 0; t < STEPS; t++) {
        size_t s = dpsgd_sample(&rng, q, records, RECORDS, buf);
        for (size_t i = 0; i < s; i++) {
            if (i > 0)
                assert_true(buf[i] > buf[i - 1]); /* in order, no repeats */
            chosen[buf[i]]++;
        }
    }
    double sd = sqrt(STEPS * q * (1 - q));
    for (int r = 0; r < RECORDS; r++)
        assert_true(fabs(chosen[r] - STEPS * q) < 5 * sd);
    /* q = 1 takes everything */
    assert_int_equal(dpsgd_sample(&rng, 1.0, records, RECORDS, buf), RECORDS);
    assert_memory_equal(buf, records, sizeof records);
    free(w);
    dpsgd_ws_free(dw);
    model_ws_free(ws);
    free_data(&ds);
}

/* ---- the plan and the account ---------------------------------------------------- */

/* The account agrees with the accountant's own whole-run figure, is 0
 * before any step and infinite without noise, and grows with the steps. */
static void test_account_matches_the_accountant(void **state)
{
    (void)state;
    dpsgd_account a;
    char err[ERR_LEN];
    assert_int_equal(dpsgd_account_init(&a, 32.0 / 600, 1.1, 1e-5, err), 0);
    assert_true(dpsgd_account_epsilon(&a, 0) == 0);
    double prev = 0;
    const uint64_t steps[] = {1, 19, 380, 5000};
    for (size_t i = 0; i < 4; i++) {
        double want, got = dpsgd_account_epsilon(&a, steps[i]);
        assert_int_equal(rdp_run_epsilon(32.0 / 600, 1.1, (int64_t)steps[i], 1e-5, &want, NULL,
                                         err), 0);
        assert_float_equal(got, want, 1e-12 * want);
        assert_true(got > prev);
        prev = got;
    }
    dpsgd_account none;
    assert_int_equal(dpsgd_account_init(&none, 0.1, 0, 1e-5, err), 0);
    assert_true(dpsgd_account_epsilon(&none, 1) == INFINITY);
    assert_int_equal(dpsgd_account_max_steps(&none, 100), 0);
    assert_int_equal(dpsgd_account_init(&none, 0, 1, 1e-5, err), -1);
    assert_int_equal(dpsgd_account_init(&none, 0.1, -1, 1e-5, err), -1);
    assert_int_equal(dpsgd_account_init(&none, 0.1, 1, 1, err), -1);
}

/* The cap's step count is the last within it; the steps a checkpoint
 * implies come back from (epsilon, the epochs' steps). */
static void test_account_cap_and_steps_for(void **state)
{
    (void)state;
    dpsgd_account a;
    assert_int_equal(dpsgd_account_init(&a, 0.05, 0.9, 1e-5, NULL), 0);
    double cap = 3.0;
    uint64_t t = dpsgd_account_max_steps(&a, cap);
    assert_true(t > 0);
    assert_true(dpsgd_account_epsilon(&a, t) <= cap);
    assert_true(dpsgd_account_epsilon(&a, t + 1) > cap);
    assert_true(dpsgd_account_max_steps(&a, INFINITY) == UINT64_MAX);

    uint64_t got;
    /* never stopped: all steps of the epochs */
    assert_int_equal(dpsgd_account_steps_for(&a, dpsgd_account_epsilon(&a, 100), 100, &got), 0);
    assert_int_equal(got, 100);
    /* stopped by the cap after t < most steps */
    assert_int_equal(dpsgd_account_steps_for(&a, dpsgd_account_epsilon(&a, t), t + 50, &got), 0);
    assert_int_equal(got, t);
    assert_int_equal(dpsgd_account_steps_for(&a, 0, 40, &got), 0);
    assert_int_equal(got, 0);
    /* an epsilon between two step counts, or beyond the epochs, is no plan's */
    double between = 0.5 * (dpsgd_account_epsilon(&a, 10) + dpsgd_account_epsilon(&a, 11));
    assert_int_equal(dpsgd_account_steps_for(&a, between, 40, &got), -1);
    assert_int_equal(dpsgd_account_steps_for(&a, dpsgd_account_epsilon(&a, 41), 40, &got), -1);
}

/* The planned sigma makes the planned run end at the target (just below:
 * the accountant's tolerance), for every distinct shard size; hopeless
 * targets and bad sizes are refused with a reason. */
static void test_plan_sigma_meets_the_target(void **state)
{
    (void)state;
    char err[ERR_LEN];
    size_t sizes[] = {600, 600, 450};
    double sigma;
    assert_int_equal(dpsgd_plan_sigma(sizes, 3, 32, 20, 1e-5, 4.0, &sigma, err), 0);
    double most = 0;
    for (int i = 0; i < 3; i++) {
        dpsgd_account a;
        assert_int_equal(dpsgd_account_init(&a, 32.0 / sizes[i], sigma, 1e-5, err), 0);
        double e = dpsgd_account_epsilon(&a, 20 * dpsgd_epoch_steps(sizes[i], 32));
        assert_true(e <= 4.0);
        most = fmax(most, e);
    }
    assert_true(most > 4.0 * (1 - 1e-6)); /* not more noise than needed */
    print_message("sigma %.6f for epsilon 4 over 20 epochs\n", sigma);

    assert_int_equal(dpsgd_plan_sigma(sizes, 3, 32, 20, 1e-5, 1e-4, &sigma, err), -1);
    assert_non_null(strstr(err, "unreachable"));
    assert_int_equal(dpsgd_check_sizes(sizes, 3, 32, 1e-5, "participant", err), 0);
    assert_int_equal(dpsgd_check_sizes(sizes, 3, 500, 1e-5, "participant", err), -1);
    assert_non_null(strstr(err, "--batch 500 is larger than participant 2"));
    assert_int_equal(dpsgd_check_sizes(sizes, 3, 32, 1.0 / 450, "participant", err), -1);
    assert_non_null(strstr(err, "--dp-delta"));
}

/* ---- a participant ------------------------------------------------------------------ */

typedef struct {
    model_t m;
    dataset_t ds;
    participant_ctx ctx;
    uint32_t shard[40];
    uint8_t *buf;
    size_t cap;
} pfix;

static pfix *pfix_make(int local_steps, double cap)
{
    pfix *f = calloc(1, sizeof *f);
    f->m = build("d12-relu,d10", 5);
    f->ds = random_data(80, 5, 12);
    for (uint32_t i = 0; i < 40; i++)
        f->shard[i] = 2 * i;
    participant_ctx *c = &f->ctx;
    c->model = &f->m;
    c->train = &f->ds;
    c->ws = model_ws_create(&f->m, 4);
    c->batch = 5;                   /* 8 steps an epoch */
    c->local_steps = local_steps;
    c->rounds = local_steps ? (uint32_t)((8 + local_steps - 1) / local_steps) : 1;
    c->lr = 0.1f;
    c->k_up = f->m.num_params;
    c->select = SELECT_LARGEST;
    c->gamma = INFINITY;
    c->dp_max_epsilon = cap;
    c->dpsgd = 1;
    c->dp_clip = 1.0f;
    c->dp_sigma = 1.0;
    c->dp_delta = 1e-5;
    assert_int_equal(participant_ctx_init(c, f->m.num_params), 0);
    f->cap = wire_size(f->m.num_params);
    f->buf = malloc(f->cap);
    return f;
}

static void pfix_free(pfix *f)
{
    model_ws_free(f->ctx.ws);
    participant_ctx_free(&f->ctx);
    free_data(&f->ds);
    free(f->buf);
    free(f);
}

static participant_t *make_participant(pfix *f)
{
    participant_t *p = participant_create(0, f->m.num_params, f->shard, 40, 9, 0);
    float *w = random_params(&f->m, 3);
    memcpy(participant_params(p), w, f->m.num_params * sizeof *w);
    free(w);
    return p;
}

/* --local-steps 3 splits an epoch's 8 steps into rounds of 3, 3 and 2 and
 * takes exactly the same steps (same bits) as the whole epoch at once; the
 * ledger holds the account's epsilon after 8 steps per epoch. */
static void test_local_steps_split_the_epoch_steps(void **state)
{
    (void)state;
    pfix *whole = pfix_make(0, INFINITY), *split = pfix_make(3, INFINITY);
    participant_t *a = make_participant(whole), *b = make_participant(split);
    size_t n = whole->m.num_params;
    sgd_stats stats;
    for (uint32_t e = 1; e <= 2; e++) {
        participant_epoch(a, &whole->ctx, e, whole->buf, whole->cap, &stats);
        for (uint32_t r = 0; r < 3; r++)
            participant_epoch(b, &split->ctx, (e - 1) * 3 + r + 1, split->buf, split->cap,
                              &stats);
        assert_memory_equal(participant_params(a), participant_params(b), n * sizeof(float));
        assert_int_equal(participant_dp_steps(a), 8 * e);
        assert_int_equal(participant_dp_steps(b), 8 * e);
    }
    dpsgd_account acc;
    assert_int_equal(dpsgd_account_init(&acc, 5.0 / 40, 1.0, 1e-5, NULL), 0);
    assert_true(participant_ledger(a)->spent == dpsgd_account_epsilon(&acc, 16));
    participant_free(a);
    participant_free(b);
    pfix_free(whole);
    pfix_free(split);
}

/* The cap stops the steps before one would pass it: the turn that reaches
 * it uploads its steps and reports the stop, later turns train and upload
 * nothing; epsilon never exceeds the cap. A participant restored from
 * (epsilon, epochs completed) continues exactly like the original. */
static void test_cap_stops_and_restore_continues(void **state)
{
    (void)state;
    dpsgd_account acc;
    assert_int_equal(dpsgd_account_init(&acc, 5.0 / 40, 1.0, 1e-5, NULL), 0);
    double cap = dpsgd_account_epsilon(&acc, 19); /* 2 epochs and 3 steps */
    pfix *f = pfix_make(0, cap);
    participant_t *p = make_participant(f), *q = make_participant(f);
    size_t n = f->m.num_params;
    sgd_stats stats;
    float *saved = malloc(n * sizeof *saved);
    uint64_t rng[RNG_STATE_WORDS];
    double eps = 0;
    for (uint32_t e = 1; e <= 4; e++) {
        float *before = malloc(n * sizeof *before);
        memcpy(before, participant_params(p), n * sizeof *before);
        size_t len = participant_epoch(p, &f->ctx, e, f->buf, f->cap, &stats);
        wire_header h;
        assert_int_equal(wire_peek(f->buf, len, &h), WIRE_OK);
        assert_true(participant_ledger(p)->spent <= cap);
        assert_int_equal(participant_dp_steps(p), e <= 2 ? 8 * e : 19);
        assert_int_equal(participant_budget_stopped(p), e >= 3);
        if (e == 3)
            assert_true(h.count > 0); /* its last 3 steps are released */
        if (e == 4) {
            assert_int_equal(h.count, 0);
            assert_memory_equal(before, participant_params(p), n * sizeof *before);
        }
        free(before);
        if (e == 3) /* a checkpoint after epoch 3 */
            participant_save(p, saved, NULL, rng, &eps);
    }
    assert_true(eps == dpsgd_account_epsilon(&acc, 19));
    assert_int_equal(participant_restore_at(q, &f->ctx, saved, NULL, rng, eps, 3), 0);
    assert_int_equal(participant_dp_steps(q), 19);
    participant_epoch(q, &f->ctx, 4, f->buf, f->cap, &stats);
    assert_int_equal(participant_budget_stopped(q), 1);
    assert_memory_equal(participant_params(p), participant_params(q), n * sizeof(float));
    /* an epsilon no step count of 3 epochs gives is refused */
    assert_int_equal(participant_restore_at(q, &f->ctx, saved, NULL, rng, eps * 1.01, 3), -1);
    free(saved);
    participant_free(p);
    participant_free(q);
    pfix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clipped_sum_matches_reference_mlp),
        cmocka_unit_test(test_clipped_sum_matches_reference_cnn),
        cmocka_unit_test(test_clipped_sum_matches_reference_paper_mlp),
        cmocka_unit_test(test_step_without_noise_or_clip_is_full_batch_sgd),
        cmocka_unit_test(test_step_divides_the_sampled_sum_by_the_expected_batch),
        cmocka_unit_test(test_normals_are_standard_normal),
        cmocka_unit_test(test_noise_is_normal_with_std_sigma_c_over_b),
        cmocka_unit_test(test_batch_sizes_are_binomial),
        cmocka_unit_test(test_account_matches_the_accountant),
        cmocka_unit_test(test_account_cap_and_steps_for),
        cmocka_unit_test(test_plan_sigma_meets_the_target),
        cmocka_unit_test(test_local_steps_split_the_epoch_steps),
        cmocka_unit_test(test_cap_stops_and_restore_continues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
