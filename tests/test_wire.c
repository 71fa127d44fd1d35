/* test_wire: the sparse-vector message (version 2): exact little-endian layout of
 * every encoding, round trips, the size rule against a naive reference encoder,
 * every refusal reason (with outputs untouched), truncation at every byte, and
 * random-mutation robustness. Prints the bytes an entry by density (docs/DESIGN.md, 'Wire format v2'). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"
#include "test_util.h"
#include "wire.h"

/* The message most tests start from: participant 3, epoch 7, n 100,
 * 4 entries with values up to gamma = 0.5 in magnitude. wire_pack puts it in
 * the delta encoding: varints 0, 4, 36, 56, so 25 + 4 + 16 = 45 bytes. */
#define N 100
#define MAX_COUNT 8
#define GAMMA 0.5f
#define GUARD 4 /* sentinel slots after max_count */
#define SENTINEL_IDX 0xDEADBEEFu
#define SENTINEL_VAL 12345.0f
#define BASE_LEN 45
/* The MLP of the paper's MNIST setting (784-128-64-10). */
#define MLP_N 101770u

static const uint32_t base_idx[4] = {0, 5, 42, 99};
static const float base_val[4] = {0.25f, -0.5f, 0.5f, -0.0f};
static const wire_encoding all_encodings[] = {WIRE_ENC_DELTA, WIRE_ENC_BITMAP, WIRE_ENC_DENSE,
                                              WIRE_ENC_COMPLEMENT};
#define ENCODINGS 4

static wire_header header_n(uint32_t n, uint32_t count)
{
    wire_header h = {.magic = WIRE_MAGIC, .version = WIRE_VERSION, .type = WIRE_UPLOAD,
                     .participant = 3, .epoch = 7, .n = n, .count = count};
    return h;
}

static wire_header base_header(uint32_t count) { return header_n(N, count); }

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
    assert_int_equal(len, BASE_LEN);
    return len;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void put_float(uint8_t *p, float f) { tu_put32(p, bits(f)); }

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

/* The message is refused for `want` and writes no entry. The message is
 * copied into a heap block of exactly len bytes, so ASan sees any read past
 * its end. */
static void assert_refused(const uint8_t *msg, size_t len, const wire_expect *e, wire_reason want)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, msg, len);
    outputs o;
    outputs_fill(&o);
    wire_header h;
    wire_reason r = wire_unpack(copy, len, e, &h, o.idx, o.val);
    free(copy);
    if (r != want)
        fail_msg("expected '%s', got '%s'", wire_reason_name(want), wire_reason_name(r));
    assert_untouched(&o, 0);
}

/* ---- an independent reference encoder ---------------------------------- */

/* Written from the layout comment in wire.h, the naive way: a presence flag
 * per index, LEB128 by repeated division. Returns the message length, or 0
 * when enc does not apply; buf may be NULL to only measure. */
static size_t ref_varint(uint8_t *out, uint64_t v)
{
    size_t k = 0;
    do {
        uint8_t byte = (uint8_t)(v % 128);
        v /= 128;
        if (v)
            byte |= 0x80;
        if (out)
            out[k] = byte;
        k++;
    } while (v);
    return k;
}

static size_t ref_encode(uint8_t *buf, const wire_header *h, const uint32_t *idx,
                         const float *val, wire_encoding enc)
{
    uint32_t n = h->n, count = h->count;
    if (enc == WIRE_ENC_DENSE && count != n)
        return 0;
    uint8_t *present = calloc(n ? n : 1, 1);
    assert_non_null(present);
    for (uint32_t i = 0; i < count; i++)
        present[idx[i]] = 1;
    size_t at = 25;
    if (buf) {
        tu_put32(buf, h->magic);
        put16(buf + 4, h->version);
        put16(buf + 6, h->type);
        tu_put32(buf + 8, h->participant);
        tu_put32(buf + 12, h->epoch);
        tu_put32(buf + 16, h->n);
        tu_put32(buf + 20, h->count);
        buf[24] = (uint8_t)enc;
    }
    int64_t last = -1;
    switch (enc) {
    case WIRE_ENC_DELTA:
        for (uint32_t i = 0; i < count; i++) {
            at += ref_varint(buf ? buf + at : NULL, (uint64_t)((int64_t)idx[i] - last - 1));
            last = idx[i];
        }
        break;
    case WIRE_ENC_BITMAP:
        for (uint32_t b = 0; b < (n + 7) / 8; b++) {
            uint8_t byte = 0;
            for (uint32_t j = 8 * b; j < 8 * b + 8 && j < n; j++)
                if (present[j])
                    byte |= (uint8_t)(1u << (j - 8 * b));
            if (buf)
                buf[at] = byte;
            at++;
        }
        break;
    case WIRE_ENC_DENSE:
        break;
    case WIRE_ENC_COMPLEMENT:
        for (uint32_t j = 0; j < n; j++)
            if (!present[j]) {
                at += ref_varint(buf ? buf + at : NULL, (uint64_t)((int64_t)j - last - 1));
                last = j;
            }
        break;
    }
    if (buf)
        for (uint32_t i = 0; i < count; i++)
            put_float(buf + at + 4 * (size_t)i, val[i]);
    free(present);
    return at + 4 * (size_t)count;
}

/* The smallest of the applicable encodings, ties to dense, delta, bitmap,
 * complement (wire.h's rule). */
static size_t ref_min_size(const wire_header *h, const uint32_t *idx, wire_encoding *chosen)
{
    static const wire_encoding order[] = {WIRE_ENC_DENSE, WIRE_ENC_DELTA, WIRE_ENC_BITMAP,
                                          WIRE_ENC_COMPLEMENT};
    size_t best = 0;
    for (int i = 0; i < 4; i++) {
        size_t s = ref_encode(NULL, h, idx, NULL, order[i]);
        if (s && (!best || s < best)) {
            best = s;
            *chosen = order[i];
        }
    }
    return best;
}

/* The entries of a density: at least one, ceil(density n) (less a hair,
 * so that 0.1 * 101770 = 10177.000000000002 is 10177). */
static uint32_t count_at(double density, uint32_t n)
{
    uint32_t c = (uint32_t)ceil(density * n - 1e-6);
    return c ? c : 1;
}

/* `count` distinct indices of [0, n), uniformly, in increasing order
 * (selection sampling, Knuth's algorithm S). */
static void random_indices(rng_t *rng, uint32_t n, uint32_t count, uint32_t *idx)
{
    uint32_t k = 0;
    for (uint32_t j = 0; j < n && k < count; j++)
        if ((double)(n - j) * rng_uniform(rng) < (double)(count - k))
            idx[k++] = j;
    assert_int_equal(k, count);
}

static void random_values(rng_t *rng, uint32_t count, float *val)
{
    for (uint32_t i = 0; i < count; i++)
        val[i] = (float)(2.0 * rng_uniform(rng) - 1.0) * GAMMA;
}

/* Packs in enc, checks the bytes against the reference encoder, and decodes
 * them back bit for bit. */
