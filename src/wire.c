/* wire: explicit little-endian packing (no struct casts, so the layout does
 * not depend on the compiler) and all-or-nothing validation of messages. */
#include "wire.h"

#include <math.h>
#include <string.h>

static const char *const reason_names[WIRE_REASONS] = {
    "ok", "truncated", "bad length", "bad magic", "bad version", "bad type",
    "wrong participant id", "wrong epoch", "wrong vector length", "too many entries",
    "index out of range", "indices not increasing", "non-finite value", "value beyond gamma",
    "unsolicited",
};

const char *wire_reason_name(wire_reason r)
{
    return r < WIRE_REASONS ? reason_names[r] : "unknown";
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

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

size_t wire_pack(uint8_t *buf, size_t cap, const wire_header *h, const uint32_t *idx,
                 const float *val)
{
    size_t len = wire_size(h->count);
    if (cap < len)
        return 0;
    put32(buf, h->magic);
    put16(buf + 4, h->version);
    put16(buf + 6, h->type);
    put32(buf + 8, h->participant);
    put32(buf + 12, h->epoch);
    put32(buf + 16, h->n);
    put32(buf + 20, h->count);
    uint8_t *pi = buf + WIRE_HEADER_BYTES, *pv = pi + 4 * (size_t)h->count;
    for (uint32_t i = 0; i < h->count; i++) {
        put32(pi + 4 * (size_t)i, idx[i]);
        put32(pv + 4 * (size_t)i, float_bits(val[i]));
    }
    return len;
}

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

wire_reason wire_unpack(const uint8_t *msg, size_t len, const wire_expect *e, wire_header *h,
                        uint32_t *idx, float *val)
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
    if (h->count > e->max_count)
        return WIRE_TOO_MANY;
    /* count <= max_count keeps this product far from overflow. */
    size_t want = wire_size(h->count);
    if (len < want)
        return WIRE_TRUNCATED;
    if (len > want)
        return WIRE_BAD_LENGTH;

    const uint8_t *pi = msg + WIRE_HEADER_BYTES, *pv = pi + 4 * (size_t)h->count;
    /* First pass validates everything, so a refused message writes nothing
     * the caller could mistake for data. */
    uint32_t prev = 0;
    for (uint32_t i = 0; i < h->count; i++) {
        uint32_t j = get32(pi + 4 * (size_t)i);
        if (j >= h->n)
            return WIRE_BAD_INDEX;
        if (i > 0 && j <= prev)
            return WIRE_NOT_INCREASING;
        prev = j;
        float v = bits_float(get32(pv + 4 * (size_t)i));
        if (!isfinite(v))
            return WIRE_NOT_FINITE;
        if (fabsf(v) > e->gamma)
            return WIRE_OUT_OF_BOUNDS;
    }
    for (uint32_t i = 0; i < h->count; i++) {
        idx[i] = get32(pi + 4 * (size_t)i);
        val[i] = bits_float(get32(pv + 4 * (size_t)i));
    }
    return WIRE_OK;
}
