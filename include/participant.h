/* participant: one party's local model, its shard, its random stream and
 * error-feedback residual; one DSSGD epoch as pure functions (no MPI). */
#ifndef DSSGD_PARTICIPANT_H
#define DSSGD_PARTICIPANT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dp.h"
#include "dataset.h"
#include "dpsgd.h"
#include "model.h"
#include "select.h"
#include "sgd.h"
#include "wire.h"

/* What all participants on a rank share: the model, the data, the
 * protocol's settings and scratch memory (they run one at a time). */
typedef struct {
    const model_t *model;
    const dataset_t *train;
    model_ws *ws;              /* batch workspace */
    int batch;
    int local_steps;           /* mini-batches per exchange; 0 = the whole shard */
    uint32_t rounds;           /* exchanges per epoch (>= 1): turn t is round (t-1) % rounds */
    float lr;
    size_t k_up;               /* entries uploaded: ceil(theta_u n) */
    config_select select;
    float tau, gamma;
    double dp_epsilon;         /* --select svt: epsilon per epoch */
    double dp_max_epsilon;     /* cap on each participant's total (svt or DP-SGD) */
    /* --dpsgd: local training is DP-SGD (dpsgd.h) instead of plain SGD */
    int dpsgd;
    float dp_clip;             /* C */
    double dp_sigma;           /* the noise multiplier, resolved */
    double dp_delta;
    dpsgd_ws *dp;              /* the mechanism's scratch: participant_ctx_init makes it */
    uint32_t *perm;            /* (n) scratch of the mechanism's visiting order */
    float *before;             /* (n) parameters before local training */
    float *delta;              /* (n) the change to select from */
    uint32_t *idx;             /* (n) selected / downloaded indices */
    float *val;                /* (n) their values */
    select_ws *sel;
} participant_ctx;

/* Allocates the scratch of ctx for n parameters (model, train, ws and the
 * settings are filled by the caller; with dpsgd set, also ctx->dp for
 * chunks of the workspace's max batch). -1 if out of memory. */
int participant_ctx_init(participant_ctx *ctx, size_t n);
void participant_ctx_free(participant_ctx *ctx);

typedef struct participant participant_t;

/* A participant with its own copy of shard[0..count) and parameters
 * (zero until the first download). */
participant_t *participant_create(uint32_t id, size_t n, const uint32_t *shard, size_t count,
                                  uint64_t seed, int residual);
void participant_free(participant_t *p);

uint32_t participant_id(const participant_t *p);
float *participant_params(participant_t *p);
const float *participant_residual(const participant_t *p); /* NULL without --residual */
/* The privacy ledger: spent is the total epsilon by either mechanism (with
 * --dpsgd, at ctx->dp_delta after the steps taken); all zero without one. */
const dp_ledger *participant_ledger(const participant_t *p);
/* DP-SGD steps taken so far (0 without --dpsgd). */
uint64_t participant_dp_steps(const participant_t *p);
/* 1 when the privacy cap withheld the upload of the most recent
 * participant_epoch (its ledger unchanged: another epoch would take spent
 * past ctx->dp_max_epsilon), else 0. With --dpsgd: when the cap stopped its
 * training there (another step would pass it; the steps taken before that
 * in the same turn are uploaded), or in participant_train. Nothing more is
 * spent after that, so under the same ctx it stays 1: the driver reports
 * the first time. */
int participant_budget_stopped(const participant_t *p);

/* Checkpoint support. save copies out the state (residual may be NULL when
 * there is none); restore puts it back and refuses (-1) an rng state of
 * another seed or stream, an impossible one, or a negative epsilon. The
 * ledger's epoch count is not stored: restore derives it from epsilon, a
 * sum of equal charges of ctx->dp_epsilon (which a resume must keep).
 * Nor are DP-SGD's steps: participant_restore_at derives them from the
 * epochs completed and epsilon (dpsgd_account_steps_for; a resume keeps q,
 * sigma and delta), and refuses an epsilon that no step count gives.
 * participant_restore is participant_restore_at after 0 epochs. */
void participant_save(const participant_t *p, float *params, float *residual,
                      uint64_t rng[RNG_STATE_WORDS], double *epsilon);
int participant_restore(participant_t *p, const participant_ctx *ctx, const float *params,
                        const float *residual, const uint64_t rng[RNG_STATE_WORDS],
                        double epsilon);
int participant_restore_at(participant_t *p, const participant_ctx *ctx, const float *params,
                           const float *residual, const uint64_t rng[RNG_STATE_WORDS],
                           double epsilon, uint64_t epochs_done);

/* Overwrites the entries named in a download message. The server is
 * trusted less than fully: the message is validated first. */
wire_reason participant_download(participant_t *p, participant_ctx *ctx, const uint8_t *msg,
                                 size_t len, uint32_t epoch);

/* One local epoch of SGD on the shard (standalone and DSSGD). With
 * --dpsgd: ceil(shard / batch) DP-SGD steps on Poisson batches of expected
 * size batch (fewer when the cap stops it; see participant_budget_stopped). */
void participant_train(participant_t *p, participant_ctx *ctx, sgd_stats *stats);

/* One DSSGD turn after the download (turn >= 1 is the message's epoch
 * field; with ctx->rounds > 1 it is round (turn - 1) % rounds of a local
 * epoch, which trains the round's ctx->local_steps mini-batches of the
 * order shuffled at round 0, and uploads nothing once the shard is used
 * up; with --dpsgd, steps [round K, round K + K) of the epoch's
 * ceil(shard / batch), each on a fresh Poisson batch). Train, then choose and clip the upload (by --select; with svt, through the mechanism, charging the
 * ledger, and sending nothing once the cap would be exceeded: see
 * participant_budget_stopped), update the residual, and pack the upload
 * message into buf (capacity wire_size(k_up)). Returns the message length.
 * Prints nothing and cannot fail. */
size_t participant_epoch(participant_t *p, participant_ctx *ctx, uint32_t turn, uint8_t *buf,
                         size_t cap, sgd_stats *stats);

#endif
