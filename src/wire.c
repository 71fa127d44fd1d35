/* wire: explicit little-endian packing (no struct casts, so the layout does
 * not depend on the compiler) in the smallest encoding, and all-or-nothing
 * validation of messages. The layout is documented in include/wire.h. */
#include "wire.h"

#include <math.h>
#include <string.h>

/* Delta sections of 1- and 2-byte varints (gaps below 2^14: nearly all of
 * them at densities from about 10^-3 up) are checked and decoded 64 and 32
 * bytes a step with AVX-512 where the compiler targets it (-march=native
 * on a recent x86); elsewhere, and around longer varints, byte by byte. */
#if defined(__AVX512BW__) && defined(__AVX512VBMI2__) && defined(__POPCNT__)
#include <immintrin.h>
#define WIRE_SHORT_SIMD 1
#endif

static const char *const reason_names[WIRE_REASONS] = {
    "ok", "truncated", "bad length", "bad magic", "bad version", "bad type",
    "wrong participant id", "wrong epoch", "wrong vector length", "too many entries",
    "index out of range", "indices not increasing", "non-finite value", "value beyond gamma",
    "unsolicited", "bad encoding",
};

static const char *const encoding_names[WIRE_ENCODINGS] = {
    NULL, "delta", "bitmap", "dense", "complement",
};

const char *wire_reason_name(wire_reason r)
{
    return r < WIRE_REASONS ? reason_names[r] : "unknown";
}

