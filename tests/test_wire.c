/* test_wire: the sparse-vector message: exact little-endian layout, round trips,
 * every refusal reason (with outputs untouched) and random-mutation robustness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"
#include "wire.h"

/* The message most tests start from: participant 3, epoch 7, n 100,
 * 4 entries with values up to gamma = 0.5 in magnitude. */
#define N 100
#define MAX_COUNT 8
#define GAMMA 0.5f
#define GUARD 4 /* sentinel slots after max_count */
#define SENTINEL_IDX 0xDEADBEEFu
#define SENTINEL_VAL 12345.0f

static const uint32_t base_idx[4] = {0, 5, 42, 99};
static const float base_val[4] = {0.25f, -0.5f, 0.5f, -0.0f};

static wire_header base_header(uint32_t count)
{
    wire_header h = {.magic = WIRE_MAGIC, .version = WIRE_VERSION, .type = WIRE_UPLOAD,
                     .participant = 3, .epoch = 7, .n = N, .count = count};
    return h;
}

static wire_expect base_expect(void)
{
    wire_expect e = {.type = WIRE_UPLOAD, .participant = 3, .epoch = 7, .n = N,
                     .max_count = MAX_COUNT, .gamma = GAMMA};
    return e;
}

/* Packs the base message (4 entries) into buf; returns its length. */
static size_t pack_base(uint8_t *buf, size_t cap)
{
    wire_header h = base_header(4);
    size_t len = wire_pack(buf, cap, &h, base_idx, base_val);
    assert_int_equal(len, wire_size(4));
    return len;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
}

