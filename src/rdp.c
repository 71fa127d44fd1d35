/* rdp: the Rényi-DP accountant (include/rdp.h; the math in docs/DESIGN.md,
 * "DP-SGD accountant").
 *
 * One step of the sampled Gaussian mechanism has RDP log(A_alpha)/(alpha-1)
 * with A_alpha = E_{z ~ N(0, s^2)} [(1 - q + q r(z))^alpha],
 * r(z) = exp((2z - 1) / (2 s^2)) (Mironov, Talwar & Zhang 2019, s = sigma).
 * Integer alpha: the binomial expansion, with E[r^k] = exp((k^2-k)/(2s^2)).
 * Fractional alpha: the integral split at z0, where (1-q) N(0,s^2) and
 * q N(1,s^2) have equal densities, each half expanded as a binomial series
 * in its smaller ratio:
 *   A1_i = C(alpha,i) (1-q)^(alpha-i) q^i     e^((i^2-i)/(2s^2)) erfc((i-z0)/(sqrt2 s))/2
 *   A2_i = C(alpha,i) (1-q)^i q^(alpha-i)    e^((j^2-j)/(2s^2)) erfc((z0-j)/(sqrt2 s))/2,
 * j = alpha - i, z0 = s^2 log(1/q - 1) + 1/2, A_alpha = sum_i (A1_i + A2_i).
 * Past z0 a term equals K C(alpha,i) erfcx((i-z0)/(sqrt2 s)) with
 * K = (1-q)^alpha e^(-z0^2/(2s^2))/2 (and likewise A2 with (z0-j)), which is
 * how it is computed there: no exp of a huge argument times a tiny erfc. */
#include "rdp.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "err.h"

#define LOG_SQRT_PI 0.57236494292470008707

/* ---- the order grid -------------------------------------------------------- */

static const double large_orders[] = {80, 96, 128, 256, 512};

double rdp_order(size_t i)
{
    if (i < 99)                        /* 1.1 .. 10.9 */
        return 1.0 + (double)(i + 1) / 10.0;
    if (i < 153)                       /* 11 .. 64 */
        return (double)(i - 99 + 11);
    if (i < RDP_NORDERS)
        return large_orders[i - 153];
    return NAN;
}

/* ---- log-space arithmetic -------------------------------------------------- */

/* A sum of exp(l) terms held as s * exp(m): one exp per term and no
 * overflow whatever the magnitudes. Empty: s = 0. */
typedef struct {
    double m, s;
} logsum;

static void ls_add(logsum *a, double l)
{
    if (l == -INFINITY)
        return;
    if (a->s == 0) {
        a->m = l;
        a->s = 1;
    } else if (l <= a->m) {
        a->s += exp(l - a->m);
    } else {
        a->s = a->s * exp(a->m - l) + 1;
        a->m = l;
    }
}

static double ls_log(const logsum *a)
{
    return a->s > 0 ? a->m + log(a->s) : -INFINITY;
}

/* log(exp(a) + exp(b)) */
static double log_add(double a, double b)
{
    double hi = a > b ? a : b, lo = a > b ? b : a;
    if (lo == -INFINITY)
        return hi;
    return hi + log1p(exp(lo - hi));
}

/* log(P - N) for sums P > N (N may be empty); NaN otherwise, which the
 * caller turns into +inf. */
static double ls_log_diff(const logsum *p, const logsum *n)
{
    double lp = ls_log(p), ln = ls_log(n);
    if (ln == -INFINITY)
        return lp;
    if (!(ln < lp))
        return NAN;
    return lp + log1p(-exp(ln - lp));
}

/* log(expm1(x)) for x >= 0. */
static double log_expm1(double x)
{
    return x > 30 ? x + log1p(-exp(-x)) : log(expm1(x));
}

/* log(erfcx(x)) = log(e^(x^2) erfc(x)) for x >= 0: directly below 6 (the
 * rounding of x^2 costs at most ~1e-14 relative there), above by the
 * asymptotic series, whose smallest term is below 1e-16 from x = 6 on. */
static double log_erfcx(double x)
{
    if (x < 6)
        return log(erfc(x)) + x * x;
    double u = 0.5 / x / x, t = 1, s = 1;
    for (int k = 1; k < 45; k++) {
        t *= -(2 * k - 1) * u;
        s += t;
        if (fabs(t) < 1e-17)
            break;
    }
    return log(s) - log(x) - LOG_SQRT_PI;
}

