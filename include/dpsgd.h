/* dpsgd: differentially private SGD (Abadi et al., CCS 2016) as one
 * party's local training: Poisson-sampled batches, each example's gradient
 * clipped to L2 norm C over ALL parameters, the clipped gradients summed,
 * N(0, sigma^2 C^2) added to every coordinate of the sum, the result divided
 * by the EXPECTED batch size and stepped. Also the accountant's view of
 * one party (its epsilon after T steps, through the Rényi-DP accountant of
 * rdp.h) and the run's plan (sigma for a target epsilon, the refusals).
 *
 * No MPI, no I/O, no global state; every random draw comes from the
 * caller's rng (a participant's own stream), so a run is reproducible per
 * seed and a checkpointed rng resumes it exactly. docs/DESIGN.md,
 * "DP-SGD", states what the guarantee covers. */
#ifndef DSSGD_DPSGD_H
#define DSSGD_DPSGD_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "model.h"
#include "rdp.h"
#include "rng.h"
#include "sgd.h"

/* A target epsilon that needs more noise than this is refused. */
#define DPSGD_SIGMA_MAX 1000.0

/* ---- the mechanism ------------------------------------------------------ */

/* Scratch of the mechanism for model m: the gradient sum (n floats), the
 * per-example norms and weights of one chunk of up to max_batch examples
 * (the model workspace's max batch), and the Gaussian sampler's tables.
 * Shared by the participants of a rank, like the model workspace. NULL if
 * out of memory. */
typedef struct dpsgd_ws dpsgd_ws;
dpsgd_ws *dpsgd_ws_create(const model_t *m, int max_batch);
void dpsgd_ws_free(dpsgd_ws *w);

typedef struct {
    double q;       /* Poisson sampling rate, (0, 1]: batch / records */
    int batch;      /* the expected batch size B, which divides the noisy sum */
    float clip;     /* C > 0; INFINITY (no clipping) only with noise 0 */
    double noise;   /* sigma >= 0, the noise multiplier: noise std is sigma C */
    float lr;
} dpsgd_params;

/* Poisson sampling: each of records[0..count) joins the batch
 * independently with probability q (q >= 1: all of them). Writes the
 * chosen records to batch in their order (room for count) and returns how
 * many: Binomial(count, q), possibly 0 or more than q count. Draws the gaps
 * between chosen records (geometric), about q count + 1 draws. */
size_t dpsgd_sample(rng_t *rng, double q, const uint32_t *records, size_t count,
                    uint32_t *batch);

/* sum[i] += sum over the examples idx[0..size) of ds of
 *     g_e[i] * min(1, clip / ||g_e||),   g_e = d loss_e / d params,
 * ||.|| the L2 norm over all parameters: the clipped per-example gradients,
 * summed. Processes the examples in chunks of the model workspace's max
 * batch: a forward pass, the per-example norms (model_example_sqnorms),
 * then one backward pass weighted per example. Adds the forward passes'
 * summed loss and correct predictions to *loss and *correct (may be NULL). */
void dpsgd_clipped_sum(const model_t *m, const float *params, model_ws *ws, dpsgd_ws *dw,
                       const dataset_t *ds, const uint32_t *idx, size_t size, float clip,
                       float *sum, double *loss, int *correct);

/* n standard normal draws into out, from rng: a 256-layer ziggurat
 * (Marsaglia & Tsang 2000) with the layer, sign and position from
 * separate bits of one 32-bit draw (23 bits of position), rejections and
 * the tail (Marsaglia 1964) drawn afterwards from the same stream. Much
 * cheaper than rng_normal, which matters at n draws a step. */
void dpsgd_normals(const dpsgd_ws *dw, rng_t *rng, float *out, size_t n);

/* One DP-SGD step on records[0..count) of ds: Poisson sample (p->q), the
 * clipped sum, then params -= lr / B * (sum + sigma C z), z ~ N(0, I) from
 * rng (no draws when sigma = 0). batch_buf holds count indices. Returns the
 * sampled batch's size; adds loss and correct predictions as
 * dpsgd_clipped_sum. */
size_t dpsgd_step(const model_t *m, float *params, model_ws *ws, dpsgd_ws *dw,
                  const dataset_t *ds, const uint32_t *records, size_t count,
                  const dpsgd_params *p, rng_t *rng, uint32_t *batch_buf, double *loss,
                  int *correct);

/* `steps` DP-SGD steps; stats over their forward passes (count: examples
 * sampled in all). */
void dpsgd_train(const model_t *m, float *params, model_ws *ws, dpsgd_ws *dw,
                 const dataset_t *ds, const uint32_t *records, size_t count, uint64_t steps,
                 const dpsgd_params *p, rng_t *rng, uint32_t *batch_buf, sgd_stats *stats);

/* ---- the plan ------------------------------------------------------------ */

/* Steps in a local epoch over `records` examples: ceil(records / batch). */
static inline uint64_t dpsgd_epoch_steps(size_t records, int batch)
{
    return ((uint64_t)records + (uint64_t)batch - 1) / (uint64_t)batch;
}

/* Refuses (-1, message naming `what` and the index: "participant 3's
 * shard") a data set of sizes[i] examples that cannot carry the plan: the
 * batch larger than it (q > 1), or delta >= 1 / its size (such a delta
 * allows releasing a record outright). */
int dpsgd_check_sizes(const size_t *sizes, int count, int batch, double delta,
                      const char *what, char *err);

/* The noise multiplier for a target: the smallest sigma with which every
 * data set of sizes[0..count) ends `epochs` local epochs (of
 * dpsgd_epoch_steps each, at q = batch / size) at epsilon <= target at
 * delta (the largest over distinct sizes). -1 with a message when the
 * target cannot be met with sigma <= DPSGD_SIGMA_MAX, or is so large that
 * no meaningful noise meets it. */
int dpsgd_plan_sigma(const size_t *sizes, int count, int batch, int epochs, double delta,
                     double target, double *sigma, char *err);

/* ---- the account of one party -------------------------------------------- */

/* The RDP of one step at (q, sigma) on rdp's order grid: epsilon after T
 * steps is the conversion of T times it (every step has the same q and
 * sigma, so the steps taken are the whole state of the account). */
typedef struct {
    double q, sigma, delta;
    double orders[RDP_NORDERS];
    double step_rdp[RDP_NORDERS];  /* +inf everywhere when sigma = 0 */
} dpsgd_account;

/* q in (0, 1], sigma >= 0 (0: every step costs infinite epsilon), delta in
 * (0, 1). -1 with a message otherwise. */
int dpsgd_account_init(dpsgd_account *a, double q, double sigma, double delta, char *err);

/* epsilon at the account's delta after `steps` steps (Balle et al. 2020
 * conversion, rdp_epsilon): 0 for no step, +inf with sigma = 0.
 * Non-decreasing in steps. */
double dpsgd_account_epsilon(const dpsgd_account *a, uint64_t steps);

/* The most steps whose epsilon stays <= cap (UINT64_MAX for cap = +inf). */
uint64_t dpsgd_account_max_steps(const dpsgd_account *a, double cap);

/* The steps taken, from what a checkpoint keeps: `epsilon` (the spent
 * epsilon it saved) and `most`, the steps of the epochs completed. A
 * party that was never stopped took `most`; one the cap stopped took the
 * most steps whose epsilon is `epsilon`. Matches to a relative 1e-9 (a
 * checkpoint read on another machine's libm); -1 if no step count gives
 * `epsilon` (the file does not belong to this plan). */
int dpsgd_account_steps_for(const dpsgd_account *a, double epsilon, uint64_t most,
                            uint64_t *steps);

#endif
