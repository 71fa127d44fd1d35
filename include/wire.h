/* wire: the sparse-vector message between participants and the server, its
 * packing, and the validation the server applies to every untrusted upload. */
#ifndef DSSGD_WIRE_H
#define DSSGD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC 0x44475344u   /* "DSGD" as little-endian bytes */
#define WIRE_VERSION 1
#define WIRE_HEADER_BYTES 24
/* Participant id of a download addressed to everyone (a sync epoch's). */
#define WIRE_ANY_PARTICIPANT UINT32_MAX

typedef enum { WIRE_UPLOAD = 1, WIRE_DOWNLOAD = 2 } wire_type;

/* Layout, all little-endian:
 *   u32 magic, u16 version, u16 type, u32 participant, u32 epoch, u32 n,
 *   u32 count, then count u32 indices (strictly increasing, < n), then count
 *   f32 values. */
typedef struct {
    uint32_t magic;
    uint16_t version, type;
    uint32_t participant, epoch, n, count;
} wire_header;

/* Why a message was refused (index into wire_reason_name). */
typedef enum {
    WIRE_OK = 0,
    WIRE_TRUNCATED,      /* shorter than its header or than header + count entries */
    WIRE_BAD_LENGTH,     /* longer than header + count entries */
    WIRE_BAD_MAGIC,
    WIRE_BAD_VERSION,
    WIRE_BAD_TYPE,
    WIRE_BAD_SENDER,     /* participant id not the one expected */
    WIRE_BAD_EPOCH,
    WIRE_BAD_N,          /* vector length not the model's */
    WIRE_TOO_MANY,       /* count above the allowed k */
    WIRE_BAD_INDEX,      /* index out of range */
    WIRE_NOT_INCREASING, /* indices repeated or out of order */
    WIRE_NOT_FINITE,     /* NaN or Inf value */
    WIRE_OUT_OF_BOUNDS,  /* |value| > gamma */
    WIRE_UNSOLICITED,    /* an upload or request the server did not ask for */
    WIRE_REASONS
} wire_reason;

const char *wire_reason_name(wire_reason r);

/* Bytes of a message of `count` entries. */
static inline size_t wire_size(size_t count) { return WIRE_HEADER_BYTES + 8 * count; }

/* Packs a message into buf (capacity cap). Returns its length, or 0 if cap is
 * too small. Indices/values are copied as given. */
size_t wire_pack(uint8_t *buf, size_t cap, const wire_header *h, const uint32_t *idx,
                 const float *val);

/* What the receiver expects. participant or epoch = UINT32_MAX: not checked;
 * n and max_count are always checked. */
typedef struct {
    uint16_t type;
    uint32_t participant;
    uint32_t epoch;
    uint32_t n;
    uint32_t max_count;
    float gamma;          /* INFINITY: only finiteness is checked */
} wire_expect;

/* Validates msg[0..len) completely before writing anything, then decodes its
 * entries into idx/val (capacity expect->max_count). Returns WIRE_OK or the
 * first reason for refusal; *h is filled when the header could be read.
 * Nothing it returns can index outside [0, n). */
wire_reason wire_unpack(const uint8_t *msg, size_t len, const wire_expect *expect,
                        wire_header *h, uint32_t *idx, float *val);

/* Reads just the header (for routing); WIRE_TRUNCATED if too short. */
wire_reason wire_peek(const uint8_t *msg, size_t len, wire_header *h);

#endif