/* ---- one step of the sampled Gaussian mechanism ------------------------------ */

/* log(A - 1) by the binomial expansion: sum_k c_k = 1, so
 * A - 1 = sum_{k>=2} C(alpha,k) (1-q)^(alpha-k) q^k expm1((k^2-k)/(2s^2)),
 * all terms positive; keeping the 1 out keeps a tiny RDP exact. */
static double rdp_integer(double q, double inv, double alpha)
{
    double lq = log(q), l1q = log1p(-q), lga = lgamma(alpha + 1);
    logsum acc = {0, 0};
    for (double k = 2; k <= alpha; k++) {
        double l = lga - lgamma(k + 1) - lgamma(alpha - k + 1) + (alpha - k) * l1q + k * lq +
                   log_expm1(k * (k - 1) * inv);
        if (l == INFINITY)
            return INFINITY;
        ls_add(&acc, l);
    }
    double lam1 = ls_log(&acc);
    double log_a = lam1 > 0 ? lam1 + log1p(exp(-lam1)) : log1p(exp(lam1));
    return log_a / (alpha - 1);
}

typedef struct {
    double alpha, lq, l1q, inv; /* log q, log(1-q), 1/(2 s^2) */
    double z0, c, lk;           /* split point, 1/(sqrt2 s), log K */
} sgm_frac;

/* log|A1_i| and log|A2_i|, given lc = log|C(alpha, i)|. */
static double log_a1(const sgm_frac *p, double i, double lc)
{
    double x = (i - p->z0) * p->c;
    if (x >= 0)
        return lc + p->lk + log_erfcx(x);
    return lc + (p->alpha - i) * p->l1q + i * p->lq + (i * i - i) * p->inv + log(0.5 * erfc(x));
}

static double log_a2(const sgm_frac *p, double i, double lc)
{
    double j = p->alpha - i, y = (p->z0 - j) * p->c;
    if (y >= 0)
        return lc + p->lk + log_erfcx(y);
    return lc + i * p->l1q + j * p->lq + (j * j - j) * p->inv + log(0.5 * erfc(y));
}

/* Cap on the terms summed one by one. Reached only when z0 is huge and the
 * terms decay slowly (q near 1/2, sigma in the thousands); the partial sum
 * plus the last term is still an upper bound then. */
#define FRAC_MAX_TERMS 1000000.0
/* A term below exp(FRAC_LOG_TOL) times the sum ends the direct summation. */
#define FRAC_LOG_TOL (-38.0)
/* Terms of the Euler transform: its remainder is below 2^-(EULER_K+1) a_n. */
#define EULER_K 52

/* Upper bound on log A_alpha for fractional alpha, q < 1.
 *
 * Signs: every term of both series has the sign of C(alpha, i), positive
 * for i < ceil(alpha) and alternating after. From i = ceil(alpha) on,
 * |A1_i| and |A2_i| both decrease strictly (|C| does, and the rest does by
 * d/di log = (sqrt2/s)(x - 1/(sqrt(pi) erfcx(x))) < 0), so the tail is an
 * alternating series with decreasing terms: the remainder after a term is
 * at most the term, which ends the direct summation.
 *
 * Euler phase: from the first n >= ceil(alpha) with both erfc arguments
 * >= 0, |t_i| = K |C(alpha,i)| (erfcx(x_i) + erfcx(y_i)). |C(alpha,i)| is
 * Gamma(i-alpha)/(|Gamma(-alpha)| Gamma(i+1)), a Hausdorff moment sequence
 * in i, and erfcx(x) is a Laplace transform in x (linear in i), so |t_i|
 * is completely monotone. Then the Euler transform
 *   sum_{k>=0} (-1)^k a_{n+k} = sum_{k>=0} (-Delta)^k a_n / 2^(k+1)
 * has terms in [0, a_n / 2^(k+1)]: K terms of it leave less than
 * a_n 2^-(K+1), where the plain tail would need ~10^4 terms when z0/s is
 * small (q near 1/2). */
