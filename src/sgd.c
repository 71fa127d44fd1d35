/* sgd: local training epoch and evaluation over a dataset held in memory. */
#include "sgd.h"

#include <string.h>

void sgd_gather(const dataset_t *ds, const uint32_t *idx, int batch, model_ws *ws)
{
    float *x = model_ws_input(ws);
    uint8_t *y = model_ws_labels(ws);
    for (int r = 0; r < batch; r++) {
        memcpy(x + (size_t)r * ds->dim, ds->x + (size_t)idx[r] * ds->dim,
               ds->dim * sizeof *x);
        y[r] = ds->y[idx[r]];
    }
}

void sgd_epoch(const model_t *m, float *params, model_ws *ws, const dataset_t *ds,
               uint32_t *order, size_t count, int batch, float lr, rng_t *rng,
               sgd_stats *stats)
{
    rng_shuffle_u32(rng, order, count);
    sgd_batches(m, params, ws, ds, order, count, batch, lr, stats);
}

void sgd_batches(const model_t *m, float *params, model_ws *ws, const dataset_t *ds,
                 const uint32_t *order, size_t count, int batch, float lr, sgd_stats *stats)
{
    double loss = 0.0;
    int correct = 0;
    for (size_t start = 0; start < count; start += (size_t)batch) {
        int b = count - start < (size_t)batch ? (int)(count - start) : batch;
        sgd_gather(ds, order + start, b, ws);
        loss += model_forward(m, params, ws, b, &correct);
        /* A short last batch takes a proportionally short step (the sum of
         * its gradients over the full batch size): a full-size step on a few
         * examples is a noisy jolt right before evaluation. */
        model_backward(m, params, ws, b, -lr * (float)b / (float)batch, params);
    }
    stats->count = count;
    stats->loss = count ? loss / (double)count : 0.0;
    stats->accuracy = count ? (double)correct / (double)count : 0.0;
}

double sgd_evaluate_batch(const model_t *m, const float *params, model_ws *ws,
                          const dataset_t *ds, size_t start, size_t count, int *correct)
{
    /* Contiguous examples: one copy per batch. */
    memcpy(model_ws_input(ws), ds->x + start * ds->dim, count * ds->dim * sizeof(float));
    memcpy(model_ws_labels(ws), ds->y + start, count);
    return model_forward(m, params, ws, (int)count, correct);
}

void sgd_evaluate(const model_t *m, const float *params, model_ws *ws, const dataset_t *ds,
                  size_t limit, sgd_stats *stats)
{
    size_t count = limit && limit < ds->count ? limit : ds->count;
    size_t max_batch = (size_t)model_ws_max_batch(ws);
    double loss = 0.0;
    int correct = 0;
    for (size_t start = 0; start < count; start += max_batch) {
        size_t b = count - start < max_batch ? count - start : max_batch;
        loss += sgd_evaluate_batch(m, params, ws, ds, start, b, &correct);
    }
    stats->count = count;
    stats->loss = count ? loss / (double)count : 0.0;
    stats->accuracy = count ? (double)correct / (double)count : 0.0;
}
