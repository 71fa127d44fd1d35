/* wire: the sparse-vector message between participants and the server, its
 * packing (in the smallest of four encodings), and the validation the server
 * applies to every untrusted upload. */
#ifndef DSSGD_WIRE_H
#define DSSGD_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WIRE_MAGIC 0x44475344u   /* "DSGD" as little-endian bytes */
#define WIRE_VERSION 2
#define WIRE_HEADER_BYTES 25
/* Participant id of a download addressed to everyone (a sync epoch's). */
#define WIRE_ANY_PARTICIPANT UINT32_MAX

typedef enum { WIRE_UPLOAD = 1, WIRE_DOWNLOAD = 2 } wire_type;

/* Version 2 layout, all little-endian:
 *
 *   offset 0  u32 magic        4  u16 version (2)     6  u16 type
 *          8  u32 participant 12  u32 epoch          16  u32 n
 *         20  u32 count       24  u8  encoding       25  index section
 *
 * then the values: count f32, in increasing index order, always the last
 * 4 * count bytes of the message. The index section says which `count` of
 * the n indices are present; its length is implied (message length - 25 -
 * 4 * count), so the header carries no payload length to disagree with it.
 *
 *   WIRE_ENC_DELTA (1)      count LEB128 varints: the first index, then
 *                           idx[i] - idx[i-1] - 1 (indices strictly
 *                           increase, so every gap is >= 1).
 *   WIRE_ENC_BITMAP (2)     ceil(n/8) bytes; index j is present iff bit j%8
 *                           (least significant first) of byte j/8 is set.
 *                           Bits >= n are 0, and exactly count bits are set.
 *   WIRE_ENC_DENSE (3)      nothing: only when count == n, every index is
 *                           present. (A download overwrites what it carries,
 *                           so "absent" can never be written as a value 0.)
 *   WIRE_ENC_COMPLEMENT (4) n - count varints: the ABSENT indices, coded as
 *                           in WIRE_ENC_DELTA. For densities near 1, where
 *                           the others cost more than the dense vector.
 *
 * A varint is 7 bits a byte, least significant group first, high bit set
 * on every byte but the last; at most 5 bytes, a value below 2^32, and
 * minimal (a last byte of 0 only when it is the only byte).
 *
 * Choice: wire_pack computes the exact size of every encoding that applies
 * and takes the smallest; on a tie, the first of dense, delta, bitmap,
 * complement. So the bytes are a function of the entries alone. For n <=
 * 2^28 the result is never larger than WIRE_HEADER_BYTES + 4 n (complement
 * costs at most 4 bytes for each absent entry it saves 4 on); at density
 * 0.01 with spread-out indices it is about 1.3 + 4 bytes an entry. */
typedef enum {
    WIRE_ENC_DELTA = 1,
    WIRE_ENC_BITMAP = 2,
    WIRE_ENC_DENSE = 3,
    WIRE_ENC_COMPLEMENT = 4,
} wire_encoding;
#define WIRE_ENCODINGS 5 /* one past the last; 0 is no encoding */

/* "delta", "bitmap", "dense", "complement"; "unknown" otherwise. */
const char *wire_encoding_name(wire_encoding enc);

/* The header's fields but the encoding, which wire_pack chooses itself (see
 * wire_message_encoding). */
typedef struct {
    uint32_t magic;
    uint16_t version, type;
    uint32_t participant, epoch, n, count;
} wire_header;

/* Why a message was refused (index into wire_reason_name). */
typedef enum {
    WIRE_OK = 0,
    WIRE_TRUNCATED,      /* shorter than its header or than what it declares */
    WIRE_BAD_LENGTH,     /* bytes left over after what it declares */
    WIRE_BAD_MAGIC,
    WIRE_BAD_VERSION,
    WIRE_BAD_TYPE,
    WIRE_BAD_SENDER,     /* participant id not the one expected */
    WIRE_BAD_EPOCH,
    WIRE_BAD_N,          /* vector length not the model's */
    WIRE_TOO_MANY,       /* count above the allowed k, or above n */
    WIRE_BAD_INDEX,      /* index >= n (a delta or a bitmap bit beyond n) */
    WIRE_NOT_INCREASING, /* a delta that wraps past 2^32, which a 32-bit decoder
                          * would turn into a repeated or smaller index */
    WIRE_NOT_FINITE,     /* NaN or Inf value */
    WIRE_OUT_OF_BOUNDS,  /* |value| > gamma */
    WIRE_UNSOLICITED,    /* an upload or request the server did not ask for */
    WIRE_BAD_ENCODING,   /* unknown encoding; a varint not minimal, longer than 5
                          * bytes or >= 2^32; a bitmap whose popcount is not
                          * count; dense with count != n */
    WIRE_REASONS
} wire_reason;

