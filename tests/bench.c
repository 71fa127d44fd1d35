/* bench: every figure of `make bench` next to a reference measured in the
 * same run. This file: training throughput against OpenBLAS alone on the same
 * calls and shapes; the driver (bench-run.sh) also runs bench-epochs.sh.
 * One core: run with OPENBLAS_NUM_THREADS=1 (make bench does). */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "dataset.h"
#include "dpsgd.h"
#include "err.h"
#include "model.h"
#include "rdp.h"
#include "rng.h"
#include "sgd.h"

void bench_select(const bench_out *o);
void bench_apply(const bench_out *o);
void bench_wire_bytes(const bench_out *o);

/* Seconds each reference timing lasts at least (many calls in a loop). */
#define REF_MIN_S 0.15

/* One BLAS call of a training step: sgemm C (m x n) = op(A) (m x k) op(B)
 * (k x n); sgemv y (m) = A (m x n) x or A^T x; sger A (m x n) += x y^T. */
typedef enum { OP_GEMM, OP_GEMV_N, OP_GEMV_T, OP_GER } blas_kind;
typedef struct {
    blas_kind kind;
    int m, n, k, trans_a, trans_b;
    float *a, *b, *c; /* the call's own operands */
} blas_op;

static double op_flops(const blas_op *op)
{
    return op->kind == OP_GEMM ? 2.0 * op->m * op->n * op->k : 2.0 * op->m * op->n;
}

/* The BLAS calls model.c makes for one batch, in its layouts: per learning
 * layer the forward, the weight gradient and (all but the first) the input
 * gradient. Dense layers at batch 1 go through sgemv/sger, as in model.c.
 * Convolutions are one sgemm over the whole batch (N = batch x output
 * pixels): the un-tiled products. model.c makes the same products tile by
 * tile (conv_tile: one example a GEMM in the CNN's first convolution, 16 in
 * its second), so from batch 2 up the reference is the same FLOPs in the
 * shapes of an un-tiled model, which leave the caches as the batch grows;
 * at batch 1 the shapes are the model's own. */
static int training_ops(const model_t *m, int batch, blas_op *g)
{
    int count = 0, first = 1;
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        if (l->kind == LAYER_DENSE) {
            int in = (int)l->in_size, out = (int)l->out_size;
            if (batch == 1) {
                g[count++] = (blas_op){OP_GEMV_N, out, in, 0, 0, 0, 0, 0, 0};     /* y = W x */
                g[count++] = (blas_op){OP_GER, out, in, 0, 0, 0, 0, 0, 0};        /* W += a dy x^T */
                if (!first)
                    g[count++] = (blas_op){OP_GEMV_T, out, in, 0, 0, 0, 0, 0, 0}; /* dx = W^T dy */
            } else {
                g[count++] = (blas_op){OP_GEMM, batch, out, in, 0, 1, 0, 0, 0};   /* Y = X W^T */
                g[count++] = (blas_op){OP_GEMM, out, in, batch, 1, 0, 0, 0, 0};   /* dW = dY^T X */
                if (!first)
                    g[count++] = (blas_op){OP_GEMM, batch, in, out, 0, 0, 0, 0, 0}; /* dX = dY W */
            }
        } else if (l->kind == LAYER_CONV) {
            int K = l->in_c * l->k * l->k, N = batch * l->out_h * l->out_w;
            g[count++] = (blas_op){OP_GEMM, l->out_c, N, K, 0, 0, 0, 0, 0};       /* Y = W col */
            g[count++] = (blas_op){OP_GEMM, l->out_c, K, N, 0, 1, 0, 0, 0};       /* dW = dY col^T */
            if (!first)
                g[count++] = (blas_op){OP_GEMM, K, N, l->out_c, 1, 0, 0, 0, 0};   /* dcol = W^T dY */
        } else {
            continue;
        }
        first = 0;
    }
    return count;
}

