/* test_rdp: the Rényi-DP accountant. The reference for the RDP of the
 * sampled Gaussian mechanism is a numerical integration of the Rényi
 * divergence written here, independently of src/rdp.c (which sums series);
 * the rest checks properties every RDP curve has (q = 1 closed form,
 * monotonicity, additive composition, conversion order), the noise search,
 * published figures, and the refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "rdp.h"

#define REF_PI 3.14159265358979323846

/* Fails the test unless |got - want| <= rel |want|, saying what differed. */
static void expect_rel(double got, double want, double rel, const char *what)
{
    if (!(fabs(got - want) <= rel * fabs(want))) {
        print_error("%s: got %.17g, want %.17g (relative difference %.3g > %.3g)\n", what, got,
                    want, fabs(got - want) / fabs(want), rel);
        fail();
    }
}

static double sgm(double q, double sigma, double alpha)
{
    double r = NAN;
    char err[ERR_LEN];
    int rc = rdp_sgm(q, sigma, alpha, &r, err);
    if (rc != RDP_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, RDP_OK);
    return r;
}

/* ---- the reference: quadrature of the Rényi divergence ---------------------- */

static double ref_log_add(double a, double b)
{
    double hi = fmax(a, b), lo = fmin(a, b);
    return lo == -INFINITY ? hi : hi + log1p(exp(lo - hi));
}

/* log of N(0,s^2)(z) * (mu(z) / N(0,s^2)(z))^power, where
 * mu = (1-q) N(0,s^2) + q N(1,s^2), so mu/N(0,s^2) = 1 - q + q e^((2z-1)/(2s^2)).
 * power = alpha gives D_alpha(mu || N(0,s^2)); power = 1 - alpha gives
 * D_alpha(N(0,s^2) || mu) (integrand N0^alpha mu^(1-alpha)). */
static double ref_log_integrand(double z, double q, double s, double power)
{
    double w = (2 * z - 1) / (2 * s * s);
    double lratio = q == 1 ? w : ref_log_add(log1p(-q), log(q) + w);
    return -z * z / (2 * s * s) - log(s * sqrt(2 * REF_PI)) + power * lratio;
}

/* D_alpha in one direction by the trapezoid rule, summed in log space.
 * The integrand is analytic in the strip |Im z| < pi s^2 (its only
 * singularities are the zeros of 1 - q + q e^w) and decays like a Gaussian
 * of width s around 0, alpha (forward) or 1 - alpha (reverse), so the rule
 * converges geometrically once h is small against s and s^2: h = min(s,
 * s^2)/8 and 40 s margins leave errors near rounding (the test also halves
 * h once to show it). */
static double ref_divergence(double q, double s, double alpha, bool forward, double h_div)
{
    double power = forward ? alpha : 1 - alpha;
    double lo = -alpha - 40 * s - 2, hi = alpha + 40 * s + 2;
    double h = fmin(s, s * s) / h_div;
    size_t n = (size_t)ceil((hi - lo) / h);
    double m = -INFINITY;
    for (size_t k = 0; k <= n; k++)
        m = fmax(m, ref_log_integrand(lo + (double)k * h, q, s, power));
    double sum = 0;
    for (size_t k = 0; k <= n; k++) {
        double w = (k == 0 || k == n) ? 0.5 : 1.0;
        sum += w * exp(ref_log_integrand(lo + (double)k * h, q, s, power) - m);
    }
    return (m + log(sum * h)) / (alpha - 1);
}

/* rdp_sgm equals the larger of the two divergences, computed by quadrature,
 * for integer and fractional orders over a grid of (q, sigma); the forward
 * one is the larger, as Mironov, Talwar & Zhang 2019 prove. Tolerance: both
 * sides get log A = (alpha-1) RDP to ~1e-15 absolute (rounding), and the
 * smallest RDP here is ~2e-6, so they agree to ~1e-10 relative (measured:
 * 1.3e-10 at worst, q = 0.01, sigma = 5); 1e-8 leaves room without hiding
 * a wrong term (dropping the A2 series moves the q = 0.5 values by
 * percents). */
