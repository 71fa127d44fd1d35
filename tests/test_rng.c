/* test_rng: Philox4x32-10 against the Random123 known answers, determinism and
 * stream independence, and each sampler against its distribution. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"

#define SEQ_LEN 10000
#define N_DRAWS 100000

static void fill_u32(uint32_t *out, size_t n, uint64_t seed, uint64_t stream)
{
    rng_t r;
    rng_init(&r, seed, stream);
    for (size_t i = 0; i < n; i++)
        out[i] = rng_u32(&r);
}

static size_t count_equal(const uint32_t *a, const uint32_t *b, size_t n)
{
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += a[i] == b[i];
    return same;
}

/* ---- determinism and independence ------------------------------------ */

static void test_same_seed_and_stream_give_same_sequence(void **state)
{
    (void)state;
    static uint32_t a[SEQ_LEN], b[SEQ_LEN];
    fill_u32(a, SEQ_LEN, 42, RNG_STREAM_INIT);
    fill_u32(b, SEQ_LEN, 42, RNG_STREAM_INIT);
    assert_memory_equal(a, b, sizeof a);
}

/* Two independent sequences agree at a position with probability 2^-32:
 * over 10,000 positions, expect 2e-6 matches; allow one. */
static void test_different_seeds_give_different_sequences(void **state)
{
    (void)state;
    static uint32_t a[SEQ_LEN], b[SEQ_LEN];
    fill_u32(a, SEQ_LEN, 42, RNG_STREAM_INIT);
    fill_u32(b, SEQ_LEN, 43, RNG_STREAM_INIT);
    assert_true(count_equal(a, b, SEQ_LEN) <= 1);
}

static void test_different_streams_give_different_sequences(void **state)
{
    (void)state;
    static uint32_t a[SEQ_LEN], b[SEQ_LEN];
    fill_u32(a, SEQ_LEN, 42, 1);
    fill_u32(b, SEQ_LEN, 42, 2);
    assert_true(count_equal(a, b, SEQ_LEN) <= 1);
    /* Seed and stream are not interchangeable (a swap would be invisible
     * to the tests above). */
    fill_u32(a, SEQ_LEN, 1, 2);
    fill_u32(b, SEQ_LEN, 2, 1);
    assert_true(count_equal(a, b, SEQ_LEN) <= 1);
}

/* Streams must not be one sequence at different offsets (as they would be
 * if the stream number were added to the block counter): the first 1000
 * outputs of either stream appear nowhere in the first 5000 of the other. */
static void test_streams_are_not_shifted_copies(void **state)
{
    (void)state;
    enum { RUN = 1000, WINDOW = 5000 };
    static uint32_t s1[WINDOW], s2[WINDOW];
    fill_u32(s1, WINDOW, 7, 1);
    fill_u32(s2, WINDOW, 7, 2);
    for (size_t off = 0; off + RUN <= WINDOW; off++) {
        assert_true(memcmp(s1, s2 + off, RUN * sizeof *s1) != 0);
        assert_true(memcmp(s2, s1 + off, RUN * sizeof *s1) != 0);
    }
    /* Participants' streams are distinct from one another and from the
     * fixed purposes. */
    fill_u32(s1, RUN, 7, rng_participant_stream(0));
    fill_u32(s2, RUN, 7, rng_participant_stream(1));
    assert_true(count_equal(s1, s2, RUN) <= 1);
    fill_u32(s2, RUN, 7, 0);
    assert_true(count_equal(s1, s2, RUN) <= 1);
}

/* ---- Philox4x32-10 known answers ----------------------------------------
 * Expected words from Random123's kat_vectors file (D. E. Shaw Research),
 * "philox4x32 10 <counter c0..c3> <key k0 k1> <output>". Our mapping:
 * (c0, c1) = block counter lo/hi, (c2, c3) = stream lo/hi, key = seed lo/hi;
 * the four words of a block come out of rng_u32 in order. */

static void assert_block(uint64_t seed, uint64_t stream, uint64_t counter,
                         const uint32_t expect[4])
{
    rng_t r;
    rng_init(&r, seed, stream);
    r.counter = counter;
    uint32_t got[4];
    for (int i = 0; i < 4; i++)
        got[i] = rng_u32(&r);
    if (memcmp(got, expect, sizeof got) != 0)
        fail_msg("got %08x %08x %08x %08x, expected %08x %08x %08x %08x", got[0], got[1],
                 got[2], got[3], expect[0], expect[1], expect[2], expect[3]);
}