static double log_a_fractional(double q, double sigma, double inv, double alpha)
{
    sgm_frac p;
    p.alpha = alpha;
    p.lq = log(q);
    p.l1q = log1p(-q);
    p.inv = inv;
    p.z0 = sigma * sigma * (p.l1q - p.lq) + 0.5;
    p.c = 1 / (sqrt(2.0) * sigma);
    p.lk = log(0.5) + alpha * p.l1q - p.z0 * p.z0 * inv;

    double first_alt = ceil(alpha);
    double n_euler = fmax(first_alt, fmax(ceil(p.z0), ceil(alpha - p.z0)));
    logsum pos = {0, 0}, neg = {0, 0};
    double lc = 0; /* log|C(alpha, i)| */
    int sign = 1;  /* sign of C(alpha, i) */
    double i = 0;
    for (; i < n_euler; i++) {
        double l = log_add(log_a1(&p, i, lc), log_a2(&p, i, lc));
        if (l == INFINITY)
            return INFINITY;
        ls_add(sign > 0 ? &pos : &neg, l);
        if (i >= first_alt) {
            double lsum = ls_log_diff(&pos, &neg);
            if (l <= lsum + FRAC_LOG_TOL || i >= FRAC_MAX_TERMS)
                return log_add(lsum, l); /* the remainder is below |t_i| */
        }
        lc += log(fabs(alpha - i)) - log(i + 1);
        if (alpha - i < 0)
            sign = -sign;
    }

    /* Euler phase from n = i: b[k] = a_{n+k} / a_n. */
    double lb[EULER_K + 1], b[EULER_K + 1];
    for (int k = 0; k <= EULER_K; k++) {
        double x = (i + k - p.z0) * p.c, y = (p.z0 - alpha + i + k) * p.c;
        lb[k] = lc + log_add(log_erfcx(x), log_erfcx(y));
        lc += log(fabs(alpha - (i + k))) - log(i + k + 1);
    }
    for (int k = 0; k <= EULER_K; k++)
        b[k] = exp(lb[k] - lb[0]);
    double e = 0.5 * b[0], scale = 0.5;
    for (int k = 1; k <= EULER_K; k++) {
        for (int j = 0; j + k <= EULER_K; j++)
            b[j] -= b[j + 1];
        scale *= 0.5;
        e += b[0] > 0 ? b[0] * scale : 0; /* (-Delta)^k a_n >= 0: rounding only */
    }
    double la_n = p.lk + lb[0];
    if (sign > 0)
        ls_add(&pos, la_n + log(e + scale)); /* tail in [e, e + 2^-(K+1)] a_n */
    else
        ls_add(&neg, la_n + log(e));
    return ls_log_diff(&pos, &neg);
}

static bool bad_q(double q) { return !(q > 0 && q <= 1); }
static bool bad_sigma(double s) { return !(s > 0 && isfinite(s)); }
static bool bad_delta(double d) { return !(d > 0 && d < 1); }

/* rdp_sgm without the argument checks. */
static double sgm(double q, double sigma, double alpha)
{
    if (q == 1)
        return alpha / (2 * sigma * sigma);
    double inv = 1 / (2 * sigma * sigma);
    if (inv == INFINITY)
        return INFINITY; /* sigma^2 underflows: the divergence is unbounded */
    if (inv == 0)
        return 0;        /* below anything a double sum can hold */
    double r = alpha == floor(alpha) ? rdp_integer(q, inv, alpha)
                                     : log_a_fractional(q, sigma, inv, alpha) / (alpha - 1);
    if (isnan(r))
        return INFINITY; /* not expected; never report less than the truth */
    return r > 0 ? r : 0;
}

int rdp_sgm(double q, double sigma, double alpha, double *rdp, char *err)
{
    if (bad_q(q))
        return err_set(err, "rdp: sampling rate q = %g is outside (0, 1]", q);
    if (bad_sigma(sigma))
        return err_set(err, "rdp: noise multiplier sigma = %g must be finite and > 0", sigma);
    if (!(alpha > 1 && alpha <= RDP_ORDER_MAX))
        return err_set(err, "rdp: order alpha = %g is outside (1, %g]", alpha, RDP_ORDER_MAX);
    *rdp = sgm(q, sigma, alpha);
    return RDP_OK;
}

/* ---- conversion to (epsilon, delta) ----------------------------------------- */

static double convert(double alpha, double rdp, double delta, rdp_conversion conv)
{
    if (conv == RDP_CONV_MIRONOV)
        return rdp - log(delta) / (alpha - 1);
    return rdp + log1p(-1 / alpha) - (log(delta) + log(alpha)) / (alpha - 1);
}