static float *filled(size_t len, float scale)
{
    float *p = bench_malloc(len * sizeof *p);
    for (size_t i = 0; i < len; i++)
        p[i] = scale * (float)((int)(i % 97) - 48);
    return p;
}

static void run_op(const blas_op *s)
{
    switch (s->kind) {
    case OP_GEMM:
        cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans,
                    s->trans_b ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, s->a,
                    s->trans_a ? s->m : s->k, s->b, s->trans_b ? s->k : s->n, 0.0f, s->c, s->n);
        break;
    case OP_GEMV_N:
        cblas_sgemv(CblasRowMajor, CblasNoTrans, s->m, s->n, 1.0f, s->a, s->n, s->b, 1, 0.0f,
                    s->c, 1);
        break;
    case OP_GEMV_T:
        cblas_sgemv(CblasRowMajor, CblasTrans, s->m, s->n, 1.0f, s->a, s->n, s->b, 1, 0.0f, s->c,
                    1);
        break;
    case OP_GER: /* accumulates, as the model's update does; tiny steps stay finite */
        cblas_sger(CblasRowMajor, s->m, s->n, -1e-6f, s->b, 1, s->c, 1, s->a, s->n);
        break;
    }
}

/* Gives every op its own operands (as the model's layers have their own
 * weights and activations), sized for the op. */
static void alloc_ops(blas_op *g, int count)
{
    for (int i = 0; i < count; i++) {
        blas_op *s = &g[i];
        size_t a, b, c;
        if (s->kind == OP_GEMM) {
            a = (size_t)s->m * s->k;
            b = (size_t)s->k * s->n;
            c = (size_t)s->m * s->n;
        } else { /* a: the matrix; b, c: vectors of either length */
            a = (size_t)s->m * s->n;
            b = c = (size_t)(s->m > s->n ? s->m : s->n);
        }
        s->a = filled(a, 1e-3f);
        s->b = filled(b, 1e-2f);
        s->c = filled(c, 1e-2f);
    }
}

static void free_ops(blas_op *g, int count)
{
    for (int i = 0; i < count; i++) {
        free(g[i].a);
        free(g[i].b);
        free(g[i].c);
    }
}

/* Seconds per batch of the BLAS calls alone: as many batches as fit in
 * REF_MIN_S, one timing. */
static double blas_seconds_per_batch(const blas_op *g, int count)
{
    long reps = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < count; i++)
            run_op(&g[i]);
        reps++;
    } while ((t = now_s() - t0) < REF_MIN_S);
    return t / (double)reps;
}

/* Figure 1: samples/s of sgd_epoch, each repeat one epoch over `samples`
 * examples, interleaved with a timing of the reference (the same BLAS calls
 * alone), so load from outside hits both alike. */
