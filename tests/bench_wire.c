/* bench_wire: figure 3, the server applying packed uploads against plain
 * passes over the same entries, and figure 4, bytes on the wire against the
 * dense vector. Only the stable API: wire_pack, wire_size, server_*. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "rng.h"
#include "select.h"
#include "server.h"
#include "wire.h"

void bench_apply(const bench_out *o);
void bench_wire_bytes(const bench_out *o);

/* Parameters of the paper's MLP (784-128-64-10), the model DSSGD trains. */
#define MLP_PARAMS 101770
/* Entries each apply timing covers at least (many applies in a loop). */
#define APPLY_ENTRIES 20000000.0

/* An upload of k uniformly random distinct indices (ascending) with small
 * N(0, 0.01^2) values, packed as a participant would. Returns its length. */
static size_t make_upload(size_t n, size_t k, rng_t *rng, uint32_t *idx, float *val,
                          uint8_t **buf)
{
    k = select_random(n, k, rng, idx);
    for (size_t i = 0; i < k; i++)
        val[i] = 0.01f * (float)rng_normal(rng);
    wire_header h = {.magic = WIRE_MAGIC, .version = WIRE_VERSION, .type = WIRE_UPLOAD,
                     .participant = 3, .epoch = 7, .n = (uint32_t)n, .count = (uint32_t)k};
    size_t cap = wire_size(k);
    *buf = bench_malloc(cap);
    size_t len = wire_pack(*buf, cap, &h, idx, val);
    if (len == 0) {
        fprintf(stderr, "bench_wire: wire_pack refused %zu entries in %zu bytes\n", k, cap);
        exit(1);
    }
    return len;
}

/* The encoding wire_pack chose, where the format has several (version 2
 * on); "" for version 1, which has one. */
static const char *packed_encoding(const uint8_t *msg, size_t len)
{
#if WIRE_VERSION >= 2
    return wire_encoding_name(wire_message_encoding(msg, len));
#else
    (void)msg;
    (void)len;
    return "";
#endif
}

/* The sequential floor: every 32-bit word of the message read once. */
static uint32_t read_words(const uint8_t *msg, size_t len)
{
    uint32_t acc[8] = {0};
    size_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int j = 0; j < 8; j++) {
            uint32_t v;
            memcpy(&v, msg + i + 4 * (size_t)j, sizeof v);
            acc[j] += v;
        }
    for (; i < len; i++)
        acc[0] += msg[i];
    uint32_t s = 0;
    for (int j = 0; j < 8; j++)
        s += acc[j];
    return s;
}

/* Figure 3: entries/s that server_apply_upload adds (validation, decoding,
 * w[j] += v and the update counter), against w[idx[i]] += val[i] over the
 * decoded arrays and a sequential read of the message. Each repeat times
 * the three in turn on the same upload, after an untimed warm-up. */