const char *wire_encoding_name(wire_encoding enc)
{
    return enc > 0 && enc < WIRE_ENCODINGS ? encoding_names[enc] : "unknown";
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ---- sizes ---------------------------------------------------------------- */

/* 7 bits a byte: ceil(significant bits / 7), and 1 for 0. */
static unsigned varint_len(uint32_t v)
{
    unsigned bits = 32 - (unsigned)__builtin_clz(v | 1);
    return (bits + 6) / 7;
}

static uint64_t bitmap_bytes(uint32_t n) { return ((uint64_t)n + 7) / 8; }

/* The entries are a sparse vector of length n: count <= n, indices strictly
 * increasing and below n. */
static int entries_valid(uint32_t n, uint32_t count, const uint32_t *idx)
{
    if (count > n)
        return 0;
    for (uint32_t i = 0; i < count; i++)
        if (idx[i] >= n || (i > 0 && idx[i] <= idx[i - 1]))
            return 0;
    return 1;
}

static uint64_t delta_index_bytes(uint32_t count, const uint32_t *idx)
{
    uint64_t bytes = 0, base = 0;
    for (uint32_t i = 0; i < count; i++) {
        bytes += varint_len((uint32_t)(idx[i] - base));
        base = (uint64_t)idx[i] + 1;
    }
    return bytes;
}

/* The absent indices come in runs between present ones: a run's first
 * absent index costs a varint (its distance from the previous absent one),
 * each further one a single 0 byte. So this is O(count), not O(n). */
static uint64_t complement_index_bytes(uint32_t n, uint32_t count, const uint32_t *idx)
{
    uint64_t bytes = 0, next = 0, base = 0;
    for (uint64_t i = 0; i <= count; i++) {
        uint64_t end = i < count ? idx[i] : n;
        /* absent run [next, end), maybe empty; no branch: at mid densities
         * whether a run is empty is a coin toss */
        uint64_t run = end - next, some = run != 0;
        bytes += some ? varint_len((uint32_t)(next - base)) + run - 1 : 0;
        base = some ? end : base; /* one past the run's last absent index */
        next = end + 1;
    }
    return bytes;
}

/* Size of a valid entry set in one encoding; 0 when it does not apply. */
static uint64_t size_of(wire_encoding enc, uint32_t n, uint32_t count, const uint32_t *idx)
{
    uint64_t values = 4 * (uint64_t)count;
    switch (enc) {
    case WIRE_ENC_DELTA: return WIRE_HEADER_BYTES + delta_index_bytes(count, idx) + values;
    case WIRE_ENC_BITMAP: return WIRE_HEADER_BYTES + bitmap_bytes(n) + values;
    case WIRE_ENC_DENSE: return count == n ? WIRE_HEADER_BYTES + values : 0;
    case WIRE_ENC_COMPLEMENT:
        return WIRE_HEADER_BYTES + complement_index_bytes(n, count, idx) + values;
    }
    return 0;
}

size_t wire_encoding_size(wire_encoding enc, uint32_t n, uint32_t count, const uint32_t *idx)
{
    if (!entries_valid(n, count, idx))
        return 0;
    uint64_t s = size_of(enc, n, count, idx);
    return s <= SIZE_MAX ? (size_t)s : 0;
}

/* The smallest encoding, ties to dense, delta, bitmap, complement (wire.h),
 * without walking the indices for one that cannot win: a varint is at least
 * 1 byte, so delta's index section is at least count bytes and complement's
 * at least n - count. */
static uint64_t choose(uint32_t n, uint32_t count, const uint32_t *idx, wire_encoding *chosen)
{
    uint64_t fixed = WIRE_HEADER_BYTES + 4 * (uint64_t)count;
    if (count == n) { /* no index bytes: nothing is smaller, and dense wins ties */
        *chosen = WIRE_ENC_DENSE;
        return fixed;
    }
    uint64_t best = bitmap_bytes(n);
    *chosen = WIRE_ENC_BITMAP;
    if (count <= best) { /* delta wins ties with bitmap */
        uint64_t d = delta_index_bytes(count, idx);
        if (d <= best) {
            best = d;
            *chosen = WIRE_ENC_DELTA;
        }
    }
    if ((uint64_t)n - count < best) { /* complement loses ties */
        uint64_t c = complement_index_bytes(n, count, idx);
        if (c < best) {
            best = c;
            *chosen = WIRE_ENC_COMPLEMENT;
        }
    }
    return fixed + best;
}

size_t wire_packed_size(uint32_t n, uint32_t count, const uint32_t *idx, wire_encoding *chosen)
{
    wire_encoding enc = 0;
    if (!entries_valid(n, count, idx))
        return 0;
    uint64_t s = choose(n, count, idx, &enc);
    if (chosen)
        *chosen = enc;
    return s <= SIZE_MAX ? (size_t)s : 0;
}

/* ---- packing -------------------------------------------------------------- */

static uint8_t *put_varint(uint8_t *p, uint32_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Writes the message in enc (the entries are valid, buf large enough). */
static void write_message(uint8_t *buf, const wire_header *h, const uint32_t *idx,
                          const float *val, wire_encoding enc)
{
    uint32_t n = h->n, count = h->count;
    put32(buf, h->magic);
    put16(buf + 4, h->version);
    put16(buf + 6, h->type);
    put32(buf + 8, h->participant);
    put32(buf + 12, h->epoch);
    put32(buf + 16, h->n);
    put32(buf + 20, h->count);
    buf[24] = (uint8_t)enc;
    uint8_t *p = buf + WIRE_HEADER_BYTES;
    uint64_t base = 0, next = 0;
    switch (enc) {
    case WIRE_ENC_DELTA:
        for (uint32_t i = 0; i < count; i++) {
            uint32_t v = (uint32_t)(idx[i] - base);
            if (v < 1u << 14) {
                /* 1 or 2 bytes without a branch on which (see decode_deltas);
                 * a second byte not needed is overwritten next (values
                 * follow, so it is inside the message) */
                uint32_t two = v >= 0x80;
                p[0] = (uint8_t)(v | two << 7);
                p[1] = (uint8_t)(v >> 7);
                p += 1 + two;
            } else {
                p = put_varint(p, v);
            }
            base = (uint64_t)idx[i] + 1;
        }
        break;
    case WIRE_ENC_BITMAP: {
        /* 64 bits at a time in a register, stored when the next index is
         * past them (a byte-wise |= stalls on its own stores). */
        uint64_t nb = bitmap_bytes(n), word = 0, at = 0;
        memset(p, 0, (size_t)nb);
        for (uint32_t i = 0; i <= count; i++) {
            uint64_t w = i < count ? idx[i] >> 6 : UINT64_MAX;
            if (w != at) {
                for (uint64_t b = 0; b < 8 && 8 * at + b < nb; b++)
                    p[8 * at + b] = (uint8_t)(word >> (8 * b));
                at = w;
                word = 0;
            }
            if (i < count)
                word |= (uint64_t)1 << (idx[i] & 63);
        }
        p += nb;
        break;
    }
    case WIRE_ENC_DENSE:
        break;
    case WIRE_ENC_COMPLEMENT:
        for (uint64_t i = 0; i <= count; i++) {
            uint64_t end = i < count ? idx[i] : n;
            if (end > next) {
                p = put_varint(p, (uint32_t)(next - base));
                memset(p, 0, (size_t)(end - next - 1));
                p += end - next - 1;
                base = end;
            }
            next = end + 1;
        }
        break;
    }
    for (uint32_t i = 0; i < count; i++)
        put32(p + 4 * (size_t)i, float_bits(val[i]));
}

size_t wire_pack_as(uint8_t *buf, size_t cap, const wire_header *h, const uint32_t *idx,
                    const float *val, wire_encoding enc)
{
    size_t size = wire_encoding_size(enc, h->n, h->count, idx);
    if (!size || cap < size)
        return 0;
    write_message(buf, h, idx, val, enc);
    return size;
}

size_t wire_pack_dense(uint8_t *buf, size_t cap, const wire_header *h, const float *values)
{
    uint64_t size = WIRE_HEADER_BYTES + 4 * (uint64_t)h->n;
    if (h->count != h->n || size > cap)
        return 0;
    write_message(buf, h, NULL, values, WIRE_ENC_DENSE); /* dense reads no index */
    return (size_t)size;
}

size_t wire_pack(uint8_t *buf, size_t cap, const wire_header *h, const uint32_t *idx,
                 const float *val)
{
    wire_encoding enc;
    size_t size = wire_packed_size(h->n, h->count, idx, &enc);
    if (!size || cap < size)
        return 0;
    write_message(buf, h, idx, val, enc);
    return size;
}

/* ---- validation and decoding --------------------------------------------- */

wire_reason wire_peek(const uint8_t *msg, size_t len, wire_header *h)
{
    if (len < WIRE_HEADER_BYTES)
        return WIRE_TRUNCATED;
    h->magic = get32(msg);
    h->version = get16(msg + 4);
    h->type = get16(msg + 6);
    h->participant = get32(msg + 8);
    h->epoch = get32(msg + 12);
    h->n = get32(msg + 16);
    h->count = get32(msg + 20);
    return WIRE_OK;
}

wire_encoding wire_message_encoding(const uint8_t *msg, size_t len)
{
    return len < WIRE_HEADER_BYTES ? (wire_encoding)0 : (wire_encoding)msg[24];
}

/* Delta-coded sections are checked twice over: deltas_valid, a branch-free
 * pass over the bytes, says whether the section is good; only when it is
 * not does check_deltas walk it varint by varint to name the first fault.
 * Decoding is branch-free too (decode_deltas): at density 0.01 about 3 gaps
 * in 10 take 2 bytes, at random, so a branch on a varint's length would
 * mispredict often. */

/* deltas_valid for any varints: a byte's place in its varint is the number
 * of continuation bytes just before it; the index sum is checked once, at
 * the end (indices only grow). p[len - 1] ends a varint. */
static int deltas_valid_any(const uint8_t *p, uint64_t len, uint64_t count, uint32_t n)
{
    uint64_t ends = 0, faults = 0, sum = 0, i = 0;
    uint32_t c1 = 0, c2 = 0, c3 = 0, c4 = 0; /* continuation bits of the 4 bytes before */
    for (; i < len && i < 4; i++) {
        uint32_t b = p[i], run4 = c1 & c2 & c3 & c4;
        uint32_t place = c1 + (c1 & c2) + (c1 & c2 & c3) + run4;
        ends += b < 0x80;
        /* a last byte of 0 after others, or a 5th byte that does not end
         * the varint or holds bits past 2^32 */
        faults += ((b == 0) & c1) | (run4 & (b > 0x0f));
        sum += (uint64_t)(b & 0x7f) << (7 * place);
        c4 = c3; c3 = c2; c2 = c1; c1 = b >> 7;
    }
    for (; i < len; i++) { /* the same, reading the bytes before */
        uint32_t b = p[i], b1 = p[i - 1] >> 7, b2 = p[i - 2] >> 7, b3 = p[i - 3] >> 7,
                 b4 = p[i - 4] >> 7, run4 = b1 & b2 & b3 & b4;
        uint32_t place = b1 + (b1 & b2) + (b1 & b2 & b3) + run4;
        ends += b < 0x80;
        faults += ((b == 0) & b1) | (run4 & (b > 0x0f));
        sum += (uint64_t)(b & 0x7f) << (7 * place);
    }
    /* the last index is sum + count - 1 */
    return ends == count && faults == 0 && sum + count <= n;
}

#ifdef WIRE_SHORT_SIMD
/* deltas_valid_any 64 bytes a step while every varint has 1 or 2 bytes: a
 * 2-byte varint is its first byte's 7 bits plus 128 times its second's, so
 * the gaps sum to (all bytes' 7 bits) + 127 (those of bytes after a
 * continuation byte). -1 when a longer varint occurs (then the general
 * loop decides). Masked loads read nothing past len. */
static int deltas_valid_short(const uint8_t *p, uint64_t len, uint64_t count, uint32_t n)
{
    const __m512i zero = _mm512_setzero_si512(), low7 = _mm512_set1_epi8(0x7f);
    __m512i all7 = zero, after7 = zero; /* byte sums in 8 lanes of 64 bits */
    uint64_t ends = 0, faults = 0, longer = 0, carry = 0;
    for (uint64_t i = 0; i < len; i += 64) {
        __mmask64 in = len - i >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (len - i)) - 1;
        __m512i b = _mm512_maskz_loadu_epi8(in, p + i);
        uint64_t cont = _mm512_movepi8_mask(b), after = cont << 1 | carry;
        carry = cont >> 63;
        longer |= cont & after;
        faults |= _mm512_mask_cmpeq_epi8_mask(in & after, b, zero); /* not minimal */
        ends += (uint64_t)_mm_popcnt_u64(~cont & in);
        __m512i v = _mm512_and_si512(b, low7);
        all7 = _mm512_add_epi64(all7, _mm512_sad_epu8(v, zero));
        after7 = _mm512_add_epi64(after7, _mm512_sad_epu8(_mm512_maskz_mov_epi8(after, v), zero));
    }
    if (longer)
        return -1;
    uint64_t sum = (uint64_t)_mm512_reduce_add_epi64(all7) +
                   127 * (uint64_t)_mm512_reduce_add_epi64(after7);
    return ends == count && faults == 0 && sum + count <= n;
}
#endif

/* Whether p[0..len) is exactly `count` varints, each minimal, of at most 5
 * bytes and below 2^32, whose delta-coded indices stay below n. */
static int deltas_valid(const uint8_t *p, uint64_t len, uint64_t count, uint32_t n)
{
    if (len == 0 || p[len - 1] >= 0x80)
        return len == 0 && count == 0;
#ifdef WIRE_SHORT_SIMD
    int r = deltas_valid_short(p, len, count, n);
    if (r >= 0)
        return r;
#endif
    return deltas_valid_any(p, len, count, n);
}

/* Reads the varint at *pp (before end) strictly into *out. */
static wire_reason get_varint(const uint8_t **pp, const uint8_t *end, uint32_t *out)
{
    const uint8_t *p = *pp;
    if (p == end)
        return WIRE_TRUNCATED;
    uint32_t b = *p++, v = b & 0x7f;
    if (b >= 0x80) {
        for (unsigned shift = 7;; shift += 7) {
            if (p == end)
                return WIRE_TRUNCATED;
            b = *p++;
            /* The 5th byte holds bits 28..31 and ends the varint. */
            if (shift == 28 && b > 0x0f)
                return WIRE_BAD_ENCODING;
            v |= (b & 0x7f) << shift;
            if (b < 0x80)
                break;
        }
        if (b == 0) /* a last byte of 0 adds nothing: not minimal */
            return WIRE_BAD_ENCODING;
    }
    *pp = p;
    *out = v;
    return WIRE_OK;
}

/* The first fault of `count` delta-coded indices below n in p[0..end - p),
 * in message order, or WIRE_OK. */
static wire_reason check_deltas(const uint8_t *p, const uint8_t *end, uint64_t count, uint32_t n)
{
    uint64_t base = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint32_t v;
        wire_reason r = get_varint(&p, end, &v);
        if (r != WIRE_OK)
            return r;
        uint64_t j = base + v;
        if (j > UINT32_MAX)
            return WIRE_NOT_INCREASING;
        if (j >= n)
            return WIRE_BAD_INDEX;
        base = j + 1;
    }
    return p == end ? WIRE_OK : WIRE_BAD_LENGTH;
}