static void test_matches_numerical_integration(void **state)
{
    (void)state;
    const double qs[] = {0.01, 0.1, 0.5, 1};
    const double sigmas[] = {0.7, 1, 2, 5};
    const double alphas[] = {1.5, 2, 3.5, 8, 32};
    double worst = 0;
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 5; c++) {
                double q = qs[a], s = sigmas[b], alpha = alphas[c];
                double fwd = ref_divergence(q, s, alpha, true, 8);
                double rev = ref_divergence(q, s, alpha, false, 8);
                char what[128];
                snprintf(what, sizeof what, "q=%g sigma=%g alpha=%g", q, s, alpha);
                assert_true(fwd >= rev * (1 - 1e-12));
                double r = sgm(q, s, alpha);
                expect_rel(r, fmax(fwd, rev), 1e-8, what);
                worst = fmax(worst, fabs(r - fwd) / fwd);
            }
    /* The quadrature has converged: halving h moves log A = (alpha-1) D by
     * rounding only. */
    assert_true(fabs(2.5 * (ref_divergence(0.5, 0.7, 3.5, true, 16) -
                            ref_divergence(0.5, 0.7, 3.5, true, 8))) < 1e-14);
    assert_true(fabs(0.5 * (ref_divergence(0.1, 5, 1.5, false, 16) -
                            ref_divergence(0.1, 5, 1.5, false, 8))) < 1e-14);
    assert_true(fabs(31 * (ref_divergence(0.01, 1, 32, true, 16) -
                           ref_divergence(0.01, 1, 32, true, 8))) < 1e-12);
    print_message("largest relative difference from the quadrature: %.2g\n", worst);
}

/* The series (fractional orders) and the binomial sum (integer orders) are
 * different code; just off an integer the first must approach the second. */
static void test_fractional_orders_meet_integer_ones(void **state)
{
    (void)state;
    const double qs[] = {0.001, 0.05, 0.3, 0.9};
    const double sigmas[] = {0.5, 1, 3};
    const double ints[] = {2, 3, 8, 20};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 4; c++) {
                double q = qs[a], s = sigmas[b], n = ints[c];
                double below = sgm(q, s, n - 1e-7), at = sgm(q, s, n), above = sgm(q, s, n + 1e-7);
                assert_true(below <= at * (1 + 1e-12) && at <= above * (1 + 1e-12));
                expect_rel(below, at, 1e-5, "just below an integer order");
                expect_rel(above, at, 1e-5, "just above an integer order");
            }
}

static void test_full_sampling_is_the_gaussian_closed_form(void **state)
{
    (void)state;
    const double sigmas[] = {0.01, 0.7, 1, 4, 1e3};
    const double alphas[] = {1.1, 1.5, 2, 7.3, 64, 512};
    for (size_t b = 0; b < 5; b++)
        for (size_t c = 0; c < 6; c++) {
            double s = sigmas[b], alpha = alphas[c];
            assert_true(sgm(1, s, alpha) == alpha / (2 * s * s));
        }
    /* and q just below 1 is continuous with it */
    expect_rel(sgm(1 - 1e-12, 1.3, 3), 3 / (2 * 1.3 * 1.3), 1e-9, "q -> 1, integer order");
    expect_rel(sgm(1 - 1e-12, 1.3, 2.5), 2.5 / (2 * 1.3 * 1.3), 1e-9, "q -> 1, fractional");
}

