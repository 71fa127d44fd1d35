/* config: the command line of `dssgd train`, its defaults, validation and
 * the table of the resolved configuration printed at start.
 *
 * Every option is one row of the table options[] in src/config.c (name,
 * kind, field, range, default, help, resume rule, printed row); parsing,
 * --help, config_print, config_to_text and config_check_resume all walk it.
 * Adding an option: a field in config_t, a row there, and its use. */
#ifndef DSSGD_CONFIG_H
#define DSSGD_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "dataset.h"

#define CONFIG_PATH_LEN 1024

typedef enum { MODE_DSSGD, MODE_CENTRALIZED, MODE_STANDALONE } config_mode;
typedef enum { SCHEDULE_ROUND_ROBIN, SCHEDULE_RANDOM, SCHEDULE_ASYNC, SCHEDULE_SYNC } config_schedule;
typedef enum { SELECT_LARGEST, SELECT_RANDOM, SELECT_SVT } config_select;
typedef enum { DOWNLOAD_STAT, DOWNLOAD_RANDOM, DOWNLOAD_ALL } config_download;
/* How the server combines uploads (docs/DESIGN.md, Protocol, 'Aggregation'). AUTO
 * resolves by schedule: see config_aggregate_rule. */
typedef enum {
    AGGREGATE_SUM, AGGREGATE_MEAN, AGGREGATE_STALENESS, AGGREGATE_MIX, AGGREGATE_AUTO
} config_aggregate;
/* The order in which --simulate-staleness collects the uploads in flight:
 * drawn at random (workers of random speeds) or oldest first (workers of
 * equal speed, as real async on like ranks). */
typedef enum { SIMULATE_RANDOM, SIMULATE_FIFO } config_simulate_order;

typedef struct {
    /* data */
    char dataset[32];                 /* fashion-mnist | mnist | h5 */
    char data_dir[CONFIG_PATH_LEN];   /* IDX sets: "" = the dataset's default */
    char data_file[CONFIG_PATH_LEN];  /* --dataset h5: the HDF5 data file */
    char participant_data[CONFIG_PATH_LEN]; /* --dataset h5: one training file per
                                               participant, "%d" = its id; "" = none */
    size_t eval_size;                 /* test examples evaluated, 0 = all */
    size_t eval_participants;         /* participants' models: on a seeded sample of this
                                         many of those, but at the last epoch; 0 = all */
    int eval_every;                   /* participants' models: every K epochs and the last */
    /* model */
    char model[256];
    /* run */
    config_mode mode;
    int participants;
    dataset_partition partition;
    size_t shard_size;                /* 0 = equal share of the training set */
    double alpha;                     /* Dirichlet concentration */
    config_schedule schedule;
    int local_steps;                  /* mini-batches between exchanges; 0 = a local epoch;
                                         -1 = not given (config_local_steps) */
    int epochs;
    double lr;
    int batch;
    uint64_t seed;
    /* protocol */
    double theta_u, theta_d;
    config_select select;
    config_download download;
    double gamma;                     /* clip bound; INFINITY = off */
    double tau;                       /* threshold of --select random */
    double stat_decay;                /* beta: stat <- beta * stat each epoch */
    int residual;                     /* error feedback */
    /* aggregation of concurrent uploads */
    config_aggregate aggregate;
    double server_lr;                 /* eta_s: the server's step on an aggregate;
                                         -1 = not given (config_server_lr) */
    double server_momentum;           /* beta_s: momentum over mean's rounds and mix's turns;
                                         -1 = not given (config_server_momentum) */
    int momentum_warmup;              /* epochs before the server momentum starts;
                                         -1 = not given (config_momentum_warmup) */
    double staleness_exponent;        /* a: staleness weighs (1 + s - b)^-a; mix: (1 + c)^-a */
    int staleness_tolerance;          /* b: uploads at most b stale weigh in full */
    int simulate_staleness;           /* async in one process: S uploads in flight; 0 = off */
    config_simulate_order simulate_order; /* which of them arrives next */
    int ranks;                        /* the run's MPI ranks (run_train sets it; not an option) */
    /* privacy (--select svt) */
    double dp_epsilon;                /* epsilon per participant per epoch; 0 = off */
    double dp_max_epsilon;            /* cumulative cap per participant, svt or DP-SGD;
                                         INFINITY = none */
    /* privacy (--dpsgd: DP-SGD in every participant's local training) */
    int dpsgd;
    double dp_clip;                   /* C: per-example L2 clip over all parameters */
    double dp_noise;                  /* sigma, the noise multiplier; < 0 = not given (the
                                         driver then resolves it from the target) */
    double dp_target_epsilon;         /* the planned run's epsilon; 0 = not given */
    double dp_delta;                  /* delta of the (epsilon, delta) guarantee */
    /* state */
    char checkpoint[CONFIG_PATH_LEN]; /* "" = none */
    int checkpoint_every;             /* epochs between checkpoints; 0 = at the end only */
    char resume[CONFIG_PATH_LEN];     /* "" = start afresh */
    /* output */
    char metrics[CONFIG_PATH_LEN];    /* "" = none */
    int quiet;                        /* no progress lines */
    /* failure handling */
    double rank_timeout;              /* seconds a rank may take per participant's work
                                         before the server stops the job; 0 = never */
    double divergence_factor;         /* stop when the global loss passes this many times
                                         the first epoch's; 0 = off */
    /* privacy audit (docs/DESIGN.md, Privacy audit) */
    char audit[CONFIG_PATH_LEN];      /* "" = no audit */
    char audit_scores[CONFIG_PATH_LEN]; /* "" = none */
    int audit_every;                  /* epochs between audits (and always the last) */
    size_t audit_holdout;             /* records withheld from training; 0 = the default
                                         with --audit, none without: see
                                         config_audit_holdout */
    size_t audit_sample;              /* members (and non-members) per participant */
} config_t;