const char *wire_reason_name(wire_reason r);

/* An upper bound on the packed size of any message of `count` entries, to
 * size buffers: at most 4 bytes of values and 4 of index an entry, plus 15
 * for the varints of 5 bytes (a value >= 2^28: their sum stays below 2^32,
 * so there are at most 15 of them). */
static inline size_t wire_size(size_t count) { return WIRE_HEADER_BYTES + 8 * count + 15; }

/* The exact length of the message wire_pack_as(enc) would write for these
 * entries, or 0 when enc does not apply (dense with count != n) or the
 * entries are not a sparse vector of length n (indices strictly increasing
 * and < n). O(count), whatever the encoding. */
size_t wire_encoding_size(wire_encoding enc, uint32_t n, uint32_t count, const uint32_t *idx);

/* The exact length of the message wire_pack writes for these entries, and
 * (when chosen is not NULL) the encoding it picks; 0 if the entries are not
 * a sparse vector of length n. */
size_t wire_packed_size(uint32_t n, uint32_t count, const uint32_t *idx, wire_encoding *chosen);

/* Packs a message into buf (capacity cap) in the smallest encoding. Header
 * fields and values are written as given (a test may pack a NaN or a wrong
 * epoch); the indices must be strictly increasing and < h->n. Returns the
 * length, or 0 if cap is too small or the indices are not valid. */
size_t wire_pack(uint8_t *buf, size_t cap, const wire_header *h, const uint32_t *idx,
                 const float *val);

/* wire_pack in a given encoding (tests, benchmarks); 0 also when it does
 * not apply to these entries. */
size_t wire_pack_as(uint8_t *buf, size_t cap, const wire_header *h, const uint32_t *idx,
                    const float *val, wire_encoding enc);

/* wire_pack of a whole vector (h->count must equal h->n): what wire_pack
 * gives for the indices 0..n-1 and these values, without an index array or
 * a pass over one. The server's full downloads, 4n bytes a turn. Returns 0
 * if count != n or cap is too small. */
size_t wire_pack_dense(uint8_t *buf, size_t cap, const wire_header *h, const float *values);

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
 * first reason for refusal, and then has written nothing to idx/val; *h is
 * filled when the header could be read. Nothing it returns can index outside
 * [0, n). It reads no byte outside msg[0..len), and its work is linear in
 * len + count. */
wire_reason wire_unpack(const uint8_t *msg, size_t len, const wire_expect *expect,
                        wire_header *h, uint32_t *idx, float *val);

/* The entries of a message wire_check accepted, read in order straight from
 * its bytes, a block at a time: the server decodes and applies in one pass
 * without copying the message into index and value arrays. The fields are
 * wire.c's; the reader borrows msg, which must outlive it. */
typedef struct {
    const uint8_t *p, *end;  /* index bytes not yet read */
    const uint8_t *values;   /* the message's count values, 4 bytes each */
    uint64_t sum;            /* delta: running sum of the varints read */
    uint64_t next;           /* dense, complement: next index that may be present;
                              * bitmap: index of the current word's bit 0 */
    uint64_t absent;         /* complement: next absent index (n: none left) */
    uint64_t word;           /* bitmap: the current word's bits not yet read */
    uint32_t n, left;        /* left: entries not yet read */
    unsigned shift;          /* delta: place of the next byte in its varint */
    uint8_t enc;
} wire_reader;

/* wire_unpack's validation alone: the same checks in the same order, the
 * same reason, and nothing written but *h (when the header could be read)
 * and, on WIRE_OK only, *rd, ready to read the entries. */
wire_reason wire_check(const uint8_t *msg, size_t len, const wire_expect *expect,
                       wire_header *h, wire_reader *rd);

/* The next at most cap indices of the message, in increasing order, into
 * idx[0..cap); returns how many (>= 1 while any are left; 0 once all count
 * have been read, or if cap is 0). */
size_t wire_read(wire_reader *rd, uint32_t *idx, size_t cap);

/* The value of entry i of the values section at `values` (rd->values). A
 * loop that stores through a uint8_t pointer reads rd->values once this
 * way: a byte store might change *rd, the pointer in a local cannot. */
static inline float wire_value_at(const uint8_t *values, size_t i)
{
    const uint8_t *p = values + 4 * i;
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The value of entry i (0..count-1, counted across wire_read calls). */
static inline float wire_value(const wire_reader *rd, size_t i)
{
    return wire_value_at(rd->values, i);
}

/* Reads just the header (for routing); WIRE_TRUNCATED if too short. */
wire_reason wire_peek(const uint8_t *msg, size_t len, wire_header *h);

/* The encoding byte of a message, as it is (not validated); 0 if the message
 * is shorter than its header. */
wire_encoding wire_message_encoding(const uint8_t *msg, size_t len);

#endif