/* RDP grows with q and alpha and shrinks with sigma, at every grid order. */
static void test_monotone_in_q_sigma_and_order(void **state)
{
    (void)state;
    const double qs[] = {1e-4, 0.003, 0.02, 0.1, 0.3, 0.5, 0.8, 1};
    const double sigmas[] = {0.4, 0.8, 1.1, 2, 4, 10};
    const size_t nq = 8, ns = 6;
    for (size_t i = 0; i < RDP_NORDERS; i += 3) {
        double alpha = rdp_order(i);
        for (size_t b = 0; b < ns; b++)
            for (size_t a = 1; a < nq; a++)
                assert_true(sgm(qs[a - 1], sigmas[b], alpha) <= sgm(qs[a], sigmas[b], alpha));
        for (size_t a = 0; a < nq; a++)
            for (size_t b = 1; b < ns; b++)
                assert_true(sgm(qs[a], sigmas[b], alpha) <= sgm(qs[a], sigmas[b - 1], alpha));
    }
    for (size_t a = 0; a < nq; a++)
        for (size_t b = 0; b < ns; b++) {
            double prev = 0;
            for (size_t i = 0; i < RDP_NORDERS; i++) {
                double r = sgm(qs[a], sigmas[b], rdp_order(i));
                assert_true(r >= prev);
                prev = r;
            }
        }
}

/* Extreme inputs: never NaN, never negative; +inf when the noise is too
 * small for a double, 0 at most when it is enormous. */
static void test_extreme_inputs_give_numbers(void **state)
{
    (void)state;
    const double qs[] = {1e-300, 1e-12, 0.3, 0.5, 1 - 1e-15, 1};
    const double sigmas[] = {1e-200, 1e-160, 1e-10, 1e-3, 0.05, 1e4, 1e10, 1e150, 1e300};
    const double alphas[] = {1 + 1e-9, 1.1, 1.5, 2, 64, 512, 777.7, RDP_ORDER_MAX};
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 9; b++)
            for (size_t c = 0; c < 8; c++) {
                double r = sgm(qs[a], sigmas[b], alphas[c]);
                assert_false(isnan(r));
                assert_true(r >= 0);
            }
    assert_true(sgm(0.01, 1e-200, 2) == INFINITY);
    assert_true(sgm(0.01, 1e-200, 1.5) == INFINITY);
    assert_true(isfinite(sgm(0.01, 1e-3, 256)));
    assert_true(sgm(0.5, 1e300, 2) < 1e-300);
}

static void test_invalid_arguments_are_refused(void **state)
{
    (void)state;
    double r = 42;
    char err[ERR_LEN];
    const double bad_q[] = {0, -0.1, 1.0000001, NAN, INFINITY};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(rdp_sgm(bad_q[i], 1, 2, &r, err), RDP_EINVAL);
    const double bad_sigma[] = {0, -1, NAN, INFINITY};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(rdp_sgm(0.1, bad_sigma[i], 2, &r, err), RDP_EINVAL);
    const double bad_alpha[] = {1, 0.5, -2, NAN, INFINITY, RDP_ORDER_MAX + 1};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(rdp_sgm(0.1, 1, bad_alpha[i], &r, err), RDP_EINVAL);
    assert_true(r == 42);
    assert_non_null(strstr(err, "alpha"));

    rdp_ledger l, before;
    rdp_ledger_init(&l);
    assert_int_equal(rdp_ledger_add(&l, 0.1, 1, 5, err), RDP_OK);
    before = l;
    assert_int_equal(rdp_ledger_add(&l, 0.1, 1, -1, err), RDP_EINVAL);
    assert_int_equal(rdp_ledger_add(&l, 0, 1, 5, err), RDP_EINVAL);
    assert_int_equal(rdp_ledger_add(&l, 0.1, 0, 5, err), RDP_EINVAL);
    assert_int_equal(rdp_ledger_add(&l, 0.1, -1, 0, err), RDP_EINVAL);
    assert_memory_equal(&l, &before, sizeof l);

    double e = 42;
    const double bad_delta[] = {0, 1, -1e-5, 2, NAN};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(rdp_ledger_epsilon(&l, bad_delta[i], &e, NULL, err), RDP_EINVAL);
        assert_int_equal(rdp_ledger_epsilon_mironov(&l, bad_delta[i], &e, NULL, err), RDP_EINVAL);
        assert_int_equal(rdp_run_epsilon(0.1, 1, 10, bad_delta[i], &e, NULL, err), RDP_EINVAL);
    }
    assert_true(e == 42);
    const double orders[] = {2, 3}, curve_nan[] = {0.1, NAN}, curve_neg[] = {-0.1, 0.2};
    const double orders_bad[] = {1, 3}, curve[] = {0.1, 0.2};
    assert_int_equal(rdp_epsilon(orders, curve_nan, 2, 1e-5, RDP_CONV_BALLE, &e, NULL, err),
                     RDP_EINVAL);
    assert_int_equal(rdp_epsilon(orders, curve_neg, 2, 1e-5, RDP_CONV_BALLE, &e, NULL, err),
                     RDP_EINVAL);
    assert_int_equal(rdp_epsilon(orders_bad, curve, 2, 1e-5, RDP_CONV_BALLE, &e, NULL, err),
                     RDP_EINVAL);
    assert_int_equal(rdp_epsilon(orders, curve, 0, 1e-5, RDP_CONV_BALLE, &e, NULL, err),
                     RDP_EINVAL);
}

