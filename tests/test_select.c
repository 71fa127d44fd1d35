/* test_select: top-k against an independent full-sort reference on many kinds
 * of data, and the random selections' range, order and uniformity. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"
#include "select.h"

/* Slots after the min(k, n) an output may use, which must stay untouched. */
#define CANARY 32
#define CANARY_WORD 0xa5a5a5a5u
#define N_SIZES 5
static const size_t sizes[N_SIZES] = {1, 2, 7, 1000, 100003};

static float bits_to_f32(uint32_t u)
{
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static double bits_to_f64(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static double random_sign(rng_t *rng)
{
    return (rng_u32(rng) & 1) ? -1.0 : 1.0;
}

/* ---- the reference: a full sort ---------------------------------------- */

/* Magnitudes as the header defines them, by float comparison rather than bit
 * patterns: NaN is 0 (and so are negatives for the f64 version). */
static double ref_mag_abs(float v)
{
    return isnan(v) ? 0.0 : fabs((double)v);
}

static double ref_mag_f64(double v)
{
    return isnan(v) || v < 0 ? 0.0 : v;
}

/* qsort has no context argument: the magnitudes being ordered. */
static const double *ref_mag;

/* Magnitude descending, then index ascending. */
static int cmp_rank(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (ref_mag[i] != ref_mag[j])
        return ref_mag[i] < ref_mag[j] ? 1 : -1;
    return (i > j) - (i < j);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* order[0..n): every index, best first. */
static void ref_rank(const double *mag, size_t n, uint32_t *order)
{
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    ref_mag = mag;
    qsort(order, n, sizeof *order, cmp_rank);
}

/* The expected answer for k: the first min(k, n) of the ranking, ascending. */
static size_t ref_take(const uint32_t *order, size_t n, size_t k, uint32_t *out)
{
    size_t m = k < n ? k : n;
    memcpy(out, order, m * sizeof *out);
    qsort(out, m, sizeof *out, cmp_u32);
    return m;
}

/* ---- checking a data set against the reference ------------------------- */

typedef enum { ABS_F32, F64 } elem_kind;

/* Runs the top-k function (n > 0) for k in {0, 1, n/100, n/10, n/2, n-1, n, n+5} with
 * one workspace sized exactly n (reused, as callers do) and compares each
 * answer with the reference exactly; the slots after the answer must keep
 * their canary. */
static void check_against_sort(elem_kind kind, const void *x, size_t n)
{
    double *mag = malloc((n ? n : 1) * sizeof *mag);
    uint32_t *order = malloc((n ? n : 1) * sizeof *order);
    uint32_t *want = malloc((n ? n : 1) * sizeof *want);
    uint32_t *got = malloc((n + CANARY) * sizeof *got);
    assert_non_null(mag);
    assert_non_null(order);
    assert_non_null(want);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++)
        mag[i] = kind == ABS_F32 ? ref_mag_abs(((const float *)x)[i])
                                 : ref_mag_f64(((const double *)x)[i]);
    ref_rank(mag, n, order);
    select_ws *ws = select_ws_create(n);
    assert_non_null(ws);
    const size_t ks[] = {0, 1, n / 100, n / 10, n / 2, n - 1, n, n + 5};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t];
        size_t m = ref_take(order, n, k, want);
        for (size_t i = 0; i < n + CANARY; i++)
            got[i] = CANARY_WORD;
        size_t r = kind == ABS_F32 ? select_largest_abs(x, n, k, got, ws)
                                   : select_largest_f64(x, n, k, got, ws);
        if (r != m || memcmp(got, want, m * sizeof *got) != 0)
            fail_msg("%s: n=%zu k=%zu: returned %zu (want %zu) or a different set",
                     kind == ABS_F32 ? "select_largest_abs" : "select_largest_f64", n, k, r,
                     m);
        for (size_t i = m; i < m + CANARY; i++)
            assert_int_equal(got[i], CANARY_WORD);
    }
    select_ws_free(ws);
    free(got);
    free(want);
    free(order);
    free(mag);
}

typedef void (*gen_f32)(float *x, size_t n, rng_t *rng);
typedef void (*gen_f64)(double *x, size_t n, rng_t *rng);