static void round_trip_as(const wire_header *h, const uint32_t *idx, const float *val,
                          wire_encoding enc)
{
    size_t want = ref_encode(NULL, h, idx, val, enc);
    assert_int_equal(wire_encoding_size(enc, h->n, h->count, idx), want);
    if (!want) { /* dense with count != n */
        uint8_t small[64];
        assert_int_equal(wire_pack_as(small, sizeof small, h, idx, val, enc), 0);
        return;
    }
    uint8_t *buf = malloc(want), *ref = malloc(want);
    assert_true(buf && ref);
    assert_int_equal(wire_pack_as(buf, want, h, idx, val, enc), want);
    assert_int_equal(ref_encode(ref, h, idx, val, enc), want);
    if (memcmp(buf, ref, want) != 0)
        fail_msg("%s: n %u count %u: bytes differ from the reference encoder",
                 wire_encoding_name(enc), h->n, h->count);

    wire_expect e = {.type = h->type, .participant = h->participant, .epoch = h->epoch,
                     .n = h->n, .max_count = h->count, .gamma = GAMMA};
    uint32_t *oi = malloc(((size_t)h->count + 1) * sizeof *oi);
    float *ov = malloc(((size_t)h->count + 1) * sizeof *ov);
    assert_true(oi && ov);
    oi[h->count] = SENTINEL_IDX;
    wire_header got;
    wire_reason r = wire_unpack(buf, want, &e, &got, oi, ov);
    if (r != WIRE_OK)
        fail_msg("%s: round trip of %u of %u entries refused: %s", wire_encoding_name(enc),
                 h->count, h->n, wire_reason_name(r));
    assert_int_equal(got.magic, WIRE_MAGIC);
    assert_int_equal(got.version, WIRE_VERSION);
    assert_int_equal(got.type, h->type);
    assert_int_equal(got.participant, h->participant);
    assert_int_equal(got.epoch, h->epoch);
    assert_int_equal(got.n, h->n);
    assert_int_equal(got.count, h->count);
    assert_int_equal(wire_message_encoding(buf, want), enc);
    for (uint32_t i = 0; i < h->count; i++) {
        if (oi[i] != idx[i])
            fail_msg("%s: entry %u: index %u, want %u", wire_encoding_name(enc), i, oi[i],
                     idx[i]);
        /* bit for bit: -0.0 stays negative, denormals are not flushed */
        assert_int_equal(bits(ov[i]), bits(val[i]));
    }
    assert_int_equal(oi[h->count], SENTINEL_IDX);
    free(oi);
    free(ov);
    free(buf);
    free(ref);
}

/* Every encoding round-trips, and wire_pack picks the reference's smallest. */
static void round_trip_all(const wire_header *h, const uint32_t *idx, const float *val)
{
    for (int i = 0; i < ENCODINGS; i++)
        round_trip_as(h, idx, val, all_encodings[i]);
    wire_encoding want_enc = 0, got_enc = 0;
    size_t want = ref_min_size(h, idx, &want_enc);
    assert_int_equal(wire_packed_size(h->n, h->count, idx, &got_enc), want);
    assert_int_equal(got_enc, want_enc);
    assert_true(want <= wire_size(h->count));
    uint8_t *buf = malloc(want);
    assert_non_null(buf);
    assert_int_equal(wire_pack(buf, want, h, idx, val), want);
    assert_int_equal(buf[24], want_enc);
    assert_int_equal(wire_pack(buf, want - 1, h, idx, val), 0);
    free(buf);
}

/* ---- sizes and packing ---------------------------------------------------- */

static void test_wire_size_bounds_every_packed_message(void **state)
{
    (void)state;
    assert_int_equal(WIRE_HEADER_BYTES, 25);
    assert_int_equal(wire_size(0), 25 + 15);
    assert_int_equal(wire_size(1000), 25 + 8000 + 15);
    /* The worst case the bound allows for: 15 gaps of 2^28 in a vector of
     * 2^32 - 1 (5-byte varints), where the bitmap would be 512 MiB. */
    uint32_t idx[15];
    float val[15] = {0};
    for (uint32_t i = 0; i < 15; i++)
        idx[i] = (uint32_t)(i + 1) * ((1u << 28) + 1) - 1; /* every gap - 1 = 2^28 */
    wire_encoding enc = 0;
    assert_int_equal(wire_packed_size(UINT32_MAX, 15, idx, &enc), wire_size(15));
    assert_int_equal(enc, WIRE_ENC_DELTA);
    uint8_t buf[25 + 8 * 15 + 15];
    wire_header h = header_n(UINT32_MAX, 15);
    assert_int_equal(wire_pack(buf, sizeof buf, &h, idx, val), sizeof buf);
    wire_expect e = {WIRE_UPLOAD, 3, 7, UINT32_MAX, 15, GAMMA};
    uint32_t oi[15];
    float ov[15];
    wire_header got;
    assert_int_equal(wire_unpack(buf, sizeof buf, &e, &got, oi, ov), WIRE_OK);
    assert_memory_equal(oi, idx, sizeof idx);
}

static void test_round_trip_zero_and_one_entry(void **state)
{
    (void)state;
    for (uint32_t n = 0; n < 20; n++) {
        wire_header h = header_n(n, 0);
        round_trip_all(&h, NULL, NULL);
        for (uint32_t j = 0; j < n; j++) {
            uint32_t idx[1] = {j};
            float val[1] = {-GAMMA};
            h = header_n(n, 1);
            round_trip_all(&h, idx, val);
        }
    }
    /* No entries costs just the header: delta with an empty section. */
    wire_encoding enc = 0;
    assert_int_equal(wire_packed_size(MLP_N, 0, NULL, &enc), WIRE_HEADER_BYTES);
    assert_int_equal(enc, WIRE_ENC_DELTA);
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
    wire_header h = base_header(count);
    round_trip_all(&h, idx, val);
    /* and dense, every value of a vector as long as the list */
    for (uint32_t i = 0; i < count; i++)
        idx[i] = i;
    h = header_n(count, count);
    round_trip_all(&h, idx, val);
}

/* Every encoding at densities 1/n, 0.001, 0.01, 0.1, 0.5, 0.97 and 1, for
 * the MLP's n and for a small odd n (a partial last bitmap byte). */
static void test_round_trip_every_encoding_every_density(void **state)
{
    (void)state;
    const double density[] = {0, 0.001, 0.01, 0.1, 0.5, 0.97, 1}; /* 0: one entry */
    const uint32_t ns[] = {MLP_N, 1003};
    rng_t rng;
    rng_init(&rng, 9, 0);
    uint32_t *idx = malloc(MLP_N * sizeof *idx);
    float *val = malloc(MLP_N * sizeof *val);
    assert_true(idx && val);
    for (int a = 0; a < 2; a++)
        for (int d = 0; d < 7; d++) {
            uint32_t n = ns[a], count = count_at(density[d], n);
            random_indices(&rng, n, count, idx);
            random_values(&rng, count, val);
            wire_header h = header_n(n, count);
            round_trip_all(&h, idx, val);
        }
    free(idx);
    free(val);
}

/* Every subset of [0, n) for n <= 11: the chosen size is the reference's
 * smallest, each encoding round-trips, and nothing exceeds the dense vector. */