static wire_reason validate_deltas(const uint8_t *p, const uint8_t *end, uint64_t count,
                                   uint32_t n)
{
    if (deltas_valid(p, (uint64_t)(end - p), count, n))
        return WIRE_OK;
    wire_reason r = check_deltas(p, end, count, n);
    /* the two agree on every section; a refusal must name a fault */
    return r != WIRE_OK ? r : WIRE_BAD_ENCODING;
}

/* Reads a varint of a valid section (complement: runs of present indices
 * between absent ones make its loop branchy anyway). */
static inline uint32_t varint_trusted(const uint8_t **pp)
{
    const uint8_t *p = *pp;
    uint32_t b = *p++, v = b & 0x7f;
    for (unsigned shift = 7; b >= 0x80; shift += 7) {
        b = *p++;
        v |= (b & 0x7f) << shift;
    }
    *pp = p;
    return v;
}

static wire_reason check_bitmap(const uint8_t *bm, uint32_t n, uint32_t count)
{
    uint64_t nb = bitmap_bytes(n), ones = 0, i = 0;
    if (n % 8 && bm[nb - 1] >> (n % 8))
        return WIRE_BAD_INDEX;
    for (; i + 8 <= nb; i += 8)
        ones += (uint64_t)__builtin_popcountll(get64(bm + i));
    for (; i < nb; i++)
        ones += (uint64_t)__builtin_popcount(bm[i]);
    return ones == count ? WIRE_OK : WIRE_BAD_ENCODING;
}


