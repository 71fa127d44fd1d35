/* dp: differentially private choice of the upload by the sparse vector
 * technique (Dwork & Roth's NumericSparse, as Shokri & Shmatikov use it),
 * and the per-participant privacy ledger (basic composition). */
#ifndef DSSGD_DP_H
#define DSSGD_DP_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
    double epsilon;   /* budget of one participant for one epoch, > 0 */
    size_t c;         /* most releases: ceil(theta_u n) */
    float gamma;      /* values are clipped to [-gamma, gamma]; finite, > 0 */
    float tau;        /* threshold */
} dp_svt_params;

/* Noise scales of the mechanism: sigma(x) = 2 c Delta_f / x with
 * Delta_f = 2 gamma; eps1 = 8 eps / 9 (threshold and test), eps2 = 2 eps / 9
 * (released values). */
double dp_sigma(const dp_svt_params *p, double eps_part);
static inline double dp_eps1(double epsilon) { return 8.0 * epsilon / 9.0; }
static inline double dp_eps2(double epsilon) { return 2.0 * epsilon / 9.0; }

/* NumericSparse over delta[0..n): visits the entries in a uniformly random
 * order without replacement; entry j is released when
 *     |clip(delta_j)| + Lap(2 sigma(eps1)) >= tau + rho,  rho ~ Lap(sigma(eps1)),
 * as clip(delta_j + Lap(sigma(eps2))) with fresh noise, after which rho is
 * drawn afresh; stops after c releases. Writes the released indices in
 * ascending order with their values to idx and val (room for min(c, n)
 * each, not overlapping delta or perm); returns how many (<= c). perm is
 * scratch of n entries. Allocates nothing, so it cannot fail: a caller that
 * charged the ledger first always gets the mechanism's answer. All
 * randomness from rng. */
size_t dp_svt_select(const float *delta, size_t n, const dp_svt_params *p, rng_t *rng,
                     uint32_t *perm, uint32_t *idx, float *val);

/* The privacy ledger of one participant. */
typedef struct {
    double spent;        /* cumulative epsilon (basic composition) */
    int epochs;          /* epochs that spent anything */
} dp_ledger;

/* Records an epoch's spending if it fits the cap (cap = INFINITY: none).
 * Returns 1 if recorded, 0 if it would exceed the cap (nothing recorded). */
int dp_ledger_spend(dp_ledger *l, double epsilon, double cap);

#endif