static void test_every_subset_of_small_vectors(void **state)
{
    (void)state;
    uint32_t idx[11];
    float val[11];
    for (uint32_t i = 0; i < 11; i++)
        val[i] = (float)i / 32 - 0.125f;
    for (uint32_t n = 0; n <= 11; n++)
        for (uint32_t set = 0; set < 1u << n; set++) {
            uint32_t count = 0;
            for (uint32_t j = 0; j < n; j++)
                if (set >> j & 1)
                    idx[count++] = j;
            wire_header h = header_n(n, count);
            round_trip_all(&h, idx, val);
            assert_true(wire_packed_size(n, count, idx, NULL) <= WIRE_HEADER_BYTES + 4 * n);
        }
}

/* The goal: at theta = 0.01 of the MLP, with uniformly spread
 * indices (as top-k of real gradients are, roughly), at most 5.5 bytes an
 * entry, header included. Twenty draws; the mean is about 5.3. */
static void test_theta_001_costs_at_most_5_5_bytes_an_entry(void **state)
{
    (void)state;
    uint32_t count = (MLP_N + 99) / 100; /* ceil(0.01 n) = 1018 */
    uint32_t *idx = malloc(count * sizeof *idx);
    assert_non_null(idx);
    rng_t rng;
    rng_init(&rng, 2015, 0);
    double sum = 0, worst = 0;
    for (int t = 0; t < 20; t++) {
        random_indices(&rng, MLP_N, count, idx);
        wire_encoding enc = 0;
        double per = (double)wire_packed_size(MLP_N, count, idx, &enc) / count;
        assert_int_equal(enc, WIRE_ENC_DELTA);
        sum += per;
        worst = per > worst ? per : worst;
    }
    print_message("theta 0.01, n %u, %u entries: %.3f bytes an entry on average, %.3f at "
                  "worst (v1: %.3f)\n", MLP_N, count, sum / 20, worst, (24.0 + 8 * count) / count);
    assert_true(worst <= 5.5);
    free(idx);
}

/* Never more than the dense vector, at any density: every count of the MLP
 * in steps of n/100, the last 40 counts below n, and clustered indices. */
static void test_never_larger_than_dense(void **state)
{
    (void)state;
    uint32_t *idx = malloc(MLP_N * sizeof *idx);
    assert_non_null(idx);
    rng_t rng;
    rng_init(&rng, 77, 0);
    size_t dense = WIRE_HEADER_BYTES + 4 * (size_t)MLP_N;
    for (uint32_t count = 0; count <= MLP_N; count += count >= MLP_N - 40 ? 1 : MLP_N / 100) {
        random_indices(&rng, MLP_N, count, idx);
        size_t s = wire_packed_size(MLP_N, count, idx, NULL);
        if (s > dense)
            fail_msg("%u entries: %zu bytes, the dense vector is %zu", count, s, dense);
        /* the same count in one block, and every other index */
        for (uint32_t i = 0; i < count; i++)
            idx[i] = MLP_N - count + i;
        assert_true(wire_packed_size(MLP_N, count, idx, NULL) <= dense);
        if (count <= MLP_N / 2) {
            for (uint32_t i = 0; i < count; i++)
                idx[i] = 2 * i + 1;
            assert_true(wire_packed_size(MLP_N, count, idx, NULL) <= dense);
        }
    }
    free(idx);
}

/* Bytes an entry (header included) by density for
 * the MLP, uniformly random indices, seed 1. Printed, and sanity-checked. */
static void test_print_bytes_per_entry_by_density(void **state)
{
    (void)state;
    const double density[] = {1.0 / MLP_N, 0.001, 0.01, 0.05, 0.1, 0.5, 0.9, 0.97, 0.99, 1};
    uint32_t *idx = malloc(MLP_N * sizeof *idx);
    assert_non_null(idx);
    rng_t rng;
    rng_init(&rng, 1, 0);
    print_message("n = %u, uniformly random indices; bytes/entry include the %d-byte header\n",
                  MLP_N, WIRE_HEADER_BYTES);
    print_message("%-9s %7s %-10s %9s %7s %7s %7s %7s %8s\n", "density", "count", "encoding",
                  "bytes", "B/entry", "delta", "bitmap", "compl.", "v1 B/e");
    for (int d = 0; d < 10; d++) {
        uint32_t count = count_at(density[d], MLP_N);
        random_indices(&rng, MLP_N, count, idx);
        wire_encoding enc = 0;
        size_t s = wire_packed_size(MLP_N, count, idx, &enc);
        double per[3];
        for (int e = 0; e < 3; e++) {
            wire_encoding which = e == 0 ? WIRE_ENC_DELTA
                                  : e == 1 ? WIRE_ENC_BITMAP : WIRE_ENC_COMPLEMENT;
            per[e] = (double)wire_encoding_size(which, MLP_N, count, idx) / count;
        }
        print_message("%-9.6g %7u %-10s %9zu %7.3f %7.3f %7.3f %7.3f %8.3f\n", density[d], count,
                      wire_encoding_name(enc), s, (double)s / count, per[0], per[1], per[2],
                      (24.0 + 8.0 * count) / count);
        assert_true(s <= WIRE_HEADER_BYTES + 4 * (size_t)MLP_N);
    }
    free(idx);
}

static void test_pack_refuses_small_buffers_and_invalid_entries(void **state)
{
    (void)state;
    uint8_t buf[64];
    memset(buf, 0xEE, sizeof buf);
    wire_header h = base_header(4);
    assert_int_equal(wire_pack(buf, BASE_LEN - 1, &h, base_idx, base_val), 0);
    assert_int_equal(wire_pack(buf, 0, &h, base_idx, base_val), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xEE); /* nothing written on failure */
    assert_int_equal(wire_pack(buf, sizeof buf, &h, base_idx, base_val), BASE_LEN);
    wire_header h0 = base_header(0);
    assert_int_equal(wire_pack(buf, 24, &h0, NULL, NULL), 0);
    assert_int_equal(wire_pack(buf, 25, &h0, NULL, NULL), 25);
    /* indices that are no sparse vector of length n are not packed */
    const uint32_t repeated[2] = {5, 5}, decreasing[2] = {6, 2}, beyond[2] = {3, N};
    h = base_header(2);
    assert_int_equal(wire_pack(buf, sizeof buf, &h, repeated, base_val), 0);
    assert_int_equal(wire_pack(buf, sizeof buf, &h, decreasing, base_val), 0);
    assert_int_equal(wire_pack(buf, sizeof buf, &h, beyond, base_val), 0);
    assert_int_equal(wire_packed_size(N, 2, beyond, NULL), 0);
    for (int e = 0; e < ENCODINGS; e++)
        assert_int_equal(wire_pack_as(buf, sizeof buf, &h, decreasing, base_val,
                                      all_encodings[e]), 0);
    const uint32_t three[3] = {0, 1, 2};
    h = header_n(2, 3); /* more entries than the vector has */
    assert_int_equal(wire_pack(buf, sizeof buf, &h, three, base_val), 0);
    /* dense only when every index is present; unknown encodings never */
    h = base_header(4);
    assert_int_equal(wire_pack_as(buf, sizeof buf, &h, base_idx, base_val, WIRE_ENC_DENSE), 0);
    assert_int_equal(wire_pack_as(buf, sizeof buf, &h, base_idx, base_val, (wire_encoding)0), 0);
    assert_int_equal(wire_pack_as(buf, sizeof buf, &h, base_idx, base_val, (wire_encoding)5), 0);
    assert_string_equal(wire_encoding_name(WIRE_ENC_DELTA), "delta");
    assert_string_equal(wire_encoding_name(WIRE_ENC_BITMAP), "bitmap");
    assert_string_equal(wire_encoding_name(WIRE_ENC_DENSE), "dense");
    assert_string_equal(wire_encoding_name(WIRE_ENC_COMPLEMENT), "complement");
    assert_string_equal(wire_encoding_name((wire_encoding)0), "unknown");
    assert_string_equal(wire_encoding_name((wire_encoding)9), "unknown");
}

