/* bench_select: figure 2, exact top-k (select_largest_abs) against a full
 * sort of the same array and against one streaming pass over it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "rng.h"
#include "select.h"

void bench_select(const bench_out *o);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The independent reference: qsort of every entry by |x| descending, index
 * ascending (one u64 key each: the complement of |x|'s bits, which order as
 * unsigned integers for non-negative floats, above the index), then qsort of
 * the first k indices. The same answer top-k must give (no NaN in x). */
static void sort_top_k(const float *x, size_t n, size_t k, uint64_t *key, uint32_t *out)
{
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        uint32_t bits;
        memcpy(&bits, &a, sizeof bits);
        key[i] = (uint64_t)~bits << 32 | (uint64_t)i;
    }
    qsort(key, n, sizeof *key, cmp_u64);
    for (size_t i = 0; i < k; i++)
        out[i] = (uint32_t)key[i];
    qsort(out, k, sizeof *out, cmp_u32);
}

/* Eight accumulators, so the pass is limited by memory rather than by the
 * latency of one chain of additions: a fair floor for any O(n) pass. */
static float stream_abs_sum(const float *x, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += fabsf(x[i + (size_t)j]);
    for (; i < n; i++)
        acc[0] += fabsf(x[i]);
    float s = 0;
    for (int j = 0; j < 8; j++)
        s += acc[j];
    return s;
}

/* Figure 2: milliseconds per call on N(0,1) floats, n = 1e5, 1e6, 1e7 and
 * k = 0.1%, 1%, 10% of n. Each repeat times the stream, top-k and the sort
 * in turn, after one untimed call of each of the first two; top-k and stream
 * loop over the array enough times (10^7 / n, at least 4) to last about 10 ms
 * (per-call time reported). */
void bench_select(const bench_out *o)
{
    static const size_t sizes[] = {100000, 1000000, 10000000};
    static const double thetas[] = {0.001, 0.01, 0.1};
    const size_t max_n = sizes[sizeof sizes / sizeof sizes[0] - 1];
    float *x = bench_malloc(max_n * sizeof *x);
    uint32_t *topk = bench_malloc(max_n * sizeof *topk);
    uint32_t *sorted = bench_malloc(max_n * sizeof *sorted);
    uint64_t *key = bench_malloc(max_n * sizeof *key);
    /* Touched now, so no timing pays for first-touch page faults. */
    memset(topk, 0, max_n * sizeof *topk);
    memset(sorted, 0, max_n * sizeof *sorted);
    memset(key, 0, max_n * sizeof *key);
    select_ws *ws = select_ws_create(max_n);
    if (!ws) {
        fprintf(stderr, "bench_select: out of memory\n");
        exit(1);
    }
    rng_t rng;
    rng_init(&rng, 42, 1);
    for (size_t i = 0; i < max_n; i++)
        x[i] = (float)rng_normal(&rng);

    volatile float sink = 0;
    int mismatches = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        int reps = n >= 2500000 ? 4 : (int)(10000000 / n);
        for (size_t ti = 0; ti < sizeof thetas / sizeof thetas[0]; ti++) {
            size_t k = select_count(thetas[ti], n);
            double t_topk[BENCH_REPEATS], t_sort[BENCH_REPEATS], t_stream[BENCH_REPEATS];
            sink += stream_abs_sum(x, n); /* warm-up, untimed */
            select_largest_abs(x, n, k, topk, ws);
            for (int r = 0; r < BENCH_REPEATS; r++) {
                double t0 = now_s();
                for (int i = 0; i < reps; i++)
                    sink += stream_abs_sum(x, n);
                t_stream[r] = 1e3 * (now_s() - t0) / reps;
                t0 = now_s();
                for (int i = 0; i < reps; i++)
                    select_largest_abs(x, n, k, topk, ws);
                t_topk[r] = 1e3 * (now_s() - t0) / reps;
                t0 = now_s();
                sort_top_k(x, n, k, key, sorted);
                t_sort[r] = 1e3 * (now_s() - t0);
            }
            int valid = memcmp(topk, sorted, k * sizeof *topk) == 0;
            mismatches += !valid;
            bench_row row = {.figure = "topk", .unit = "ms",
                             .reference = "stream sum|x|", .target = "ratio<=4"};
            snprintf(row.config, sizeof row.config, "n=%.0e k=%g%%%s", (double)n,
                     100 * thetas[ti], valid ? "" : " MISMATCH");
            row.fig = bench_summarize(t_topk, BENCH_REPEATS);
            row.ref = bench_summarize(t_stream, BENCH_REPEATS);
            bench_emit(o, &row);
            row.reference = "qsort by |x|";
            row.target = "";
            row.ref = bench_summarize(t_sort, BENCH_REPEATS);
            bench_emit(o, &row);
        }
    }
    if (mismatches)
        printf("       # WARNING: top-k disagreed with the sort in %d configurations\n",
               mismatches);
    else
        printf("       # top-k agreed with the sort in every configuration (Valid)\n");
    (void)sink;
    select_ws_free(ws);
    free(key);
    free(sorted);
    free(topk);
    free(x);
}
