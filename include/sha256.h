/* sha256: the SHA-256 hash (FIPS 180-4), for recording which bytes a run
 * read (data files) so that a resume can refuse a file that changed. Not a
 * MAC: it detects change, it does not authenticate. */
#ifndef DSSGD_SHA256_H
#define DSSGD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

/* A hash in progress. Fields are private to sha256.c. */
typedef struct {
    uint32_t h[8];     /* the intermediate hash value */
    uint64_t length;   /* bytes absorbed so far */
    uint8_t block[64]; /* the partial block */
    size_t used;       /* bytes in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
/* Absorbs len bytes (len may be 0; data may then be NULL). */
void sha256_update(sha256_ctx *c, const void *data, size_t len);
/* Writes the digest; c must be initialised again before reuse. */
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_BYTES]);

/* The digest of one buffer. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);

#endif