/* ---- the layout, byte by byte ------------------------------------------- */

/* The 25 header bytes of the layout tests, written out from wire.h. */
static const uint8_t layout_header[24] = {
    'D', 'S', 'G', 'D',         /* 0: magic 0x44475344 little-endian */
    0x02, 0x01,                 /* 4: version */
    0x04, 0x03,                 /* 6: type */
    0x08, 0x07, 0x06, 0x05,     /* 8: participant */
    0x0C, 0x0B, 0x0A, 0x09,     /* 12: epoch */
    20, 0, 0, 0,                /* 16: n = 20 */
    3, 0, 0, 0,                 /* 20: count = 3 */
};

static void assert_layout(wire_encoding enc, const uint8_t *section, size_t section_len)
{
    wire_header h = {.magic = WIRE_MAGIC, .version = 0x0102, .type = 0x0304,
                     .participant = 0x05060708, .epoch = 0x090A0B0C, .n = 20, .count = 3};
    const uint32_t idx[3] = {2, 3, 19};
    const float val[3] = {1.0f, -2.5f, 0.5f}; /* 0x3F800000, 0xC0200000, 0x3F000000 */
    static const uint8_t values[12] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0,
                                       0x00, 0x00, 0x00, 0x3F};
    uint8_t buf[128], want[128];
    memset(buf, 0xEE, sizeof buf);
    size_t len = 25 + section_len + 12;
    memcpy(want, layout_header, 24);
    want[24] = (uint8_t)enc;
    memcpy(want + 25, section, section_len);
    memcpy(want + 25 + section_len, values, 12);
    assert_int_equal(wire_pack_as(buf, sizeof buf, &h, idx, val, enc), len);
    assert_memory_equal(buf, want, len);
    assert_int_equal(buf[len], 0xEE);

    wire_header p;
    assert_int_equal(wire_peek(buf, len, &p), WIRE_OK);
    assert_int_equal(p.magic, WIRE_MAGIC);
    assert_int_equal(p.version, 0x0102);
    assert_int_equal(p.type, 0x0304);
    assert_int_equal(p.participant, 0x05060708);
    assert_int_equal(p.epoch, 0x090A0B0C);
    assert_int_equal(p.n, 20);
    assert_int_equal(p.count, 3);
    assert_int_equal(wire_message_encoding(buf, len), enc);
    assert_int_equal(wire_peek(buf, 24, &p), WIRE_TRUNCATED);
    assert_int_equal(wire_message_encoding(buf, 24), 0);
}

static void test_layout_delta(void **state)
{
    (void)state;
    /* {2, 3, 19}: the first index, then gaps - 1: 2, 0, 15 */
    const uint8_t section[] = {2, 0, 15};
    assert_layout(WIRE_ENC_DELTA, section, sizeof section);
}

static void test_layout_bitmap(void **state)
{
    (void)state;
    /* bits 2 and 3 of byte 0, bit 3 of byte 2 (index 19); ceil(20/8) = 3 */
    const uint8_t section[] = {0x0C, 0x00, 0x08};
    assert_layout(WIRE_ENC_BITMAP, section, sizeof section);
}

static void test_layout_complement(void **state)
{
    (void)state;
    /* absent: 0, 1, 4, 5, ..., 18: varints 0, 0, 2, then 0 fourteen times */
    uint8_t section[17] = {0, 0, 2};
    assert_layout(WIRE_ENC_COMPLEMENT, section, sizeof section);
}

static void test_layout_dense_and_multi_byte_varints(void **state)
{
    (void)state;
    /* dense: n = count = 2, the values alone */
    wire_header h = header_n(2, 2);
    const uint32_t two[2] = {0, 1};
    const float val[2] = {1.0f, -2.5f};
    uint8_t buf[64];
    assert_int_equal(wire_pack(buf, sizeof buf, &h, two, val), 25 + 8);
    assert_int_equal(buf[24], WIRE_ENC_DENSE);
    const uint8_t dense_values[8] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0};
    assert_memory_equal(buf + 25, dense_values, 8);
    /* delta varints of 1 to 5 bytes: 127 | 128 | 16383 + 1 ... */
    const uint32_t idx[5] = {127, 127 + 1 + 128, 127 + 1 + 128 + 1 + 16384,
                             127 + 1 + 128 + 1 + 16384 + 1 + 2097152,
                             127 + 1 + 128 + 1 + 16384 + 1 + 2097152 + 1 + 268435456};
    const float zero[5] = {0};
    h = header_n(UINT32_MAX, 5);
    assert_int_equal(wire_pack_as(buf, sizeof buf, &h, idx, zero, WIRE_ENC_DELTA),
                     25 + 1 + 2 + 3 + 4 + 5 + 20);
    const uint8_t varints[15] = {0x7F, 0x80, 0x01, 0x80, 0x80, 0x01, 0x80, 0x80, 0x80, 0x01,
                                 0x80, 0x80, 0x80, 0x80, 0x01};
    assert_memory_equal(buf + 25, varints, 15);
}

/* ---- hand-written messages -------------------------------------------- */

/* A message of the base header (n, count and encoding as given) with a
 * hand-written index section and `count` values of 0.25. Returns its length. */
static size_t craft(uint8_t *buf, uint32_t n, uint32_t count, uint8_t enc,
                    const uint8_t *section, size_t section_len)
{
    tu_put32(buf, WIRE_MAGIC);
    put16(buf + 4, WIRE_VERSION);
    put16(buf + 6, WIRE_UPLOAD);
    tu_put32(buf + 8, 3);
    tu_put32(buf + 12, 7);
    tu_put32(buf + 16, n);
    tu_put32(buf + 20, count);
    buf[24] = enc;
    if (section_len)
        memcpy(buf + 25, section, section_len);
    for (uint32_t i = 0; i < count; i++)
        put_float(buf + 25 + section_len + 4 * (size_t)i, 0.25f);
    return 25 + section_len + 4 * (size_t)count;
}

static wire_expect expect_n(uint32_t n)
{
    wire_expect e = base_expect();
    e.n = n;
    return e;
}