static void test_philox_known_answer_zeros(void **state)
{
    (void)state;
    const uint32_t expect[4] = { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 };
    assert_block(0, 0, 0, expect);
}

static void test_philox_known_answer_all_ones(void **state)
{
    (void)state;
    const uint32_t expect[4] = { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd };
    assert_block(UINT64_MAX, UINT64_MAX, UINT64_MAX, expect);
}

/* Counter 243f6a88 85a308d3 13198a2e 03707344, key a4093822 299f31d0 (digits
 * of pi): every word distinct, so a swapped word or half shows. */
static void test_philox_known_answer_pi_digits(void **state)
{
    (void)state;
    const uint32_t expect[4] = { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 };
    assert_block(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, expect);
}

/* ---- uniform doubles -------------------------------------------------- */

/* 100k uniforms have mean 0.5 with standard error sqrt(1/12)/sqrt(1e5) =
 * 9.1e-4; the tolerance 0.005 is about 5.5 sigma. */
#define UNIFORM_MEAN_TOL 0.005

static void test_uniform_in_half_open_unit_interval(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 1, RNG_STREAM_INIT);
    double sum = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        double u = rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
    }
    assert_float_equal(sum / N_DRAWS, 0.5, UNIFORM_MEAN_TOL);
}

static void test_uniform_open_in_open_unit_interval(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 2, RNG_STREAM_INIT);
    double sum = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        double u = rng_uniform_open(&r);
        assert_true(u > 0.0 && u < 1.0);
        sum += u;
    }
    assert_float_equal(sum / N_DRAWS, 0.5, UNIFORM_MEAN_TOL);
}

/* Makes the next draws read `words` (the state is a plain struct), to reach
 * the extreme outputs that random draws hit once in 2^53. */
static void set_next_words(rng_t *r, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3)
{
    rng_init(r, 0, 0);
    r->counter = 1;
    r->block[0] = w0;
    r->block[1] = w1;
    r->block[2] = w2;
    r->block[3] = w3;
    r->used = 0;
}

static void test_uniform_bounds_at_extreme_words(void **state)
{
    (void)state;
    rng_t r;
    set_next_words(&r, 0, 0, 0, 0);
    assert_true(rng_uniform(&r) == 0.0);
    set_next_words(&r, UINT32_MAX, UINT32_MAX, 0, 0);
    assert_true(rng_uniform(&r) == 1.0 - 0x1.0p-53);
    set_next_words(&r, 0, 0, 0, 0);
    assert_true(rng_uniform_open(&r) > 0.0);
}

/* All 64 bits set: the largest value rng_uniform_open can produce must
 * still be below 1 (log(1 - u) and rng_laplace depend on it). */
static void test_uniform_open_below_one_at_largest_word(void **state)
{
    (void)state;
    rng_t r;
    set_next_words(&r, UINT32_MAX, UINT32_MAX, 0, 0);
    double u = rng_uniform_open(&r);
    if (!(u < 1.0))
        fail_msg("rng_uniform_open returned %.17g for the all-ones word", u);
}

/* ---- integers below n ------------------------------------------------- */

static void test_below_stays_below_n(void **state)
{
    (void)state;
    const uint32_t ns[] = { 1, 2, 3, 10, 1000, (1u << 31) + 1, 3u << 30, UINT32_MAX };
    rng_t r;
    rng_init(&r, 3, RNG_STREAM_SCHEDULE);
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        for (int i = 0; i < 10000; i++) {
            uint32_t v = rng_below(&r, ns[k]);
            if (v >= ns[k])
                fail_msg("rng_below(%u) gave %u", ns[k], v);
        }
    }
}

/* Pearson chi-square over n = 10 cells, 100k draws: df = 9, and the critical
 * value at p = 0.001 is 27.88 (chi-square table). */