/* Every size, three seeds each (two at the largest size, for time). */
static void check_f32_family(gen_f32 gen, uint64_t family)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = sizes[s];
        float *x = malloc(n * sizeof *x);
        assert_non_null(x);
        for (uint64_t seed = 1; seed <= (n > 10000 ? 2u : 3u); seed++) {
            rng_t rng;
            rng_init(&rng, seed, family);
            gen(x, n, &rng);
            check_against_sort(ABS_F32, x, n);
        }
        free(x);
    }
}

static void check_f64_family(gen_f64 gen, uint64_t family)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = sizes[s];
        double *x = malloc(n * sizeof *x);
        assert_non_null(x);
        for (uint64_t seed = 1; seed <= (n > 10000 ? 2u : 3u); seed++) {
            rng_t rng;
            rng_init(&rng, seed, 1000 + family);
            gen(x, n, &rng);
            check_against_sort(F64, x, n);
        }
        free(x);
    }
}

/* ---- float data sets --------------------------------------------------- */

static void gen_normal(float *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(rng);
}

/* Magnitudes over about 30 decades, so the histogram range is wide. */
static void gen_heavy_tailed(float *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(random_sign(rng) * exp(8.0 * rng_normal(rng)));
}

/* Three values, two of them equal in magnitude: ties everywhere. */
static void gen_three_values(float *x, size_t n, rng_t *rng)
{
    static const float v[3] = {0.5f, -2.5f, 2.5f};
    for (size_t i = 0; i < n; i++)
        x[i] = v[rng_below(rng, 3)];
}

static void gen_all_equal(float *x, size_t n, rng_t *rng)
{
    (void)rng;
    for (size_t i = 0; i < n; i++)
        x[i] = -3.0f;
}

/* 1 + a few ulps, either sign: every entry in one 16-bit radix bucket, and
 * at the largest size many exact duplicates. */
static void gen_one_bucket(float *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)random_sign(rng) * bits_to_f32(0x3f800000u + rng_below(rng, 1u << 15));
}

/* Mostly +0 and -0, a few denormals and normals. */
static void gen_signed_zeros(float *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rng_below(rng, 100);
        x[i] = r < 45 ? 0.0f : r < 90 ? -0.0f : r < 95 ? (float)rng_normal(rng) : FLT_TRUE_MIN;
    }
}

/* Denormals of either sign, with the smallest normal and zero among them. */
static void gen_denormals(float *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rng_below(rng, 10);
        float v = r == 0 ? 0.0f : r == 1 ? FLT_MIN : bits_to_f32(1 + rng_below(rng, 0x7fffffu));
        x[i] = (float)random_sign(rng) * v;
    }
}

/* Infinities, NaNs of several payloads and both signs, extremes and normals. */
static void gen_specials(float *x, size_t n, rng_t *rng)
{
    static const uint32_t nan_bits[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffffffffu};
    for (size_t i = 0; i < n; i++) {
        switch (rng_below(rng, 8)) {
        case 0: x[i] = INFINITY; break;
        case 1: x[i] = -INFINITY; break;
        case 2: x[i] = bits_to_f32(nan_bits[rng_below(rng, 4)]); break;
        case 3: x[i] = (float)random_sign(rng) * FLT_MAX; break;
        case 4: x[i] = 0.0f; break;
        default: x[i] = (float)rng_normal(rng); break;
        }
    }
}

/* NaN mostly: k often exceeds the number of real values, and NaN must then
 * rank with the zeros, by index. */
static void gen_mostly_nan(float *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rng_below(rng, 10);
        x[i] = r < 8 ? NAN : r == 8 ? 0.0f : (float)rng_normal(rng);
    }
}

/* Large values every P-th entry: a strided sample can see only those (and
 * overestimate the threshold) or none of them (and underestimate it). */
static void gen_periodic(float *x, size_t n, size_t period, size_t phase, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = i % period == phase ? 100.0f + (float)rng_below(rng, 3) : (float)rng_normal(rng);
}

static void gen_periodic_random(float *x, size_t n, rng_t *rng)
{
    static const size_t periods[] = {2, 16, 31, 32, 64, 1000};
    size_t p = periods[rng_below(rng, sizeof periods / sizeof periods[0])];
    gen_periodic(x, n, p, rng_below(rng, (uint32_t)p), rng);
}