static void test_unpack_reads_hand_built_message(void **state)
{
    (void)state;
    /* Built byte by byte, not with wire_pack: unpack follows the document.
     * {17, 64} in the delta encoding: 17, then 64 - 17 - 1 = 46. */
    uint8_t msg[64];
    const uint8_t section[] = {17, 46};
    size_t len = craft(msg, N, 2, WIRE_ENC_DELTA, section, sizeof section);
    put_float(msg + len - 8, 0.125f);
    put_float(msg + len - 4, -0.375f);
    wire_expect e = base_expect();
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(msg, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(wire_message_encoding(msg, len), WIRE_ENC_DELTA);
    assert_int_equal(o.idx[0], 17);
    assert_int_equal(o.idx[1], 64);
    assert_true(o.val[0] == 0.125f);
    assert_true(o.val[1] == -0.375f);
    assert_untouched(&o, 2);
    /* a 2-byte varint: 200 = 0xC8 0x01 */
    const uint8_t two_bytes[] = {0xC8, 0x01};
    len = craft(msg, 300, 1, WIRE_ENC_DELTA, two_bytes, sizeof two_bytes);
    e = expect_n(300);
    outputs_fill(&o);
    assert_int_equal(wire_unpack(msg, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(o.idx[0], 200);
    assert_untouched(&o, 1);
    /* a bitmap of n = 9: indices 0 and 8 */
    const uint8_t bitmap[] = {0x01, 0x01};
    len = craft(msg, 9, 2, WIRE_ENC_BITMAP, bitmap, sizeof bitmap);
    e = expect_n(9);
    outputs_fill(&o);
    assert_int_equal(wire_unpack(msg, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(o.idx[0], 0);
    assert_int_equal(o.idx[1], 8);
    assert_untouched(&o, 2);
    /* complement of n = 6 missing 1 and 4: present 0, 2, 3, 5 */
    const uint8_t absent[] = {1, 2};
    len = craft(msg, 6, 4, WIRE_ENC_COMPLEMENT, absent, sizeof absent);
    e = expect_n(6);
    outputs_fill(&o);
    assert_int_equal(wire_unpack(msg, len, &e, &h, o.idx, o.val), WIRE_OK);
    const uint32_t present[4] = {0, 2, 3, 5};
    assert_memory_equal(o.idx, present, sizeof present);
    assert_untouched(&o, 4);
}

/* ---- refusals of the header, one reason each ----------------------------- */

static void test_refuses_shorter_than_header(void **state)
{
    (void)state;
    uint8_t buf[64];
    pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    for (size_t len = 0; len < WIRE_HEADER_BYTES; len++)
        assert_refused(buf, len, &e, WIRE_TRUNCATED);
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
    tu_put32(buf, 0x44534744u);
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
    /* version 1 (u32 indices) is not read any more */
    put16(buf + 4, 1);
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
    tu_put32(buf + 12, UINT32_MAX);
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
    tu_put32(buf + 16, 1000); /* a sender claiming a larger vector */
    assert_refused(buf, len, &e, WIRE_BAD_N);
}

static void test_refuses_count_above_max_or_above_n(void **state)
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
    /* 5 entries of a vector of 4 cannot be, whatever max_count allows */
    const uint8_t section[5] = {0};
    len = craft(buf, 4, 5, WIRE_ENC_DELTA, section, sizeof section);
    e = expect_n(4);
    e.max_count = UINT32_MAX;
    assert_refused(buf, len, &e, WIRE_TOO_MANY);
}

static void test_refuses_unknown_encoding(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    const uint8_t unknown[] = {0, 5, 6, 0x80, 0xFF};
    for (size_t i = 0; i < sizeof unknown; i++) {
        buf[24] = unknown[i];
        assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    }
}

static void test_refuses_huge_count_with_short_buffer(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    tu_put32(buf + 20, UINT32_MAX);
    wire_expect e = base_expect();
    assert_refused(buf, len, &e, WIRE_TOO_MANY);
    /* with no bound on count or n, the length check must still refuse it
     * (25 + 5 * (2^32 - 1) must not wrap around to something small) */
    e.max_count = UINT32_MAX;
    e.n = UINT32_MAX;
    tu_put32(buf + 16, UINT32_MAX);
    for (int k = 0; k < ENCODINGS; k++) {
        buf[24] = (uint8_t)all_encodings[k];
        assert_refused(buf, len, &e, WIRE_TRUNCATED);
    }
    /* a count whose 4*count wraps a 32-bit size to exactly the values' bytes */
    tu_put32(buf + 20, (1u << 30) + 4); /* 4 * count = 2^32 + 16 */
    buf[24] = WIRE_ENC_DELTA;
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

/* ---- refusals of the index section --------------------------------------- */

static void test_refuses_index_out_of_range(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    buf[25 + 3] = 57; /* last gap - 1: 99 -> 100 */
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    /* a first index of n, and of 2^32 - 1 with n = 2^32 - 1: still >= n */
    const uint8_t first_n[] = {N};
    len = craft(buf, N, 1, WIRE_ENC_DELTA, first_n, sizeof first_n);
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    const uint8_t max[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
    len = craft(buf, UINT32_MAX, 1, WIRE_ENC_DELTA, max, sizeof max);
    e = expect_n(UINT32_MAX);
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    /* complement: an absent index of n */
    const uint8_t absent[] = {1, 7}; /* 1, then 1 + 1 + 7 = 9 >= 9 */
    len = craft(buf, 9, 7, WIRE_ENC_COMPLEMENT, absent, sizeof absent);
    e = expect_n(9);
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
}

/* A repeated or decreasing index can only be written as a gap that wraps
 * past 2^32 (a careless sender's gap - 1 in 32-bit arithmetic): refused as
 * not increasing, before its (wrapped) value could be taken for an index. */
static void test_refuses_gap_that_wraps_as_not_increasing(void **state)
{
    (void)state;
    uint8_t buf[64];
    wire_expect e = base_expect();
    /* {5, 5}: gap - 1 = 5 - 5 - 1 = 2^32 - 1 */
    const uint8_t repeated[] = {5, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
    size_t len = craft(buf, N, 2, WIRE_ENC_DELTA, repeated, sizeof repeated);
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
    /* {6, 2}: 2 - 6 - 1 = 2^32 - 5 */
    const uint8_t decreasing[] = {6, 0xFB, 0xFF, 0xFF, 0xFF, 0x0F};
    len = craft(buf, N, 2, WIRE_ENC_DELTA, decreasing, sizeof decreasing);
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
    /* with n = 2^32 - 1, a sum of exactly 2^32 is a wrap too */
    const uint8_t to_2_32[] = {0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}; /* 0, then 1 + 2^32 - 1 */
    len = craft(buf, UINT32_MAX, 2, WIRE_ENC_DELTA, to_2_32, sizeof to_2_32);
    e = expect_n(UINT32_MAX);
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
    /* ... and one less is the index 2^32 - 1, out of range */
    buf[26] = 0xFE;
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    /* complement: the absent list wraps */
    const uint8_t absent[] = {3, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
    len = craft(buf, 10, 8, WIRE_ENC_COMPLEMENT, absent, sizeof absent);
    e = expect_n(10);
    assert_refused(buf, len, &e, WIRE_NOT_INCREASING);
}

static void test_refuses_bad_varints(void **state)
{
    (void)state;
    uint8_t buf[64];
    wire_expect e = expect_n(UINT32_MAX);
    e.max_count = 2;
    /* Each as the second of two delta varints after a first index of 1. */
    static const struct { uint8_t bytes[8]; size_t len; const char *what; } bad[] = {
        {{0x80, 0x00}, 2, "0 in two bytes"},
        {{0x81, 0x80, 0x00}, 3, "1 in three bytes"},
        {{0xFF, 0xFF, 0xFF, 0xFF, 0x00}, 5, "a fifth byte of 0"},
        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 6, "six bytes"},
        {{0xFF, 0xFF, 0xFF, 0xFF, 0x10}, 5, "2^32"},
        {{0xFF, 0xFF, 0xFF, 0xFF, 0x1F}, 5, "2^33 - 1"},
        {{0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, 5, "2^35 - 1"},
        {{0x80, 0x80, 0x80, 0x80, 0x90}, 5, "a fifth byte with a continuation bit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t section[9] = {1};
        memcpy(section + 1, bad[i].bytes, bad[i].len);
        size_t len = craft(buf, UINT32_MAX, 2, WIRE_ENC_DELTA, section, 1 + bad[i].len);
        print_message("  %s\n", bad[i].what);
        assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
        /* the same as the first (and only) varint */
        len = craft(buf, UINT32_MAX, 1, WIRE_ENC_DELTA, bad[i].bytes, bad[i].len);
        assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
        /* and in a complement's absent list (n = 3, one entry) */
        uint8_t absent[9] = {0};
        memcpy(absent + 1, bad[i].bytes, bad[i].len);
        len = craft(buf, 3, 1, WIRE_ENC_COMPLEMENT, absent, 1 + bad[i].len);
        wire_expect e3 = expect_n(3);
        assert_refused(buf, len, &e3, WIRE_BAD_ENCODING);
    }
    /* the largest minimal 5-byte varint is fine: 0xFFFFFFFE as a first index */
    const uint8_t largest[] = {0xFE, 0xFF, 0xFF, 0xFF, 0x0F};
    size_t len = craft(buf, UINT32_MAX, 1, WIRE_ENC_DELTA, largest, sizeof largest);
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(o.idx[0], 0xFFFFFFFEu);
}

static void test_refuses_bad_bitmaps(void **state)
{
    (void)state;
    uint8_t buf[64];
    wire_expect e = expect_n(12);
    /* n = 12: two bytes, bits 12..15 of the second must be 0 */
    const uint8_t beyond[] = {0x01, 0x10};
    size_t len = craft(buf, 12, 2, WIRE_ENC_BITMAP, beyond, sizeof beyond);
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    const uint8_t top[] = {0x00, 0x80};
    len = craft(buf, 12, 1, WIRE_ENC_BITMAP, top, sizeof top);
    assert_refused(buf, len, &e, WIRE_BAD_INDEX);
    /* a popcount other than count */
    const uint8_t three[] = {0x07, 0x00};
    len = craft(buf, 12, 2, WIRE_ENC_BITMAP, three, sizeof three);
    assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    len = craft(buf, 12, 4, WIRE_ENC_BITMAP, three, sizeof three);
    assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    /* count 0 with a bit set, and a popcount past the 8-byte words */
    const uint8_t one[] = {0x00, 0x08};
    len = craft(buf, 12, 0, WIRE_ENC_BITMAP, one, sizeof one);
    assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    uint8_t wide[11] = {0};
    wide[3] = 0x01;
    wide[10] = 0x01; /* n = 88: indices 24 and 80 */
    len = craft(buf, 88, 1, WIRE_ENC_BITMAP, wide, sizeof wide);
    e = expect_n(88);
    assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    len = craft(buf, 88, 2, WIRE_ENC_BITMAP, wide, sizeof wide);
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_int_equal(o.idx[0], 24);
    assert_int_equal(o.idx[1], 80);
}

static void test_refuses_dense_unless_every_index(void **state)
{
    (void)state;
    uint8_t buf[64];
    wire_expect e = expect_n(4);
    size_t len = craft(buf, 4, 3, WIRE_ENC_DENSE, NULL, 0);
    assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    len = craft(buf, 4, 0, WIRE_ENC_DENSE, NULL, 0);
    assert_refused(buf, len, &e, WIRE_BAD_ENCODING);
    len = craft(buf, 4, 4, WIRE_ENC_DENSE, NULL, 0);
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    const uint32_t all[4] = {0, 1, 2, 3};
    assert_memory_equal(o.idx, all, sizeof all);
}

/* ---- values --------------------------------------------------------------- */

/* The third value of the base message, in each encoding, set to v. */
static void assert_value_refused(float v, float gamma, wire_reason want)
{
    for (int k = 0; k < ENCODINGS; k++) {
        uint8_t buf[256];
        wire_header h = base_header(4);
        size_t len = wire_pack_as(buf, sizeof buf, &h, base_idx, base_val, all_encodings[k]);
        if (!len)
            continue; /* dense */
        wire_expect e = base_expect();
        e.gamma = gamma;
        put_float(buf + len - 16 + 8, v);
        assert_refused(buf, len, &e, want);
    }
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

static void test_refuses_bad_value_in_dense(void **state)
{
    (void)state;
    uint8_t buf[64];
    wire_expect e = expect_n(4);
    size_t len = craft(buf, 4, 4, WIRE_ENC_DENSE, NULL, 0);
    put_float(buf + len - 4, NAN);
    assert_refused(buf, len, &e, WIRE_NOT_FINITE);
    put_float(buf + len - 4, 0.75f);
    assert_refused(buf, len, &e, WIRE_OUT_OF_BOUNDS);
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
    put_float(buf + len - 16, FLT_MAX);
    put_float(buf + len - 12, -FLT_MAX);
    outputs o;
    outputs_fill(&o);
    wire_header h;
    assert_int_equal(wire_unpack(buf, len, &e, &h, o.idx, o.val), WIRE_OK);
    assert_true(o.val[0] == FLT_MAX && o.val[1] == -FLT_MAX);
}

/* ---- lengths ---------------------------------------------------------- */

/* A small message in each encoding cut at every byte is refused as
 * truncated (each copy in an exact-size heap block: ASan checks no byte past
 * the cut is read), and one with 1 to 8 bytes more as of a bad length. */
static void test_truncation_at_every_byte_and_trailing_bytes(void **state)
{
    (void)state;
    /* n = 20: a partial last bitmap byte */
    const uint32_t idx[3] = {1, 2, 19}, all[5] = {0, 1, 2, 3, 4};
    const float val[5] = {0.25f, -0.5f, 0.125f, 0.0f, 0.5f};
    for (int k = 0; k < ENCODINGS; k++) {
        wire_encoding enc = all_encodings[k];
        int dense = enc == WIRE_ENC_DENSE;
        wire_header h = header_n(dense ? 5 : 20, dense ? 5 : 3);
        uint8_t buf[128];
        memset(buf, 0, sizeof buf);
        size_t len = wire_pack_as(buf, sizeof buf, &h, dense ? all : idx, val, enc);
        assert_true(len > 0);
        wire_expect e = expect_n(h.n);
        for (size_t cut = 0; cut < len; cut++)
            assert_refused(buf, cut, &e, WIRE_TRUNCATED);
        for (size_t extra = 1; extra <= 8; extra++)
            assert_refused(buf, len + extra, &e, WIRE_BAD_LENGTH);
        outputs o;
        outputs_fill(&o);
        wire_header got;
        assert_int_equal(wire_unpack(buf, len, &e, &got, o.idx, o.val), WIRE_OK);
    }
    /* a delta message whose last varint takes 2 bytes, cut inside it */
    const uint8_t section[] = {1, 0x80, 0x01};
    uint8_t buf[64];
    size_t len = craft(buf, 200, 2, WIRE_ENC_DELTA, section, sizeof section);
    wire_expect e = expect_n(200);
    for (size_t cut = 0; cut < len; cut++)
        assert_refused(buf, cut, &e, WIRE_TRUNCATED);
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
    assert_string_equal(wire_reason_name(WIRE_BAD_ENCODING), "bad encoding");
    const char *beyond = wire_reason_name(WIRE_REASONS);
    assert_non_null(beyond);
}

/* ---- robustness --------------------------------------------------------- */

/* Checks an accepted message's promises. */
static void assert_accepted_valid(const outputs *o, const wire_header *h, size_t len)
{
    assert_true(h->count <= MAX_COUNT);
    assert_true(len >= WIRE_HEADER_BYTES + 4 * (size_t)h->count);
    assert_untouched(o, (int)h->count);
    for (uint32_t i = 0; i < h->count; i++) {
        assert_true(o->idx[i] < N);
        if (i > 0)
            assert_true(o->idx[i] > o->idx[i - 1]);
        assert_true(isfinite(o->val[i]));
        assert_true(fabsf(o->val[i]) <= GAMMA);
    }
}

static void test_random_mutations_never_overrun_and_ok_means_valid(void **state)
{
    (void)state;
    enum { TRIALS = 20000, CAP = 25 + 100 + 4 * MAX_COUNT + 16 };
    /* Full messages of max_count entries in each encoding but dense (and a
     * dense one of n = 8), so mutations of count can claim more than fits
     * and fewer than there are. */
    uint32_t idx[MAX_COUNT];
    float val[MAX_COUNT];
    for (int i = 0; i < MAX_COUNT; i++) {
        idx[i] = (uint32_t)(i * 12 + 1);
        val[i] = (i % 2 ? -1.0f : 1.0f) * GAMMA * (float)(i + 1) / MAX_COUNT;
    }
    uint8_t valid[ENCODINGS][CAP];
    size_t valid_len[ENCODINGS];
    for (int k = 0; k < ENCODINGS; k++) {
        wire_header h0 = base_header(MAX_COUNT);
        if (all_encodings[k] == WIRE_ENC_DENSE) {
            h0 = header_n(MAX_COUNT, MAX_COUNT);
            uint32_t all[MAX_COUNT];
            for (uint32_t i = 0; i < MAX_COUNT; i++)
                all[i] = i;
            valid_len[k] = wire_pack_as(valid[k], CAP, &h0, all, val, all_encodings[k]);
        } else {
            valid_len[k] = wire_pack_as(valid[k], CAP, &h0, idx, val, all_encodings[k]);
        }
        assert_true(valid_len[k] > 0 && valid_len[k] <= CAP - 16);
    }

    rng_t rng;
    rng_init(&rng, 2024, 0);
    int accepted = 0, refused[WIRE_REASONS] = {0};
    for (int t = 0; t < TRIALS; t++) {
        int k = (int)rng_below(&rng, ENCODINGS);
        uint8_t msg[CAP];
        memset(msg, 0, sizeof msg);
        memcpy(msg, valid[k], valid_len[k]);
        size_t len = valid_len[k];
        wire_expect e = all_encodings[k] == WIRE_ENC_DENSE ? expect_n(MAX_COUNT) : base_expect();
        uint32_t kind = rng_below(&rng, 4);
        if (kind == 0 || kind == 3) { /* flip 1..4 random bytes (header-weighted) */
            uint32_t flips = 1 + rng_below(&rng, 4);
            for (uint32_t f = 0; f < flips; f++) {
                size_t at = rng_below(&rng, 2) ? rng_below(&rng, WIRE_HEADER_BYTES)
                                                : rng_below(&rng, (uint32_t)len);
                msg[at] ^= (uint8_t)(1 + rng_below(&rng, 255));
            }
        }
        if (kind == 1 || kind == 3) /* truncate or extend at a random length */
            len = rng_below(&rng, CAP + 1);
        if (kind == 2) { /* set the count to a random small value, keep the length */
            uint32_t c = rng_below(&rng, 2 * MAX_COUNT + 2);
            tu_put32(msg + 20, c);
            if (rng_below(&rng, 2))
                len = len - 4 * MAX_COUNT + 4 * (size_t)c <= CAP ? len - 4 * MAX_COUNT + 4 * c
                                                                   : len;
        }

        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees overreads */
        assert_non_null(copy);
        memcpy(copy, msg, len);
        outputs o;
        outputs_fill(&o);
        wire_header h;
        wire_reason r = wire_unpack(copy, len, &e, &h, o.idx, o.val);
        free(copy);
        assert_true((int)r >= 0 && r < WIRE_REASONS);
        assert_untouched(&o, MAX_COUNT); /* guards after max_count never written */
        if (r != WIRE_OK) {
            assert_untouched(&o, 0);
            refused[r]++;
            continue;
        }
        accepted++;
        if (e.n == N)
            assert_accepted_valid(&o, &h, len);
    }
    /* the mutations reached both sides and several different refusals */
    assert_true(accepted > 0);
    int reasons_seen = 0;
    for (int r = 1; r < WIRE_REASONS; r++)
        reasons_seen += refused[r] > 0;
    print_message("%d of %d mutations accepted, %d reasons seen\n", accepted, TRIALS,
                  reasons_seen);
    assert_true(reasons_seen >= 10);
}

/* wire_pack_dense (the server's full downloads) writes the same bytes as
 * wire_pack given every index, and refuses what is not a whole vector. */
static void test_pack_dense_equals_pack_of_every_index(void **state)
{
    (void)state;
    const uint32_t sizes[] = {1, 2, 7, 64, 1000, 101770};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        uint32_t n = sizes[t];
        uint32_t *idx = malloc(n * sizeof *idx);
        float *val = malloc(n * sizeof *val);
        size_t cap = wire_size(n);
        uint8_t *a = malloc(cap), *b = malloc(cap);
        assert_non_null(idx); assert_non_null(val); assert_non_null(a); assert_non_null(b);
        for (uint32_t i = 0; i < n; i++) {
            idx[i] = i;
            val[i] = (float)i * 0.37f - (float)(i % 5);
        }
        wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_DOWNLOAD, 9, 4, n, n};
        size_t la = wire_pack(a, cap, &h, idx, val), lb = wire_pack_dense(b, cap, &h, val);
        assert_int_equal(la, (size_t)WIRE_HEADER_BYTES + 4 * (size_t)n);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        assert_int_equal(wire_pack_dense(b, lb - 1, &h, val), 0);
        h.count = n - 1;
        assert_int_equal(wire_pack_dense(b, cap, &h, val), 0);
        free(idx); free(val); free(a); free(b);
    }
}

/* wire_read, a block at a time for any block size, gives exactly the
 * entries wire_unpack gives (the server's fused apply reads uploads this
 * way), in every encoding, at densities from one entry to all, with n not
 * a multiple of 8 or 64 and varints of up to 3 bytes; wire_value(i) is the
 * value of the i-th entry across blocks. A block never holds more than cap
 * indices (a sentinel after it survives). */
static void test_reader_blocks_give_what_unpack_gives(void **state)
{
    (void)state;
    const uint32_t sizes[] = {1, 9, 70, 1000, 40000};
    /* 0.0001 of 40000: gaps above 2^14, varints of 3 bytes */
    const double densities[] = {0, 0.0001, 0.001, 0.01, 0.1, 0.5, 0.97, 1};
    const size_t caps[] = {1, 2, 3, 5, 16, 63, 64, 100000};
    rng_t rng;
    rng_init(&rng, 5, 41);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint32_t n = sizes[si];
        uint32_t *idx = malloc(n * sizeof *idx), *ui = malloc(n * sizeof *ui),
                 *got = malloc(n * sizeof *got), *blk = malloc((n + 1) * sizeof *blk);
        float *val = malloc(n * sizeof *val), *uv = malloc(n * sizeof *uv);
        uint8_t *buf = malloc(wire_size(n));
        assert_true(idx && ui && got && blk && val && uv && buf);
        for (size_t di = 0; di < sizeof densities / sizeof densities[0]; di++) {
            uint32_t count = 0;
            for (uint32_t j = 0; j < n; j++)
                if (rng_uniform(&rng) < densities[di] || (densities[di] > 0 && count == 0 &&
                                                          j == n - 1)) {
                    idx[count] = j;
                    val[count++] = (float)rng_normal(&rng);
                }
            wire_header h = header_n(n, count);
            wire_expect e = {WIRE_UPLOAD, 3, 7, n, n, INFINITY};
            for (int ei = 0; ei < ENCODINGS; ei++) {
                size_t len = wire_pack_as(buf, wire_size(n), &h, idx, val, all_encodings[ei]);
                if (len == 0)
                    continue; /* dense with count != n */
                wire_header hu, hc;
                assert_int_equal(wire_unpack(buf, len, &e, &hu, ui, uv), WIRE_OK);
                assert_int_equal(hu.count, count);
                assert_memory_equal(ui, idx, count * sizeof *idx);
                for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
                    size_t cap = caps[ci] < n ? caps[ci] : n, k = 0, m;
                    wire_reader rd;
                    assert_int_equal(wire_check(buf, len, &e, &hc, &rd), WIRE_OK);
                    assert_int_equal(hc.count, count);
                    blk[cap] = SENTINEL_IDX;
                    while ((m = wire_read(&rd, blk, cap)) > 0) {
                        assert_true(m <= cap && k + m <= count);
                        assert_int_equal(blk[cap], SENTINEL_IDX);
                        memcpy(got + k, blk, m * sizeof *blk);
                        k += m;
                    }
                    assert_int_equal(k, count);
                    assert_memory_equal(got, ui, count * sizeof *ui);
                    assert_int_equal(wire_read(&rd, blk, cap), 0); /* stays at the end */
                    for (uint32_t i = 0; i < count; i++)
                        assert_int_equal(bits(wire_value(&rd, i)), bits(uv[i]));
                }
            }
        }
        free(idx); free(ui); free(got); free(blk); free(val); free(uv); free(buf);
    }
}

/* wire_check refuses what wire_unpack refuses, for the same reason, and
 * leaves the reader as it was (here, all sentinel bytes). */
static void test_check_refuses_like_unpack_and_leaves_the_reader(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t len = pack_base(buf, sizeof buf);
    wire_expect e = base_expect();
    for (size_t at = 0; at < len; at++) {
        for (int flip = 1; flip < 256; flip <<= 1) {
            buf[at] ^= (uint8_t)flip;
            outputs o;
            outputs_fill(&o);
            wire_header h;
            wire_reader rd, blank;
            memset(&rd, 0xA5, sizeof rd);
            memcpy(&blank, &rd, sizeof rd);
            wire_reason ru = wire_unpack(buf, len, &e, &h, o.idx, o.val);
            wire_reason rc = wire_check(buf, len, &e, &h, &rd);
            assert_int_equal(rc, ru);
            if (rc != WIRE_OK)
                assert_memory_equal(&rd, &blank, sizeof rd);
            buf[at] ^= (uint8_t)flip;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_size_bounds_every_packed_message),
        cmocka_unit_test(test_pack_dense_equals_pack_of_every_index),
        cmocka_unit_test(test_round_trip_zero_and_one_entry),
        cmocka_unit_test(test_round_trip_special_values_bit_exact),
        cmocka_unit_test(test_round_trip_every_encoding_every_density),
        cmocka_unit_test(test_every_subset_of_small_vectors),
        cmocka_unit_test(test_theta_001_costs_at_most_5_5_bytes_an_entry),
        cmocka_unit_test(test_never_larger_than_dense),
        cmocka_unit_test(test_print_bytes_per_entry_by_density),
        cmocka_unit_test(test_pack_refuses_small_buffers_and_invalid_entries),
        cmocka_unit_test(test_layout_delta),
        cmocka_unit_test(test_layout_bitmap),
        cmocka_unit_test(test_layout_complement),
        cmocka_unit_test(test_layout_dense_and_multi_byte_varints),
        cmocka_unit_test(test_unpack_reads_hand_built_message),
        cmocka_unit_test(test_refuses_shorter_than_header),
        cmocka_unit_test(test_refuses_bad_magic),
        cmocka_unit_test(test_refuses_bad_version),
        cmocka_unit_test(test_refuses_bad_type),
        cmocka_unit_test(test_refuses_wrong_participant_unless_unchecked),
        cmocka_unit_test(test_refuses_wrong_epoch_unless_unchecked),
        cmocka_unit_test(test_refuses_wrong_n),
        cmocka_unit_test(test_refuses_count_above_max_or_above_n),
        cmocka_unit_test(test_refuses_unknown_encoding),
        cmocka_unit_test(test_refuses_huge_count_with_short_buffer),
        cmocka_unit_test(test_refusal_fills_header_when_readable),
        cmocka_unit_test(test_refuses_index_out_of_range),
        cmocka_unit_test(test_refuses_gap_that_wraps_as_not_increasing),
        cmocka_unit_test(test_refuses_bad_varints),
        cmocka_unit_test(test_refuses_bad_bitmaps),
        cmocka_unit_test(test_refuses_dense_unless_every_index),
        cmocka_unit_test(test_refuses_nan),
        cmocka_unit_test(test_refuses_positive_infinity),
        cmocka_unit_test(test_refuses_negative_infinity),
        cmocka_unit_test(test_refuses_value_beyond_gamma),
        cmocka_unit_test(test_refuses_bad_value_in_dense),
        cmocka_unit_test(test_accepts_value_exactly_gamma),
        cmocka_unit_test(test_infinite_gamma_accepts_any_finite_value),
        cmocka_unit_test(test_truncation_at_every_byte_and_trailing_bytes),
        cmocka_unit_test(test_reason_names_distinct_and_non_empty),
        cmocka_unit_test(test_random_mutations_never_overrun_and_ok_means_valid),
        cmocka_unit_test(test_reader_blocks_give_what_unpack_gives),
        cmocka_unit_test(test_check_refuses_like_unpack_and_leaves_the_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