static void test_below_uniform_chi_square(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 4, RNG_STREAM_SCHEDULE);
    long counts[10] = { 0 };
    for (int i = 0; i < N_DRAWS; i++)
        counts[rng_below(&r, 10)]++;
    double expect = N_DRAWS / 10.0, chi2 = 0;
    for (int c = 0; c < 10; c++)
        chi2 += (counts[c] - expect) * (counts[c] - expect) / expect;
    if (chi2 >= 27.88)
        fail_msg("chi-square %.2f >= 27.88", chi2);
}

/* n = 3 * 2^30: u32 % n would put [0, 2^30) at probability 1/2 instead of
 * 1/3. 100k draws give standard error 0.0015; tolerance 0.01 (~6.7 sigma). */
static void test_below_unbiased_for_large_n(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 5, RNG_STREAM_SCHEDULE);
    long low = 0;
    for (int i = 0; i < N_DRAWS; i++)
        low += rng_below(&r, 3u << 30) < (1u << 30);
    assert_float_equal((double)low / N_DRAWS, 1.0 / 3.0, 0.01);
}

/* ---- Laplace -------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov statistic of sorted x[0..n) against cdf. */
static double ks_statistic(double *x, size_t n, double (*cdf)(double))
{
    qsort(x, n, sizeof *x, cmp_double);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double f = cdf(x[i]);
        double lo = f - (double)i / n, hi = (double)(i + 1) / n - f;
        d = fmax(d, fmax(lo, hi));
    }
    return d;
}

#define LAPLACE_B 2.0

static double laplace_cdf(double x)
{
    return x < 0 ? 0.5 * exp(x / LAPLACE_B) : 1.0 - 0.5 * exp(-x / LAPLACE_B);
}

/* KS critical value at alpha = 0.001 for large n: 1.949 / sqrt(n). */
static double ks_critical(size_t n)
{
    return 1.949 / sqrt((double)n);
}

static void test_laplace_matches_cdf_ks(void **state)
{
    (void)state;
    double *x = malloc(N_DRAWS * sizeof *x);
    assert_non_null(x);
    rng_t r;
    rng_init(&r, 6, rng_participant_stream(0));
    for (int i = 0; i < N_DRAWS; i++) {
        x[i] = rng_laplace(&r, LAPLACE_B);
        assert_true(isfinite(x[i]));
    }
    double d = ks_statistic(x, N_DRAWS, laplace_cdf);
    free(x);
    if (d >= ks_critical(N_DRAWS))
        fail_msg("KS D = %.5f >= %.5f", d, ks_critical(N_DRAWS));
}

/* Var = 2 b^2 = 8. The sample variance's standard error is
 * sqrt((kurtosis - 1) / n) * Var = sqrt(5 / 1e5) * 8 = 0.057 (0.7%), so 5%
 * is about 7 sigma. The mean (standard error 0.009) must be within 0.05. */
static void test_laplace_moments(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 7, rng_participant_stream(1));
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        double v = rng_laplace(&r, LAPLACE_B);
        sum += v;
        sum2 += v * v;
    }
    double mean = sum / N_DRAWS;
    double var = (sum2 - N_DRAWS * mean * mean) / (N_DRAWS - 1);
    double expect = 2 * LAPLACE_B * LAPLACE_B;
    assert_float_equal(mean, 0.0, 0.05);
    if (fabs(var - expect) > 0.05 * expect)
        fail_msg("variance %.4f, expected %.4f within 5%%", var, expect);
}

static void test_laplace_finite_at_extreme_scales(void **state)
{
    (void)state;
    const double scales[] = { 1e-30, 1e30 };
    rng_t r;
    rng_init(&r, 8, rng_participant_stream(2));
    for (int s = 0; s < 2; s++) {
        double max_abs = 0;
        for (int i = 0; i < 10000; i++) {
            double v = rng_laplace(&r, scales[s]);
            assert_true(isfinite(v));
            max_abs = fmax(max_abs, fabs(v));
        }
        /* The draws scale with b: not flushed to 0, not overflowing. */
        assert_true(max_abs > scales[s] && max_abs < 100 * scales[s]);
    }
}

/* The largest uniform and both signs: the inverse CDF's log must never see
 * 0, whatever the words. */