/* Composition adds RDP order by order, whatever the mix of steps. */
static void test_composition_is_additive(void **state)
{
    (void)state;
    rdp_ledger l, chunks;
    rdp_ledger_init(&l);
    rdp_ledger_init(&chunks);
    assert_int_equal(rdp_ledger_add(&l, 0.02, 1.1, 300, NULL), RDP_OK);
    assert_int_equal(rdp_ledger_add(&l, 0.3, 4, 7, NULL), RDP_OK);
    assert_int_equal(rdp_ledger_add(&l, 1, 2, 0, NULL), RDP_OK); /* no steps: no cost */
    for (size_t i = 0; i < RDP_NORDERS; i++) {
        double a = rdp_order(i);
        expect_rel(l.rdp[i], 300 * sgm(0.02, 1.1, a) + 7 * sgm(0.3, 4, a), 1e-14,
                   "sum of two kinds of steps");
    }
    assert_int_equal(rdp_ledger_add(&chunks, 0.02, 1.1, 100, NULL), RDP_OK);
    assert_int_equal(rdp_ledger_add(&chunks, 0.02, 1.1, 200, NULL), RDP_OK);
    assert_int_equal(rdp_ledger_add(&chunks, 0.3, 4, 7, NULL), RDP_OK);
    for (size_t i = 0; i < RDP_NORDERS; i++)
        expect_rel(chunks.rdp[i], l.rdp[i], 1e-14, "the same steps in chunks");

    /* epsilon grows with every step charged */
    double prev = 0, e;
    rdp_ledger grow;
    rdp_ledger_init(&grow);
    for (int k = 0; k < 20; k++) {
        assert_int_equal(rdp_ledger_add(&grow, 0.01, 1, 50, NULL), RDP_OK);
        assert_int_equal(rdp_ledger_epsilon(&grow, 1e-5, &e, NULL, NULL), RDP_OK);
        assert_true(e > prev);
        prev = e;
        double r;
        assert_int_equal(rdp_run_epsilon(0.01, 1, 50 * (k + 1), 1e-5, &r, NULL, NULL), RDP_OK);
        expect_rel(r, e, 1e-12, "ledger vs one run");
    }
}

