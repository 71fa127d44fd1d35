/* select: exact top-k by magnitude through radix selection on IEEE bit
 * patterns (two passes, no sort), and uniform random subsets (Algorithm S). */
#include "select.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

/* First radix level: the top 16 bits of the key; 256 KiB of counters stays
 * in L2 and leaves few entries in the boundary bucket. */
#define HIST_BITS 16
#define HIST_SIZE ((size_t)1 << HIST_BITS)
/* A boundary bucket this small is resolved by insertion sort: cheaper than
 * another histogram whose occupied range could span thousands of counters. */
#define SMALL_CANDIDATES 32

struct select_ws {
    size_t max_n;
    uint32_t *hist; /* (HIST_SIZE) all zero between calls */
    uint32_t *cand; /* (max_n) indices in the boundary bucket */
};

/* Keys are unsigned integers whose order is the order of the values: for a
 * non-negative IEEE number the bit pattern is monotonic. */
typedef enum { KEY_ABS_F32, KEY_F64 } key_kind;

#define F32_INF_BITS 0x7f800000u
#define F64_INF_BITS UINT64_C(0x7ff0000000000000)
#define F32_KEY_BITS 31
#define F64_KEY_BITS 63

/* |v| as a 31-bit key; NaN is magnitude 0. */
static inline uint32_t key_abs_f32(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= 0x7fffffffu;
    return u > F32_INF_BITS ? 0 : u;
}

/* v as a 63-bit key; negative (including -0) and NaN are 0. */
static inline uint64_t key_f64(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u > F64_INF_BITS ? 0 : u; /* the sign bit makes negatives exceed inf */
}

static inline uint64_t key_at(const void *x, key_kind kind, uint32_t i)
{
    return kind == KEY_ABS_F32 ? key_abs_f32(((const float *)x)[i])
                               : key_f64(((const double *)x)[i]);
}

size_t select_count(double theta, size_t n)
{
    if (n == 0)
        return 0;
    double t = theta * (double)n;
    if (!(t > 1.0)) /* also theta <= 0 or NaN: at least one */
        return 1;
    if (t >= (double)n)
        return n;
    /* theta * n carries a relative error of a few 2^-53 (0.1 is not exact);
     * 1e-12 covers it while staying below 0.005 in absolute terms for any
     * n that fits a uint32 index. */
    double k = ceil(t - 1e-12 * t);
    return k < 1.0 ? 1 : (size_t)k;
}

select_ws *select_ws_create(size_t max_n)
{
    /* Indices and histogram counters are 32-bit. */
    if (max_n > UINT32_MAX)
        return NULL;
    select_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->max_n = max_n;
    ws->hist = calloc(HIST_SIZE, sizeof *ws->hist);
    ws->cand = malloc((max_n > 0 ? max_n : 1) * sizeof *ws->cand);
    if (!ws->hist || !ws->cand) {
        select_ws_free(ws);
        return NULL;
    }
    return ws;
}

void select_ws_free(select_ws *ws)
{
    if (!ws)
        return;
    free(ws->hist);
    free(ws->cand);
    free(ws);
}

static size_t select_all(size_t n, uint32_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)i;
    return n;
}

/* Walks hist[lo..hi] from the top until the running count reaches k: returns
 * that bucket and, in *above, how many entries lie in higher buckets. The
 * caller guarantees hist[lo..hi] holds at least k entries. */
static uint32_t find_bucket(const uint32_t *hist, uint32_t lo, uint32_t hi, size_t k,
                            size_t *above)
{
    size_t cum = 0;
    uint32_t b = hi;
    for (; b > lo; b--) {
        if (cum + hist[b] >= k)
            break;
        cum += hist[b];
    }
    *above = cum;
    return b;
}

/* Pass 1: histogram of the top HIST_BITS of each key, and the occupied range
 * so that the search and the clean-up touch only that part. */