/* The values: finite and within gamma. One pass that the compiler
 * vectorizes (the largest |value| as bits: for non-negative floats the
 * integer order is the numeric one, and every non-finite value lies above
 * the largest finite one), then, only when it finds a fault, the loop that
 * names the first. A gamma that is NaN or negative takes that loop alone. */
static wire_reason check_values(const uint8_t *vs, uint32_t count, float gamma)
{
    if (gamma >= 0) {
        uint32_t limit = float_bits(fabsf(gamma)), top = 0;
        limit = limit < 0x7f7fffffu ? limit : 0x7f7fffffu; /* the largest finite float */
        for (uint32_t i = 0; i < count; i++) {
            uint32_t a = get32(vs + 4 * (size_t)i) & 0x7fffffffu;
            top = a > top ? a : top;
        }
        if (top <= limit)
            return WIRE_OK;
    }
    for (uint32_t i = 0; i < count; i++) {
        float v = bits_float(get32(vs + 4 * (size_t)i));
        if (!isfinite(v))
            return WIRE_NOT_FINITE;
        if (fabsf(v) > gamma)
            return WIRE_OUT_OF_BOUNDS;
    }
    return WIRE_OK;
}

wire_reason wire_check(const uint8_t *msg, size_t len, const wire_expect *e, wire_header *h,
                       wire_reader *rd)
{
    wire_reason r = wire_peek(msg, len, h);
    if (r != WIRE_OK)
        return r;
    if (h->magic != WIRE_MAGIC)
        return WIRE_BAD_MAGIC;
    if (h->version != WIRE_VERSION)
        return WIRE_BAD_VERSION;
    if (h->type != e->type)
        return WIRE_BAD_TYPE;
    if (e->participant != UINT32_MAX && h->participant != e->participant)
        return WIRE_BAD_SENDER;
    if (e->epoch != UINT32_MAX && h->epoch != e->epoch)
        return WIRE_BAD_EPOCH;
    if (h->n != e->n)
        return WIRE_BAD_N;
    if (h->count > e->max_count || h->count > h->n)
        return WIRE_TOO_MANY;

    const uint32_t n = h->n, count = h->count;
    const uint8_t enc = msg[24];
    const uint64_t values = 4 * (uint64_t)count;
    /* The smallest index section the encoding allows: a varint is >= 1 byte. */
    uint64_t section;
    switch (enc) {
    case WIRE_ENC_DELTA: section = count; break;
    case WIRE_ENC_BITMAP: section = bitmap_bytes(n); break;
    case WIRE_ENC_DENSE:
        if (count != n)
            return WIRE_BAD_ENCODING;
        section = 0;
        break;
    case WIRE_ENC_COMPLEMENT: section = (uint64_t)n - count; break;
    default: return WIRE_BAD_ENCODING;
    }
    uint64_t want = WIRE_HEADER_BYTES + section + values;
    if ((uint64_t)len < want)
        return WIRE_TRUNCATED;
    int exact = enc == WIRE_ENC_BITMAP || enc == WIRE_ENC_DENSE;
    if (exact && (uint64_t)len > want)
        return WIRE_BAD_LENGTH;

    /* Everything is checked here, so a refused message is never read for
     * data; the reader then trusts the bytes. */
    const uint8_t *is = msg + WIRE_HEADER_BYTES, *vs = msg + len - values;
    switch (enc) {
    case WIRE_ENC_DELTA: r = validate_deltas(is, vs, count, n); break;
    case WIRE_ENC_BITMAP: r = check_bitmap(is, n, count); break;
    case WIRE_ENC_COMPLEMENT: r = validate_deltas(is, vs, (uint64_t)n - count, n); break;
    default: r = WIRE_OK; break;
    }
    if (r != WIRE_OK)
        return r;
    r = check_values(vs, count, e->gamma);
    if (r != WIRE_OK)
        return r;

    *rd = (wire_reader){.p = is, .end = vs, .values = vs, .n = n, .left = count, .enc = enc};
    if (enc == WIRE_ENC_BITMAP) {
        rd->next = (uint64_t)0 - 64; /* the first word read starts at index 0 */
    } else if (enc == WIRE_ENC_COMPLEMENT) {
        rd->absent = rd->p < rd->end ? varint_trusted(&rd->p) : n;
    }
    return WIRE_OK;
}

