/* select: which entries of a parameter change to share. Exact top-k by
 * magnitude in O(n) (radix selection, no sort), random subsets, clipping.
 * Every function writes indices in strictly increasing order. */
#ifndef DSSGD_SELECT_H
#define DSSGD_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/* k = ceil(theta * n), at least 1 and at most n; theta in (0, 1]. Robust to
 * the rounding of theta * n (0.1 * 1000 gives 100, not 101). */
size_t select_count(double theta, size_t n);

/* Scratch for the top-k functions, good for arrays of up to max_n entries
 * (histograms and a candidate list); reused across calls, no allocation
 * inside them. */
typedef struct select_ws select_ws;
select_ws *select_ws_create(size_t max_n);
void select_ws_free(select_ws *ws);

/* The k entries of largest |x[i]|; ties go to the lower index; NaN counts as
 * magnitude 0 (never preferred over a finite value). Writes min(k, n)
 * indices ascending to out and returns that count. n <= max_n of ws. */
size_t select_largest_abs(const float *x, size_t n, size_t k, uint32_t *out, select_ws *ws);

/* The same for non-negative doubles (the server's update counters): the k
 * largest x[i], ties to the lower index; negative or NaN counts as 0. */
size_t select_largest_f64(const double *x, size_t n, size_t k, uint32_t *out, select_ws *ws);

/* A uniformly random subset of min(k, m) of the m entries with |x[i]| >= tau
 * (NaN never qualifies); one pass, ascending. Returns the count. */
size_t select_random_above(const float *x, size_t n, size_t k, float tau, rng_t *rng,
                           uint32_t *out);

/* A uniformly random k-subset of [0, n), ascending. Returns min(k, n). */
size_t select_random(size_t n, size_t k, rng_t *rng, uint32_t *out);

/* v clipped to [-gamma, gamma] (gamma may be INFINITY). */
static inline float select_clip(float v, float gamma)
{
    return v > gamma ? gamma : (v < -gamma ? -gamma : v);
}

#endif
