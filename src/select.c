/* select: exact top-k by magnitude from a sampled threshold and radix selection
 * on IEEE bit patterns (no sort), and uniform random subsets (Algorithm S). */
#include "select.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* AVX-512 compresses the passing lanes of a vector in one instruction, which
 * makes the filtering pass run at memory speed; plain C does it otherwise.
 * Define SELECT_NO_SIMD to test the plain path on an AVX-512 machine. */
#if defined(__AVX512F__) && !defined(SELECT_NO_SIMD)
#include <immintrin.h>
#define SELECT_AVX512 1
#endif

/* Radix digits of 16 bits: 256 KiB of counters stays in L2. */
#define HIST_BITS 16
#define HIST_SIZE ((size_t)1 << HIST_BITS)
/* The threshold comes from one entry in SAMPLE_STRIDE, SAMPLE_MIN to
 * SAMPLE_MAX of them: cheap next to the full pass, and on normal data the
 * candidates then exceed k by about 20% at k = n/10, 40-90% at k = n/100. */
#define SAMPLE_STRIDE 32
#define SAMPLE_MIN 64
#define SAMPLE_MAX 4096
/* Standard deviations of the sampled count the threshold allows for, so that
 * it almost never lets fewer than k entries through. */
#define SAMPLE_SIGMAS 4.0
/* When at most this many keys are left in the boundary range they are copied
 * out and finished with 8-bit digits: cheaper than another pass over every
 * candidate and a 65536-counter histogram. Before the first level the bar
 * is lower, since the first histogram's range is then cheap to scan. */
#define LIST_FIRST 2048
#define LIST_MAX 16384
/* The plain filter tests this many entries at once (a loop the compiler
 * vectorises) before it looks at them one by one. */
#define FILTER_BLOCK 16

struct select_ws {
    size_t max_n;
    uint32_t *hist; /* (HIST_SIZE) counters, all zero between calls */
    uint32_t *cand; /* (max_n) indices of the candidates, ascending */
    uint64_t *keys; /* (max_n) their keys; read as uint32_t for floats */
    uint64_t *list; /* (LIST_MAX) keys left in the boundary range */
};

/* Keys are unsigned integers in the order of the values: the bit pattern of
 * a non-negative IEEE number is monotonic in it. */
typedef enum { KEY_ABS_F32, KEY_F64 } key_kind;

#define F32_INF_BITS 0x7f800000u
#define F64_INF_BITS UINT64_C(0x7ff0000000000000)

static inline unsigned key_bits(key_kind kind)
{
    return kind == KEY_ABS_F32 ? 31 : 63;
}

/* |v| as a 31-bit key; NaN is magnitude 0. */
static inline uint32_t key_abs_f32(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= 0x7fffffffu;
    return u > F32_INF_BITS ? 0 : u;
}

/* v as a 63-bit key; negatives (-0 too) and NaN are 0: with the sign bit set
 * or a NaN payload the pattern exceeds that of +inf. */
static inline uint64_t key_f64(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u > F64_INF_BITS ? 0 : u;
}

static inline uint64_t key_at(const void *x, key_kind kind, size_t i)
{
    return kind == KEY_ABS_F32 ? key_abs_f32(((const float *)x)[i])
                               : key_f64(((const double *)x)[i]);
}

/* Candidate keys: uint32_t for floats, uint64_t for doubles. */
static inline uint64_t cand_key(const void *keys, key_kind kind, size_t j)
{
    return kind == KEY_ABS_F32 ? ((const uint32_t *)keys)[j] : ((const uint64_t *)keys)[j];
}

size_t select_count(double theta, size_t n)
{
    if (n == 0)
        return 0;
    double t = theta * (double)n;
    if (!(t > 1.0)) /* theta <= 0 or NaN too: at least one */
        return 1;
    if (t >= (double)n)
        return n;
    /* theta * n is off by a few 2^-53 relative (0.1 is not exact); 1e-12
     * covers that and stays below 0.005 absolute for any uint32 count. */
    return (size_t)ceil(t - 1e-12 * t);
}