/* Sorted magnitudes, ascending or descending: the sample sees a clean ramp. */
static void gen_sorted(float *x, size_t n, rng_t *rng)
{
    int up = rng_u32(rng) & 1;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)random_sign(rng) * (float)(up ? i : n - i) * 0.001f;
}

/* ---- double data sets -------------------------------------------------- */

/* The server's update counters: small integers, ties everywhere. */
static void gen_counters(double *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (double)rng_below(rng, 4);
}

/* Decayed counters 0.9^t: a few dozen distinct values. */
static void gen_decayed(double *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = pow(0.9, (double)rng_below(rng, 60));
}

/* Either sign (negatives rank as 0), NaN, -0, inf, denormals, wide range. */
static void gen_mixed_f64(double *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++) {
        switch (rng_below(rng, 10)) {
        case 0: x[i] = NAN; break;
        case 1: x[i] = -0.0; break;
        case 2: x[i] = INFINITY; break;
        case 3: x[i] = -INFINITY; break;
        case 4: x[i] = DBL_TRUE_MIN * (double)(1 + rng_below(rng, 1000)); break;
        default: x[i] = random_sign(rng) * exp(20.0 * rng_normal(rng)); break;
        }
    }
}

/* 1 + up to 2^20 ulps: the top 32 bits of every key agree, so selection
 * needs all four radix levels. */
static void gen_one_bucket_f64(double *x, size_t n, rng_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bits_to_f64(UINT64_C(0x3ff0000000000000) + rng_below(rng, 1u << 20));
}

static void gen_all_equal_f64(double *x, size_t n, rng_t *rng)
{
    (void)rng;
    for (size_t i = 0; i < n; i++)
        x[i] = 7.0;
}

/* ---- select_count ------------------------------------------------------- */

static void test_count_is_ceil_of_theta_n_despite_rounding(void **state)
{
    (void)state;
    assert_int_equal(select_count(0.1, 1000), 100);
    assert_int_equal(select_count(0.01, 105506), 1056);
    assert_int_equal(select_count(0.1, 1001), 101);
    /* In double these products land just above the integer: 7.000000000000001,
     * 14.000000000000002, 3.0000000000000004. */
    assert_int_equal(select_count(0.07, 100), 7);
    assert_int_equal(select_count(0.14, 100), 14);
    assert_int_equal(select_count(0.1, 30), 3);
    assert_int_equal(select_count(1.0, 12345), 12345);
    assert_int_equal(select_count(0.3, 10), 3);
}

static void test_count_is_at_least_one_and_at_most_n(void **state)
{
    (void)state;
    assert_int_equal(select_count(0.001, 10), 1);
    assert_int_equal(select_count(1e-9, 5), 1);
    assert_int_equal(select_count(1.5, 5), 5);
    assert_int_equal(select_count(0.5, 0), 0);
    assert_int_equal(select_count(1.0, 1), 1);
}

/* ---- workspace ----------------------------------------------------------- */

static void test_ws_free_accepts_null(void **state)
{
    (void)state;
    select_ws_free(NULL);
}

static void test_ws_refuses_sizes_beyond_32_bit_indices(void **state)
{
    (void)state;
    if (SIZE_MAX > UINT32_MAX)
        assert_null(select_ws_create((size_t)UINT32_MAX + 1));
    select_ws *ws = select_ws_create(0);
    assert_non_null(ws);
    uint32_t out[1];
    assert_int_equal(select_largest_abs(NULL, 0, 3, out, ws), 0);
    select_ws_free(ws);
}

/* ---- select_largest_abs ------------------------------------------------ */

static void test_largest_abs_matches_sort_on_random_data(void **state)
{
    (void)state;
    check_f32_family(gen_normal, 1);
    check_f32_family(gen_heavy_tailed, 2);
}

static void test_largest_abs_breaks_ties_toward_lower_index(void **state)
{
    (void)state;
    check_f32_family(gen_three_values, 3);
    check_f32_family(gen_all_equal, 4);
    check_f32_family(gen_one_bucket, 5);
}