static void test_laplace_finite_at_extreme_words(void **state)
{
    (void)state;
    const uint32_t ends[2] = { 0, UINT32_MAX };
    for (int e = 0; e < 2; e++) {
        for (uint32_t sign = 0; sign < 2; sign++) {
            rng_t r;
            set_next_words(&r, ends[e], ends[e], sign, 0);
            double v = rng_laplace(&r, 1.0);
            if (!isfinite(v))
                fail_msg("rng_laplace gave %g for words %08x %08x, sign word %u", v, ends[e],
                         ends[e], sign);
        }
    }
}

/* ---- normal ---------------------------------------------------------------- */

static double normal_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

static void test_normal_matches_cdf_ks(void **state)
{
    (void)state;
    double *x = malloc(N_DRAWS * sizeof *x);
    assert_non_null(x);
    rng_t r;
    rng_init(&r, 9, RNG_STREAM_INIT);
    for (int i = 0; i < N_DRAWS; i++) {
        x[i] = rng_normal(&r);
        assert_true(isfinite(x[i]));
    }
    double d = ks_statistic(x, N_DRAWS, normal_cdf);
    free(x);
    if (d >= ks_critical(N_DRAWS))
        fail_msg("KS D = %.5f >= %.5f", d, ks_critical(N_DRAWS));
}

/* 100k standard normals: the mean's standard error is 0.0032 (tolerance
 * 0.016, 5 sigma); the variance's is sqrt(2/n) = 0.0045 (tolerance 0.025,
 * 5.6 sigma). */
static void test_normal_moments(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 10, RNG_STREAM_INIT);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        double v = rng_normal(&r);
        sum += v;
        sum2 += v * v;
    }
    double mean = sum / N_DRAWS;
    double var = (sum2 - N_DRAWS * mean * mean) / (N_DRAWS - 1);
    assert_float_equal(mean, 0.0, 0.016);
    assert_float_equal(var, 1.0, 0.025);
}

/* ---- shuffle ------------------------------------------------------------- */

static void iota(uint32_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (uint32_t)i;
}

static void test_shuffle_is_permutation(void **state)
{
    (void)state;
    enum { N = 1000 };
    uint32_t a[N];
    char seen[N] = { 0 };
    iota(a, N);
    rng_t r;
    rng_init(&r, 11, RNG_STREAM_PARTITION);
    rng_shuffle_u32(&r, a, N);
    size_t fixed = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(a[i] < N);
        assert_false(seen[a[i]]);
        seen[a[i]] = 1;
        fixed += a[i] == i;
    }
    /* A random permutation has on average 1 fixed point; 10 or more has
     * probability about 1e-7. */
    assert_true(fixed < 10);
    /* Empty and single-element arrays are left alone. */
    rng_shuffle_u32(&r, a, 0);
    uint32_t one = 5;
    rng_shuffle_u32(&r, &one, 1);
    assert_int_equal(one, 5);
}

static void test_shuffle_deterministic_for_seed(void **state)
{
    (void)state;
    enum { N = 500 };
    uint32_t a[N], b[N];
    rng_t ra, rb;
    iota(a, N);
    iota(b, N);
    rng_init(&ra, 12, RNG_STREAM_PARTITION);
    rng_init(&rb, 12, RNG_STREAM_PARTITION);
    rng_shuffle_u32(&ra, a, N);
    rng_shuffle_u32(&rb, b, N);
    assert_memory_equal(a, b, sizeof a);
    iota(b, N);
    rng_init(&rb, 13, RNG_STREAM_PARTITION);
    rng_shuffle_u32(&rb, b, N);
    assert_true(memcmp(a, b, sizeof a) != 0);
}

/* Every permutation of 3 equally likely (an off-by-one in Fisher-Yates
 * skews this): chi-square over 6 cells from 60k shuffles, df = 5, critical
 * value at p = 0.001 is 20.52. */
static void test_shuffle_uniform_over_permutations(void **state)
{
    (void)state;
    enum { SHUFFLES = 60000 };
    long counts[6] = { 0 };
    rng_t r;
    rng_init(&r, 14, RNG_STREAM_PARTITION);
    for (int i = 0; i < SHUFFLES; i++) {
        uint32_t a[3] = { 0, 1, 2 };
        rng_shuffle_u32(&r, a, 3);
        /* Lehmer code of the permutation: 0..5. */
        int code = (int)a[0] * 2 + (a[1] > a[2]);
        counts[code]++;
    }
    double expect = SHUFFLES / 6.0, chi2 = 0;
    for (int c = 0; c < 6; c++)
        chi2 += (counts[c] - expect) * (counts[c] - expect) / expect;
    if (chi2 >= 20.52)
        fail_msg("chi-square %.2f >= 20.52", chi2);
}

