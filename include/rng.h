/* rng: counter-based random numbers (Philox4x32-10) keyed by (seed, stream).
 * Every random choice in dssgd draws from an explicit rng_t; none is global. */
#ifndef DSSGD_RNG_H
#define DSSGD_RNG_H

#include <stdint.h>
#include <stddef.h>

/* The whole state is (seed, stream, counter, used): a checkpoint stores these
 * four words and rng_restore rebuilds the block buffer from them. */
typedef struct {
    uint64_t seed;     /* Philox key */
    uint64_t stream;   /* high half of the 128-bit counter: independent streams */
    uint64_t counter;  /* low half: index of the next block */
    uint32_t block[4]; /* current output block */
    uint32_t used;     /* words of block already consumed (4 = empty) */
} rng_t;

#define RNG_STATE_WORDS 4

/* Stream numbers: one per purpose, participants get their own range. */
enum {
    RNG_STREAM_INIT = 1,      /* initial model parameters */
    RNG_STREAM_PARTITION = 2, /* how the data is split into shards */
    RNG_STREAM_SCHEDULE = 3,  /* participant order (random schedule) */
    RNG_STREAM_SERVER = 4,    /* server's random download choice */
    RNG_STREAM_CENTRAL = 5,   /* centralized baseline's shuffling */
    RNG_STREAM_EVAL = 6,      /* the test images the participants' models are scored on */
};
/* Participant p's stream: disjoint from the fixed ones above. */
static inline uint64_t rng_participant_stream(uint32_t participant)
{
    return ((uint64_t)1 << 32) | participant;
}

void rng_init(rng_t *rng, uint64_t seed, uint64_t stream);

uint32_t rng_u32(rng_t *rng);
uint64_t rng_u64(rng_t *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double rng_uniform(rng_t *rng);
/* Uniform double in (0, 1): never 0, never 1 (safe for log). */
double rng_uniform_open(rng_t *rng);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint32_t rng_below(rng_t *rng, uint32_t n);
/* Laplace(0, scale) by inverse CDF, finite for every draw. */
double rng_laplace(rng_t *rng, double scale);
/* Standard normal (Box-Muller, one value per call). */
double rng_normal(rng_t *rng);
/* Gamma(shape, 1), shape > 0 (Marsaglia-Tsang). */
double rng_gamma(rng_t *rng, double shape);
/* Fisher-Yates shuffle of a[0..n). */
void rng_shuffle_u32(rng_t *rng, uint32_t *a, size_t n);

/* Serialisation for checkpoints. */
void rng_save(const rng_t *rng, uint64_t out[RNG_STATE_WORDS]);
/* Returns -1 if the saved state is impossible (used > 4). */
int rng_restore(rng_t *rng, const uint64_t in[RNG_STATE_WORDS]);

#endif
