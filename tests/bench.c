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
#include "rng.h"
#include "sgd.h"

void bench_select(FILE *out);

#define RUNS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and spread (max-min)/median of RUNS timings. */
static double median_of(double *t, double *spread)
{
    qsort(t, RUNS, sizeof *t, cmp_double);
    *spread = (t[RUNS - 1] - t[0]) / t[RUNS / 2];
    return t[RUNS / 2];
}

/* Floating-point operations of one training example: forward, the weight
 * gradient, and the input gradient of every dense layer but the first. */
static double train_flops(const model_t *m)
{
    double f = 0;
    int first = 1;
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        if (l->kind != LAYER_DENSE)
            continue;
        double mn = 2.0 * (double)l->in_size * (double)l->out_size;
        f += mn * (first ? 2 : 3);
        first = 0;
    }
    return f;
}

/* Seconds of the GEMMs one training batch needs, by cblas_sgemm alone on
 * the same shapes and layouts as model.c (the bound training can reach). */
static double sgemm_seconds_per_batch(const model_t *m, int batch)
{
    size_t widest = 0;
    for (int i = 0; i < m->num_layers; i++)
        if (m->layers[i].kind == LAYER_DENSE) {
            size_t s = m->layers[i].in_size * m->layers[i].out_size;
            widest = s > widest ? s : widest;
        }
    size_t act = (size_t)batch * 1024;
    float *w = calloc(widest, sizeof *w), *dw = calloc(widest, sizeof *dw);
    float *x = calloc(act, sizeof *x), *y = calloc(act, sizeof *y);
    for (size_t i = 0; i < widest; i++)
        w[i] = 0.001f * (float)(i % 97);
    for (size_t i = 0; i < act; i++)
        x[i] = 0.01f * (float)(i % 89);
    int reps = batch == 1 ? 2000 : 200;
    double t[RUNS], spread;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        for (int k = 0; k < reps; k++) {
            int first = 1;
            for (int i = 0; i < m->num_layers; i++) {
                const model_layer *l = &m->layers[i];
                if (l->kind != LAYER_DENSE)
                    continue;
                int in = (int)l->in_size, out = (int)l->out_size;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in,
                            w, in, 1.0f, y, out);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, -0.01f, y,
                            out, x, in, 1.0f, dw, in);
                if (!first)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f,
                                y, out, w, in, 0.0f, x, in);
                first = 0;
            }
        }
        t[r] = (now_s() - t0) / reps;
    }
    free(w); free(dw); free(x); free(y);
    return median_of(t, &spread);
}

static void bench_training(FILE *out)
{
    char err[ERR_LEN];
    dataset_t train;
    if (dataset_load(dataset_default_dir("fashion-mnist"), 1, &train, err)) {
        fprintf(out, "training benchmark skipped: %s\n", err);
        return;
    }
    model_t m;
    model_build(&m, "mlp", 28, 28, 10, err);
    float *w = malloc(m.num_params * sizeof *w);
    double flops = train_flops(&m);
    fprintf(out, "MLP %s (%zu parameters), training on Fashion-MNIST, one core, median of %d\n",
            m.spec, m.num_params, RUNS);
    fprintf(out, "%6s %12s %9s %10s %12s %9s %8s\n", "batch", "samples/s", "GFLOP/s", "spread",
            "sgemm GF/s", "vs sgemm", "goal");
    const int batches[] = {1, 32, 128};
    for (int b = 0; b < 3; b++) {
        int batch = batches[b];
        size_t count = batch == 1 ? 20000 : 60000;
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
            sgd_epoch(&m, w, ws, &train, order, count, batch, 0.01f, &rng, &stats);
            t[r] = now_s() - t0;
        }
        double sec = median_of(t, &spread);
        double rate = (double)count / sec, gflops = rate * flops / 1e9;
        double bound = flops * batch / sgemm_seconds_per_batch(&m, batch) / 1e9;
        const char *goal = batch == 128 ? (gflops >= 0.75 * bound ? ">=75% met" : ">=75% MISSED")
                         : batch == 1 ? (rate >= 20000 ? ">=20k/s met" : ">=20k/s MISSED") : "";
        fprintf(out, "%6d %12.0f %9.2f %9.1f%% %12.2f %8.0f%% %s\n", batch, rate, gflops,
                100 * spread, bound, 100 * gflops / bound, goal);
        free(order);
        model_ws_free(ws);
    }
    fprintf(out, "(batch 1 trains through sgemv/sger; its sgemm column is sgemm called with "
                 "M or K = 1 on the same shapes)\n\n");
    free(w);
    dataset_free(&train);
}

int main(void)
{
    bench_training(stdout);
    bench_select(stdout);
    return 0;
}
