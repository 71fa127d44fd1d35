/* bench_util: the one clock, the statistics of repeated timings and the CSV
 * row shared by the benchmarks (bench.c, bench_select.c, bench_wire.c). */
#ifndef DSSGD_BENCH_UTIL_H
#define DSSGD_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Repeats of every figure and of its reference (the median of these). */
#define BENCH_REPEATS 5

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* malloc that ends the benchmark with file:line when memory runs out. */
static inline void *bench_malloc_at(size_t size, const char *file, int line)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes) at %s:%d\n", size, file, line);
        exit(1);
    }
    return p;
}
#define bench_malloc(size) bench_malloc_at((size), __FILE__, __LINE__)

/* qsort comparator for timings. */
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of `repeats` measurements (of any unit). */
typedef struct {
    double median, min, max;
    int repeats;
} bench_stats;

/* Sorts v in place. An even count takes the mean of the middle two. */
static inline bench_stats bench_summarize(double *v, int repeats)
{
    qsort(v, (size_t)repeats, sizeof *v, cmp_double);
    double med = repeats % 2 ? v[repeats / 2] : 0.5 * (v[repeats / 2 - 1] + v[repeats / 2]);
    return (bench_stats){med, v[0], v[repeats - 1], repeats};
}

/* Stats of rate = work / time, from timings (the median of rates is work
 * over the median time for an odd count; min rate from the max time). */
static inline bench_stats bench_rate(double *seconds, int repeats, double work)
{
    double r[64];
    for (int i = 0; i < repeats && i < 64; i++)
        r[i] = work / seconds[i];
    return bench_summarize(r, repeats < 64 ? repeats : 64);
}

/* (max - min) / median: the spread printed next to every figure. */
static inline double bench_spread(bench_stats s)
{
    return s.median != 0 ? (s.max - s.min) / s.median : 0;
}

/* Where rows go: csv may be NULL (table on stdout only). */
typedef struct {
    FILE *csv;
    const char *date;
    const char *host;
} bench_out;

/* One figure next to its reference, measured in the same run.
 * ratio = fig.median / ref.median in every row. target: "" or a condition on
 * the ratio or the median ("ratio>=0.75", "median<=5.5"); meets: -1 when there
 * is no target. */
typedef struct {
    const char *figure;
    char config[64];
    const char *unit;
    bench_stats fig;
    const char *reference;
    bench_stats ref;
    const char *target;
    int meets;
} bench_row;

static inline double bench_load1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* Evaluates "ratio>=X", "ratio<=X", "ratio<X", "median>=X", "median<=X" on
 * the row; -1 for an empty or unknown target. */
static inline int bench_meets(const bench_row *r)
{
    const char *t = r->target;
    if (!t || !*t)
        return -1;
    double ratio = r->fig.median / r->ref.median, lhs;
    if (strncmp(t, "ratio", 5) == 0) {
        lhs = ratio;
        t += 5;
    } else if (strncmp(t, "median", 6) == 0) {
        lhs = r->fig.median;
        t += 6;
    } else {
        return -1;
    }
    if (t[0] == '>' && t[1] == '=')
        return lhs >= atof(t + 2);
    if (t[0] == '<' && t[1] == '=')
        return lhs <= atof(t + 2);
    if (t[0] == '<')
        return lhs < atof(t + 1);
    if (t[0] == '>')
        return lhs > atof(t + 1);
    return -1;
}

/* %g with enough digits for the CSV. */
static inline void bench_csv_num(FILE *f, double v) { fprintf(f, "%.6g,", v); }

/* The table: its column heads, and the format of a row (bench-epochs.sh
 * prints its rows with the same widths). */
static inline void bench_table_head(void)
{
    printf("%-6s %-34s %12s %7s %-11s %-22s %12s %8s %-13s %s\n", "figure", "config", "median",
           "spread", "unit", "reference", "ref median", "ratio", "target", "met");
}

/* A table cell: whole numbers from 10^4 up, 4 significant digits below. */
static inline const char *bench_cell(char *buf, size_t len, double v)
{
    double a = v < 0 ? -v : v;
    snprintf(buf, len, a >= 1e4 && a < 1e12 ? "%.0f" : "%.4g", v);
    return buf;
}

/* Prints the row to stdout (the table) and appends it to the CSV. */
static inline void bench_emit(const bench_out *o, bench_row *r)
{
    r->meets = bench_meets(r);
    double ratio = r->fig.median / r->ref.median;
    const char *met = r->meets < 0 ? "" : r->meets ? "yes" : "NO";
    char a[32], b[32];
    printf("%-6s %-34s %12s %6.1f%% %-11s %-22s %12s %8.5g %-13s %s\n", r->figure, r->config,
           bench_cell(a, sizeof a, r->fig.median), 100 * bench_spread(r->fig), r->unit,
           r->reference, bench_cell(b, sizeof b, r->ref.median), ratio, r->target ? r->target : "",
           met);
    fflush(stdout);
    if (!o->csv)
        return;
    FILE *f = o->csv;
    fprintf(f, "%s,%s,%s,%s,%s,", o->date, o->host, r->figure, r->config, r->unit);
    bench_csv_num(f, r->fig.median);
    bench_csv_num(f, r->fig.min);
    bench_csv_num(f, r->fig.max);
    fprintf(f, "%d,%s,", r->fig.repeats, r->reference);
    bench_csv_num(f, r->ref.median);
    bench_csv_num(f, r->ref.min);
    bench_csv_num(f, r->ref.max);
    fprintf(f, "%d,", r->ref.repeats);
    bench_csv_num(f, ratio);
    fprintf(f, "%s,%s,%.2f\n", r->target ? r->target : "",
            r->meets < 0 ? "" : r->meets ? "yes" : "no", bench_load1());
    fflush(f);
}

#endif