/* ---- save and restore -------------------------------------------------- */

static void assert_restore_continues(int drawn_before)
{
    rng_t a;
    rng_init(&a, 15, rng_participant_stream(3));
    for (int i = 0; i < drawn_before; i++)
        rng_u32(&a);
    uint64_t saved[RNG_STATE_WORDS];
    rng_save(&a, saved);

    uint32_t expect[100], got[100];
    for (int i = 0; i < 100; i++)
        expect[i] = rng_u32(&a);
    rng_t b;
    memset(&b, 0xCD, sizeof b); /* nothing may be left over from before */
    assert_int_equal(rng_restore(&b, saved), 0);
    for (int i = 0; i < 100; i++)
        got[i] = rng_u32(&b);
    assert_memory_equal(got, expect, sizeof got);
}

/* After 5 draws the state sits inside the second block (used = 1): restore
 * must regenerate that block. */
static void test_restore_mid_block_continues_sequence(void **state)
{
    (void)state;
    assert_restore_continues(5);
}

static void test_restore_at_block_boundary_continues_sequence(void **state)
{
    (void)state;
    assert_restore_continues(0);
    assert_restore_continues(4);
    assert_restore_continues(8);
}

static void test_restore_rejects_impossible_state(void **state)
{
    (void)state;
    rng_t r, before;
    memset(&r, 0, sizeof r);
    rng_init(&r, 16, 1);
    memcpy(&before, &r, sizeof r);
    const uint64_t used5[RNG_STATE_WORDS] = { 16, 1, 3, 5 };
    const uint64_t used_huge[RNG_STATE_WORDS] = { 16, 1, 3, UINT64_MAX };
    /* Words left in a block, yet no block was ever generated. */
    const uint64_t no_block[RNG_STATE_WORDS] = { 16, 1, 0, 2 };
    assert_int_equal(rng_restore(&r, used5), -1);
    assert_int_equal(rng_restore(&r, used_huge), -1);
    assert_int_equal(rng_restore(&r, no_block), -1);
    /* A rejected restore leaves the generator as it was. */
    assert_memory_equal(&r, &before, sizeof r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_and_stream_give_same_sequence),
        cmocka_unit_test(test_different_seeds_give_different_sequences),
        cmocka_unit_test(test_different_streams_give_different_sequences),
        cmocka_unit_test(test_streams_are_not_shifted_copies),
        cmocka_unit_test(test_philox_known_answer_zeros),
        cmocka_unit_test(test_philox_known_answer_all_ones),
        cmocka_unit_test(test_philox_known_answer_pi_digits),
        cmocka_unit_test(test_uniform_in_half_open_unit_interval),
        cmocka_unit_test(test_uniform_open_in_open_unit_interval),
        cmocka_unit_test(test_uniform_bounds_at_extreme_words),
        cmocka_unit_test(test_uniform_open_below_one_at_largest_word),
        cmocka_unit_test(test_below_stays_below_n),
        cmocka_unit_test(test_below_uniform_chi_square),
        cmocka_unit_test(test_below_unbiased_for_large_n),
        cmocka_unit_test(test_laplace_matches_cdf_ks),
        cmocka_unit_test(test_laplace_moments),
        cmocka_unit_test(test_laplace_finite_at_extreme_scales),
        cmocka_unit_test(test_laplace_finite_at_extreme_words),
        cmocka_unit_test(test_normal_matches_cdf_ks),
        cmocka_unit_test(test_normal_moments),
        cmocka_unit_test(test_shuffle_is_permutation),
        cmocka_unit_test(test_shuffle_deterministic_for_seed),
        cmocka_unit_test(test_shuffle_uniform_over_permutations),
        cmocka_unit_test(test_restore_mid_block_continues_sequence),
        cmocka_unit_test(test_restore_at_block_boundary_continues_sequence),
        cmocka_unit_test(test_restore_rejects_impossible_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