static void test_conversions(void **state)
{
    (void)state;
    /* one order, by hand */
    double a = 10, r = 0.5, d = 1e-5, e, order;
    assert_int_equal(rdp_epsilon(&a, &r, 1, d, RDP_CONV_MIRONOV, &e, &order, NULL), RDP_OK);
    expect_rel(e, 0.5 + log(1 / d) / 9, 1e-15, "Mironov's conversion");
    assert_true(order == 10);
    assert_int_equal(rdp_epsilon(&a, &r, 1, d, RDP_CONV_BALLE, &e, &order, NULL), RDP_OK);
    expect_rel(e, 0.5 + log(0.9) - (log(d) + log(10)) / 9, 1e-15, "Balle et al.'s conversion");

    const struct {
        double q, sigma;
        int64_t steps;
    } runs[] = {{0.01, 1, 1000}, {0.004, 1.1, 14063}, {0.1, 0.7, 50}, {1, 3, 10}, {0.5, 8, 2}};
    const double deltas[] = {1e-9, 1e-7, 1e-5, 1e-3, 0.1, 0.5, 0.9};
    for (size_t k = 0; k < 5; k++) {
        rdp_ledger l;
        rdp_ledger_init(&l);
        assert_int_equal(rdp_ledger_add(&l, runs[k].q, runs[k].sigma, runs[k].steps, NULL), RDP_OK);
        double prev = INFINITY;
        for (size_t i = 0; i < 7; i++) {
            double tight, plain;
            assert_int_equal(rdp_ledger_epsilon(&l, deltas[i], &tight, &order, NULL), RDP_OK);
            assert_int_equal(rdp_ledger_epsilon_mironov(&l, deltas[i], &plain, NULL, NULL),
                             RDP_OK);
            assert_true(tight <= plain);
            assert_true(tight >= 0 && tight <= prev); /* non-increasing in delta */
            assert_true(order > 1);
            prev = tight;
        }
    }
    /* An empty ledger costs only the conversion's floor, small and > 0. */
    rdp_ledger empty;
    rdp_ledger_init(&empty);
    assert_int_equal(rdp_ledger_epsilon(&empty, 1e-5, &e, &order, NULL), RDP_OK);
    assert_true(e > 0 && e < 0.01 && order == 512);
    /* An unbounded curve has no finite epsilon and no best order. */
    double orders[] = {2, 3}, inf[] = {INFINITY, INFINITY};
    assert_int_equal(rdp_epsilon(orders, inf, 2, 1e-5, RDP_CONV_BALLE, &e, &order, NULL), RDP_OK);
    assert_true(e == INFINITY && isnan(order));
}

static double run_eps(double q, double sigma, int64_t steps, double delta)
{
    double e;
    assert_int_equal(rdp_run_epsilon(q, sigma, steps, delta, &e, NULL, NULL), RDP_OK);
    return e;
}

static void test_find_sigma_meets_the_target_tightly(void **state)
{
    (void)state;
    const struct {
        double q;
        int64_t steps;
        double delta, target;
    } cases[] = {
        {0.01, 10000, 1e-5, 1},   {256.0 / 60000, 14063, 1e-5, 3}, {32.0 / 600, 570, 1e-5, 4},
        {0.5, 100, 1e-5, 2},      {1, 1, 1e-5, 1},                 {0.001, 1, 1e-6, 8},
        {0.05, 100000, 1e-7, 0.5}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double sigma = NAN;
        char err[ERR_LEN];
        int rc = rdp_find_sigma(cases[k].q, cases[k].steps, cases[k].delta, cases[k].target,
                                &sigma, err);
        if (rc != RDP_OK)
            print_error("%s\n", err);
        assert_int_equal(rc, RDP_OK);
        assert_true(run_eps(cases[k].q, sigma, cases[k].steps, cases[k].delta) <= cases[k].target);
        assert_true(run_eps(cases[k].q, sigma * (1 - RDP_SIGMA_RTOL), cases[k].steps,
                            cases[k].delta) > cases[k].target);
    }
}