void config_defaults(config_t *c);

/* Parses `dssgd train` options (argv[0] is "train"). Returns 0 on success,
 * 1 if --help was given (usage already printed to `out`), -1 on a bad
 * option or value with a message in err. Validates every value. */
int config_parse(config_t *c, int argc, char **argv, FILE *out, char *err);

/* Cross-option checks (also run by config_parse). */
int config_validate(const config_t *c, char *err);

/* The options set away from their defaults that have no effect in this
 * configuration (those config_print hides: the protocol outside mode dssgd,
 * --tau with --select largest, --alpha without --partition dirichlet, ...),
 * one line each, "--theta-u 0.2 is ignored: it has an effect only with
 * --mode dssgd\n", for the driver to print as warnings. An option given at
 * its default value is not seen. Returns the number of such options; -1 if
 * len is too small (buf then holds the whole lines that fit). */
int config_ignored(const config_t *c, char *buf, size_t len);

void config_usage(FILE *out);

/* The resolved configuration as an aligned two-column table. */
void config_print(const config_t *c, FILE *out);

/* The resolved configuration as "key = value" lines, every option (what a
 * checkpoint stores). Returns the length, or -1 if len is too small. */
int config_to_text(const config_t *c, char *buf, size_t len);

/* Checks that a run may resume from a checkpoint written with the
 * configuration `saved` (config_to_text's format): every option that
 * changes the meaning of the run must match; epochs, paths, evaluation size
 * and the privacy cap may differ. The message names the first mismatch. */
int config_check_resume(const config_t *c, const char *saved, char *err);

const char *config_mode_name(config_mode m);
const char *config_schedule_name(config_schedule s);
const char *config_select_name(config_select s);
const char *config_download_name(config_download d);
const char *config_aggregate_name(config_aggregate a);

/* The rule in force: --aggregate, or for auto the schedule's own: sum for
 * round-robin and random (the paper's), mean for sync, mix for
 * async. */
config_aggregate config_aggregate_rule(const config_t *c);

/* The directory the data is read from: --data-dir, else the dataset's
 * default (NULL when it has none: config_validate refuses that). */
const char *config_data_dir(const config_t *c);

/* --dataset h5 (an HDF5 data file, include/h5data.h) rather than IDX. */
int config_is_h5(const config_t *c);

/* Participant p's training file: --participant-data with its one %d
 * replaced by p. -1 if it does not fit in len. */
int config_participant_file(const config_t *c, int p, char *buf, size_t len);

/* The records the run withholds from training for the audit's non-members:
 * --audit-holdout N when given, else CONFIG_AUDIT_HOLDOUT with --audit and
 * 0 without (no holdout: the partition is the same as before the audit
 * existed). */
#define CONFIG_AUDIT_HOLDOUT 2000
size_t config_audit_holdout(const config_t *c);
const char *config_partition_name(dataset_partition p);

/* Whether async has every participant in flight at once: simulated with
 * S >= participants, or with at least a worker rank per participant.
 * Every turn's downloads then come from one state, as in sync. */
int config_async_all_in_flight(const config_t *c);

/* Async's uploads in flight: S simulated, else a worker rank each (one on
 * a single rank), at most the participants; 0 for the other schedules. */
int config_async_in_flight(const config_t *c);

/* Whether async's uploads in flight carry each parameter densely: theta_u
 * times the uploads in flight >= CONFIG_DENSE_SHARERS, so that `mix`
 * averages most entries over several uploads, as sync's mean does. */
#define CONFIG_DENSE_SHARERS 4
int config_async_dense(const config_t *c);

/* The defaults that depend on the schedule (docs/DESIGN.md, Local steps):
 * --local-steps K when given, else CONFIG_SYNC_LOCAL_STEPS for sync, and
 * for async with every participant in flight or dense, in mode dssgd (not with
 * --select svt, whose epsilon is per epoch) and 0 (once per local epoch,
 * the paper's) otherwise; --server-momentum B when given, else
 * CONFIG_SYNC_MOMENTUM for those two with local steps and
 * CONFIG_MOMENTUM otherwise. */
#define CONFIG_SYNC_LOCAL_STEPS 5
#define CONFIG_SYNC_MOMENTUM 0.9
#define CONFIG_MOMENTUM 0.7
int config_local_steps(const config_t *c);
double config_server_momentum(const config_t *c);

/* --server-lr R when given, else 1 + theta_u where every upload of a round
 * is made from one state and averaged (sync, and async with every
 * participant in flight; rules mean and mix, mode dssgd), and 1 otherwise:
 * the average of concurrent changes moves less than one participant's
 * sequential share, the more so the more of the model each upload carries
 * (docs/DESIGN.md, Aggregation, The server's step). */
double config_server_lr(const config_t *c);

/* --momentum-warmup W when given, else CONFIG_MOMENTUM_WARMUP for the
 * rules with a server momentum (mean, mix) and 0 otherwise: the first W
 * epochs' changes neither move the model by the server momentum nor feed
 * it (docs/DESIGN.md, Aggregation). */
#define CONFIG_MOMENTUM_WARMUP 1
int config_momentum_warmup(const config_t *c);

#endif