select_ws *select_ws_create(size_t max_n)
{
    /* Indices and counters are 32-bit. */
    if (max_n > UINT32_MAX)
        return NULL;
    select_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    size_t len = max_n > 0 ? max_n : 1;
    ws->max_n = max_n;
    ws->hist = calloc(HIST_SIZE, sizeof *ws->hist);
    ws->cand = malloc(len * sizeof *ws->cand);
    ws->keys = malloc(len * sizeof *ws->keys);
    ws->list = malloc(LIST_MAX * sizeof *ws->list);
    if (!ws->hist || !ws->cand || !ws->keys || !ws->list) {
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
    free(ws->keys);
    free(ws->list);
    free(ws);
}

static size_t select_all(size_t n, uint32_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)i;
    return n;
}

/* Walks hist[lo..hi] down from hi until the running count reaches k: returns
 * that bucket and, in *above, how many lie in higher buckets. The caller
 * guarantees hist[lo..hi] holds at least k. */
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

/* A key that about k (plus a few sigma) of the n entries reach, judged from
 * evenly spaced entries and rounded down to a bucket; 0 when the sample
 * cannot promise k. A poor guess costs time, never correctness: the caller
 * counts what passed. hist is zero on entry and on return. */
static uint64_t sample_threshold(const void *x, key_kind kind, size_t n, size_t k,
                                 uint32_t *hist)
{
    size_t s = n / SAMPLE_STRIDE;
    s = s > SAMPLE_MAX ? SAMPLE_MAX : s;
    if (s < SAMPLE_MIN)
        s = n < SAMPLE_MIN ? n : SAMPLE_MIN;
    double p = (double)k / (double)n;
    double want = ceil(p * (double)s + SAMPLE_SIGMAS * sqrt(p * (1.0 - p) * (double)s)) + 1.0;
    if (want >= (double)s)
        return 0;
    unsigned shift = key_bits(kind) - HIST_BITS;
    size_t stride = n / s;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t j = 0, i = 0; j < s; j++, i += stride) {
        uint32_t b = (uint32_t)(key_at(x, kind, i) >> shift);
        hist[b]++;
        lo = b < lo ? b : lo;
        hi = b > hi ? b : hi;
    }
    size_t above;
    uint32_t b = find_bucket(hist, lo, hi, (size_t)want, &above);
    memset(hist + lo, 0, (size_t)(hi - lo + 1) * sizeof *hist);
    return (uint64_t)b << shift;
}

/* The filters copy to cand and keys, in index order, the index and key of
 * every entry with key >= t > 0, and return the count. NaN maps to key 0, so
 * it never passes. Writes stay below n: the count never exceeds the index. */

/* The plain C filter, written once and instantiated per kind of key: tests
 * FILTER_BLOCK entries at once (a loop the compiler vectorises or unrolls)
 * and looks at them one by one only when one passes, writing each and
 * advancing the count only past those that pass (no branch). A macro, not
 * a function over key_kind: each instance compiles to the loop written for
 * its types alone, keys compared in their own width; a generic inline
 * function measured 1-2% slower (its registers fared worse in largest). */
#define DEFINE_FILTER_PLAIN(name, elem_t, key_t, key_of)                                    \
    static size_t name(const elem_t *x, size_t n, key_t t, uint32_t *cand, key_t *keys)    \
    {                                                                                       \
        size_t c = 0, i = 0;                                                                \
        for (; i + FILTER_BLOCK <= n; i += FILTER_BLOCK) {                                  \
            unsigned hits = 0;                                                              \
            for (size_t j = i; j < i + FILTER_BLOCK; j++)                                   \
                hits += key_of(x[j]) >= t;                                                  \
            if (hits == 0) /* most blocks when k is a small fraction of n */                \
                continue;                                                                   \
            for (size_t j = i; j < i + FILTER_BLOCK; j++) {                                 \
                key_t key = key_of(x[j]);                                                   \
                cand[c] = (uint32_t)j;                                                      \
                keys[c] = key;                                                              \
                c += key >= t;                                                              \
            }                                                                               \
        }                                                                                   \
        for (; i < n; i++) {                                                                \
            key_t key = key_of(x[i]);                                                       \
            cand[c] = (uint32_t)i;                                                          \
            keys[c] = key;                                                                  \
            c += key >= t;                                                                  \
        }                                                                                   \
        return c;                                                                           \
    }

DEFINE_FILTER_PLAIN(filter_f64, double, uint64_t, key_f64)

