/* rng: Philox4x32-10 (Salmon et al., SC'11) with a 64-bit key and a 128-bit
 * counter split into (stream, block index); samplers built on top. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_block(uint64_t key, uint64_t stream, uint64_t counter, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void rng_init(rng_t *rng, uint64_t seed, uint64_t stream)
{
    rng->seed = seed;
    rng->stream = stream;
    rng->counter = 0;
    rng->used = 4;
}

uint32_t rng_u32(rng_t *rng)
{
    if (rng->used == 4) {
        philox_block(rng->seed, rng->stream, rng->counter++, rng->block);
        rng->used = 0;
    }
    return rng->block[rng->used++];
}

uint64_t rng_u64(rng_t *rng)
{
    uint64_t hi = rng_u32(rng);
    return (hi << 32) | rng_u32(rng);
}

double rng_uniform(rng_t *rng)
{
    return (double)(rng_u64(rng) >> 11) * 0x1.0p-53;
}

double rng_uniform_open(rng_t *rng)
{
    /* Midpoints of 2^52 equal cells: strictly inside (0, 1), and exact (with
     * 53 bits, (2^53 - 1) + 0.5 would round up to 1.0). */
    return ((double)(rng_u64(rng) >> 12) + 0.5) * 0x1.0p-52;
}

uint32_t rng_below(rng_t *rng, uint32_t n)
{
    /* Lemire's multiply-and-reject: unbiased, rarely rejects. */
    uint64_t m = (uint64_t)rng_u32(rng) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)-n % n;
        while (low < threshold) {
            m = (uint64_t)rng_u32(rng) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double rng_laplace(rng_t *rng, double scale)
{
    /* Inverse CDF on u in (-1/2, 1/2) excluding the ends: X = -b sgn(u) ln(1-2|u|).
     * Drawing |u| and the sign separately keeps full precision in both tails
     * and 1-2|u| > 0 always, so log never sees 0. */
    double a = rng_uniform_open(rng) * 0.5; /* |u| in (0, 1/2) */
    double sign = (rng_u32(rng) & 1u) ? 1.0 : -1.0;
    return -scale * sign * log1p(-2.0 * a);
}

double rng_normal(rng_t *rng)
{
    double u1 = rng_uniform_open(rng), u2 = rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double rng_gamma(rng_t *rng, double shape)
{
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a + 1) * U^(1/a) */
        double u = rng_uniform_open(rng);
        return rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(rng), v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = rng_uniform_open(rng);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

void rng_shuffle_u32(rng_t *rng, uint32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        uint32_t j = rng_below(rng, (uint32_t)i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

void rng_save(const rng_t *rng, uint64_t out[RNG_STATE_WORDS])
{
    out[0] = rng->seed;
    out[1] = rng->stream;
    out[2] = rng->counter;
    out[3] = rng->used;
}

int rng_restore(rng_t *rng, const uint64_t in[RNG_STATE_WORDS])
{
    if (in[3] > 4 || (in[3] < 4 && in[2] == 0))
        return -1;
    rng->seed = in[0];
    rng->stream = in[1];
    rng->counter = in[2];
    rng->used = (uint32_t)in[3];
    /* The current block is the one generated from counter - 1. */
    if (rng->used < 4)
        philox_block(rng->seed, rng->stream, rng->counter - 1, rng->block);
    return 0;
}