/* A valid delta section, up to cap bytes at a time (so at most cap
 * indices): a running sum of each byte's 7 bits at its place, plus 1 at
 * each varint's last byte, where the sum less 1 is the next index. It
 * stores at every byte and advances at last bytes only (no branch on a
 * varint's length: at density 0.01 about 3 gaps in 10 take 2 bytes, at
 * random): a store from inside a varint lands where its index will go, and
 * a varint cut by the end of a chunk goes on in the next. */
static size_t decode_deltas_any(wire_reader *rd, uint32_t *idx, size_t cap)
{
    uint64_t sum = rd->sum, k = 0;
    unsigned shift = rd->shift;
    const uint8_t *p = rd->p;
    while (k == 0 && p < rd->end) {
        uint64_t avail = (uint64_t)(rd->end - p), len = avail < cap ? avail : cap;
        for (uint64_t i = 0; i < len; i++) {
            uint32_t b = p[i], last = b < 0x80;
            sum += ((uint64_t)(b & 0x7f) << shift) + last;
            idx[k] = (uint32_t)(sum - 1);
            k += last;
            shift = last ? 0 : shift + 7;
        }
        p += len;
    }
    rd->p = p;
    rd->sum = sum;
    rd->shift = shift;
    return (size_t)k;
}

#ifdef WIRE_SHORT_SIMD
/* x[i] + x[i-1] + ... + x[0] in each of 16 lanes. */
static inline __m512i prefix_sum16(__m512i x)
{
    const __m512i zero = _mm512_setzero_si512();
    x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 15)); /* lanes up by 1 */
    x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 14));
    x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 12));
    return _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 8));
}