static void test_largest_abs_orders_zeros_denormals_inf_and_nan(void **state)
{
    (void)state;
    check_f32_family(gen_signed_zeros, 6);
    check_f32_family(gen_denormals, 7);
    check_f32_family(gen_specials, 8);
    check_f32_family(gen_mostly_nan, 9);
}

/* The sampled threshold can be wrong both ways; the answer must not be. With
 * phase 0 and small periods the spikes line up with any sampling stride that
 * the period divides, so the sample sees nothing else and lets too few
 * entries through. */
static void test_largest_abs_is_exact_when_the_sample_misleads(void **state)
{
    (void)state;
    static const size_t periods[] = {2, 3, 4, 5, 8, 15, 16, 32, 64, 244};
    static const size_t ns[] = {1000, 100003};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        float *x = malloc(ns[a] * sizeof *x);
        assert_non_null(x);
        for (size_t p = 0; p < sizeof periods / sizeof periods[0]; p++) {
            rng_t rng;
            rng_init(&rng, p, 10);
            gen_periodic(x, ns[a], periods[p], 0, &rng);
            check_against_sort(ABS_F32, x, ns[a]);
        }
        free(x);
    }
    for (uint64_t rep = 0; rep < 3; rep++)
        check_f32_family(gen_periodic_random, 11 + rep);
    check_f32_family(gen_sorted, 20);
}

/* A hand-checked case, independent of the reference sort. */
static void test_largest_abs_small_example(void **state)
{
    (void)state;
    const float x[8] = {0.5f, -3.0f, NAN, 3.0f, -0.0f, 1.0f, -INFINITY, 0.0f};
    select_ws *ws = select_ws_create(8);
    assert_non_null(ws);
    uint32_t out[8];
    /* -inf, then the tie -3 (index 1) before 3 (index 3), then 1 */
    assert_int_equal(select_largest_abs(x, 8, 3, out, ws), 3);
    const uint32_t want3[3] = {1, 3, 6};
    assert_memory_equal(out, want3, sizeof want3);
    assert_int_equal(select_largest_abs(x, 8, 5, out, ws), 5);
    const uint32_t want5[5] = {0, 1, 3, 5, 6};
    assert_memory_equal(out, want5, sizeof want5);
    /* then NaN (index 2) ties with -0 and 0 and comes first by index */
    assert_int_equal(select_largest_abs(x, 8, 6, out, ws), 6);
    const uint32_t want6[6] = {0, 1, 2, 3, 5, 6};
    assert_memory_equal(out, want6, sizeof want6);
    select_ws_free(ws);
}

/* ---- select_largest_f64 ------------------------------------------------ */

static void test_largest_f64_matches_sort_on_counters(void **state)
{
    (void)state;
    check_f64_family(gen_counters, 1);
    check_f64_family(gen_decayed, 2);
}

static void test_largest_f64_ranks_negative_and_nan_as_zero(void **state)
{
    (void)state;
    check_f64_family(gen_mixed_f64, 3);
}

static void test_largest_f64_resolves_keys_differing_in_low_bits(void **state)
{
    (void)state;
    check_f64_family(gen_one_bucket_f64, 4);
    check_f64_family(gen_all_equal_f64, 5);
}

/* ---- random selections: shared checks ------------------------------------ */

static void assert_ascending_below(const uint32_t *out, size_t m, size_t n)
{
    for (size_t i = 0; i < m; i++) {
        assert_true(out[i] < n);
        if (i > 0)
            assert_true(out[i - 1] < out[i]);
    }
}

/* Pearson's statistic for the counts of the C(n, 2) = 10 subsets of size 2
 * of a 5-set, drawn `trials` times; under uniformity it is chi-square with
 * 9 degrees of freedom. */
static double chi2_pairs(const uint32_t *counts, size_t trials)
{
    double e = (double)trials / 10.0, x2 = 0;
    for (int s = 0; s < 10; s++)
        x2 += ((double)counts[s] - e) * ((double)counts[s] - e) / e;
    return x2;
}

/* Index 0..9 of the pair {a < b} of a 5-set. */
static int pair_index(uint32_t a, uint32_t b)
{
    static const int first[4] = {0, 4, 7, 9};
    return first[a] + (int)(b - a - 1);
}

