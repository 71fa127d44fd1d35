/* rdp: the Rényi-DP accountant for DP-SGD. The Rényi differential privacy
 * of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang
 * 2019), a ledger that composes heterogeneous steps by adding RDP order by
 * order (Mironov 2017), the conversion to (epsilon, delta)-DP, and the
 * search for the noise multiplier that meets a target epsilon.
 *
 * Conventions: q is the Poisson sampling rate, in (0, 1]; sigma the noise
 * multiplier (noise standard deviation over the L2 sensitivity), > 0 and
 * finite; delta in (0, 1); steps >= 0. Functions return RDP_OK (0) or a
 * negative code, with a message in err (ERR_LEN bytes, may be NULL); they
 * change nothing on error. No global state: thread-safe. docs/DESIGN.md
 * ("DP-SGD accountant") states the math and its sources. */
#ifndef DSSGD_RDP_H
#define DSSGD_RDP_H

#include <stddef.h>
#include <stdint.h>

enum {
    RDP_OK = 0,
    RDP_EINVAL = -1,      /* an argument outside its domain */
    RDP_EUNREACHABLE = -2 /* rdp_find_sigma: no sigma in range meets the target */
};

/* The default order grid, ascending: 1.1, 1.2, ..., 10.9 (steps of 0.1,
 * the integers 2..10 among them), 11, 12, ..., 64, then 80, 96, 128, 256,
 * 512. Fractional orders matter for large epsilon, the large ones for
 * small epsilon (about 0.05 at delta = 1e-5 needs orders near 500). */
#define RDP_NORDERS 158
double rdp_order(size_t i);           /* i < RDP_NORDERS */

/* Largest order rdp_sgm accepts (its cost grows linearly with alpha). */
#define RDP_ORDER_MAX 10000.0

/* The RDP at order alpha (finite, 1 < alpha <= RDP_ORDER_MAX) of one step
 * of the sampled Gaussian mechanism: max over neighbours of
 * D_alpha((1-q) N(0, sigma^2) + q N(1, sigma^2) || N(0, sigma^2)).
 * q = 1 gives exactly alpha / (2 sigma^2). Integer orders: the binomial
 * expansion, summed in log space. Fractional orders: the two series with
 * erfc, their alternating tails cut or summed by an Euler transform with
 * bounds that err upward. Either way (alpha-1) rdp = log A_alpha is good
 * to ~1e-16 absolute, which is ~1e-10 relative or better unless the RDP of
 * the step is itself near 1e-16. Writes +inf where the divergence
 * overflows (sigma tiny), 0 where it underflows (sigma huge); never NaN. */
int rdp_sgm(double q, double sigma, double alpha, double *rdp, char *err);

/* How (epsilon, delta) is read from an RDP curve, at each order alpha:
 *   RDP_CONV_BALLE:   eps = rdp + log((alpha-1)/alpha)
 *                           - (log delta + log alpha) / (alpha - 1)
 *                     (Balle et al. 2020, arXiv:1905.09982; Canonne, Kamath
 *                     & Steinke 2020, arXiv:2004.00010); the one to use;
 *   RDP_CONV_MIRONOV: eps = rdp + log(1/delta) / (alpha - 1)
 *                     (Mironov 2017, Prop. 3); never tighter, kept for
 *                     comparing with published figures computed that way.
 * Either is minimised over the orders and floored at 0. */
typedef enum { RDP_CONV_BALLE, RDP_CONV_MIRONOV } rdp_conversion;

/* epsilon at delta from n >= 1 orders (each finite, > 1) and their RDP
 * values (each >= 0, +inf allowed). *order receives the minimising order
 * (NaN when epsilon is +inf); order may be NULL. */
int rdp_epsilon(const double *orders, const double *rdp, size_t n, double delta,
                rdp_conversion conv, double *epsilon, double *order, char *err);

/* The composed RDP of one participant, order by order on the default grid.
 * A zeroed struct (or rdp_ledger_init) is an empty ledger. */
typedef struct {
    double rdp[RDP_NORDERS];  /* summed RDP at rdp_order(i); >= 0, may be +inf */
} rdp_ledger;

void rdp_ledger_init(rdp_ledger *l);

/* Charges `steps` steps of the sampled Gaussian mechanism at (q, sigma).
 * steps = 0 charges nothing (the arguments are still checked). */
int rdp_ledger_add(rdp_ledger *l, double q, double sigma, int64_t steps, char *err);

/* epsilon at delta of everything charged so far, by the Balle et al.
 * conversion (rdp_ledger_epsilon) or Mironov's (rdp_ledger_epsilon_mironov).
 * An empty ledger gives the conversion's floor, not 0. order may be NULL. */
int rdp_ledger_epsilon(const rdp_ledger *l, double delta, double *epsilon, double *order,
                       char *err);
int rdp_ledger_epsilon_mironov(const rdp_ledger *l, double delta, double *epsilon,
                               double *order, char *err);

/* The ledger's state as RDP_STATE_LEN doubles, pairs (order, rdp) in grid
 * order, for a checkpoint. rdp_ledger_restore takes such an array back and
 * refuses (leaving l alone) a wrong length, an order that is not the
 * grid's, a NaN or negative value, or a curve that decreases with the
 * order (RDP never does, so the state was not written by this module). */
#define RDP_STATE_LEN (2 * RDP_NORDERS)
void rdp_ledger_state(const rdp_ledger *l, double *state);
int rdp_ledger_restore(rdp_ledger *l, const double *state, size_t n, char *err);

/* epsilon (Balle et al.) after `steps` >= 0 steps at (q, sigma), on the
 * default grid. order may be NULL. */
int rdp_run_epsilon(double q, double sigma, int64_t steps, double delta, double *epsilon,
                    double *order, char *err);

/* Bounds and tolerance of rdp_find_sigma. */
#define RDP_SIGMA_MIN 1e-4
#define RDP_SIGMA_MAX 1e6
#define RDP_SIGMA_RTOL 1e-9

/* The smallest noise multiplier with which `steps` >= 1 steps at rate q
 * stay at or below target_epsilon at delta (rdp_run_epsilon), to a
 * relative RDP_SIGMA_RTOL: epsilon(*sigma) <= target and
 * epsilon(*sigma * (1 - RDP_SIGMA_RTOL)) > target. Bisection on log sigma
 * within a bracket found by doubling or halving from 1.
 * RDP_EUNREACHABLE: target <= 0, or not met even at RDP_SIGMA_MAX (epsilon
 * has a floor > 0 as sigma grows, set by delta and the largest order).
 * RDP_EINVAL: an invalid argument, or a target so large that
 * sigma < RDP_SIGMA_MIN meets it (no meaningful noise). */
int rdp_find_sigma(double q, int64_t steps, double delta, double target_epsilon,
                   double *sigma, char *err);

#endif