/* Lane 15 of x in every lane. */
static inline __m512i lane15(__m512i x)
{
    return _mm512_permutexvar_epi32(_mm512_set1_epi32(15), x);
}

/* The varints that end in the 32 bytes at p, if each has 1 or 2 bytes:
 * each byte's gap as a 16-bit lane (itself, or after a continuation byte
 * the byte before's 7 bits plus 128 times itself), those of last bytes
 * packed (VBMI2's compress), then summed in order onto *base (the reader's
 * sum in every lane). *shift is decode_deltas_any's: a varint cut by the
 * window's end goes on in the next (shift 7). Needs 32 bytes at p and room
 * for 32 indices. Returns how many indices it wrote, or -1 (having changed
 * nothing) when a varint here is longer than 2 bytes. Every window is 32
 * bytes, so one does not wait for the last to find where it ends. */
static inline int decode_short32(const uint8_t *p, __m512i *base, unsigned *shift,
                                 uint32_t *idx)
{
    __m256i bytes = _mm256_loadu_si256((const __m256i *)p);
    uint32_t cont = (uint32_t)_mm256_movemask_epi8(bytes), ends = ~cont;
    uint32_t after = cont << 1 | (*shift != 0); /* bytes after a continuation byte */
    if (cont & after)
        return -1;
    /* lane j: byte j-1; lane 0: 0 (a cut varint's first 7 bits are in sum) */
    const __m512i before = _mm512_set_epi16(30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                            17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3,
                                            2, 1, 0, 0);
    __m512i x = _mm512_cvtepu8_epi16(bytes);
    __m512i y = _mm512_maskz_permutexvar_epi16(~(__mmask32)1, before, x);
    __m512i two = _mm512_or_si512(_mm512_slli_epi16(x, 7),
                                  _mm512_and_si512(y, _mm512_set1_epi16(0x7f)));
    __m512i gaps = _mm512_maskz_compress_epi16(ends, _mm512_mask_blend_epi16(after, x, two));
    /* index i = sum + (gaps 0..i) + i; lanes past the last gap hold 0 */
    __m512i g0 = prefix_sum16(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(gaps)));
    __m512i g1 = prefix_sum16(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(gaps, 1)));
    g1 = _mm512_add_epi32(g1, lane15(g0));
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i at = _mm512_add_epi32(*base, iota);
    _mm512_storeu_si512(idx, _mm512_add_epi32(g0, at));
    _mm512_storeu_si512(idx + 16, _mm512_add_epi32(g1, _mm512_add_epi32(at,
                                                       _mm512_set1_epi32(16))));
    int m = __builtin_popcount(ends);
    unsigned cut = cont >> 31; /* the last byte starts a varint */
    *base = _mm512_add_epi32(_mm512_add_epi32(*base, lane15(g1)),
                             _mm512_set1_epi32(m + (int)(cut ? p[31] & 0x7f : 0)));
    *shift = cut ? 7 : 0;
    return m;
}
#endif

