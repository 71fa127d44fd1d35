/* bench_select: exact top-k (select_largest_abs) against a full sort and
 * against one streaming pass over the same array (the floor for any O(n)). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "rng.h"
#include "select.h"

void bench_select(FILE *out);

#define BENCH_RUNS 5
/* A reference sort slower than this runs once instead of BENCH_RUNS times. */
#define SLOW_SORT_S 1.0


static double median(double *t, int runs)
{
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    return t[runs / 2];
}

/* qsort has no context argument: the array being sorted. */
static const float *sort_keys;

/* |x| descending, index ascending: the order top-k must agree with. */
static int cmp_by_magnitude(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float xi = fabsf(sort_keys[i]), xj = fabsf(sort_keys[j]);
    if (xi != xj)
        return xi < xj ? 1 : -1;
    return (i > j) - (i < j);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Eight accumulators, so the pass is limited by memory rather than by the
 * latency of one chain of additions: a fair floor. */
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

void bench_select(FILE *out)
{
    static const size_t sizes[] = {100000, 1000000, 10000000};
    static const double thetas[] = {0.01, 0.1};
    const size_t max_n = sizes[sizeof sizes / sizeof sizes[0] - 1];
    float *x = malloc(max_n * sizeof *x);
    uint32_t *topk = malloc(max_n * sizeof *topk);
    uint32_t *order = malloc(max_n * sizeof *order);
    select_ws *ws = select_ws_create(max_n);
    if (!x || !topk || !order || !ws) {
        fprintf(out, "bench_select: out of memory\n");
        goto done;
    }
    rng_t rng;
    rng_init(&rng, 42, 1);
    for (size_t i = 0; i < max_n; i++)
        x[i] = (float)rng_normal(&rng);

    fprintf(out, "select_largest_abs on N(0,1) floats, median of %d runs (ms); sort = qsort of\n"
                 "all indices by magnitude, then of the first k; stream = sum of |x|\n",
            BENCH_RUNS);
    fprintf(out, "%10s %6s %10s %10s %10s %12s %12s %s\n", "n", "theta", "topk_ms", "sort_ms",
            "stream_ms", "topk/stream", "sort/topk", "check");
    volatile float sink = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        for (size_t ti = 0; ti < sizeof thetas / sizeof thetas[0]; ti++) {
            size_t k = select_count(thetas[ti], n);
            double t_topk[BENCH_RUNS], t_sort[BENCH_RUNS], t_stream[BENCH_RUNS];
            for (int r = 0; r < BENCH_RUNS; r++) {
                double t0 = now_s();
                sink += stream_abs_sum(x, n);
                t_stream[r] = now_s() - t0;
            }
            for (int r = 0; r < BENCH_RUNS; r++) {
                double t0 = now_s();
                select_largest_abs(x, n, k, topk, ws);
                t_topk[r] = now_s() - t0;
            }
            int sort_runs = 0;
            for (; sort_runs < BENCH_RUNS; sort_runs++) {
                double t0 = now_s();
                for (size_t i = 0; i < n; i++)
                    order[i] = (uint32_t)i;
                sort_keys = x;
                qsort(order, n, sizeof *order, cmp_by_magnitude);
                qsort(order, k, sizeof *order, cmp_u32);
                t_sort[sort_runs] = now_s() - t0;
                if (t_sort[sort_runs] > SLOW_SORT_S) {
                    sort_runs++;
                    break;
                }
            }
            double ms_topk = 1e3 * median(t_topk, BENCH_RUNS);
            double ms_sort = 1e3 * median(t_sort, sort_runs);
            double ms_stream = 1e3 * median(t_stream, BENCH_RUNS);
            int valid = memcmp(topk, order, k * sizeof *topk) == 0;
            fprintf(out, "%10zu %6.2f %10.3f %10.3f%s %10.3f %12.2f %12.1f %s\n", n, thetas[ti],
                    ms_topk, ms_sort, sort_runs < BENCH_RUNS ? "*" : " ", ms_stream,
                    ms_topk / ms_stream, ms_sort / ms_topk, valid ? "(Valid)" : "MISMATCH");
        }
    }
    fprintf(out, "* sort timed once (slower than %.1f s)\n", SLOW_SORT_S);
    (void)sink;
done:
    select_ws_free(ws);
    free(order);
    free(topk);
    free(x);
}

#ifdef BENCH_SELECT_MAIN
int main(void)
{
    bench_select(stdout);
    return 0;
}
#endif
