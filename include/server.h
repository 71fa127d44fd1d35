/* server: the global parameter vector, its update counters, the choice of
 * what a participant downloads, and the checked application of uploads.
 * Pure protocol logic: no MPI; run.c moves the messages. */
#ifndef DSSGD_SERVER_H
#define DSSGD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rng.h"
#include "wire.h"

typedef struct {
    size_t n;                  /* parameters */
    size_t k_up;               /* most entries an upload may carry */
    size_t k_down;             /* entries a download carries */
    float gamma;               /* uploads must lie in [-gamma, gamma] */
    config_download download;  /* stat | random | all */
    double stat_decay;         /* beta */
    uint64_t seed;             /* for --download random */
} server_opts;

typedef struct server server_t;

/* Starts from a copy of init (n floats). NULL if out of memory. */
server_t *server_create(const server_opts *opts, const float *init);
void server_free(server_t *s);

const float *server_params(const server_t *s);
const double *server_stat(const server_t *s);

/* Packs the download for `participant` at `epoch` into buf (capacity
 * wire_size(n)): the k_down entries chosen by the criterion (all n when
 * full is nonzero: a participant's first download). Returns the length. */
size_t server_pack_download(server_t *s, uint32_t participant, uint32_t epoch, int full,
                            uint8_t *buf, size_t cap);

/* Validates an upload that claims to come from `participant` at `epoch` and
 * applies it: w[j] += v, stat[j] += 1. A message that fails any check
 * changes nothing; the reason is returned and counted. */
wire_reason server_apply_upload(server_t *s, const uint8_t *msg, size_t len,
                                uint32_t participant, uint32_t epoch);

/* Counts a message refused before it could be parsed (e.g. oversized). */
void server_count_rejection(server_t *s, wire_reason reason);

/* End of an epoch: stat <- beta * stat. */
void server_end_epoch(server_t *s);

/* Checkpoint support: the download rng and the upload counters, out and in.
 * server_restore also replaces the parameters and counters (n entries). */
void server_save(const server_t *s, uint64_t rng[RNG_STATE_WORDS], uint64_t counters[2]);
int server_restore(server_t *s, const float *w, const double *stat,
                   const uint64_t rng[RNG_STATE_WORDS], const uint64_t counters[2]);

uint64_t server_accepted(const server_t *s);
uint64_t server_rejected(const server_t *s);
uint64_t server_rejected_for(const server_t *s, wire_reason reason);

#endif