/* decode_short32 while it can, else decode_deltas_any. */
static size_t decode_deltas(wire_reader *rd, uint32_t *idx, size_t cap)
{
#ifdef WIRE_SHORT_SIMD
    /* sum < 2^32 in a valid section: its last index + 1 */
    size_t k = 0;
    const uint8_t *p = rd->p;
    __m512i base = _mm512_set1_epi32((int)(uint32_t)rd->sum);
    unsigned shift = rd->shift;
    int m;
    while (cap - k >= 32 && rd->end - p >= 32 && shift <= 7 &&
           (m = decode_short32(p, &base, &shift, idx + k)) >= 0) {
        k += (size_t)m;
        p += 32;
    }
    if (p != rd->p) {
        rd->p = p;
        rd->sum = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(base));
        rd->shift = shift;
    }
    if (k > 0)
        return k;
#endif
    return decode_deltas_any(rd, idx, cap);
}

/* Every index not yet emitted below the next absent one is present. */
static size_t decode_complement(wire_reader *rd, uint32_t *idx, size_t cap)
{
    size_t k = 0;
    uint64_t next = rd->next, absent = rd->absent;
    while (k < cap && next < rd->n) {
        if (next < absent) {
            uint64_t run = absent - next, room = cap - k;
            for (uint64_t t = run < room ? run : room; t > 0; t--)
                idx[k++] = (uint32_t)next++;
        } else {
            next = absent + 1;
            absent = rd->p < rd->end ? next + varint_trusted(&rd->p) : rd->n;
        }
    }
    rd->next = next;
    rd->absent = absent;
    return k;
}