/* How often each of m items was chosen when k were drawn uniformly without
 * replacement, `trials` times. Each count has variance T p (1 - p) (p = k/m)
 * and pairs covary by -T p (1 - p) / (m - 1), so
 *   X = (m - 1) / m * sum (O - T p)^2 / (T p (1 - p))
 * is asymptotically chi-square with m - 1 degrees of freedom. */
static double chi2_inclusion(const uint32_t *counts, size_t m, size_t k, size_t trials)
{
    double p = (double)k / (double)m, e = (double)trials * p, x2 = 0;
    for (size_t i = 0; i < m; i++)
        x2 += ((double)counts[i] - e) * ((double)counts[i] - e);
    return x2 / (e * (1.0 - p)) * (double)(m - 1) / (double)m;
}

/* Critical values of chi-square at alpha = 0.001 (upper tail), checked by
 * integrating the density: df 9: 27.877, df 39: 72.055, df 49: 85.351. The
 * seeds are fixed, so the tests are deterministic; alpha is the chance that
 * a correct sampler would fail for an arbitrary seed. */
#define CHI2_DF9_P001 27.877
#define CHI2_DF39_P001 72.055
#define CHI2_DF49_P001 85.351
#define UNIFORM_TRIALS 20000

/* ---- select_random ------------------------------------------------------ */

static void test_random_gives_min_k_n_ascending_distinct_in_range(void **state)
{
    (void)state;
    enum { MAXN = 3000 };
    static uint32_t out[MAXN];
    rng_t rng;
    rng_init(&rng, 5, RNG_STREAM_SERVER);
    const size_t ns[] = {0, 1, 2, 7, 100, 2999};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        size_t n = ns[a];
        const size_t ks[] = {0, 1, n / 3, n - 1, n, n + 4};
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            size_t k = ks[b];
            if (k > MAXN)
                continue;
            size_t m = select_random(n, k, &rng, out);
            assert_int_equal(m, k < n ? k : n);
            assert_ascending_below(out, m, n);
        }
    }
}

static void test_random_pairs_are_uniform(void **state)
{
    (void)state;
    uint32_t counts[10] = {0}, out[2];
    rng_t rng;
    rng_init(&rng, 11, RNG_STREAM_SERVER);
    for (size_t t = 0; t < UNIFORM_TRIALS; t++) {
        assert_int_equal(select_random(5, 2, &rng, out), 2);
        counts[pair_index(out[0], out[1])]++;
    }
    double x2 = chi2_pairs(counts, UNIFORM_TRIALS);
    if (x2 > CHI2_DF9_P001)
        fail_msg("pair counts chi2 = %.2f > %.3f", x2, CHI2_DF9_P001);
}

static void test_random_inclusion_is_uniform(void **state)
{
    (void)state;
    enum { N = 50, K = 10 };
    uint32_t counts[N] = {0}, out[K];
    rng_t rng;
    rng_init(&rng, 12, RNG_STREAM_SERVER);
    for (size_t t = 0; t < UNIFORM_TRIALS; t++) {
        assert_int_equal(select_random(N, K, &rng, out), K);
        for (int i = 0; i < K; i++)
            counts[out[i]]++;
    }
    double x2 = chi2_inclusion(counts, N, K, UNIFORM_TRIALS);
    if (x2 > CHI2_DF49_P001)
        fail_msg("inclusion chi2 = %.2f > %.3f", x2, CHI2_DF49_P001);
}

static void test_random_is_deterministic_for_a_seed(void **state)
{
    (void)state;
    enum { N = 10000, K = 500 };
    static uint32_t a[K], b[K];
    rng_t r1, r2;
    rng_init(&r1, 99, RNG_STREAM_SERVER);
    rng_init(&r2, 99, RNG_STREAM_SERVER);
    select_random(N, K, &r1, a);
    select_random(N, K, &r2, b);
    assert_memory_equal(a, b, sizeof a);
    rng_init(&r2, 100, RNG_STREAM_SERVER);
    select_random(N, K, &r2, b);
    assert_memory_not_equal(a, b, sizeof a);
}

/* ---- select_random_above ------------------------------------------------ */

