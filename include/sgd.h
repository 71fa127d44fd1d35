/* sgd: one local epoch of mini-batch SGD over a list of examples, and
 * evaluation (accuracy, mean loss). Allocation-free: all scratch is in the
 * model workspace. */
#ifndef DSSGD_SGD_H
#define DSSGD_SGD_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "model.h"
#include "rng.h"

typedef struct {
    double loss;      /* mean cross-entropy */
    double accuracy;  /* fraction classified correctly */
    size_t count;     /* examples seen */
} sgd_stats;

/* Copies the examples idx[0..batch) of ds into the workspace's input and
 * labels (batch <= the workspace's max batch). */
void sgd_gather(const dataset_t *ds, const uint32_t *idx, int batch, model_ws *ws);

/* Takes the examples order[0..count) in mini-batches of `batch` (the last
 * one may be smaller) and steps params -= lr * gradient of the batch's
 * mean loss. Stats are those of the forward passes. batch must not exceed
 * the workspace's max batch. */
void sgd_batches(const model_t *m, float *params, model_ws *ws, const dataset_t *ds,
                 const uint32_t *order, size_t count, int batch, float lr, sgd_stats *stats);

/* One epoch: shuffles order[0..count) with rng, then sgd_batches. */
void sgd_epoch(const model_t *m, float *params, model_ws *ws, const dataset_t *ds,
               uint32_t *order, size_t count, int batch, float lr, rng_t *rng,
               sgd_stats *stats);

/* Evaluates params on the first `limit` examples of ds (0 = all) in batches
 * of the workspace's max batch: sgd_evaluate_batch from 0 in steps of it. */
void sgd_evaluate(const model_t *m, const float *params, model_ws *ws, const dataset_t *ds,
                  size_t limit, sgd_stats *stats);

/* One batch of that: examples [start, start + count) of ds, count at most
 * the workspace's max batch. Returns the sum of their losses and adds their
 * correct predictions to *correct. Scoring a set batch by batch this way,
 * at the same starts, gives sgd_evaluate's figures exactly. */
double sgd_evaluate_batch(const model_t *m, const float *params, model_ws *ws,
                          const dataset_t *ds, size_t start, size_t count, int *correct);

#endif
