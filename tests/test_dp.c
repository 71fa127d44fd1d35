/* test_dp: the sparse vector technique and the privacy ledger. Statistical
 * tests use fixed seeds; each states its error rate. The Laplace sampler
 * itself is tested against its CDF in test_rng.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dp.h"
#include "rng.h"

typedef struct {
    uint32_t *perm, *idx;
    float *val;
} scratch;

static scratch scratch_make(size_t n)
{
    scratch s = {malloc(n * sizeof(uint32_t)), malloc(n * sizeof(uint32_t)),
                 malloc(n * sizeof(float))};
    return s;
}

static void scratch_free(scratch *s)
{
    free(s->perm); free(s->idx); free(s->val);
}

static void test_noise_scales_follow_the_paper(void **state)
{
    (void)state;
    /* c = 10, gamma = 0.5 (Delta_f = 1), epsilon = 9: eps1 = 8, eps2 = 2,
     * sigma(eps1) = 2 * 10 * 1 / 8 = 2.5, sigma(eps2) = 10. */
    dp_svt_params p = {9.0, 10, 0.5f, 0.0f};
    assert_float_equal(dp_eps1(9.0), 8.0, 1e-12);
    assert_float_equal(dp_eps2(9.0), 2.0, 1e-12);
    assert_float_equal(dp_sigma(&p, dp_eps1(9.0)), 2.5, 1e-12);
    assert_float_equal(dp_sigma(&p, dp_eps2(9.0)), 10.0, 1e-12);
}

/* Whatever the data, epsilon and c: at most c releases, distinct ascending
 * indices in range, values within [-gamma, gamma]. */
static void test_releases_are_at_most_c_clipped_and_ascending(void **state)
{
    (void)state;
    const size_t n = 500;
    float delta[500];
    scratch s = scratch_make(n);
    rng_t data, rng;
    rng_init(&data, 1, 1);
    rng_init(&rng, 2, 2);
    for (int trial = 0; trial < 300; trial++) {
        for (size_t i = 0; i < n; i++)
            delta[i] = (float)(rng_normal(&data) * pow(10, -(int)rng_below(&data, 5)));
        size_t c = 1 + rng_below(&data, (uint32_t)n + 20);
        double eps = pow(10, (double)rng_below(&data, 14) - 4);
        dp_svt_params p = {eps, c, 0.01f, 0.001f};
        size_t count = dp_svt_select(delta, n, &p, &rng, s.perm, s.idx, s.val);
        assert_true(count <= c && count <= n);
        for (size_t i = 0; i < count; i++) {
            assert_true(s.idx[i] < n);
            if (i > 0)
                assert_true(s.idx[i] > s.idx[i - 1]);
            assert_true(isfinite(s.val[i]) && fabsf(s.val[i]) <= 0.01f);
        }
    }
    scratch_free(&s);
}

/* epsilon huge: noise vanishes, so exactly the entries above tau pass, as
 * many as c allows. */
static void test_large_epsilon_selects_the_entries_above_tau(void **state)
{
    (void)state;
    const size_t n = 1000;
    float delta[1000];
    for (size_t i = 0; i < n; i++)
        delta[i] = (i % 3 == 0) ? 5e-3f * ((i & 1) ? 1 : -1) : 1e-6f; /* tau = 1e-4 */
    scratch s = scratch_make(n);
    rng_t rng;
    rng_init(&rng, 3, 3);
    for (size_t c = 50; c <= 400; c += 350) { /* 334 entries are above tau */
        dp_svt_params p = {1e12, c, 0.01f, 1e-4f};
        size_t count = dp_svt_select(delta, n, &p, &rng, s.perm, s.idx, s.val);
        assert_int_equal(count, c < 334 ? c : 334);
        for (size_t i = 0; i < count; i++) {
            assert_int_equal(s.idx[i] % 3, 0);
            assert_float_equal(s.val[i], delta[s.idx[i]], 1e-6);
        }
    }
    scratch_free(&s);
}

/* epsilon tiny: the noise swamps the data, so which entries are released
 * does not depend on their size. Half the entries are large; over many
 * trials the fraction of releases that are large must be 1/2 within 4.5
 * standard deviations (false alarm below 1e-5). */
static void test_small_epsilon_selects_almost_uniformly(void **state)
{
    (void)state;
    const size_t n = 200;
    float delta[200];
    for (size_t i = 0; i < n; i++)
        delta[i] = (i & 1) ? 9e-3f : 0.0f;
    scratch s = scratch_make(n);
    rng_t rng;
    rng_init(&rng, 4, 4);
    double large = 0, total = 0;
    for (int trial = 0; trial < 400; trial++) {
        dp_svt_params p = {1e-6, 20, 0.01f, 1e-3f};
        size_t count = dp_svt_select(delta, n, &p, &rng, s.perm, s.idx, s.val);
        for (size_t i = 0; i < count; i++)
            large += s.idx[i] & 1;
        total += (double)count;
    }
    double frac = large / total, sd = sqrt(0.25 / total);
    print_message("small epsilon: %.0f releases, %.4f of them large (expect 0.5 +- %.4f)\n",
                  total, frac, 4.5 * sd);
    assert_true(fabs(frac - 0.5) < 4.5 * sd);
    scratch_free(&s);
}

