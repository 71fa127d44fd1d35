/* fuzz_wire: libFuzzer target for wire_unpack and wire_peek, the decoding of
 * untrusted uploads (version 2: delta, bitmap, dense and complement encodings),
 * under several expectations, against a reference decoder written from the
 * layout in wire.h, with guard sentinels and a round trip through wire_pack. */
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

static uint32_t *idx_buf, *idx_ref, *idx_want, *idx_again;
static float *val_buf, *val_ref, *val_want, *val_again;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    size_t slots = (size_t)LARGE_COUNT + GUARD;
    idx_buf = malloc(slots * sizeof *idx_buf);
    val_buf = malloc(slots * sizeof *val_buf);
    idx_ref = malloc(slots * sizeof *idx_ref);
    val_ref = malloc(slots * sizeof *val_ref);
    idx_want = malloc(slots * sizeof *idx_want);
    val_want = malloc(slots * sizeof *val_want);
    idx_again = malloc(slots * sizeof *idx_again);
    val_again = malloc(slots * sizeof *val_again);
    FUZZ_CHECK(idx_buf && val_buf && idx_ref && val_ref && idx_want && val_want && idx_again &&
                   val_again, "out of memory");
    float vs;
    uint32_t vb = VAL_SENTINEL_BITS;
    memcpy(&vs, &vb, 4);
    for (size_t i = 0; i < slots; i++) {
        idx_ref[i] = IDX_SENTINEL;
        val_ref[i] = vs;
    }
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float le_float(const uint8_t *p)
{
    uint32_t u = le32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- the reference: wire.h's layout read the plain way -------------------- */

/* Reads count varints of p[0..len) as delta-coded indices below n, in order,
 * calling out for each; the first fault or WIRE_OK. */
static wire_reason ref_deltas(const uint8_t *p, size_t len, uint64_t count, uint32_t n,
                              uint64_t *out)
{
    size_t at = 0;
    uint64_t next = 0; /* the smallest index the next one may be */
    for (uint64_t i = 0; i < count; i++) {
        uint64_t v = 0;
        for (int k = 0;; k++) {
            if (at == len)
                return WIRE_TRUNCATED;
            uint8_t b = p[at++];
            if (k == 4 && b > 0x0f) /* 6 bytes or more, or 2^32 or more */
                return WIRE_BAD_ENCODING;
            v += (uint64_t)(b & 0x7f) << (7 * k);
            if (b < 0x80) {
                if (b == 0 && k > 0)
                    return WIRE_BAD_ENCODING; /* not minimal */
                break;
            }
        }
        uint64_t j = next + v;
        if (j > UINT32_MAX)
            return WIRE_NOT_INCREASING;
        if (j >= n)
            return WIRE_BAD_INDEX;
        if (out)
            out[i] = j;
        next = j + 1;
    }
    return at == len ? WIRE_OK : WIRE_BAD_LENGTH;
}

/* Indices the reference decodes: count of them (<= LARGE_COUNT) or, for
 * complement, n - count (each a byte at least, so <= len). */
static uint64_t *scratch;
static size_t scratch_cap;

static void scratch_reserve(uint64_t count)
{
    if (count <= scratch_cap)
        return;
    free(scratch);
    scratch_cap = (size_t)count;
    scratch = malloc(scratch_cap * sizeof *scratch);
    FUZZ_CHECK(scratch, "out of memory");
}

/* The reason the layout gives, and (when WIRE_OK) the entries in idx/val. */
static wire_reason ref_unpack(const uint8_t *msg, size_t len, const wire_expect *e, uint32_t *idx,
                              float *val)
{
    if (len < 25)
        return WIRE_TRUNCATED;
    uint32_t n = le32(msg + 16), count = le32(msg + 20);
    if (le32(msg) != WIRE_MAGIC)
        return WIRE_BAD_MAGIC;
    if ((msg[4] | msg[5] << 8) != 2)
        return WIRE_BAD_VERSION;
    if ((msg[6] | msg[7] << 8) != e->type)
        return WIRE_BAD_TYPE;
    if (e->participant != UINT32_MAX && le32(msg + 8) != e->participant)
        return WIRE_BAD_SENDER;
    if (e->epoch != UINT32_MAX && le32(msg + 12) != e->epoch)
        return WIRE_BAD_EPOCH;
    if (n != e->n)
        return WIRE_BAD_N;
    if (count > e->max_count || count > n)
        return WIRE_TOO_MANY;
    uint8_t enc = msg[24];
    uint64_t values = 4 * (uint64_t)count, least;
    if (enc == 1)
        least = count;
    else if (enc == 2)
        least = ((uint64_t)n + 7) / 8;
    else if (enc == 3 && count == n)
        least = 0;
    else if (enc == 4)
        least = (uint64_t)n - count;
    else
        return WIRE_BAD_ENCODING;
    if (len < 25 + least + values)
        return WIRE_TRUNCATED;
    if ((enc == 2 || enc == 3) && len > 25 + least + values)
        return WIRE_BAD_LENGTH;
    const uint8_t *sec = msg + 25;
    size_t sec_len = len - 25 - (size_t)values;
    uint32_t k = 0;
    wire_reason r = WIRE_OK;
    if (enc == 1) {
        scratch_reserve(count);
        r = ref_deltas(sec, sec_len, count, n, scratch);
        for (uint32_t i = 0; r == WIRE_OK && i < count; i++)
            idx[i] = (uint32_t)scratch[i];
    } else if (enc == 2) {
        for (uint64_t j = n; j < 8 * (uint64_t)sec_len; j++)
            if (sec[j / 8] >> (j % 8) & 1)
                return WIRE_BAD_INDEX;
        uint64_t ones = 0;
        for (uint64_t j = 0; j < n; j++)
            ones += sec[j / 8] >> (j % 8) & 1;
        if (ones != count)
            return WIRE_BAD_ENCODING;
        for (uint64_t j = 0; j < n; j++)
            if (sec[j / 8] >> (j % 8) & 1)
                idx[k++] = (uint32_t)j;
    } else if (enc == 3) {
        for (uint32_t i = 0; i < count; i++)
            idx[i] = i;
    } else {
        uint64_t absent = (uint64_t)n - count; /* <= sec_len: checked above */
        scratch_reserve(absent);
        r = ref_deltas(sec, sec_len, absent, n, scratch);
        uint64_t a = 0;
        for (uint64_t j = 0; r == WIRE_OK && j < n; j++) {
            if (a < absent && scratch[a] == j)
                a++;
            else
                idx[k++] = (uint32_t)j;
        }
    }
    if (r != WIRE_OK)
        return r;
    for (uint32_t i = 0; i < count; i++) {
        float v = le_float(msg + len - values + 4 * (size_t)i);
        if (!isfinite(v))
            return WIRE_NOT_FINITE;
        if (fabsf(v) > e->gamma)
            return WIRE_OUT_OF_BOUNDS;
        val[i] = v;
    }
    return WIRE_OK;
}

/* ---- the checks --------------------------------------------------------- */

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

/* Packing the decoded entries in the message's own encoding gives back its
 * bytes (every field of an accepted message is canonical); wire_pack's own
 * choice is no longer and decodes to the same entries. */
static void repack_and_check(const uint8_t *msg, size_t len, const wire_header *h,
                             const wire_expect *e, const uint32_t *ib, const float *vb)
{
    wire_encoding enc = wire_message_encoding(msg, len);
    uint8_t *again = malloc(len); /* exact size: ASan sees a write past it */
    FUZZ_CHECK(again, "out of memory");
    FUZZ_CHECK(wire_encoding_size(enc, h->n, h->count, ib) == len, "size of %s",
               wire_encoding_name(enc));
    size_t plen = wire_pack_as(again, len, h, ib, vb, enc);
    FUZZ_CHECK(plen == len && memcmp(again, msg, len) == 0, "repack in %s differs",
               wire_encoding_name(enc));
    wire_encoding best;
    size_t blen = wire_packed_size(h->n, h->count, ib, &best);
    FUZZ_CHECK(blen > 0 && blen <= len, "wire_pack's %s takes %zu bytes, the message %zu",
               wire_encoding_name(best), blen, len);
    FUZZ_CHECK(wire_pack(again, blen - 1, h, ib, vb) == 0, "packed into too small a buffer");
    FUZZ_CHECK(wire_pack(again, len, h, ib, vb) == blen, "wire_pack's length");
    FUZZ_CHECK(wire_message_encoding(again, blen) == best, "wire_pack's encoding");
    wire_header h2;
    wire_expect e2 = *e;
    e2.max_count = h->count;
    wire_reason r = wire_unpack(again, blen, &e2, &h2, idx_again, val_again);
    FUZZ_CHECK(r == WIRE_OK, "repacked (%s) refused: %s", wire_encoding_name(best),
               wire_reason_name(r));
    FUZZ_CHECK(memcmp(idx_again, ib, h->count * sizeof *ib) == 0 &&
                   memcmp(val_again, vb, h->count * sizeof *vb) == 0,
               "repacked (%s) entries differ", wire_encoding_name(best));
    free(again);
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
    wire_reason want = ref_unpack(msg, len, e, idx_want, val_want);
    FUZZ_CHECK(r == want, "refused as '%s', the reference says '%s'", wire_reason_name(r),
               wire_reason_name(want));
    if (r != WIRE_OK) {
        /* All or nothing: a refused message writes no entry. */
        if (!exact)
            FUZZ_CHECK(untouched(0, e->max_count), "refused (%s) but entries were written",
                       wire_reason_name(r));
        goto done;
    }
    /* Accepted: every promise of the header holds, and the entries are the
     * reference's, bit for bit. */
    FUZZ_CHECK(h.magic == WIRE_MAGIC && h.version == WIRE_VERSION && h.type == e->type,
               "bad header accepted");
    FUZZ_CHECK(h.n == e->n && h.count <= e->max_count && h.count <= h.n, "n %u count %u", h.n,
               h.count);
    FUZZ_CHECK(e->participant == UINT32_MAX || h.participant == e->participant, "sender");
    FUZZ_CHECK(e->epoch == UINT32_MAX || h.epoch == e->epoch, "epoch");
    for (uint32_t i = 0; i < h.count; i++) {
        FUZZ_CHECK(ib[i] < h.n, "index %u of %u out of range", ib[i], h.n);
        FUZZ_CHECK(i == 0 || ib[i] > ib[i - 1], "indices not increasing at %u", i);
        FUZZ_CHECK(isfinite(vb[i]) && fabsf(vb[i]) <= e->gamma, "value %g at %u", (double)vb[i],
                   i);
    }
    FUZZ_CHECK(memcmp(ib, idx_want, h.count * sizeof *ib) == 0, "indices differ from the reference");
    FUZZ_CHECK(memcmp(vb, val_want, h.count * sizeof *vb) == 0, "values differ from the reference");
    if (!exact)
        FUZZ_CHECK(untouched(h.count, e->max_count), "entries written past count %u", h.count);
    repack_and_check(msg, len, &h, e, ib, vb);
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
        FUZZ_CHECK(wire_message_encoding(data, size) == 0, "encoding of a short message");
    } else {
        FUZZ_CHECK(r == WIRE_OK, "peek refused a whole header");
        FUZZ_CHECK(h.magic == le32(data) && h.participant == le32(data + 8) &&
                       h.epoch == le32(data + 12) && h.n == le32(data + 16) &&
                       h.count == le32(data + 20) &&
                       h.version == (uint16_t)(data[4] | data[5] << 8) &&
                       h.type == (uint16_t)(data[6] | data[7] << 8),
                   "peek decoded the header wrongly");
        FUZZ_CHECK(wire_message_encoding(data, size) == data[24], "encoding byte");
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