static void put_float(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put32(p, u);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Output arrays of max_count + GUARD entries, all sentinels. */
typedef struct {
    uint32_t idx[MAX_COUNT + GUARD];
    float val[MAX_COUNT + GUARD];
} outputs;

static void outputs_fill(outputs *o)
{
    for (int i = 0; i < MAX_COUNT + GUARD; i++) {
        o->idx[i] = SENTINEL_IDX;
        o->val[i] = SENTINEL_VAL;
    }
}

static void assert_untouched(const outputs *o, int from)
{
    for (int i = from; i < MAX_COUNT + GUARD; i++) {
        if (o->idx[i] != SENTINEL_IDX || bits(o->val[i]) != bits(SENTINEL_VAL))
            fail_msg("output slot %d was written", i);
    }
}

/* The message is refused for `want` and writes no entry. */
static void assert_refused(const uint8_t *msg, size_t len, const wire_expect *e, wire_reason want)
{
    outputs o;
    outputs_fill(&o);
    wire_header h;
    wire_reason r = wire_unpack(msg, len, e, &h, o.idx, o.val);
    if (r != want)
        fail_msg("expected '%s', got '%s'", wire_reason_name(want), wire_reason_name(r));
    assert_untouched(&o, 0);
}

static void round_trip(uint32_t count, const uint32_t *idx, const float *val, float gamma)
{
    wire_header h = base_header(count);
    size_t cap = wire_size(count);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    assert_int_equal(wire_pack(buf, cap, &h, idx, val), cap);

    wire_expect e = base_expect();
    e.max_count = count;
    e.gamma = gamma;
    uint32_t *oi = malloc((count + 1) * sizeof *oi);
    float *ov = malloc((count + 1) * sizeof *ov);
    assert_true(oi && ov);
    wire_header got;
    wire_reason r = wire_unpack(buf, cap, &e, &got, oi, ov);
    if (r != WIRE_OK)
        fail_msg("round trip of %u entries refused: %s", count, wire_reason_name(r));
    assert_int_equal(got.magic, WIRE_MAGIC);
    assert_int_equal(got.version, WIRE_VERSION);
    assert_int_equal(got.type, WIRE_UPLOAD);
    assert_int_equal(got.participant, 3);
    assert_int_equal(got.epoch, 7);
    assert_int_equal(got.n, N);
    assert_int_equal(got.count, count);
    for (uint32_t i = 0; i < count; i++) {
        assert_int_equal(oi[i], idx[i]);
        /* bit for bit: -0.0 stays negative, denormals are not flushed */
        assert_int_equal(bits(ov[i]), bits(val[i]));
    }
    free(oi);
    free(ov);
    free(buf);
}

/* ---- sizes and packing ---------------------------------------------------- */

static void test_wire_size_is_header_plus_8_per_entry(void **state)
{
    (void)state;
    assert_int_equal(WIRE_HEADER_BYTES, 24);
    assert_int_equal(wire_size(0), 24);
    assert_int_equal(wire_size(1), 32);
    assert_int_equal(wire_size(1000), 24 + 8000);
}

static void test_round_trip_zero_entries(void **state)
{
    (void)state;
    round_trip(0, NULL, NULL, GAMMA);
}

static void test_round_trip_one_entry(void **state)
{
    (void)state;
    uint32_t idx[1] = {N - 1};
    float val[1] = {-GAMMA};
    round_trip(1, idx, val, GAMMA);
}

static void test_round_trip_special_values_bit_exact(void **state)
{
    (void)state;
    /* -0.0, +0.0, the smallest and largest denormals, the smallest normal,
     * and +-gamma exactly: all within [-gamma, gamma] and finite. */
    float val[] = {-0.0f, 0.0f, 1e-45f, -1e-45f, FLT_MIN * 0.999f, FLT_MIN, -FLT_MIN,
                   GAMMA, -GAMMA, 0.1f, -0.3f};
    uint32_t count = sizeof val / sizeof val[0];
    uint32_t idx[sizeof val / sizeof val[0]];
    for (uint32_t i = 0; i < count; i++)
        idx[i] = 3 * i + 1;
    assert_true(fpclassify(val[2]) == FP_SUBNORMAL);
    round_trip(count, idx, val, GAMMA);
}

static void test_round_trip_many_entries(void **state)
{
    (void)state;
    uint32_t count = 90;
    uint32_t idx[90];
    float val[90];
    rng_t rng;
    rng_init(&rng, 11, 0);
    for (uint32_t i = 0; i < count; i++) {
        idx[i] = i + (i > 40 ? 10 : 0); /* strictly increasing, < 100 */
        val[i] = (float)(2.0 * rng_uniform(&rng) - 1.0) * GAMMA;
    }
    round_trip(count, idx, val, GAMMA);
}

static void test_pack_into_too_small_buffer_returns_zero(void **state)
{
    (void)state;
    uint8_t buf[64];
    wire_header h = base_header(4);
    assert_int_equal(wire_pack(buf, wire_size(4) - 1, &h, base_idx, base_val), 0);
    assert_int_equal(wire_pack(buf, 0, &h, base_idx, base_val), 0);
    assert_int_equal(wire_pack(buf, sizeof buf, &h, base_idx, base_val), wire_size(4));
    wire_header h0 = base_header(0);
    assert_int_equal(wire_pack(buf, 23, &h0, NULL, NULL), 0);
    assert_int_equal(wire_pack(buf, 24, &h0, NULL, NULL), 24);
}

static void test_layout_is_little_endian_header_then_indices_then_values(void **state)
{
    (void)state;
    wire_header h = {.magic = WIRE_MAGIC, .version = 0x0102, .type = 0x0304,
                     .participant = 0x05060708, .epoch = 0x090A0B0C, .n = 0x0D0E0F10,
                     .count = 2};
    uint32_t idx[2] = {0x11121314, 0x21222324};
    float val[2] = {1.0f, -2.5f}; /* 0x3F800000, 0xC0200000 */
    uint8_t buf[40];
    memset(buf, 0xEE, sizeof buf);
    assert_int_equal(wire_pack(buf, sizeof buf, &h, idx, val), 40);
    /* Written out by hand from the layout comment in wire.h. */
    static const uint8_t want[40] = {
        'D', 'S', 'G', 'D',         /* 0: magic 0x44475344 little-endian */
        0x02, 0x01,                 /* 4: version */
        0x04, 0x03,                 /* 6: type */
        0x08, 0x07, 0x06, 0x05,     /* 8: participant */
        0x0C, 0x0B, 0x0A, 0x09,     /* 12: epoch */
        0x10, 0x0F, 0x0E, 0x0D,     /* 16: n */
        0x02, 0x00, 0x00, 0x00,     /* 20: count */
        0x14, 0x13, 0x12, 0x11,     /* 24: idx[0] */
        0x24, 0x23, 0x22, 0x21,     /* 28: idx[1] */
        0x00, 0x00, 0x80, 0x3F,     /* 32: val[0] = 1.0f */
        0x00, 0x00, 0x20, 0xC0,     /* 36: val[1] = -2.5f */
    };
    assert_memory_equal(buf, want, sizeof want);

    wire_header p;
    assert_int_equal(wire_peek(buf, sizeof buf, &p), WIRE_OK);
    assert_int_equal(p.magic, WIRE_MAGIC);
    assert_int_equal(p.version, 0x0102);
    assert_int_equal(p.type, 0x0304);
    assert_int_equal(p.participant, 0x05060708);
    assert_int_equal(p.epoch, 0x090A0B0C);
    assert_int_equal(p.n, 0x0D0E0F10);
    assert_int_equal(p.count, 2);
    assert_int_equal(wire_peek(buf, 23, &p), WIRE_TRUNCATED);
}

static void test_unpack_reads_hand_built_message(void **state)
{
    (void)state;
    /* Built byte by byte, not with wire_pack: unpack follows the document. */
    uint8_t msg[24 + 16];
    put32(msg, WIRE_MAGIC);
    put16(msg + 4, WIRE_VERSION);
    put16(msg + 6, WIRE_UPLOAD);
    put32(msg + 8, 3);
    put32(msg + 12, 7);
    put32(msg + 16, N);
    put32(msg + 20, 2);
    put32(msg + 24, 17);
    put32(msg + 28, 64);
    put_float(msg + 32, 0.125f);
    put_float(msg + 36, -0.375f);
    wire_expect e = base_expect();
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(msg, sizeof msg, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(o.idx[0], 17);
    assert_int_equal(o.idx[1], 64);
    assert_true(o.val[0] == 0.125f);
    assert_true(o.val[1] == -0.375f);
    assert_untouched(&o, 2);
}

/* ---- refusals, one reason each ------------------------------------------ */

static void test_refuses_shorter_than_header(void **state)
{
    (void)state;
    uint8_t buf[64];
    pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    for (size_t len = 0; len < WIRE_HEADER_BYTES; len++)
        assert_refused(buf, len, &e, WIRE_TRUNCATED);
}

static void test_refuses_shorter_than_entries(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    for (size_t l = WIRE_HEADER_BYTES; l < len; l++)
        assert_refused(buf, l, &e, WIRE_TRUNCATED);
}

static void test_refuses_trailing_byte(void **state)
{
    (void)state;
    uint8_t buf[64] = {0};
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    assert_refused(buf, len + 1, &e, WIRE_BAD_LENGTH);
}

static void test_refuses_bad_magic(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    buf[0] ^= 0x01;
    assert_refused(buf, len, &e, WIRE_BAD_MAGIC);
    /* the byte-swapped magic (a big-endian sender) is not accepted either */
    put32(buf, 0x44534744u);
    assert_refused(buf, len, &e, WIRE_BAD_MAGIC);
}

static void test_refuses_bad_version(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    put16(buf + 4, WIRE_VERSION + 1);
    assert_refused(buf, len, &e, WIRE_BAD_VERSION);
    put16(buf + 4, 0);
    assert_refused(buf, len, &e, WIRE_BAD_VERSION);
}

static void test_refuses_bad_type(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    put16(buf + 6, WIRE_DOWNLOAD);
    assert_refused(buf, len, &e, WIRE_BAD_TYPE);
    put16(buf + 6, 0xFFFF);
    assert_refused(buf, len, &e, WIRE_BAD_TYPE);
}

static void test_refuses_wrong_participant_unless_unchecked(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.participant = 4;
    assert_refused(buf, len, &e, WIRE_BAD_SENDER);
    e.participant = UINT32_MAX;
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(h.participant, 3);
}

static void test_refuses_wrong_epoch_unless_unchecked(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.epoch = 6;
    assert_refused(buf, len, &e, WIRE_BAD_EPOCH);
    e.epoch = UINT32_MAX; /* UINT32_MAX in the expectation: not checked */
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(h.epoch, 7);
    /* ... but a message that claims epoch UINT32_MAX is refused when one is expected */
    put32(buf + 12, UINT32_MAX);
    e.epoch = 7;
    assert_refused(buf, len, &e, WIRE_BAD_EPOCH);
}

static void test_refuses_wrong_n(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.n = N + 1;
    assert_refused(buf, len, &e, WIRE_BAD_N);
    e.n = N;
    put32(buf + 16, 1000); /* a sender claiming a larger vector */
    assert_refused(buf, len, &e, WIRE_BAD_N);
}

static void test_refuses_count_above_max(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.max_count = 3;
    assert_refused(buf, len, &e, WIRE_TOO_MANY);
    e.max_count = 4; /* exactly max_count is allowed */
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_untouched(&o, 4);
}

static void test_refuses_index_equal_to_n(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    put32(buf + 24 + 12, N); /* last index 99 -> 100 */
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
}

static void test_refuses_index_uint32_max(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    put32(buf + 24 + 12, UINT32_MAX);
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    /* also with n = UINT32_MAX: the index must still be below n */
    wire_header h = base_header(1);
    h.n = UINT32_MAX;
    uint32_t idx[1] = {UINT32_MAX};
    float val[1] = {0};
    len = wire_pack(buf, sizeof buf, &h, idx, val);
    e.n = UINT32_MAX;
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
}

static void test_refuses_repeated_index(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    put32(buf + 24 + 8, 5); /* {0, 5, 5, 99} */
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
}

static void test_refuses_decreasing_index(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    put32(buf + 24 + 8, 3); /* {0, 5, 3, 99} */
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
    pack_base(buf, sizeof buf);
    put32(buf + 24 + 4, 0); /* {0, 0, 42, 99}: a repeated first index */
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
}

static void assert_value_refused(float v, float gamma, wire_reason want)
{
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.gamma = gamma;
    put_float(buf + 24 + 16 + 8, v); /* third value */
    assert_refused(buf, len, &e, want);
}

static void test_refuses_nan(void **state)
{
    (void)state;
    assert_value_refused(NAN, GAMMA, WIRE_NOT_FINITE);
    assert_value_refused(-NAN, INFINITY, WIRE_NOT_FINITE);
}

static void test_refuses_positive_infinity(void **state)
{
    (void)state;
    assert_value_refused(INFINITY, GAMMA, WIRE_NOT_FINITE);
    assert_value_refused(INFINITY, INFINITY, WIRE_NOT_FINITE);
}

static void test_refuses_negative_infinity(void **state)
{
    (void)state;
    assert_value_refused(-INFINITY, GAMMA, WIRE_NOT_FINITE);
    assert_value_refused(-INFINITY, INFINITY, WIRE_NOT_FINITE);
}

static void test_refuses_value_beyond_gamma(void **state)
{
    (void)state;
    assert_value_refused(nextafterf(GAMMA, 1.0f), GAMMA, WIRE_OUT_OF_BOUNDS);
    assert_value_refused(-nextafterf(GAMMA, 1.0f), GAMMA, WIRE_OUT_OF_BOUNDS);
    assert_value_refused(FLT_MAX, GAMMA, WIRE_OUT_OF_BOUNDS);
}

static void test_accepts_value_exactly_gamma(void **state)
{
    (void)state;
    /* base_val holds 0.5 and -0.5 = +-gamma already */
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_true(o.val[1] == -GAMMA && o.val[2] == GAMMA);
}

static void test_infinite_gamma_accepts_any_finite_value(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.gamma = INFINITY;
    put_float(buf + 24 + 16, FLT_MAX);
    put_float(buf + 24 + 16 + 4, -FLT_MAX);
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_true(o.val[0] == FLT_MAX && o.val[1] == -FLT_MAX);
}

static void test_refuses_huge_count_with_short_buffer(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    put32(buf + 20, UINT32_MAX);
    wire_expect e = base_expect();
    outputs o;
    outputs_fill(&o);
    wire_header h;
    wire_reason r = wire_unpack(buf, len, &e, &h, o.idx, o.val);
    assert_int_not_equal(r, WIRE_OK);
    assert_untouched(&o, 0);
    /* with no bound on the count, the length check must still refuse it
     * (24 + 8 * UINT32_MAX must not wrap around to something small) */
    e.max_count = UINT32_MAX;
    assert_refused(buf, len, &e, WIRE_TRUNCATED);
    /* a count whose 8*count wraps a 32-bit size to exactly len - 24 */
    put32(buf + 20, (1u << 29) + 4); /* 8 * count = 2^32 + 32 */
    assert_refused(buf, len, &e, WIRE_TRUNCATED);
}

static void test_refusal_fills_header_when_readable(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    e.epoch = 8;
    wire_header h;
    memset(&h, 0, sizeof h);
    outputs o;
    outputs_fill(&o);
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_BAD_EPOCH);
    assert_int_equal(h.epoch, 7);
    assert_int_equal(h.participant, 3);
    assert_int_equal(h.count, 4);
}

static void test_reason_names_distinct_and_non_empty(void **state)
{
    (void)state;
    for (int a = 0; a < WIRE_REASONS; a++) {
        const char *na = wire_reason_name((wire_reason)a);
        assert_non_null(na);
        assert_true(strlen(na) > 0);
        for (int b = 0; b < a; b++)
            if (strcmp(na, wire_reason_name((wire_reason)b)) == 0)
                fail_msg("reasons %d and %d share the name '%s'", a, b, na);
    }
    const char *beyond = wire_reason_name(WIRE_REASONS);
    assert_non_null(beyond);
}

/* ---- robustness --------------------------------------------------------- */

static void test_random_mutations_never_overrun_and_ok_means_valid(void **state)
{
    (void)state;
    enum { TRIALS = 20000, CAP = 24 + 8 * MAX_COUNT + 16 };
    /* A full message of max_count entries, so mutations of count can claim
     * more than fits and fewer than there are. */
    uint32_t idx[MAX_COUNT];
    float val[MAX_COUNT];
    for (int i = 0; i < MAX_COUNT; i++) {
        idx[i] = (uint32_t)(i * 12 + 1);
        val[i] = (i % 2 ? -1.0f : 1.0f) * GAMMA * (float)(i + 1) / MAX_COUNT;
    }
    wire_header h0 = base_header(MAX_COUNT);
    uint8_t valid[CAP];
    size_t valid_len = wire_pack(valid, sizeof valid, &h0, idx, val);
    assert_int_equal(valid_len, wire_size(MAX_COUNT));
    wire_expect e = base_expect();

    rng_t rng;
    rng_init(&rng, 2024, 0);
    int accepted = 0, refused[WIRE_REASONS] = {0};
    for (int t = 0; t < TRIALS; t++) {
        uint8_t msg[CAP];
        memset(msg, 0, sizeof msg);
        memcpy(msg, valid, valid_len);
        size_t len = valid_len;
        uint32_t kind = rng_below(&rng, 4);
        if (kind == 0 || kind == 3) { /* flip 1..4 random bytes (header-weighted) */
            uint32_t flips = 1 + rng_below(&rng, 4);
            for (uint32_t f = 0; f < flips; f++) {
                size_t at = rng_below(&rng, 2) ? rng_below(&rng, WIRE_HEADER_BYTES)
                                                : rng_below(&rng, (uint32_t)valid_len);
                msg[at] ^= (uint8_t)(1 + rng_below(&rng, 255));
            }
        }
        if (kind == 1 || kind == 3) /* truncate or extend at a random length */
            len = rng_below(&rng, CAP + 1);
        if (kind == 2) { /* set the count to a random small value, keep the length */
            uint32_t c = rng_below(&rng, 2 * MAX_COUNT + 2);
            put32(msg + 20, c);
            if (rng_below(&rng, 2))
                len = wire_size(c) <= CAP ? wire_size(c) : len;
        }

        outputs o;
        outputs_fill(&o);
        wire_header h;
        wire_reason r = wire_unpack(msg, len, &e, &h, o.idx, o.val);
        assert_true((int)r >= 0 && r < WIRE_REASONS);
        assert_untouched(&o, MAX_COUNT); /* guards after max_count never written */
        if (r != WIRE_OK) {
            assert_untouched(&o, 0);
            refused[r]++;
            continue;
        }
        accepted++;
        assert_true(h.count <= MAX_COUNT);
        assert_int_equal(len, wire_size(h.count));
        assert_untouched(&o, (int)h.count);
        for (uint32_t i = 0; i < h.count; i++) {
            assert_true(o.idx[i] < N);
            if (i > 0)
                assert_true(o.idx[i] > o.idx[i - 1]);
            assert_true(isfinite(o.val[i]));
            assert_true(fabsf(o.val[i]) <= GAMMA);
        }
    }
    /* the mutations reached both sides and several different refusals */
    assert_true(accepted > 0);
    int reasons_seen = 0;
    for (int r = 1; r < WIRE_REASONS; r++)
        reasons_seen += refused[r] > 0;
    assert_true(reasons_seen >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_size_is_header_plus_8_per_entry),
        cmocka_unit_test(test_round_trip_zero_entries),
        cmocka_unit_test(test_round_trip_one_entry),
        cmocka_unit_test(test_round_trip_special_values_bit_exact),
        cmocka_unit_test(test_round_trip_many_entries),
        cmocka_unit_test(test_pack_into_too_small_buffer_returns_zero),
        cmocka_unit_test(test_layout_is_little_endian_header_then_indices_then_values),
        cmocka_unit_test(test_unpack_reads_hand_built_message),
        cmocka_unit_test(test_refuses_shorter_than_header),
        cmocka_unit_test(test_refuses_shorter_than_entries),
        cmocka_unit_test(test_refuses_trailing_byte),
        cmocka_unit_test(test_refuses_bad_magic),
        cmocka_unit_test(test_refuses_bad_version),
        cmocka_unit_test(test_refuses_bad_type),
        cmocka_unit_test(test_refuses_wrong_participant_unless_unchecked),
        cmocka_unit_test(test_refuses_wrong_epoch_unless_unchecked),
        cmocka_unit_test(test_refuses_wrong_n),
        cmocka_unit_test(test_refuses_count_above_max),
        cmocka_unit_test(test_refuses_index_equal_to_n),
        cmocka_unit_test(test_refuses_index_uint32_max),
        cmocka_unit_test(test_refuses_repeated_index),
        cmocka_unit_test(test_refuses_decreasing_index),
        cmocka_unit_test(test_refuses_nan),
        cmocka_unit_test(test_refuses_positive_infinity),
        cmocka_unit_test(test_refuses_negative_infinity),
        cmocka_unit_test(test_refuses_value_beyond_gamma),
        cmocka_unit_test(test_accepts_value_exactly_gamma),
        cmocka_unit_test(test_infinite_gamma_accepts_any_finite_value),
        cmocka_unit_test(test_refuses_huge_count_with_short_buffer),
        cmocka_unit_test(test_refusal_fills_header_when_readable),
        cmocka_unit_test(test_reason_names_distinct_and_non_empty),
        cmocka_unit_test(test_random_mutations_never_overrun_and_ok_means_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
