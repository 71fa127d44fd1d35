/* fuzz_wire: libFuzzer target for wire_unpack and wire_peek, the decoding of
 * untrusted uploads, under several expectations, with guard sentinels. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "wire.h"

/* Entries after max_count that must never change. */
#define GUARD 16
#define IDX_SENTINEL 0xDEADBEEFu
#define VAL_SENTINEL_BITS 0x7FC0DEADu /* a NaN no decoded value can be */
/* The "large" capacity, 65,536 entries: more than a message of libFuzzer's
 * default -max_len (4096 bytes) or of any seed can hold. */
#define LARGE_COUNT ((uint32_t)1 << 16)

static uint32_t *idx_buf, *idx_ref;
static float *val_buf, *val_ref;
static uint8_t *repack;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    idx_buf = malloc(((size_t)LARGE_COUNT + GUARD) * sizeof *idx_buf);
    val_buf = malloc(((size_t)LARGE_COUNT + GUARD) * sizeof *val_buf);
    idx_ref = malloc(((size_t)LARGE_COUNT + GUARD) * sizeof *idx_ref);
    val_ref = malloc(((size_t)LARGE_COUNT + GUARD) * sizeof *val_ref);
    repack = malloc(wire_size(LARGE_COUNT));
    FUZZ_CHECK(idx_buf && val_buf && idx_ref && val_ref && repack, "out of memory");
    float vs;
    uint32_t vb = VAL_SENTINEL_BITS;
    memcpy(&vs, &vb, 4);
    for (size_t i = 0; i < (size_t)LARGE_COUNT + GUARD; i++) {
        idx_ref[i] = IDX_SENTINEL;
        val_ref[i] = vs;
    }
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fills [0, cap + GUARD) with sentinels (memcpy and memcmp against a
 * sentinel copy: a plain loop over the large capacity under ASan would cost
 * more than the decoding). */
static void poison(uint32_t cap)
{
    memcpy(idx_buf, idx_ref, ((size_t)cap + GUARD) * sizeof *idx_buf);
    memcpy(val_buf, val_ref, ((size_t)cap + GUARD) * sizeof *val_buf);
}

/* Entries [from, cap + GUARD) still hold their sentinels. */
static int untouched(size_t from, uint32_t cap)
{
    size_t count = (size_t)cap + GUARD - from;
    return memcmp(idx_buf + from, idx_ref, count * sizeof *idx_buf) == 0 &&
           memcmp(val_buf + from, val_ref, count * sizeof *val_buf) == 0;
}

static void unpack_and_check(const uint8_t *msg, size_t len, const wire_expect *e)
{
    wire_header h;
    /* The decoder may write at most max_count entries; a small capacity gets
     * an exact-size heap buffer so ASan sees the first byte past it. */
    int exact = e->max_count <= 64;
    uint32_t *ib = idx_buf;
    float *vb = val_buf;
    if (exact) {
        /* malloc(0) under ASan: a pointer that no access is allowed through. */
        ib = malloc(e->max_count * sizeof *ib);
        vb = malloc(e->max_count * sizeof *vb);
        FUZZ_CHECK(e->max_count == 0 || (ib && vb), "out of memory");
    } else {
        poison(e->max_count);
    }
    wire_reason r = wire_unpack(msg, len, e, &h, ib, vb);
    FUZZ_CHECK(r >= WIRE_OK && r < WIRE_REASONS, "reason %d", (int)r);
    FUZZ_CHECK(wire_reason_name(r) != NULL && strcmp(wire_reason_name(r), "unknown") != 0,
               "reason %d has no name", (int)r);
    if (r != WIRE_OK) {
        /* All or nothing: a refused message writes no entry. */
        if (!exact)
            FUZZ_CHECK(untouched(0, e->max_count), "refused (%s) but entries were written",
                       wire_reason_name(r));
        FUZZ_CHECK(r != WIRE_TRUNCATED || len < WIRE_HEADER_BYTES ||
                       len < wire_size(le32(msg + 20)),
                   "truncated, yet %zu bytes hold the %u entries", len, le32(msg + 20));
        goto done;
    }
    /* Accepted: every promise of the header holds. */
    FUZZ_CHECK(len == wire_size(h.count), "length %zu for %u entries", len, h.count);
    FUZZ_CHECK(h.magic == WIRE_MAGIC && h.version == WIRE_VERSION && h.type == e->type,
               "bad header accepted");
    FUZZ_CHECK(h.n == e->n && h.count <= e->max_count, "n %u count %u", h.n, h.count);
    FUZZ_CHECK(e->participant == UINT32_MAX || h.participant == e->participant, "sender");
    FUZZ_CHECK(e->epoch == UINT32_MAX || h.epoch == e->epoch, "epoch");
    for (uint32_t i = 0; i < h.count; i++) {
        FUZZ_CHECK(ib[i] < h.n, "index %u of %u out of range", ib[i], h.n);
        FUZZ_CHECK(i == 0 || ib[i] > ib[i - 1], "indices not increasing at %u", i);
        FUZZ_CHECK(isfinite(vb[i]) && fabsf(vb[i]) <= e->gamma, "value %g at %u", (double)vb[i],
                   i);
    }
    if (!exact)
        FUZZ_CHECK(untouched(h.count, e->max_count), "entries written past count %u", h.count);
    /* Packing what was decoded gives back the same bytes. */
    size_t plen = wire_pack(repack, wire_size(LARGE_COUNT), &h, ib, vb);
    FUZZ_CHECK(plen == len && memcmp(repack, msg, len) == 0, "repack differs");
done:
    if (exact) {
        free(ib);
        free(vb);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_header h;
    memset(&h, 0, sizeof h);
    wire_reason r = wire_peek(data, size, &h);
    if (size < WIRE_HEADER_BYTES) {
        FUZZ_CHECK(r == WIRE_TRUNCATED, "peek accepted %zu bytes", size);
    } else {
        FUZZ_CHECK(r == WIRE_OK, "peek refused a whole header");
        FUZZ_CHECK(h.magic == le32(data) && h.participant == le32(data + 8) &&
                       h.epoch == le32(data + 12) && h.n == le32(data + 16) &&
                       h.count == le32(data + 20) &&
                       h.version == (uint16_t)(data[4] | data[5] << 8) &&
                       h.type == (uint16_t)(data[6] | data[7] << 8),
                   "peek decoded the header wrongly");
    }

    /* The server's view: fixed sender, epoch and n; small k, finite gamma. */
    wire_expect server = {.type = WIRE_UPLOAD, .participant = 3, .epoch = 7, .n = 100,
                          .max_count = 4, .gamma = 1.0f};
    unpack_and_check(data, size, &server);
    server.gamma = INFINITY;
    server.max_count = 0;
    unpack_and_check(data, size, &server);

    /* Expectations taken from the message itself, so the fuzzer gets past the
     * header checks at once and spends its time on the entries. */
    if (r == WIRE_OK) {
        wire_expect own = {.type = h.type, .participant = UINT32_MAX, .epoch = UINT32_MAX,
                           .n = h.n, .max_count = 16, .gamma = INFINITY};
        unpack_and_check(data, size, &own);
        own.gamma = 0.5f;
        unpack_and_check(data, size, &own);
        own.max_count = LARGE_COUNT;
        own.gamma = INFINITY;
        unpack_and_check(data, size, &own);
        own.participant = h.participant;
        own.epoch = h.epoch;
        own.max_count = h.count <= LARGE_COUNT ? h.count : LARGE_COUNT;
        own.gamma = 1e30f;
        unpack_and_check(data, size, &own);
    }
    return 0;
}