void bench_apply(const bench_out *o)
{
    static const size_t sizes[] = {MLP_PARAMS, 10000000};
    static const double thetas[] = {0.01, 0.1};
    volatile uint32_t sink = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        uint32_t *idx = bench_malloc(n * sizeof *idx);
        float *val = bench_malloc(n * sizeof *val);
        float *w = calloc(n, sizeof *w);
        float *init = calloc(n, sizeof *init);
        if (!w || !init) {
            fprintf(stderr, "bench_wire: out of memory\n");
            exit(1);
        }
        for (size_t ti = 0; ti < sizeof thetas / sizeof thetas[0]; ti++) {
            size_t k = select_count(thetas[ti], n);
            rng_t rng;
            rng_init(&rng, 7, ti + 1);
            uint8_t *msg;
            size_t len = make_upload(n, k, &rng, idx, val, &msg);
            server_opts so = {.n = n, .k_up = k, .k_down = k, .gamma = INFINITY,
                              .download = DOWNLOAD_STAT, .stat_decay = 1.0, .seed = 1};
            server_t *s = server_create(&so, init);
            if (!s) {
                fprintf(stderr, "bench_wire: server_create failed (n = %zu)\n", n);
                exit(1);
            }
            long reps = (long)(APPLY_ENTRIES / (double)k) + 1;
            /* Warm-up, untimed: first touches of w, stat and the scratch. */
            server_apply_upload(s, msg, len, 3, 7);
            for (size_t j = 0; j < k; j++)
                w[idx[j]] += val[j];
            double t_apply[BENCH_REPEATS], t_scatter[BENCH_REPEATS], t_read[BENCH_REPEATS];
            for (int r = 0; r < BENCH_REPEATS; r++) {
                double t0 = now_s();
                for (long i = 0; i < reps; i++) {
                    wire_reason why = server_apply_upload(s, msg, len, 3, 7);
                    if (why != WIRE_OK) {
                        fprintf(stderr, "bench_wire: the server refused the upload: %s\n",
                                wire_reason_name(why));
                        exit(1);
                    }
                }
                t_apply[r] = now_s() - t0;
                t0 = now_s();
                for (long i = 0; i < reps; i++)
                    for (size_t j = 0; j < k; j++)
                        w[idx[j]] += val[j];
                t_scatter[r] = now_s() - t0;
                t0 = now_s();
                for (long i = 0; i < reps; i++)
                    sink += read_words(msg, len);
                t_read[r] = now_s() - t0;
            }
            sink += (uint32_t)w[idx[k / 2]];
            double entries = (double)k * (double)reps;
            bench_row row = {.figure = "apply", .unit = "entries/s",
                             .reference = "w[idx[i]]+=val[i]", .target = ""};
            snprintf(row.config, sizeof row.config, "n=%zu theta=%g", n, thetas[ti]);
            row.fig = bench_rate(t_apply, BENCH_REPEATS, entries);
            row.ref = bench_rate(t_scatter, BENCH_REPEATS, entries);
            bench_emit(o, &row);
            row.reference = "read message bytes";
            row.ref = bench_rate(t_read, BENCH_REPEATS, entries);
            bench_emit(o, &row);
            const char *enc = packed_encoding(msg, len);
            printf("       # %zu entries in %zu bytes per upload%s%s, %ld uploads per timing\n",
                   k, len, *enc ? ", " : "", enc, reps);
            server_free(s);
            free(msg);
        }
        free(init);
        free(w);
        free(val);
        free(idx);
    }
    (void)sink;
}

/* Figure 4: bytes of an upload from wire_pack for k = ceil(theta n) entries
 * of the MLP, over BENCH_REPEATS draws of the indices, against the dense
 * vector (4 n bytes). The config names the encoding wire_pack chose. */
void bench_wire_bytes(const bench_out *o)
{
    static const double thetas[] = {0.001, 0.01, 0.1, 0.5, 1.0};
    const size_t n = MLP_PARAMS;
    uint32_t *idx = bench_malloc(n * sizeof *idx);
    float *val = bench_malloc(n * sizeof *val);
    const double dense = 4.0 * (double)n;
    for (size_t ti = 0; ti < sizeof thetas / sizeof thetas[0]; ti++) {
        size_t k = select_count(thetas[ti], n);
        double bytes[BENCH_REPEATS], per_entry[BENCH_REPEATS];
        const char *enc = NULL;
        for (int r = 0; r < BENCH_REPEATS; r++) {
            rng_t rng;
            rng_init(&rng, 11, (uint64_t)r + 1);
            uint8_t *msg;
            size_t len = make_upload(n, k, &rng, idx, val, &msg);
            const char *e = packed_encoding(msg, len);
            enc = !enc || strcmp(enc, e) == 0 ? e : "mixed";
            free(msg);
            bytes[r] = (double)len;
            per_entry[r] = (double)len / (double)k;
        }
        double d[1] = {dense}, dpe[1] = {dense / (double)k};
        bench_row row = {.figure = "wire", .unit = "bytes", .reference = "dense 4n bytes",
                         .target = "ratio<1"};
        snprintf(row.config, sizeof row.config, "n=%zu theta=%g k=%zu%s%s", n, thetas[ti], k,
                 *enc ? " " : "", enc);
        row.fig = bench_summarize(bytes, BENCH_REPEATS);
        row.ref = bench_summarize(d, 1);
        bench_emit(o, &row);
        row.unit = "bytes/entry";
        row.reference = "dense 4n/k";
        row.target = thetas[ti] == 0.01 ? "median<=5.5" : "";
        row.fig = bench_summarize(per_entry, BENCH_REPEATS);
        row.ref = bench_summarize(dpe, 1);
        bench_emit(o, &row);
    }
    free(val);
    free(idx);
}