static void bench_training(const bench_out *o, const dataset_t *train, const char *spec,
                           const int *batches, int nbatches, const size_t *samples)
{
    char err[ERR_LEN];
    model_t m;
    if (model_build(&m, spec, 1, 28, 28, 10, err)) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    float *w = bench_malloc(m.num_params * sizeof *w);
    int mlp = strcmp(spec, "mlp") == 0;
    for (int bi = 0; bi < nbatches; bi++) {
        int batch = batches[bi];
        size_t count = samples[bi];
        blas_op g[3 * MODEL_MAX_LAYERS];
        int nops = training_ops(&m, batch, g);
        double flops = 0; /* per sample */
        for (int i = 0; i < nops; i++)
            flops += op_flops(&g[i]) / batch;
        alloc_ops(g, nops);

        uint32_t *order = bench_malloc(count * sizeof *order);
        for (size_t i = 0; i < count; i++)
            order[i] = (uint32_t)i;
        model_ws *ws = model_ws_create(&m, batch);
        rng_t rng;
        rng_init(&rng, 1, 1);
        model_init_params(&m, w, &rng);
        double t[BENCH_REPEATS], ref[BENCH_REPEATS];
        for (int r = 0; r < BENCH_REPEATS; r++) {
            sgd_stats stats;
            double t0 = now_s();
            sgd_epoch(&m, w, ws, train, order, count, batch, 0.01f, &rng, &stats);
            t[r] = now_s() - t0;
            ref[r] = blas_seconds_per_batch(g, nops);
        }
        bench_row row = {.figure = "train", .unit = "samples/s",
                         .reference = batch == 1 && mlp ? "sgemv/sger same shapes"
                                    : batch == 1        ? "sgemm+sgemv/sger same"
                                                        : "sgemm same shapes",
                         .target = ""};
        snprintf(row.config, sizeof row.config, "%s batch=%d", spec, batch);
        row.fig = bench_rate(t, BENCH_REPEATS, (double)count);
        row.ref = bench_rate(ref, BENCH_REPEATS, (double)batch);
        if (mlp && batch == 128)
            row.target = "ratio>=0.75";
        else if (mlp && batch == 1)
            row.target = "median>=20000";
        else if (!mlp)
            row.target = "ratio>=0.8"; /* issue 18, at every batch */
        bench_emit(o, &row);
        printf("       # %.3g MFLOP/sample in BLAS calls: %.1f GFLOP/s trained, %.1f GFLOP/s "
               "BLAS alone\n", flops / 1e6, row.fig.median * flops / 1e9,
               row.ref.median * flops / 1e9);
        free(order);
        model_ws_free(ws);
        free_ops(g, nops);
    }
    free(w);
}

/* Figure 6: DP-SGD steps/s of the MLP at an expected batch of 32 (Poisson
 * sampling from a 600-record shard, sigma 1, C 1: noise on every one of
 * its parameters), against plain mini-batch steps of 32 over the same
 * records, interleaved repeat by repeat. Then the accountant: the cost of
 * epsilon after 10^5 steps (one rdp_run_epsilon), against one DP-SGD step. */