#ifdef SELECT_AVX512
static inline __mmask16 passes_abs_f32(__m512i u, __m512i t)
{
    /* u is |x| as bits; above inf it is a NaN */
    return _mm512_cmple_epu32_mask(u, _mm512_set1_epi32((int)F32_INF_BITS)) &
           _mm512_cmpge_epu32_mask(u, t);
}

static size_t filter_abs_f32(const float *x, size_t n, uint32_t t, uint32_t *cand,
                             uint32_t *keys)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512i vt = _mm512_set1_epi32((int)t);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t c = 0, i = 0;
    /* Compress the passing lanes into place with whole stores; the count
     * advances only by the lanes that passed. Two vectors a step let their
     * compressions overlap. */
    for (; i + 32 <= n; i += 32) {
        __m512i u0 = _mm512_and_si512(_mm512_loadu_si512(x + i), abs_mask);
        __m512i u1 = _mm512_and_si512(_mm512_loadu_si512(x + i + 16), abs_mask);
        __mmask16 m0 = passes_abs_f32(u0, vt), m1 = passes_abs_f32(u1, vt);
        __m512i idx1 = _mm512_add_epi32(idx, step);
        size_t c1 = c + (size_t)__builtin_popcount(m0);
        _mm512_storeu_si512(cand + c, _mm512_maskz_compress_epi32(m0, idx));
        _mm512_storeu_si512(keys + c, _mm512_maskz_compress_epi32(m0, u0));
        _mm512_storeu_si512(cand + c1, _mm512_maskz_compress_epi32(m1, idx1));
        _mm512_storeu_si512(keys + c1, _mm512_maskz_compress_epi32(m1, u1));
        c = c1 + (size_t)__builtin_popcount(m1);
        idx = _mm512_add_epi32(idx1, step);
    }
    for (; i < n; i++) {
        uint32_t key = key_abs_f32(x[i]);
        cand[c] = (uint32_t)i;
        keys[c] = key;
        c += key >= t;
    }
    return c;
}
#else
DEFINE_FILTER_PLAIN(filter_abs_f32, float, uint32_t, key_abs_f32)
#endif

/* Every entry a candidate: when no threshold can be trusted. */
static size_t take_every(const void *x, key_kind kind, size_t n, uint32_t *cand, void *keys)
{
    for (size_t i = 0; i < n; i++) {
        cand[i] = (uint32_t)i;
        if (kind == KEY_ABS_F32)
            ((uint32_t *)keys)[i] = key_abs_f32(((const float *)x)[i]);
        else
            ((uint64_t *)keys)[i] = key_f64(((const double *)x)[i]);
    }
    return n;
}

/* Smallest and largest of the c > 0 candidate keys: the occupied range of
 * the first histogram. Sixteen running extremes make the loop vectorise. */
