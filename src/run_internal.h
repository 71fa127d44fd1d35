/* run_internal: the state of one `dssgd train` run, shared by run.c (set-up,
 * the worker loop, the modes, evaluation, checkpoints) and schedule.c (the
 * epochs of each schedule), and where participants live.
 *
 * Placement: with one rank everything runs in rank 0, participant p in slot
 * p. With P > 1 ranks, rank 0 hosts the server and participant p lives on
 * rank 1 + p mod (P-1), in slot p / (P-1) there. */
#ifndef DSSGD_RUN_INTERNAL_H
#define DSSGD_RUN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "config.h"
#include "dataset.h"
#include "model.h"
#include "participant.h"
#include "rng.h"
#include "run.h"
#include "server.h"
#include "transport.h"

/* What a rank learns of a participant's training file (--participant-data)
 * from the rank that read it: the same on every rank after set-up. */
typedef struct {
    uint64_t count;               /* examples */
    int32_t classes;              /* its `classes` attribute, else its largest label + 1 */
    int32_t pad_;
    uint64_t size;                /* bytes */
    uint8_t sha256[32];
} run_site;

/* The scoring of a participant's model, batch by batch: a worker under a
 * sequential schedule does it between commands (run.c, score_after_turn). */
typedef struct {
    int how;       /* the evaluation kind being scored (run.c's EVAL_*); -1: none */
    size_t next;   /* images scored so far, from the first */
    int correct;   /* of them, predicted right */
} run_score;

typedef struct {
    const config_t *cfg;
    const run_hooks *hooks;
    transport_t tr;
    dataset_t train, test;        /* train: with --participant-data, the files this rank
                                     read, one after another */
    int classes;                  /* the model's outputs */
    run_site *sites;              /* (participants) with --participant-data, else NULL */
    char *data_manifest;          /* rank 0, --dataset h5: the files read (run_data.c) */
    model_t model;
    size_t n, k_up, k_down;
    uint32_t rounds;              /* exchanges per epoch (--local-steps), >= 1 */
    double dp_sigma;              /* --dpsgd: the noise multiplier, resolved */
    dataset_shards shards;
    int local_count;              /* participants hosted on this rank */
    participant_t **local;        /* (local_count) by slot */
    char *told_budget;            /* (local_count) the DP cap's stop was reported */
    run_score *scores;            /* (local_count) each participant's current model's */
    participant_ctx ctx;
    model_ws *eval_ws;
    uint8_t *down_buf;            /* (down_cap = wire_size(n)) */
    uint8_t *up_buf;              /* (up_cap = wire_size(n) + slack: tamper hooks may grow it) */
    size_t down_cap, up_cap;
    uint8_t **held;               /* one rank: (N) uploads delivered but not yet collected */
    size_t *held_len;             /* (N) */
    server_t *server;             /* rank 0 */
    rng_t schedule_rng;           /* rank 0: order of the random schedule */
    double *part_acc;             /* (participants) rank 0 */
    double *part_eps;             /* (participants) cumulative epsilon, rank 0 */
    uint64_t bytes_up, bytes_down;/* this epoch */
    dataset_t holdout;            /* --audit: records no shard holds (empty without) */
    dataset_t eval_sample;        /* ranks hosting participants: the test images their
                                     models are scored on between full evaluations
                                     (--eval-participants; empty: none) */
    audit_t *audit;               /* rank 0 with --audit: reads uploads, never writes */
} run_state;

/* ---- placement: participant p <-> (rank, slot) -------------------------- */

/* The first rank that hosts participants, and how many ranks do. */
static inline int run_first_host(int size) { return size == 1 ? 0 : 1; }
static inline int run_hosts(int size) { return size == 1 ? 1 : size - 1; }

static inline int run_rank_of(int size, int p) { return run_first_host(size) + p % run_hosts(size); }
static inline int run_slot_of(int size, int p) { return p / run_hosts(size); }
static inline int run_participant_at(int size, int rank, int slot)
{
    return rank - run_first_host(size) + slot * run_hosts(size);
}

/* How many of N participants rank hosts. */
static inline int run_hosted_by(int size, int participants, int rank)
{
    int first = rank - run_first_host(size);
    return first >= 0 && first < participants
               ? (participants - 1 - first) / run_hosts(size) + 1 : 0;
}

/* ---- the data (run_data.c) ---------------------------------------------- */

/* This rank's part: the test set, and the training set or the training
 * files of the participants it hosts (the holdout carved out for --audit).
 * Not collective: transport_agree follows. */
int run_data_load(run_state *st, char *err);

/* After the shards are drawn: where run_data_load read only the training
 * labels (the IDX files, more than one rank, no audit holdout), a worker
 * reads the pixels of its own participants' shards; the rest of the set
 * stays zero and takes no memory. Does nothing on other ranks and runs.
 * Not collective. */
int run_data_load_hosted_pixels(run_state *st, char *err);

/* After run_data_load succeeded everywhere. Collective with
 * --participant-data (every rank learns every file's size, classes and
 * digest: bounded, transport_allgather); sets st->classes and the shards
 * of the site files, and on rank 0 the manifest. */
int run_data_share(run_state *st, char *err);

/* The k-th data file the run reads (k = 0, 1, ...): the IDX files found, or
 * --data-file and every --participant-data file. Returns 0 past the last. */
int run_data_path(const config_t *c, int k, char *buf, size_t len);

/* Rank 0, on --resume: refuses a checkpoint whose manifest `saved` (NULL:
 * none) names other data than this run's: a file missing on either side,
 * or one whose size or SHA-256 differs (paths may differ: moved files are
 * fine). ckpt names the checkpoint in the message. */
int run_data_check_resume(const run_state *st, const char *saved, const char *ckpt, char *err);

/* ---- what schedule.c uses of run.c -------------------------------------- */

/* Participant part (hosted here) applies the download down[0..down_len)
 * of `epoch` (> 0), trains, and packs its upload into st->up_buf; returns
 * the upload's length. A malformed download ends the job. */
/* "epoch E" or, with --local-steps, "epoch E, exchange R of ROUNDS": turn
 * numbers as a user reads them (buf of 64 bytes is enough). */
const char *run_turn_name(const run_state *st, int turn, char *buf, size_t len);

size_t run_participant_step(run_state *st, participant_t *part, const uint8_t *down,
                            size_t down_len, int epoch);

/* One local epoch of SGD for every participant hosted here (standalone). */
void run_train_local(run_state *st);

#endif