static double laplace_cdf(double x, double b)
{
    return x < 0 ? 0.5 * exp(x / b) : 1.0 - 0.5 * exp(-x / b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* No released value is its unnoised source, and release - source follows
 * Lap(sigma(eps2)): fresh noise, not the test's Lap(2 sigma(eps1)) (half the
 * scale) nor nothing. The noise scales with gamma, so clipping is kept out
 * by a large epsilon instead: gamma = 1, sigma(eps2) = 0.024, |delta| < 0.1
 * (a clip needs |noise| > 0.9: probability e^-37). KS at alpha = 0.001:
 * D < 1.949 / sqrt(m). */
static void test_released_values_carry_fresh_laplace_noise(void **state)
{
    (void)state;
    const size_t n = 400;
    float delta[400];
    rng_t data, rng;
    rng_init(&data, 5, 5);
    rng_init(&rng, 6, 6);
    for (size_t i = 0; i < n; i++)
        delta[i] = (float)(rng_uniform(&data) * 0.2 - 0.1);
    scratch s = scratch_make(n);
    dp_svt_params p = {3e4, 40, 1.0f, 0.05f};
    double scale = dp_sigma(&p, dp_eps2(p.epsilon));
    size_t cap = 40 * 300, m = 0;
    double *noise = malloc(cap * sizeof *noise);
    for (int trial = 0; trial < 300; trial++) {
        size_t count = dp_svt_select(delta, n, &p, &rng, s.perm, s.idx, s.val);
        for (size_t i = 0; i < count; i++) {
            assert_true(s.val[i] != delta[s.idx[i]]);
            noise[m++] = (double)s.val[i] - (double)delta[s.idx[i]];
        }
    }
    qsort(noise, m, sizeof *noise, cmp_double);
    double d = 0;
    for (size_t i = 0; i < m; i++) {
        double f = laplace_cdf(noise[i], scale);
        d = fmax(d, fmax(fabs(f - (double)i / m), fabs((double)(i + 1) / m - f)));
    }
    print_message("release noise: %zu samples, KS D = %.4f (critical %.4f)\n", m, d,
                  1.949 / sqrt((double)m));
    assert_true(m > 1000);
    assert_true(d < 1.949 / sqrt((double)m));
    free(noise);
    scratch_free(&s);
}

static void test_same_seed_same_releases(void **state)
{
    (void)state;
    const size_t n = 300;
    float delta[300];
    for (size_t i = 0; i < n; i++)
        delta[i] = (float)sin((double)i) * 0.01f;
    scratch a = scratch_make(n), b = scratch_make(n);
    rng_t r1, r2;
    rng_init(&r1, 8, 9);
    rng_init(&r2, 8, 9);
    dp_svt_params p = {50.0, 30, 0.01f, 1e-3f};
    size_t ca = dp_svt_select(delta, n, &p, &r1, a.perm, a.idx, a.val);
    size_t cb = dp_svt_select(delta, n, &p, &r2, b.perm, b.idx, b.val);
    assert_int_equal(ca, cb);
    assert_memory_equal(a.idx, b.idx, ca * sizeof *a.idx);
    assert_memory_equal(a.val, b.val, ca * sizeof *a.val);
    scratch_free(&a);
    scratch_free(&b);
}

/* Every entry is visited at most once: with c = n and all entries far
 * above tau under tiny noise, each is released exactly once. */
static void test_visits_without_replacement(void **state)
{
    (void)state;
    const size_t n = 257;
    float delta[257];
    for (size_t i = 0; i < n; i++)
        delta[i] = 0.005f;
    scratch s = scratch_make(n);
    rng_t rng;
    rng_init(&rng, 10, 1);
    dp_svt_params p = {1e12, n, 0.01f, 1e-4f};
    assert_int_equal(dp_svt_select(delta, n, &p, &rng, s.perm, s.idx, s.val), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(s.idx[i], i);
    scratch_free(&s);
}

static void test_ledger_composes_and_respects_the_cap(void **state)
{
    (void)state;
    dp_ledger l = {0};
    for (int e = 0; e < 10; e++)
        assert_int_equal(dp_ledger_spend(&l, 0.1, 1.0), 1); /* 10 x 0.1 = 1.0 fits exactly */
    assert_int_equal(dp_ledger_spend(&l, 0.1, 1.0), 0);
    assert_float_equal(l.spent, 1.0, 1e-12);
    assert_int_equal(l.epochs, 10);
    dp_ledger u = {0};
    for (int e = 0; e < 100; e++)
        assert_int_equal(dp_ledger_spend(&u, 2.5, INFINITY), 1);
    assert_float_equal(u.spent, 250.0, 1e-9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noise_scales_follow_the_paper),
        cmocka_unit_test(test_releases_are_at_most_c_clipped_and_ascending),
        cmocka_unit_test(test_large_epsilon_selects_the_entries_above_tau),
        cmocka_unit_test(test_small_epsilon_selects_almost_uniformly),
        cmocka_unit_test(test_released_values_carry_fresh_laplace_noise),
        cmocka_unit_test(test_same_seed_same_releases),
        cmocka_unit_test(test_visits_without_replacement),
        cmocka_unit_test(test_ledger_composes_and_respects_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
