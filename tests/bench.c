/* bench: training throughput of the MLP against OpenBLAS sgemm on the same
 * GEMM shapes in the same run, then top-k selection (bench_select.c). One
 * core: run with OPENBLAS_NUM_THREADS=1 (make bench does). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "err.h"
#include "model.h"
#include "bench_util.h"
#include "rng.h"
#include "sgd.h"

void bench_select(FILE *out);

#define RUNS 5


/* Median and spread (max-min)/median of RUNS timings. */
static double median_of(double *t, double *spread)
{
    qsort(t, RUNS, sizeof *t, cmp_double);
    *spread = (t[RUNS - 1] - t[0]) / t[RUNS / 2];
    return t[RUNS / 2];
}

/* One GEMM of a training step, per example: C (m x n) += A (m x k) B (k x n),
 * with n scaled by the batch for the batch-shaped operands. */
typedef struct { int m, n, k, trans_a, trans_b; } gemm_shape;

/* The GEMMs model.c runs for one batch: forward, weight gradient, and input
 * gradient of every learning layer but the first. Returns how many. */
static int training_gemms(const model_t *m, int batch, gemm_shape *g)
{
    int count = 0, first = 1;
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        if (l->kind == LAYER_DENSE) {
            int in = (int)l->in_size, out = (int)l->out_size;
            g[count++] = (gemm_shape){batch, out, in, 0, 1};      /* Y = X W^T */
            g[count++] = (gemm_shape){out, in, batch, 1, 0};      /* dW = dY^T X */
            if (!first)
                g[count++] = (gemm_shape){batch, in, out, 0, 0};  /* dX = dY W */
        } else if (l->kind == LAYER_CONV) {
            int K = l->in_c * l->k * l->k, N = batch * l->out_h * l->out_w;
            g[count++] = (gemm_shape){l->out_c, N, K, 0, 0};      /* Y = W col */
            g[count++] = (gemm_shape){l->out_c, K, N, 0, 1};      /* dW = dY col^T */
            if (!first)
                g[count++] = (gemm_shape){K, N, l->out_c, 1, 0};  /* dcol = W^T dY */
        } else {
            continue;
        }
        first = 0;
    }
    return count;
}

/* Floating-point operations of those GEMMs per example. */
static double train_flops(const model_t *m)
{
    gemm_shape g[3 * MODEL_MAX_LAYERS];
    int count = training_gemms(m, 1, g);
    double f = 0;
    for (int i = 0; i < count; i++)
        f += 2.0 * g[i].m * g[i].n * g[i].k;
    return f;
}

/* Seconds of the GEMMs one training batch needs, by cblas_sgemm alone on
 * the same shapes and layouts as model.c (the bound training can reach). */
static double sgemm_seconds_per_batch(const model_t *m, int batch)
{
    gemm_shape g[3 * MODEL_MAX_LAYERS];
    int count = training_gemms(m, batch, g);
    size_t most = 0;
    for (int i = 0; i < count; i++) {
        size_t s[3] = {(size_t)g[i].m * g[i].k, (size_t)g[i].k * g[i].n, (size_t)g[i].m * g[i].n};
        for (int j = 0; j < 3; j++)
            most = s[j] > most ? s[j] : most;
    }
    float *a = calloc(most, sizeof *a), *bb = calloc(most, sizeof *bb), *c = calloc(most, sizeof *c);
    for (size_t i = 0; i < most; i++) {
        a[i] = 0.001f * (float)(i % 97);
        bb[i] = 0.01f * (float)(i % 89);
    }
    double flops = 0;
    for (int i = 0; i < count; i++)
        flops += 2.0 * g[i].m * g[i].n * g[i].k;
    int reps = (int)(2e9 / flops) + 1; /* about two GFLOP per timing */
    double t[RUNS], spread;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        for (int k = 0; k < reps; k++)
            for (int i = 0; i < count; i++) {
                const gemm_shape *s = &g[i];
                cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans,
                            s->trans_b ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, a,
                            s->trans_a ? s->m : s->k, bb, s->trans_b ? s->k : s->n, 0.0f, c, s->n);
            }
        t[r] = (now_s() - t0) / reps;
    }
    free(a); free(bb); free(c);
    return median_of(t, &spread);
}

static void bench_training(FILE *out, const dataset_t *train, const char *name, const char *spec,
                           const int *batches, int nbatches, size_t samples)
{
    char err[ERR_LEN];
    model_t m;
    model_build(&m, spec, 28, 28, 10, err);
    float *w = malloc(m.num_params * sizeof *w);
    double flops = train_flops(&m);
    fprintf(out, "%s %s (%zu parameters), training on Fashion-MNIST, one core, median of %d\n",
            name, m.spec, m.num_params, RUNS);
    fprintf(out, "%6s %12s %9s %10s %12s %9s %8s\n", "batch", "samples/s", "GFLOP/s", "spread",
            "sgemm GF/s", "vs sgemm", "goal");
    for (int b = 0; b < nbatches; b++) {
        int batch = batches[b];
        int mlp = strcmp(name, "MLP") == 0;
        size_t count = batch == 1 && mlp ? samples / 3 : samples;
        uint32_t *order = malloc(count * sizeof *order);
        for (size_t i = 0; i < count; i++)
            order[i] = (uint32_t)i;
        model_ws *ws = model_ws_create(&m, batch);
        rng_t rng;
        rng_init(&rng, 1, 1);
        model_init_params(&m, w, &rng);
        double t[RUNS], spread;
        for (int r = 0; r < RUNS; r++) {
            sgd_stats stats;
            double t0 = now_s();
            sgd_epoch(&m, w, ws, train, order, count, batch, 0.01f, &rng, &stats);
            t[r] = now_s() - t0;
        }
        double sec = median_of(t, &spread);
        double rate = (double)count / sec, gflops = rate * flops / 1e9;
        double bound = flops * batch / sgemm_seconds_per_batch(&m, batch) / 1e9;
        const char *goal = !mlp ? ""
                         : batch == 128 ? (gflops >= 0.75 * bound ? ">=75% met" : ">=75% MISSED")
                         : batch == 1 ? (rate >= 20000 ? ">=20k/s met" : ">=20k/s MISSED") : "";
        fprintf(out, "%6d %12.0f %9.2f %9.1f%% %12.2f %8.0f%% %s\n", batch, rate, gflops,
                100 * spread, bound, 100 * gflops / bound, goal);
        free(order);
        model_ws_free(ws);
    }
    if (strcmp(name, "MLP") == 0)
        fprintf(out, "(batch 1 trains dense layers through sgemv/sger; its sgemm column is sgemm "
                     "called with M or K = 1 on the same shapes)\n");
    fprintf(out, "\n");
    free(w);
}

int main(void)
{
    char err[ERR_LEN];
    dataset_t train;
    if (dataset_load(dataset_default_dir("fashion-mnist"), 1, &train, err)) {
        fprintf(stdout, "training benchmarks skipped: %s\n", err);
    } else {
        bench_training(stdout, &train, "MLP", "mlp", (const int[]){1, 32, 128}, 3, 60000);
        bench_training(stdout, &train, "CNN", "cnn", (const int[]){1, 32}, 2, 3000);
        dataset_free(&train);
    }
    bench_select(stdout);
    return 0;
}