static void hist_abs_f32(const float *x, size_t n, uint32_t *hist, uint32_t *lo, uint32_t *hi)
{
    uint32_t mn = UINT32_MAX, mx = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = key_abs_f32(x[i]) >> (F32_KEY_BITS - HIST_BITS);
        hist[b]++;
        mn = b < mn ? b : mn;
        mx = b > mx ? b : mx;
    }
    *lo = mn;
    *hi = mx;
}

static void hist_f64(const double *x, size_t n, uint32_t *hist, uint32_t *lo, uint32_t *hi)
{
    uint32_t mn = UINT32_MAX, mx = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)(key_f64(x[i]) >> (F64_KEY_BITS - HIST_BITS));
        hist[b]++;
        mn = b < mn ? b : mn;
        mx = b > mx ? b : mx;
    }
    *lo = mn;
    *hi = mx;
}

/* Pass 2: entries above bucket b go to out, those in b to cand, both in index
 * order. Branch-free: both slots are written every time and the counts
 * advance only on a match (a <= above < k and c < n keep the writes in
 * bounds), since at k = 10% a branch would mispredict often. */
static size_t split_abs_f32(const float *x, size_t n, uint32_t b, uint32_t *out, uint32_t *cand)
{
    size_t a = 0, c = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t d = key_abs_f32(x[i]) >> (F32_KEY_BITS - HIST_BITS);
        out[a] = (uint32_t)i;
        a += d > b;
        cand[c] = (uint32_t)i;
        c += d == b;
    }
    return c;
}

static size_t split_f64(const double *x, size_t n, uint32_t b, uint32_t *out, uint32_t *cand)
{
    size_t a = 0, c = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t d = (uint32_t)(key_f64(x[i]) >> (F64_KEY_BITS - HIST_BITS));
        out[a] = (uint32_t)i;
        a += d > b;
        cand[c] = (uint32_t)i;
        c += d == b;
    }
    return c;
}

/* Few candidates: sort by (key desc, index asc), keep the first r, and put
 * those back in index order. Quadratic, so only for tiny c. */
static void resolve_small(const void *x, key_kind kind, uint32_t *cand, size_t c, size_t r)
{
    for (size_t i = 1; i < c; i++) {
        uint32_t v = cand[i];
        uint64_t kv = key_at(x, kind, v);
        size_t j = i;
        /* cand is in index order, so equal keys keep their order */
        while (j > 0 && key_at(x, kind, cand[j - 1]) < kv) {
            cand[j] = cand[j - 1];
            j--;
        }
        cand[j] = v;
    }
    for (size_t i = 1; i < r; i++) {
        uint32_t v = cand[i];
        size_t j = i;
        while (j > 0 && cand[j - 1] > v) {
            cand[j] = cand[j - 1];
            j--;
        }
        cand[j] = v;
    }
}

/* cand[0..c) (index order) all share the top HIST_BITS of their key; leaves
 * in cand[0..r) the r with the largest keys, ties to the lower index, in
 * index order. Further radix levels narrow the key prefix P (at bit `shift`)
 * until the keys above P number fewer than r and those equal to P at least
 * r: then one pass takes everything above and the first of the equal ones.
 * hist must be zero on entry and is zero again on return. */