static void bench_dpsgd(const bench_out *o, const dataset_t *train)
{
    char err[ERR_LEN];
    model_t m;
    if (model_build(&m, "mlp", 1, 28, 28, 10, err)) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    enum { SHARD = 600, BATCH = 32, STEPS = 300 };
    float *w = bench_malloc(m.num_params * sizeof *w);
    uint32_t records[SHARD], order[SHARD], batch_buf[SHARD];
    for (uint32_t i = 0; i < SHARD; i++)
        records[i] = i;
    model_ws *ws = model_ws_create(&m, BATCH);
    dpsgd_ws *dw = dpsgd_ws_create(&m, BATCH);
    if (!ws || !dw) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    rng_t rng;
    rng_init(&rng, 1, 1);
    model_init_params(&m, w, &rng);
    dpsgd_params p = {.q = (double)BATCH / SHARD, .batch = BATCH, .clip = 1.0f, .noise = 1.0,
                      .lr = 0.01f};
    double t[BENCH_REPEATS], ref[BENCH_REPEATS];
    for (int r = 0; r < BENCH_REPEATS; r++) {
        sgd_stats stats;
        double t0 = now_s();
        dpsgd_train(&m, w, ws, dw, train, records, SHARD, STEPS, &p, &rng, batch_buf, &stats);
        t[r] = now_s() - t0;
        t0 = now_s();
        for (int step = 0; step < STEPS; step++) {
            if (step % (SHARD / BATCH) == 0) { /* a fresh epoch's order */
                memcpy(order, records, sizeof order);
                rng_shuffle_u32(&rng, order, SHARD);
            }
            sgd_batches(&m, w, ws, train, order + (size_t)(step % (SHARD / BATCH)) * BATCH,
                        BATCH, BATCH, 0.01f, &stats);
        }
        ref[r] = now_s() - t0;
    }
    bench_row row = {.figure = "dpsgd", .config = "mlp batch=32 (expected) sigma=1",
                     .unit = "steps/s", .reference = "plain step batch 32",
                     .target = "ratio>=0.4"};
    row.fig = bench_rate(t, BENCH_REPEATS, STEPS);
    row.ref = bench_rate(ref, BENCH_REPEATS, STEPS);
    bench_emit(o, &row);
    double acct[BENCH_REPEATS];
    for (int r = 0; r < BENCH_REPEATS; r++) {
        double eps, order_used, t0 = now_s();
        if (rdp_run_epsilon(p.q, 1.0, 100000, 1e-5, &eps, &order_used, err)) {
            fprintf(stderr, "bench: %s\n", err);
            exit(1);
        }
        acct[r] = now_s() - t0;
    }
    bench_row arow = {.figure = "dpsgd", .config = "accountant: epsilon of 1e5 steps",
                      .unit = "accounts/s", .reference = "one DP-SGD step", .target = ""};
    arow.fig = bench_rate(acct, BENCH_REPEATS, 1);
    arow.ref = bench_rate(t, BENCH_REPEATS, STEPS);
    bench_emit(o, &arow);
    dpsgd_ws_free(dw);
    model_ws_free(ws);
    free(w);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench [--csv FILE] [--date D] [--host H] [--only FIGURES]\n"
               "  --csv FILE   append rows to FILE (no header; bench-run.sh writes it)\n"
               "  --date D     value of the date column      [today]\n"
               "  --host H     value of the host_cpu column  [unknown]\n"
               "  --only F     comma-separated subset of train,topk,apply,wire,dpsgd  [all];\n"
               "               cnn: the CNN's training rows alone (train has both models)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"csv", required_argument, 0, 'c'}, {"date", required_argument, 0, 'd'},
        {"host", required_argument, 0, 'h'}, {"only", required_argument, 0, 'o'},
        {"help", no_argument, 0, '?'},      {0, 0, 0, 0}};
    const char *csv = NULL, *only = "train,topk,apply,wire,dpsgd", *host = "unknown";
    char today[16];
    time_t now = time(NULL);
    strftime(today, sizeof today, "%Y-%m-%d", localtime(&now));
    const char *date = today;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': csv = optarg; break;
        case 'd': date = optarg; break;
        case 'h': host = optarg; break;
        case 'o': only = optarg; break;
        default: usage(c == '?' ? stdout : stderr); return c == '?' ? 0 : 2;
        }
    }
    bench_out o = {NULL, date, host};
    if (csv && !(o.csv = fopen(csv, "a"))) {
        perror(csv);
        return 1;
    }

    bench_table_head();
    int cnn = strstr(only, "train") || strstr(only, "cnn");
    if (cnn || strstr(only, "dpsgd")) {
        char err[ERR_LEN];
        dataset_t train;
        if (dataset_load(dataset_default_dir("fashion-mnist"), 1, &train, err)) {
            fprintf(stderr, "bench: training figures need Fashion-MNIST: %s\n", err);
            return 1;
        }
        /* About 0.3 s (MLP) and 0.5-1 s (CNN) per repeat on the reference machine. */
        if (strstr(only, "train"))
            bench_training(&o, &train, "mlp", (const int[]){1, 32, 128}, 3,
                           (const size_t[]){20000, 60000, 60000});
        if (cnn)
            bench_training(&o, &train, "cnn", (const int[]){1, 32, 128}, 3,
                           (const size_t[]){2000, 2048, 2048});
        if (strstr(only, "dpsgd"))
            bench_dpsgd(&o, &train);
        dataset_free(&train);
    }
    if (strstr(only, "topk"))
        bench_select(&o);
    if (strstr(only, "apply"))
        bench_apply(&o);
    if (strstr(only, "wire"))
        bench_wire_bytes(&o);
    if (o.csv)
        fclose(o.csv);
    return 0;
}