static void key_range(const void *keys, key_kind kind, size_t c, uint64_t *kmin, uint64_t *kmax)
{
    uint64_t mn = UINT64_MAX, mx = 0;
    size_t j = 0;
    if (kind == KEY_ABS_F32) {
        const uint32_t *k32 = keys;
        uint32_t lo[16], hi[16];
        for (int l = 0; l < 16; l++) {
            lo[l] = UINT32_MAX;
            hi[l] = 0;
        }
        for (; j + 16 <= c; j += 16) {
            for (int l = 0; l < 16; l++) {
                uint32_t v = k32[j + (size_t)l];
                lo[l] = v < lo[l] ? v : lo[l];
                hi[l] = v > hi[l] ? v : hi[l];
            }
        }
        for (int l = 0; l < 16; l++) {
            mn = lo[l] < mn ? lo[l] : mn;
            mx = hi[l] > mx ? hi[l] : mx;
        }
    }
    for (; j < c; j++) {
        uint64_t v = cand_key(keys, kind, j);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    *kmin = mn;
    *kmax = mx;
}

/* Histogram of the digit (key - base) >> shift over the keys in
 * [base, base + span). On the first level every key is in range and
 * key_range gave the digits' range; on later ones few keys are, and *lo and
 * *hi are set to the digits seen. */
static void level_hist(const void *keys, key_kind kind, size_t c, uint64_t base, uint64_t span,
                       unsigned shift, int first, uint32_t *hist, uint32_t *lo, uint32_t *hi)
{
    if (kind == KEY_ABS_F32 && first) {
        const uint32_t *k32 = keys;
        for (size_t j = 0; j < c; j++)
            hist[k32[j] >> shift]++;
        return;
    }
    uint32_t mn = UINT32_MAX, mx = 0;
    for (size_t j = 0; j < c; j++) {
        /* keys below base wrap around to beyond span */
        uint64_t v = cand_key(keys, kind, j) - base;
        if (v >= span)
            continue;
        uint32_t d = (uint32_t)(v >> shift);
        hist[d]++;
        mn = d < mn ? d : mn;
        mx = d > mx ? d : mx;
    }
    if (!first) {
        *lo = mn;
        *hi = mx;
    }
}

/* Copies to list the m keys in [base, base + span). Blocks of 16 are
 * tested at once (a loop the compiler vectorises); the range is narrow, so
 * most blocks hold none. */
static void collect(const void *keys, key_kind kind, size_t c, uint64_t base, uint64_t span,
                    size_t m, uint64_t *list)
{
    size_t got = 0, j = 0;
    if (kind == KEY_ABS_F32) {
        const uint32_t *k32 = keys;
        for (; j + 16 <= c && got < m; j += 16) {
            unsigned hits = 0;
            for (size_t l = j; l < j + 16; l++)
                hits += k32[l] - (uint32_t)base < span;
            if (hits == 0)
                continue;
            for (size_t l = j; l < j + 16; l++)
                if (k32[l] - (uint32_t)base < span)
                    list[got++] = k32[l];
        }
    }
    for (; j < c && got < m; j++) {
        uint64_t key = cand_key(keys, kind, j);
        if (key - base < span)
            list[got++] = key;
    }
}

#define ALL_TIES SIZE_MAX

/* Radix selection on list[0..m) (keys that agree above bit `shift`, which
 * equal those of base) with 8-bit digits, keeping only the boundary digit's
 * keys each time: sets *t and returns the ties to take, as find_cut. */
static size_t cut_list(uint64_t *list, size_t m, size_t r, unsigned shift, uint64_t base,
                       uint64_t *t)
{
    while (m > r && shift > 0) {
        unsigned bits = shift < 8 ? shift : 8;
        uint32_t mask = ((uint32_t)1 << bits) - 1;
        shift -= bits;
        uint32_t count[256] = {0};
        for (size_t i = 0; i < m; i++)
            count[(list[i] >> shift) & mask]++;
        size_t above = 0;
        uint32_t d = mask;
        for (; above + count[d] < r; d--) /* stops by d = 0: m > r */
            above += count[d];
        size_t kept = 0;
        for (size_t i = 0; i < m; i++)
            if (((list[i] >> shift) & mask) == d)
                list[kept++] = list[i];
        m = kept;
        r -= above;
        base += (uint64_t)d << shift;
    }
    *t = base;
    return m == r ? ALL_TIES : r;
}

/* The cut for the k largest of keys[0..c) (c >= k > 0): sets *t and returns
 * how many keys equal to *t to take (the first ones), or ALL_TIES when all
 * of them are; every key above *t is taken. Radix levels narrow the range
 * [base, base + 2^shift) that holds the k-th largest until it holds exactly
 * the r keys still wanted or a single value. The first levels histogram 16
 * bits of every candidate; once few keys are left in the range they are
 * copied out and finished apart. ws->hist is zero on entry and on return. */
static size_t find_cut(const void *keys, key_kind kind, size_t c, size_t k, select_ws *ws,
                       uint64_t *t)
{
    unsigned shift = key_bits(kind);
    uint64_t base = 0;
    size_t r = k, matching = c; /* still wanted; keys in the range */
    while (matching > r && shift > 0) {
        int first = shift == key_bits(kind);
        if (matching <= (first ? LIST_FIRST : LIST_MAX)) {
            uint64_t span = (uint64_t)1 << shift;
            collect(keys, kind, c, base, span, matching, ws->list);
            return cut_list(ws->list, matching, r, shift, base, t);
        }
        unsigned bits = shift < HIST_BITS ? shift : HIST_BITS;
        uint64_t span = (uint64_t)1 << shift;
        shift -= bits;
        uint32_t lo = 0, hi = 0;
        if (first) {
            uint64_t kmin, kmax;
            key_range(keys, kind, c, &kmin, &kmax);
            lo = (uint32_t)(kmin >> shift);
            hi = (uint32_t)(kmax >> shift);
        }
        level_hist(keys, kind, c, base, span, shift, first, ws->hist, &lo, &hi);
        size_t above;
        uint32_t d = find_bucket(ws->hist, lo, hi, r, &above);
        matching = ws->hist[d];
        memset(ws->hist + lo, 0, (size_t)(hi - lo + 1) * sizeof *ws->hist);
        r -= above;
        base += (uint64_t)d << shift;
    }
    *t = base;
    return matching == r ? ALL_TIES : r;
}

/* Copies to out, ascending, the k candidates with key > t or among the first
 * `ties` equal to t. out holds exactly k, so vector stores are masked. */
static void emit(const uint32_t *cand, const void *keys, key_kind kind, size_t c, size_t k,
                 uint64_t t, size_t ties, uint32_t *out)
{
    size_t w = 0, j = 0;
#ifdef SELECT_AVX512
    if (kind == KEY_ABS_F32) {
        const uint32_t *k32 = keys;
        const __m512i vt = _mm512_set1_epi32((int)t);
        for (; j + 16 <= c && w < k; j += 16) {
            __m512i v = _mm512_loadu_si512(k32 + j);
            unsigned take = _mm512_cmpgt_epu32_mask(v, vt);
            unsigned eq = _mm512_cmpeq_epu32_mask(v, vt);
            unsigned n_eq = (unsigned)__builtin_popcount(eq);
            if (n_eq <= ties) {
                take |= eq;
                ties -= n_eq;
            } else {
                for (; ties > 0; ties--) { /* the lowest lanes first */
                    take |= eq & -eq;
                    eq &= eq - 1;
                }
            }
            unsigned got = (unsigned)__builtin_popcount(take);
            __m512i sel = _mm512_maskz_compress_epi32((__mmask16)take, _mm512_loadu_si512(cand + j));
            _mm512_mask_storeu_epi32(out + w, (__mmask16)((1u << got) - 1), sel);
            w += got;
        }
    }
#endif
    (void)c;
    /* Stops as soon as k are taken: no write past out[k - 1]. */
    for (; w < k; j++) {
        uint64_t key = cand_key(keys, kind, j);
        int tie = key == t && ties > 0;
        out[w] = cand[j];
        w += key > t || tie;
        ties -= (size_t)tie;
    }
}

static size_t largest(const void *x, key_kind kind, size_t n, size_t k, uint32_t *out,
                      select_ws *ws)
{
    if (k >= n)
        return select_all(n, out);
    if (k == 0)
        return 0;
    assert(ws && n <= ws->max_n);
    uint64_t t = sample_threshold(x, kind, n, k, ws->hist);
    size_t c = 0;
    if (t > 0) {
        c = kind == KEY_ABS_F32
                ? filter_abs_f32(x, n, (uint32_t)t, ws->cand, (uint32_t *)ws->keys)
                : filter_f64(x, n, t, ws->cand, ws->keys);
    }
    if (c < k) /* no threshold, or the sample misjudged it */
        c = take_every(x, kind, n, ws->cand, ws->keys);
    size_t ties = find_cut(ws->keys, kind, c, k, ws, &t);
    emit(ws->cand, ws->keys, kind, c, k, t, ties, out);
    return k;
}

size_t select_largest_abs(const float *x, size_t n, size_t k, uint32_t *out, select_ws *ws)
{
    return largest(x, KEY_ABS_F32, n, k, out, ws);
}

size_t select_largest_f64(const double *x, size_t n, size_t k, uint32_t *out, select_ws *ws)
{
    return largest(x, KEY_F64, n, k, out, ws);
}

size_t select_random_above(const float *x, size_t n, size_t k, float tau, rng_t *rng,
                           uint32_t *out)
{
    assert(n <= UINT32_MAX);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += fabsf(x[i]) >= tau; /* false for NaN */
    size_t want = k < m ? k : m, got = 0;
    /* Algorithm S (Knuth, TAOCP 3.4.2): take the next eligible entry with
     * probability (still wanted) / (eligible left). Once those are equal
     * every draw would succeed, so none is made. */
    for (size_t i = 0, seen = 0; got < want; i++) {
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