/* Entries i with |x[i]| >= tau, NaN never. */
static size_t eligible(const float *x, size_t n, float tau, uint32_t *idx)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(x[i]) && fabsf(x[i]) >= tau)
            idx[m++] = (uint32_t)i;
    return m;
}

static void test_random_above_gives_min_k_m_eligible_ascending(void **state)
{
    (void)state;
    enum { N = 2000 };
    static float x[N];
    static uint32_t out[N + CANARY], el[N];
    rng_t data, rng;
    rng_init(&data, 1, 77);
    rng_init(&rng, 2, RNG_STREAM_SERVER);
    for (size_t i = 0; i < N; i++)
        x[i] = i % 17 == 0 ? NAN : (float)rng_normal(&data);
    const float taus[] = {0.0f, 0.5f, 1.0f, 2.5f, 10.0f, INFINITY};
    for (size_t a = 0; a < sizeof taus / sizeof taus[0]; a++) {
        size_t m = eligible(x, N, taus[a], el);
        const size_t ks[] = {0, 1, m / 2, m, m + 1, N};
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            size_t k = ks[b], want = k < m ? k : m;
            for (size_t i = 0; i < N + CANARY; i++)
                out[i] = CANARY_WORD;
            size_t got = select_random_above(x, N, k, taus[a], &rng, out);
            assert_int_equal(got, want);
            assert_ascending_below(out, got, N);
            for (size_t i = 0; i < got; i++)
                assert_true(!isnan(x[out[i]]) && fabsf(x[out[i]]) >= taus[a]);
            for (size_t i = got; i < got + CANARY; i++)
                assert_int_equal(out[i], CANARY_WORD);
            if (k >= m) /* all of them */
                assert_memory_equal(out, el, m * sizeof *out);
        }
    }
}

/* |x| == tau qualifies, NaN and anything smaller do not, infinities do. */
static void test_random_above_takes_exactly_the_eligible_when_few(void **state)
{
    (void)state;
    const float x[9] = {1.0f, NAN, -2.0f, 0.999f, -INFINITY, -NAN, 2.0f, 0.0f, -1.0f};
    const uint32_t want[5] = {0, 2, 4, 6, 8};
    uint32_t out[9];
    rng_t rng;
    rng_init(&rng, 3, RNG_STREAM_SERVER);
    assert_int_equal(select_random_above(x, 9, 5, 1.0f, &rng, out), 5);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(select_random_above(x, 9, 9, 1.0f, &rng, out), 5);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(select_random_above(x, 9, 3, INFINITY, &rng, out), 1);
    assert_int_equal(out[0], 4);
    assert_int_equal(select_random_above(x, 9, 3, NAN, &rng, out), 0);
}

/* Five eligible entries among ineligible ones and NaNs: every pair of them
 * equally likely. */
static void test_random_above_pairs_are_uniform(void **state)
{
    (void)state;
    const float x[12] = {0.1f, 5.0f, NAN, -5.0f, 0.2f, 6.0f, -0.3f, NAN, 7.0f, 0.0f, -8.0f, 1.0f};
    const uint32_t slot[12] = {99, 0, 99, 1, 99, 2, 99, 99, 3, 99, 4, 99};
    uint32_t counts[10] = {0}, out[2];
    rng_t rng;
    rng_init(&rng, 13, RNG_STREAM_SERVER);
    for (size_t t = 0; t < UNIFORM_TRIALS; t++) {
        assert_int_equal(select_random_above(x, 12, 2, 2.0f, &rng, out), 2);
        assert_true(slot[out[0]] < 5 && slot[out[1]] < 5);
        counts[pair_index(slot[out[0]], slot[out[1]])]++;
    }
    double x2 = chi2_pairs(counts, UNIFORM_TRIALS);
    if (x2 > CHI2_DF9_P001)
        fail_msg("pair counts chi2 = %.2f > %.3f", x2, CHI2_DF9_P001);
}