static void test_find_sigma_refuses(void **state)
{
    (void)state;
    double sigma = 42;
    char err[ERR_LEN];
    /* unreachable targets */
    assert_int_equal(rdp_find_sigma(0.01, 100, 1e-5, 0, &sigma, err), RDP_EUNREACHABLE);
    assert_int_equal(rdp_find_sigma(0.01, 100, 1e-5, -1, &sigma, err), RDP_EUNREACHABLE);
    /* below the floor that infinite noise still leaves at delta = 1e-5 */
    assert_int_equal(rdp_find_sigma(0.01, 100, 1e-5, 1e-3, &sigma, err), RDP_EUNREACHABLE);
    assert_non_null(strstr(err, "unreachable"));
    /* invalid arguments */
    assert_int_equal(rdp_find_sigma(0, 100, 1e-5, 1, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(1.5, 100, 1e-5, 1, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(0.01, 0, 1e-5, 1, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(0.01, -5, 1e-5, 1, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(0.01, 100, 0, 1, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(0.01, 100, 1, 1, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(0.01, 100, 1e-5, NAN, &sigma, err), RDP_EINVAL);
    assert_int_equal(rdp_find_sigma(0.01, 100, 1e-5, INFINITY, &sigma, err), RDP_EINVAL);
    /* a target so large that no meaningful noise is needed */
    assert_int_equal(rdp_find_sigma(1e-6, 1, 1e-5, 1e12, &sigma, err), RDP_EINVAL);
    assert_true(sigma == 42);
}

/* Published figures. TF-Privacy's tutorials/README.md (commit d435fcbf):
 * MNIST, N = 60000, batch 256, sigma = 1.1, 60 epochs, delta = 1e-5 give
 * eps = 3.01; its table adds sigma = 1.3 for 15 epochs: 1.19, and sigma =
 * 0.7 for 45 epochs: 7.10. Steps = ceil(epochs N / 256) as in its
 * compute_dp_sgd_privacy.py; the orders are those of its MNIST tutorial
 * (mnist_dpsgd_tutorial.py, walkthrough.md): 1.1, 1.2, ..., 10.9, 12..63;
 * the conversion Mironov's. With those the three figures reproduce to their
 * rounding (another grid moves the third by 0.02).
 * Abadi et al. 2016 (Sec. 3.1): q = 0.01, sigma = 4, delta = 1e-5,
 * T = 10000 give eps ~ 1.26 with the moments accountant, which is
 * Mironov's conversion of the same RDP; the tighter conversion must give
 * less. */
static void test_published_figures(void **state)
{
    (void)state;
    double tf[160];
    size_t n = 0;
    for (int x = 1; x < 100; x++)
        tf[n++] = 1 + x / 10.0;
    for (int a = 12; a < 64; a++)
        tf[n++] = a;
    const struct {
        double sigma, epochs, eps;
    } rows[] = {{1.1, 60, 3.01}, {1.3, 15, 1.19}, {0.7, 45, 7.10}};
    const double q = 256.0 / 60000;
    for (size_t k = 0; k < 3; k++) {
        double steps = ceil(rows[k].epochs * 60000 / 256), curve[160], e, order, tight;
        for (size_t i = 0; i < n; i++)
            curve[i] = steps * sgm(q, rows[k].sigma, tf[i]);
        assert_int_equal(rdp_epsilon(tf, curve, n, 1e-5, RDP_CONV_MIRONOV, &e, &order, NULL),
                         RDP_OK);
        assert_int_equal(rdp_epsilon(tf, curve, n, 1e-5, RDP_CONV_BALLE, &tight, NULL, NULL),
                         RDP_OK);
        print_message("TF-Privacy sigma=%g, %g epochs: eps %.4f (published %.2f, order %g); "
                      "tighter conversion %.4f; dssgd's grid %.4f\n",
                      rows[k].sigma, rows[k].epochs, e, rows[k].eps, order, tight,
                      run_eps(q, rows[k].sigma, (int64_t)steps, 1e-5));
        assert_true(fabs(e - rows[k].eps) <= 0.005);
        assert_true(tight < e);
    }

    rdp_ledger l;
    rdp_ledger_init(&l);
    assert_int_equal(rdp_ledger_add(&l, 0.01, 4, 10000, NULL), RDP_OK);
    double plain, tight, order;
    assert_int_equal(rdp_ledger_epsilon_mironov(&l, 1e-5, &plain, NULL, NULL), RDP_OK);
    assert_int_equal(rdp_ledger_epsilon(&l, 1e-5, &tight, &order, NULL), RDP_OK);
    print_message("Abadi et al. q=0.01 sigma=4 T=10000: eps %.4f (Mironov's conversion; "
                  "published ~1.26), %.4f (Balle et al.'s, order %g)\n",
                  plain, tight, order);
    assert_true(fabs(plain - 1.26) <= 0.02);
    assert_true(tight < plain && tight > 0.8);
}

static void test_state_round_trips_and_bad_states_are_refused(void **state)
{
    (void)state;
    rdp_ledger l, back, keep;
    rdp_ledger_init(&l);
    assert_int_equal(rdp_ledger_add(&l, 0.03, 1.2, 777, NULL), RDP_OK);
    assert_int_equal(rdp_ledger_add(&l, 0.5, 3, 5, NULL), RDP_OK);
    double st[RDP_STATE_LEN], bad[RDP_STATE_LEN];
    rdp_ledger_state(&l, st);
    rdp_ledger_init(&back);
    assert_int_equal(rdp_ledger_restore(&back, st, RDP_STATE_LEN, NULL), RDP_OK);
    assert_memory_equal(&back, &l, sizeof l);

    /* An empty ledger and an unbounded tail are states too. */
    rdp_ledger empty;
    rdp_ledger_init(&empty);
    rdp_ledger_state(&empty, bad);
    assert_int_equal(rdp_ledger_restore(&back, bad, RDP_STATE_LEN, NULL), RDP_OK);
    memcpy(bad, st, sizeof st);
    bad[2 * (RDP_NORDERS - 1) + 1] = INFINITY;
    assert_int_equal(rdp_ledger_restore(&back, bad, RDP_STATE_LEN, NULL), RDP_OK);

    keep = l;
    char err[ERR_LEN];
    assert_int_equal(rdp_ledger_restore(&l, st, RDP_STATE_LEN - 1, err), RDP_EINVAL);
    assert_int_equal(rdp_ledger_restore(&l, NULL, RDP_STATE_LEN, err), RDP_EINVAL);
    const size_t mid = 2 * 60 + 1; /* an RDP value in the middle of the grid */
    struct {
        size_t at;
        double value;
        const char *says;
    } edits[] = {
        {mid, NAN, "NaN"},
        {mid, -1e-3, "negative"},
        {1, -0.0 - 1e-300, "negative"},
        {mid, INFINITY, "decreases"},        /* inf below finite orders */
        {mid, 0, "decreases"},               /* a dip */
        {2 * (RDP_NORDERS - 1) + 1, 0, "decreases"},
        {2 * 5, 1.65, "order"},              /* an order that is not the grid's */
        {0, NAN, "order"},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        memcpy(bad, st, sizeof st);
        bad[edits[k].at] = edits[k].value;
        assert_int_equal(rdp_ledger_restore(&l, bad, RDP_STATE_LEN, err), RDP_EINVAL);
        if (!strstr(err, edits[k].says)) {
            print_error("edit %zu: message \"%s\" lacks \"%s\"\n", k, err, edits[k].says);
            fail();
        }
        assert_memory_equal(&l, &keep, sizeof l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_numerical_integration),
        cmocka_unit_test(test_fractional_orders_meet_integer_ones),
        cmocka_unit_test(test_full_sampling_is_the_gaussian_closed_form),
        cmocka_unit_test(test_monotone_in_q_sigma_and_order),
        cmocka_unit_test(test_extreme_inputs_give_numbers),
        cmocka_unit_test(test_invalid_arguments_are_refused),
        cmocka_unit_test(test_composition_is_additive),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_find_sigma_meets_the_target_tightly),
        cmocka_unit_test(test_find_sigma_refuses),
        cmocka_unit_test(test_published_figures),
        cmocka_unit_test(test_state_round_trips_and_bad_states_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