static void resolve(const void *x, key_kind kind, uint32_t *cand, size_t c, size_t r,
                    uint32_t *hist)
{
    if (r == c)
        return;
    if (c <= SMALL_CANDIDATES) {
        resolve_small(x, kind, cand, c, r);
        return;
    }
    unsigned shift = (kind == KEY_ABS_F32 ? F32_KEY_BITS : F64_KEY_BITS) - HIST_BITS;
    uint64_t prefix = key_at(x, kind, cand[0]) >> shift;
    size_t matching = c; /* candidates whose key starts with prefix */
    while (shift > 0 && matching > r) {
        unsigned bits = shift < HIST_BITS ? shift : HIST_BITS;
        uint32_t mask = ((uint32_t)1 << bits) - 1;
        shift -= bits;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (size_t j = 0; j < c; j++) {
            uint64_t key = key_at(x, kind, cand[j]);
            if ((key >> (shift + bits)) != prefix)
                continue;
            uint32_t d = (uint32_t)(key >> shift) & mask;
            hist[d]++;
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        size_t above;
        uint32_t d = find_bucket(hist, lo, hi, r, &above);
        matching = hist[d];
        memset(hist + lo, 0, (size_t)(hi - lo + 1) * sizeof *hist);
        r -= above;
        prefix = (prefix << bits) | d;
    }
    /* Keys above the prefix are all taken; of those equal to it, the first r. */
    size_t w = 0;
    for (size_t j = 0; j < c; j++) {
        uint64_t p = key_at(x, kind, cand[j]) >> shift;
        if (p > prefix || (p == prefix && r > 0)) {
            r -= p == prefix;
            cand[w++] = cand[j];
        }
    }
}

/* out[0..a) and ch[0..r) are ascending and out has room for a + r: merge
 * from the back, which never overwrites an unread entry of out. */
static void merge_back(uint32_t *out, size_t a, const uint32_t *ch, size_t r)
{
    size_t w = a + r;
    while (r > 0) {
        if (a > 0 && out[a - 1] > ch[r - 1])
            out[--w] = out[--a];
        else
            out[--w] = ch[--r];
    }
}

size_t select_largest_abs(const float *x, size_t n, size_t k, uint32_t *out, select_ws *ws)
{
    if (k >= n)
        return select_all(n, out);
    if (k == 0)
        return 0;
    assert(ws && n <= ws->max_n);
    uint32_t lo, hi;
    hist_abs_f32(x, n, ws->hist, &lo, &hi);
    size_t above;
    uint32_t b = find_bucket(ws->hist, lo, hi, k, &above);
    size_t c = ws->hist[b];
    memset(ws->hist + lo, 0, (size_t)(hi - lo + 1) * sizeof *ws->hist);
    size_t c2 = split_abs_f32(x, n, b, out, ws->cand);
    assert(c2 == c);
    (void)c2;
    resolve(x, KEY_ABS_F32, ws->cand, c, k - above, ws->hist);
    merge_back(out, above, ws->cand, k - above);
    return k;
}

size_t select_largest_f64(const double *x, size_t n, size_t k, uint32_t *out, select_ws *ws)
{
    if (k >= n)
        return select_all(n, out);
    if (k == 0)
        return 0;
    assert(ws && n <= ws->max_n);
    uint32_t lo, hi;
    hist_f64(x, n, ws->hist, &lo, &hi);
    size_t above;
    uint32_t b = find_bucket(ws->hist, lo, hi, k, &above);
    size_t c = ws->hist[b];
    memset(ws->hist + lo, 0, (size_t)(hi - lo + 1) * sizeof *ws->hist);
    size_t c2 = split_f64(x, n, b, out, ws->cand);
    assert(c2 == c);
    (void)c2;
    resolve(x, KEY_F64, ws->cand, c, k - above, ws->hist);
    merge_back(out, above, ws->cand, k - above);
    return k;
}

size_t select_random_above(const float *x, size_t n, size_t k, float tau, rng_t *rng,
                           uint32_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += fabsf(x[i]) >= tau; /* false for NaN */
    size_t want = k < m ? k : m, got = 0;
    /* Algorithm S (Knuth, TAOCP 3.4.2): take the next eligible entry with
     * probability (still wanted) / (eligible left); when they are equal every
     * draw would succeed, so none is made. */
    for (size_t i = 0, seen = 0; i < n && got < want; i++) {
        if (!(fabsf(x[i]) >= tau))
            continue;
        size_t left = m - seen++;
        if (want - got == left || rng_below(rng, (uint32_t)left) < want - got)
            out[got++] = (uint32_t)i;
    }
    return got;
}

size_t select_random(size_t n, size_t k, rng_t *rng, uint32_t *out)
{
    if (k >= n)
        return select_all(n, out);
    assert(n <= UINT32_MAX);
    size_t got = 0;
    for (size_t t = 0; got < k; t++) {
        size_t left = n - t;
        if (k - got == left || rng_below(rng, (uint32_t)left) < k - got)
            out[got++] = (uint32_t)t;
    }
    return k;
}
