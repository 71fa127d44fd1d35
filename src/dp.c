/* dp: NumericSparse (Dwork & Roth, Algorithm 3) for the upload choice, with
 * the paper's split eps1 = 8/9, eps2 = 2/9 and sensitivity 2 gamma. */
#include "dp.h"

#include <math.h>
#include <stdlib.h>

double dp_sigma(const dp_svt_params *p, double eps_part)
{
    return 2.0 * (double)p->c * (2.0 * (double)p->gamma) / eps_part;
}

static float clip(double v, float gamma)
{
    return (float)(v > gamma ? gamma : (v < -gamma ? -gamma : v));
}

/* Releases arrive in random order; the wire wants ascending indices. */
typedef struct { uint32_t idx; float val; } release;
static int by_index(const void *a, const void *b)
{
    uint32_t x = ((const release *)a)->idx, y = ((const release *)b)->idx;
    return (x > y) - (x < y);
}

size_t dp_svt_select(const float *delta, size_t n, const dp_svt_params *p, rng_t *rng,
                     uint32_t *perm, uint32_t *idx, float *val)
{
    double eps1 = dp_eps1(p->epsilon), eps2 = dp_eps2(p->epsilon);
    double s1 = dp_sigma(p, eps1), s2 = dp_sigma(p, eps2);
    size_t c = p->c < n ? p->c : n;
    release *out = malloc((c ? c : 1) * sizeof *out);
    if (!out)
        return 0; /* out of memory: share nothing rather than something unprotected */

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
        double v = delta[j];
        double test = fabs((double)clip(v, p->gamma)) + rng_laplace(rng, 2.0 * s1);
        if (test >= (double)p->tau + rho) {
            /* Fresh noise for the value: the test's noise must not leak. */
            out[released].idx = j;
            out[released].val = clip(v + rng_laplace(rng, s2), p->gamma);
            released++;
            rho = rng_laplace(rng, s1);
        }
    }
    qsort(out, released, sizeof *out, by_index);
    for (size_t i = 0; i < released; i++) {
        idx[i] = out[i].idx;
        val[i] = out[i].val;
    }
    free(out);
    return released;
}

int dp_ledger_spend(dp_ledger *l, double epsilon, double cap)
{
    /* A relative slack so that B = E * epochs lets exactly `epochs` through
     * despite rounding in the running sum. */
    if (l->spent + epsilon > cap * (1.0 + 1e-12))
        return 0;
    l->spent += epsilon;
    l->last_epoch = epsilon;
    l->epochs++;
    return 1;
}
