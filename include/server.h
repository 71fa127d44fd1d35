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
    /* How uploads combine; all zero is the paper's rule (sum, eta_s = 1). */
    config_aggregate aggregate;/* resolved: sum | mean | staleness | mix (config_aggregate_rule) */
    float server_lr;           /* eta_s; 0 is taken as 1 */
    float server_momentum;     /* beta_s of mean's rounds and mix's turns; 0 = none */
    double staleness_exponent; /* a (staleness and mix) */
    uint32_t staleness_tolerance; /* b: s <= b weighs in full, else s - b counts */
    uint32_t participants;     /* N: ids 0..N-1 have a staleness; 0 = none tracked */
} server_opts;

typedef struct server server_t;

/* Starts from a copy of init (n floats). NULL if out of memory. */
server_t *server_create(const server_opts *opts, const float *init);
void server_free(server_t *s);

const float *server_params(const server_t *s);
/* The update counters (n doubles); adds the pending ones first. */
const double *server_stat(server_t *s);

/* Packs the download for `participant` at `epoch` into buf (capacity
 * wire_size(n)): the k_down entries chosen by the criterion (all n when
 * full is nonzero: a participant's first download). Returns the length.
 * Remembers how many uploads had been applied: the participant's
 * staleness is counted from there (WIRE_ANY_PARTICIPANT: every one's).
 * Inside a mix turn it also keeps a snapshot of w and of the turn's
 * per-entry upload counts for the participant's upload. */
size_t server_pack_download(server_t *s, uint32_t participant, uint32_t epoch, int full,
                            uint8_t *buf, size_t cap);

/* Validates an upload that claims to come from `participant` at `epoch` and
 * applies it: stat[j] += 1 and, by the aggregation rule,
 *   sum:       w[j] += eta_s * v;
 *   staleness: w[j] += eta_s * (1 + max(0, s - b))^-a * v, s = uploads
 *              applied since the participant's download was packed, b the
 *              tolerance (FedAsync's hinge);
 *   mean:      inside a round, v is added to the round's per-parameter sum
 *              and count, applied by server_round_end; outside one, as sum;
 *   mix:       inside an async turn, FedAsync's mixing per parameter:
 *              w[j] += alpha_j * (w0[j] + v - w[j]), w0 the w of the
 *              participant's download, alpha_j = (1 + c_j)^-a and
 *              c_j the uploads of entry j applied since that download (a
 *              turn's uploads all made from one state end at their
 *              per-parameter mean when a = 1; a fresh one is added whole);
 *              eta_s scales the turn's change when the turn ends
 *              (server_async_begin); outside a turn, as sum.
 * A message that fails any check changes nothing (but ends the
 * participant's snapshot); the reason is returned and counted. */
wire_reason server_apply_upload(server_t *s, const uint8_t *msg, size_t len,
                                uint32_t participant, uint32_t epoch);

/* Counts a message refused before it could be parsed (e.g. oversized). */
void server_count_rejection(server_t *s, wire_reason reason);

/* A round of concurrent uploads (sync's epoch): with the mean rule,
 * uploads between begin and end are averaged per parameter over those that
 * carried it, m_j = sum_j / count_j (0 where none did), and when the round
 * ends w[j] += eta_s * m_j; with a server momentum beta_s > 0, w[j] +=
 * eta_s * u_j where u_j <- beta_s * u_j + m_j (FedAvgM). Other rules apply
 * each upload at once; begin and end change nothing. */
void server_round_begin(server_t *s);
void server_round_end(server_t *s);

/* An async turn (schedule_async), ended by server_round_end. With the mix
 * rule, downloads packed for one participant from here on keep a snapshot
 * (8 bytes a parameter) until its upload; room is made for `inflight`
 * (at most N) at once, more are allocated if needed. server_round_end
 * then ends the turn as a round of mean ends, with the turn's change to w,
 * m, for the round's mean: u <- beta_s u + m and w += eta_s beta_s u_old +
 * (eta_s - 1) m, so that w ends eta_s u past the turn's start (FedAvgM);
 * without a momentum w += (eta_s - 1) m. It drops the snapshots: nothing
 * is pending between turns. Other rules: nothing. Returns 0, or -1 when
 * out of memory. */
int server_async_begin(server_t *s, uint32_t inflight);

/* While held (a momentum warm-up), rounds and turns end as without a
 * momentum, and the velocity u is neither applied nor fed: it stays zero
 * from the start of a run, so the first changes after the hold start it. */
void server_hold_momentum(server_t *s, int held);

/* Staleness of the uploads applied so far: their count, sum and largest. */
void server_staleness(const server_t *s, uint64_t *count, uint64_t *sum, uint64_t *max);

/* End of an epoch: stat <- beta * stat. */
void server_end_epoch(server_t *s);

/* The momentum's velocity u (n floats), NULL when the server has none. */
const float *server_velocity(const server_t *s);

/* Checkpoint support: the download rng and the upload counters, out and in.
 * server_restore also replaces the parameters, counters and, when the
 * server has a momentum, its velocity (n entries; NULL: zero, as at the
 * start). */
void server_save(const server_t *s, uint64_t rng[RNG_STATE_WORDS], uint64_t counters[2]);
int server_restore(server_t *s, const float *w, const double *stat,
                   const uint64_t rng[RNG_STATE_WORDS], const uint64_t counters[2],
                   const float *velocity);

uint64_t server_accepted(const server_t *s);
uint64_t server_rejected(const server_t *s);
uint64_t server_rejected_for(const server_t *s, wire_reason reason);

#endif