int rdp_epsilon(const double *orders, const double *rdp, size_t n, double delta,
                rdp_conversion conv, double *epsilon, double *order, char *err)
{
    if (n == 0 || !orders || !rdp)
        return err_set(err, "rdp: no orders to convert");
    if (bad_delta(delta))
        return err_set(err, "rdp: delta = %g is outside (0, 1)", delta);
    if (conv != RDP_CONV_BALLE && conv != RDP_CONV_MIRONOV)
        return err_set(err, "rdp: unknown conversion %d", (int)conv);
    for (size_t i = 0; i < n; i++) {
        if (!(orders[i] > 1 && isfinite(orders[i])))
            return err_set(err, "rdp: order %g is not finite and > 1", orders[i]);
        if (!(rdp[i] >= 0))
            return err_set(err, "rdp: RDP %g at order %g is NaN or negative", rdp[i], orders[i]);
    }
    double best = INFINITY, best_order = NAN;
    for (size_t i = 0; i < n; i++) {
        double e = convert(orders[i], rdp[i], delta, conv);
        if (e < best) {
            best = e;
            best_order = orders[i];
        }
    }
    *epsilon = best > 0 ? best : 0; /* (e, delta)-DP implies (e', delta) for e' >= e */
    if (order)
        *order = best_order;
    return RDP_OK;
}

/* ---- the ledger -------------------------------------------------------------- */

void rdp_ledger_init(rdp_ledger *l)
{
    memset(l, 0, sizeof *l);
}

static double *grid_orders(double *out)
{
    for (size_t i = 0; i < RDP_NORDERS; i++)
        out[i] = rdp_order(i);
    return out;
}

/* steps * RDP per step at every grid order. */
static void grid_rdp(double q, double sigma, double steps, double *out)
{
    for (size_t i = 0; i < RDP_NORDERS; i++) {
        double r = sgm(q, sigma, rdp_order(i));
        out[i] = steps == 0 ? 0 : steps * r; /* 0 steps of an unbounded step cost 0 */
    }
}

static int check_step(double q, double sigma, int64_t steps, char *err)
{
    if (bad_q(q))
        return err_set(err, "rdp: sampling rate q = %g is outside (0, 1]", q);
    if (bad_sigma(sigma))
        return err_set(err, "rdp: noise multiplier sigma = %g must be finite and > 0", sigma);
    if (steps < 0)
        return err_set(err, "rdp: steps = %lld is negative", (long long)steps);
    return RDP_OK;
}

int rdp_ledger_add(rdp_ledger *l, double q, double sigma, int64_t steps, char *err)
{
    if (check_step(q, sigma, steps, err) != RDP_OK)
        return RDP_EINVAL;
    if (steps == 0)
        return RDP_OK;
    double add[RDP_NORDERS];
    grid_rdp(q, sigma, (double)steps, add);
    for (size_t i = 0; i < RDP_NORDERS; i++)
        l->rdp[i] += add[i];
    return RDP_OK;
}

int rdp_ledger_epsilon(const rdp_ledger *l, double delta, double *epsilon, double *order,
                       char *err)
{
    double orders[RDP_NORDERS];
    return rdp_epsilon(grid_orders(orders), l->rdp, RDP_NORDERS, delta, RDP_CONV_BALLE,
                       epsilon, order, err);
}

int rdp_ledger_epsilon_mironov(const rdp_ledger *l, double delta, double *epsilon,
                               double *order, char *err)
{
    double orders[RDP_NORDERS];
    return rdp_epsilon(grid_orders(orders), l->rdp, RDP_NORDERS, delta, RDP_CONV_MIRONOV,
                       epsilon, order, err);
}

void rdp_ledger_state(const rdp_ledger *l, double *state)
{
    for (size_t i = 0; i < RDP_NORDERS; i++) {
        state[2 * i] = rdp_order(i);
        state[2 * i + 1] = l->rdp[i];
    }
}

/* Sums of per-step curves are non-decreasing in the order up to rounding
 * (a few ulps per addition); adjacent grid orders differ by far more. */
#define RESTORE_SLACK 1e-9