static void test_random_above_inclusion_is_uniform(void **state)
{
    (void)state;
    enum { N = 80, K = 10 };
    float x[N];
    uint32_t counts[N] = {0}, out[K], el[N];
    for (size_t i = 0; i < N; i++) /* every other entry eligible: m = 40 */
        x[i] = i % 2 ? 0.5f : (i % 4 ? 1.0f : -3.0f);
    size_t m = eligible(x, N, 1.0f, el);
    assert_int_equal(m, 40);
    rng_t rng;
    rng_init(&rng, 14, RNG_STREAM_SERVER);
    for (size_t t = 0; t < UNIFORM_TRIALS; t++) {
        assert_int_equal(select_random_above(x, N, K, 1.0f, &rng, out), K);
        for (int i = 0; i < K; i++)
            counts[out[i]]++;
    }
    uint32_t el_counts[N];
    for (size_t i = 0; i < N; i++) {
        if (i % 2) /* ineligible: never chosen */
            assert_int_equal(counts[i], 0);
    }
    for (size_t j = 0; j < m; j++)
        el_counts[j] = counts[el[j]];
    double x2 = chi2_inclusion(el_counts, m, K, UNIFORM_TRIALS);
    if (x2 > CHI2_DF39_P001)
        fail_msg("inclusion chi2 = %.2f > %.3f", x2, CHI2_DF39_P001);
}

static void test_random_above_is_deterministic_for_a_seed(void **state)
{
    (void)state;
    enum { N = 10000, K = 300 };
    static float x[N];
    static uint32_t a[K], b[K];
    rng_t data, r1, r2;
    rng_init(&data, 4, 77);
    for (size_t i = 0; i < N; i++)
        x[i] = (float)rng_normal(&data);
    rng_init(&r1, 99, RNG_STREAM_SERVER);
    rng_init(&r2, 99, RNG_STREAM_SERVER);
    assert_int_equal(select_random_above(x, N, K, 1.0f, &r1, a), K);
    assert_int_equal(select_random_above(x, N, K, 1.0f, &r2, b), K);
    assert_memory_equal(a, b, sizeof a);
    rng_init(&r2, 100, RNG_STREAM_SERVER);
    assert_int_equal(select_random_above(x, N, K, 1.0f, &r2, b), K);
    assert_memory_not_equal(a, b, sizeof a);
}

/* ---- select_clip ------------------------------------------------------- */

static void test_clip_bounds_to_gamma(void **state)
{
    (void)state;
    assert_true(select_clip(3.0f, 1.0f) == 1.0f);
    assert_true(select_clip(-3.0f, 1.0f) == -1.0f);
    assert_true(select_clip(0.25f, 1.0f) == 0.25f);
    assert_true(select_clip(-1e30f, INFINITY) == -1e30f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_is_ceil_of_theta_n_despite_rounding),
        cmocka_unit_test(test_count_is_at_least_one_and_at_most_n),
        cmocka_unit_test(test_ws_free_accepts_null),
        cmocka_unit_test(test_ws_refuses_sizes_beyond_32_bit_indices),
        cmocka_unit_test(test_largest_abs_small_example),
        cmocka_unit_test(test_largest_abs_matches_sort_on_random_data),
        cmocka_unit_test(test_largest_abs_breaks_ties_toward_lower_index),
        cmocka_unit_test(test_largest_abs_orders_zeros_denormals_inf_and_nan),
        cmocka_unit_test(test_largest_abs_is_exact_when_the_sample_misleads),
        cmocka_unit_test(test_largest_f64_matches_sort_on_counters),
        cmocka_unit_test(test_largest_f64_ranks_negative_and_nan_as_zero),
        cmocka_unit_test(test_largest_f64_resolves_keys_differing_in_low_bits),
        cmocka_unit_test(test_random_gives_min_k_n_ascending_distinct_in_range),
        cmocka_unit_test(test_random_pairs_are_uniform),
        cmocka_unit_test(test_random_inclusion_is_uniform),
        cmocka_unit_test(test_random_is_deterministic_for_a_seed),
        cmocka_unit_test(test_random_above_gives_min_k_m_eligible_ascending),
        cmocka_unit_test(test_random_above_takes_exactly_the_eligible_when_few),
        cmocka_unit_test(test_random_above_pairs_are_uniform),
        cmocka_unit_test(test_random_above_inclusion_is_uniform),
        cmocka_unit_test(test_random_above_is_deterministic_for_a_seed),
        cmocka_unit_test(test_clip_bounds_to_gamma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