/* 64 bits at a time; `next` is the index of the current word's bit 0. */
static size_t decode_bitmap(wire_reader *rd, uint32_t *idx, size_t cap)
{
    size_t k = 0, want = cap < rd->left ? cap : rd->left;
    uint64_t word = rd->word;
    while (k < want) {
        while (word == 0) { /* left > 0: a set bit lies ahead */
            uint64_t avail = (uint64_t)(rd->end - rd->p);
            if (avail >= 8) {
                word = get64(rd->p);
            } else {
                for (uint64_t b = 0; b < avail; b++)
                    word |= (uint64_t)rd->p[b] << (8 * b);
            }
            rd->p += avail < 8 ? avail : 8;
            rd->next += 64;
        }
        idx[k++] = (uint32_t)(rd->next + (uint64_t)__builtin_ctzll(word));
        word &= word - 1;
    }
    rd->word = word;
    return k;
}

size_t wire_read(wire_reader *rd, uint32_t *idx, size_t cap)
{
    if (cap == 0 || rd->left == 0)
        return 0;
    size_t k = 0;
    switch (rd->enc) {
    case WIRE_ENC_DELTA: k = decode_deltas(rd, idx, cap); break;
    case WIRE_ENC_BITMAP: k = decode_bitmap(rd, idx, cap); break;
    case WIRE_ENC_COMPLEMENT: k = decode_complement(rd, idx, cap); break;
    case WIRE_ENC_DENSE:
        k = cap < rd->left ? cap : rd->left;
        for (size_t i = 0; i < k; i++)
            idx[i] = (uint32_t)rd->next++;
        break;
    }
    rd->left -= (uint32_t)k;
    return k;
}

wire_reason wire_unpack(const uint8_t *msg, size_t len, const wire_expect *e, wire_header *h,
                        uint32_t *idx, float *val)
{
    wire_reader rd;
    wire_reason r = wire_check(msg, len, e, h, &rd);
    if (r != WIRE_OK)
        return r;
    size_t k = 0, m;
    while ((m = wire_read(&rd, idx + k, h->count - k)) > 0)
        k += m;
    for (uint32_t i = 0; i < h->count; i++)
        val[i] = wire_value(&rd, i);
    return WIRE_OK;
}
