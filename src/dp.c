/* dp: NumericSparse (Dwork & Roth, Algorithm 3) for the upload choice, with
 * the paper's split eps1 = 8/9, eps2 = 2/9 and sensitivity 2 gamma. */
#include "dp.h"

#include <math.h>

#include "select.h"

double dp_sigma(const dp_svt_params *p, double eps_part)
{
    return 2.0 * (double)p->c * (2.0 * (double)p->gamma) / eps_part;
}

/* Sorts idx[0..m) ascending and moves val along: releases arrive in random
 * order, the wire wants ascending indices. Heapsort, in place, so that the
 * mechanism allocates nothing and cannot fail once the ledger is charged.
 * The indices are distinct, so any correct sort gives these same bits. */
static void sift_down(uint32_t *idx, float *val, size_t root, size_t m)
{
    uint32_t top = idx[root];
    float top_val = val[root];
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= m)
            break;
        if (child + 1 < m && idx[child + 1] > idx[child])
            child++;
        if (idx[child] <= top)
            break;
        idx[root] = idx[child];
        val[root] = val[child];
        root = child;
    }
    idx[root] = top;
    val[root] = top_val;
}

static void sort_by_index(uint32_t *idx, float *val, size_t m)
{
    for (size_t i = m / 2; i-- > 0;)
        sift_down(idx, val, i, m);
    for (size_t end = m; end-- > 1;) {
        uint32_t i0 = idx[0];
        float v0 = val[0];
        idx[0] = idx[end];
        val[0] = val[end];
        idx[end] = i0;
        val[end] = v0;
        sift_down(idx, val, 0, end);
    }
}

/* A noised value is rounded to float and then clipped (select_clip). That
 * is bit for bit what clipping the double and then rounding would give:
 * rounding is monotonic and keeps +-gamma (floats) exact, so a value beyond
 * gamma rounds to one at or beyond it, which clips to gamma, and one within
 * [-gamma, gamma] rounds to a float within it, which passes unchanged. NaN
 * stays NaN either way. */
size_t dp_svt_select(const float *delta, size_t n, const dp_svt_params *p, rng_t *rng,
                     uint32_t *perm, uint32_t *idx, float *val)
{
    double eps1 = dp_eps1(p->epsilon), eps2 = dp_eps2(p->epsilon);
    double s1 = dp_sigma(p, eps1), s2 = dp_sigma(p, eps2);
    size_t c = p->c < n ? p->c : n;

    /* Random order without replacement, drawn lazily: a partial
     * Fisher-Yates that stops as soon as c entries are released. */
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    double rho = rng_laplace(rng, s1);
    size_t released = 0;
    for (size_t i = 0; i < n && released < c; i++) {
        size_t r = i + rng_below(rng, (uint32_t)(n - i));
        uint32_t j = perm[r];
        perm[r] = perm[i];
        perm[i] = j;
        float v = delta[j];
        double test = fabs((double)select_clip(v, p->gamma)) + rng_laplace(rng, 2.0 * s1);
        if (test >= (double)p->tau + rho) {
            /* Fresh noise for the value: the test's noise must not leak. */
            idx[released] = j;
            val[released] = select_clip((float)((double)v + rng_laplace(rng, s2)), p->gamma);
            released++;
            rho = rng_laplace(rng, s1);
        }
    }
    sort_by_index(idx, val, released);
    return released;
}

int dp_ledger_spend(dp_ledger *l, double epsilon, double cap)
{
    /* A relative slack so that B = E * epochs lets exactly `epochs` through
     * despite rounding in the running sum. */
    if (l->spent + epsilon > cap * (1.0 + 1e-12))
        return 0;
    l->spent += epsilon;
    l->epochs++;
    return 1;
}