int rdp_ledger_restore(rdp_ledger *l, const double *state, size_t n, char *err)
{
    if (!state || n != RDP_STATE_LEN)
        return err_set(err, "rdp: accountant state has %zu values, expected %d", n,
                       RDP_STATE_LEN);
    for (size_t i = 0; i < RDP_NORDERS; i++) {
        double a = state[2 * i], r = state[2 * i + 1];
        if (a != rdp_order(i))
            return err_set(err, "rdp: accountant state: order %zu is %g, expected %g", i, a,
                           rdp_order(i));
        if (!(r >= 0))
            return err_set(err, "rdp: accountant state: RDP %g at order %g is NaN or negative",
                           r, a);
        if (i > 0 && r < state[2 * i - 1] * (1 - RESTORE_SLACK))
            return err_set(err,
                           "rdp: accountant state: RDP decreases from %g at order %g to %g at "
                           "order %g, which no mechanism gives",
                           state[2 * i - 1], state[2 * i - 2], r, a);
    }
    for (size_t i = 0; i < RDP_NORDERS; i++)
        l->rdp[i] = state[2 * i + 1];
    return RDP_OK;
}

/* ---- a whole run at one (q, sigma) -------------------------------------------- */

static double run_epsilon(double q, double sigma, double steps, double delta)
{
    double orders[RDP_NORDERS], r[RDP_NORDERS], e = INFINITY;
    grid_rdp(q, sigma, steps, r); /* arguments checked by the caller: cannot fail */
    rdp_epsilon(grid_orders(orders), r, RDP_NORDERS, delta, RDP_CONV_BALLE, &e, NULL, NULL);
    return e;
}

int rdp_run_epsilon(double q, double sigma, int64_t steps, double delta, double *epsilon,
                    double *order, char *err)
{
    if (check_step(q, sigma, steps, err) != RDP_OK)
        return RDP_EINVAL;
    double orders[RDP_NORDERS], r[RDP_NORDERS];
    grid_rdp(q, sigma, (double)steps, r);
    return rdp_epsilon(grid_orders(orders), r, RDP_NORDERS, delta, RDP_CONV_BALLE, epsilon,
                       order, err);
}

int rdp_find_sigma(double q, int64_t steps, double delta, double target_epsilon, double *sigma,
                   char *err)
{
    if (check_step(q, 1, steps, err) != RDP_OK)
        return RDP_EINVAL;
    if (steps < 1)
        return err_set(err, "rdp: finding sigma needs at least one step, not %lld",
                       (long long)steps);
    if (bad_delta(delta))
        return err_set(err, "rdp: delta = %g is outside (0, 1)", delta);
    if (isnan(target_epsilon) || target_epsilon == INFINITY)
        return err_set(err, "rdp: target epsilon %g must be finite", target_epsilon);
    if (target_epsilon <= 0) {
        err_set(err, "rdp: target epsilon %g is unreachable: it must be > 0", target_epsilon);
        return RDP_EUNREACHABLE;
    }
    double n = (double)steps, lo, hi;
    /* epsilon decreases as sigma grows: bracket with lo failing, hi meeting it. */
    if (run_epsilon(q, 1, n, delta) > target_epsilon) {
        lo = 1;
        hi = 2;
        while (run_epsilon(q, hi, n, delta) > target_epsilon) {
            if (hi >= RDP_SIGMA_MAX) {
                err_set(err,
                        "rdp: target epsilon %g at delta %g is unreachable in %lld steps at "
                        "q = %g: even sigma = %g gives more",
                        target_epsilon, delta, (long long)steps, q, RDP_SIGMA_MAX);
                return RDP_EUNREACHABLE;
            }
            lo = hi;
            hi = fmin(2 * hi, RDP_SIGMA_MAX);
        }
    } else {
        hi = 1;
        lo = 0.5;
        while (run_epsilon(q, lo, n, delta) <= target_epsilon) {
            if (lo <= RDP_SIGMA_MIN)
                return err_set(err,
                               "rdp: target epsilon %g is so large that sigma <= %g meets it; "
                               "set the noise instead",
                               target_epsilon, RDP_SIGMA_MIN);
            hi = lo;
            lo /= 2;
        }
    }
    /* Stop at half the tolerance, so that sigma (1 - RTOL) lies clearly
     * below lo, where epsilon is known to exceed the target. */
    while (hi / lo > 1 + RDP_SIGMA_RTOL / 2) {
        double mid = sqrt(lo * hi);
        if (run_epsilon(q, mid, n, delta) > target_epsilon)
            lo = mid;
        else
            hi = mid;
    }
    *sigma = hi;
    return RDP_OK;
}
