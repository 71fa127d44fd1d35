/* config: every option of `dssgd train` is one row of options[] below (its
 * name, kind, config_t field, range, default, help, resume rule and place in
 * the printed table). Parsing, --help, the printed table, the checkpoint's
 * text and the resume check all walk that table; only the cross-option
 * checks (config_validate) are written out by hand. */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static const char *const mode_names[] = {"dssgd", "centralized", "standalone"};
static const char *const schedule_names[] = {"round-robin", "random", "async", "sync"};
static const char *const select_names[] = {"largest", "random", "svt"};
static const char *const download_names[] = {"stat", "random", "all"};
static const char *const aggregate_names[] = {"sum", "mean", "staleness", "mix", "auto"};
static const char *const simulate_order_names[] = {"random", "fifo"};
static const char *const partition_names[] = {"iid", "paper", "dirichlet"};
static const char *const dataset_names[] = {"fashion-mnist", "mnist", "h5"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *config_mode_name(config_mode m) { return mode_names[m]; }
const char *config_schedule_name(config_schedule s) { return schedule_names[s]; }
const char *config_select_name(config_select s) { return select_names[s]; }
const char *config_download_name(config_download d) { return download_names[d]; }
const char *config_aggregate_name(config_aggregate a) { return aggregate_names[a]; }

config_aggregate config_aggregate_rule(const config_t *c)
{
    if (c->aggregate != AGGREGATE_AUTO)
        return c->aggregate;
    return c->schedule == SCHEDULE_SYNC    ? AGGREGATE_MEAN
           : c->schedule == SCHEDULE_ASYNC ? AGGREGATE_MIX
                                           : AGGREGATE_SUM;
}
const char *config_partition_name(dataset_partition p) { return partition_names[p]; }

/* ---- the option table -------------------------------------------------- */

typedef enum {
    KIND_INT,    /* int, integer range */
    KIND_SIZE,   /* size_t, integer range */
    KIND_U64,    /* uint64_t, integer range */
    KIND_DOUBLE, /* double, range with open or closed ends; "inf" parses */
    KIND_ENUM,   /* an enum field: value i is names[i] */
    KIND_STRING, /* char array: no control characters, shorter than the array;
                    one of names[] when names is set */
    KIND_FLAG,   /* int set to 1 by the bare option */
} option_kind;

/* What a resumed run may do with the option. */
typedef enum {
    RESUME_MUST_MATCH, /* saved in the checkpoint; resuming needs the same value */
    RESUME_MAY_DIFFER, /* saved, but a resumed run may change it */
    RESUME_NOT_SAVED,  /* not in the checkpoint's text at all */
} resume_rule;

/* Where config_print shows the option: blocks in this order, table order
 * within a block. */
typedef enum {
    PRINT_NEVER,
    PRINT_FIRST, /* the mode: it decides which rows follow */
    PRINT_MAIN,  /* data, model and run */
    PRINT_DSSGD, /* the protocol: shown in mode dssgd only */
    PRINT_LAST,  /* state, output, failures */
} print_block;

typedef struct {
    const char *name;          /* --name; also the key in config text and the table */
    option_kind kind;
    size_t offset, size;       /* the config_t field */
    const char *const *names;  /* KIND_ENUM, KIND_STRING: the accepted values */
    int n_names;
    long long imin, imax;      /* integer kinds: accepted range, closed */
    double min, max;           /* KIND_DOUBLE: accepted range ... */
    int min_open, max_open;    /* ... whose ends are open when set */
    double def;                /* default of numbers (exact to 2^53), enums (the index), flags */
    const char *def_str;       /* default of KIND_STRING (NULL = "") */
    /* an extra test of the value before the kind's own (NULL = none) */
    int (*check)(const char *value, char *err);
    resume_rule resume;
    /* RESUME_MUST_MATCH: the value that a checkpoint written before the
     * option existed stands for (how dssgd behaved then); "*" = any (it
     * cannot have mattered then); NULL = required */
    const char *absent;
    /* the value as the checkpoint saves it, when not the field's own */
    const char *(*saved)(const config_t *c);
    /* --help: the section heading, the value's name (NULL for a flag), the
     * help (lines split by '\n'; a "%s" in it stands for the default as
     * shown), and the default's tag after it: NULL = "[<default>]", "" = none */
    const char *section, *metavar, *help, *help_default;
    print_block print;
    /* printed only if true (NULL = always). Hiding a row means the option has
     * no effect in that configuration, as hiding the PRINT_DSSGD block means
     * outside mode dssgd: config_ignored warns when such an option is set. */
    int (*shown)(const config_t *c);
    const char *applies; /* where shown is true, for that warning (NULL: shown is true
                            whenever the option is set) */
    const char *(*display)(const config_t *c);    /* printed value (NULL = the field's) */
    /* numbers whose default depends on other options: the value in force,
     * saved and shown in place of the field's (NULL = the field's) */
    double (*in_force)(const config_t *c);
    const char *unit;                             /* printed after the value */
} config_option;

/* Names the field and checks its type at compile time (_Generic has no
 * fallback, so a mismatch does not compile). */
#define FIELD(f, T) \
    .offset = _Generic(((config_t *)0)->f, T: offsetof(config_t, f)), \
    .size = sizeof(((config_t *)0)->f)
/* An enum field, read and written as int: it must have an int's size. */
#define ENUM_FIELD(f, T, names_) \
    FIELD(f, T) + 0 * sizeof(struct { \
        _Static_assert(sizeof(T) == sizeof(int), #T " is not int-sized"); int i_; }), \
    NAMES(names_)
#define NAMES(a) .names = (a), .n_names = COUNT(a)

int config_is_h5(const config_t *c) { return strcmp(c->dataset, "h5") == 0; }
static int when_idx(const config_t *c) { return !config_is_h5(c); }
static int when_h5(const config_t *c) { return config_is_h5(c); }
/* The shards are drawn from one training set (not given as site files). */
static int when_drawn(const config_t *c)
{
    return !(config_is_h5(c) && c->participant_data[0]);
}
static int when_dirichlet(const config_t *c)
{
    return c->partition == PARTITION_DIRICHLET && when_drawn(c);
}
static int when_threshold(const config_t *c) { return c->select != SELECT_LARGEST; }
static int when_svt(const config_t *c) { return c->select == SELECT_SVT; }
static int when_dpsgd(const config_t *c) { return c->dpsgd; }
static int when_target(const config_t *c) { return c->dpsgd && c->dp_target_epsilon > 0; }
static int when_private(const config_t *c) { return c->select == SELECT_SVT || c->dpsgd; }
static int when_checkpoint(const config_t *c) { return c->checkpoint[0] != '\0'; }
static int when_resume(const config_t *c) { return c->resume[0] != '\0'; }
static int when_distributed(const config_t *c) { return c->mode != MODE_CENTRALIZED; }
static int when_staleness(const config_t *c)
{
    return config_aggregate_rule(c) == AGGREGATE_STALENESS;
}
static int when_async(const config_t *c) { return c->schedule == SCHEDULE_ASYNC; }
static int when_simulated(const config_t *c) { return c->simulate_staleness > 0; }
static int when_momentum(const config_t *c)
{
    return config_aggregate_rule(c) == AGGREGATE_MEAN || config_aggregate_rule(c) == AGGREGATE_MIX;
}
static int when_exponent(const config_t *c)
{
    return when_staleness(c) || config_aggregate_rule(c) == AGGREGATE_MIX;
}

/* Checkpoints save the rule in force: resuming compares what ran. */
static const char *aggregate_saved(const config_t *c)
{
    return aggregate_names[config_aggregate_rule(c)];
}

/* --aggregate auto shows the rule it stands for. */
static const char *aggregate_shown(const config_t *c)
{
    static const char *const resolved[] = {"sum (auto)", "mean (auto)", "staleness (auto)",
                                            "mix (auto)"};
    return c->aggregate == AGGREGATE_AUTO ? resolved[config_aggregate_rule(c)]
                                          : aggregate_names[c->aggregate];
}

const char *config_data_dir(const config_t *c)
{
    return c->data_dir[0] ? c->data_dir : dataset_default_dir(c->dataset);
}

/* The data directory actually read, as printed. */
static const char *data_dir_used(const config_t *c)
{
    const char *dir = config_data_dir(c);
    return dir ? dir : "";
}

static int check_model(const char *value, char *err)
{
    return *value ? 0 : err_set(err, "--model: empty value (try mlp or cnn)");
}

/* A path option given an empty value (an unset shell variable, most often)
 * would silently mean "none": --resume "$UNSET" would start afresh and
 * overwrite the checkpoint it meant to continue. */
static int check_path(const char *opt, const char *value, char *err)
{
    return *value ? 0 : err_set(err, "--%s: empty path (an unset variable?); leave the option "
                                "out for none", opt);
}
static int check_data_dir(const char *v, char *err) { return check_path("data-dir", v, err); }
static int check_data_file(const char *v, char *err) { return check_path("data-file", v, err); }

/* A pattern with exactly one %d (participant ids are ints) and no other
 * conversion: anything else would hand snprintf arguments it lacks. "%%"
 * stands for a literal '%'. */
static int check_participant_data(const char *v, char *err)
{
    if (check_path("participant-data", v, err))
        return -1;
    int ids = 0;
    for (const char *s = v; *s; s++) {
        if (*s != '%')
            continue;
        if (s[1] == '%') {
            s++;
        } else if (s[1] == 'd') {
            ids++;
            s++;
        } else {
            return err_set(err, "--participant-data %s: '%%%c' is not allowed: the pattern "
                           "takes one %%d (the participant's id) and %%%% for a '%%'", v,
                           s[1] ? s[1] : ' ');
        }
    }
    if (ids != 1)
        return err_set(err, "--participant-data %s: needs exactly one %%d (the participant's "
                       "id, e.g. sites/site-%%d.h5), has %d", v, ids);
    return 0;
}

int config_participant_file(const config_t *c, int p, char *buf, size_t len)
{
    /* The pattern passed check_participant_data: one %d and %% only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = snprintf(buf, len, c->participant_data, p);
#pragma GCC diagnostic pop
    return n < 0 || (size_t)n >= len ? -1 : 0;
}
static int check_checkpoint(const char *v, char *err) { return check_path("checkpoint", v, err); }
static int check_resume(const char *v, char *err) { return check_path("resume", v, err); }
static int check_metrics(const char *v, char *err) { return check_path("metrics", v, err); }
static int check_audit(const char *v, char *err) { return check_path("audit", v, err); }
static int check_audit_scores(const char *v, char *err)
{
    return check_path("audit-scores", v, err);
}

size_t config_audit_holdout(const config_t *c)
{
    return c->audit_holdout ? c->audit_holdout : c->audit[0] ? CONFIG_AUDIT_HOLDOUT : 0;
}
static int when_audit(const config_t *c) { return c->audit[0] != '\0'; }
static int when_holdout(const config_t *c) { return config_audit_holdout(c) > 0; }

int config_async_in_flight(const config_t *c)
{
    if (c->schedule != SCHEDULE_ASYNC)
        return 0;
    int workers = c->simulate_staleness > 0 ? c->simulate_staleness
                  : c->ranks > 1           ? c->ranks - 1
                                           : 1;
    return workers < c->participants ? workers : c->participants;
}

int config_async_all_in_flight(const config_t *c)
{
    /* simulated, or a worker rank per participant (or more); not one rank
     * alone, where uploads go one at a time whatever the participants */
    return (c->simulate_staleness > 0 || c->ranks > 1) &&
           config_async_in_flight(c) >= c->participants;
}

int config_async_dense(const config_t *c)
{
    return config_async_in_flight(c) * c->theta_u >= CONFIG_DENSE_SHARERS;
}

/* Sync; async with every participant in flight, which is sync with the
 * uploads mixed in as they come (rounds from one state); and async whose
 * uploads in flight share each entry densely, which averages them as sync
 * does (docs/DESIGN.md, Local steps). */
static int sync_like(const config_t *c)
{
    return c->schedule == SCHEDULE_SYNC || config_async_all_in_flight(c) ||
           config_async_dense(c);
}

int config_local_steps(const config_t *c)
{
    if (c->local_steps >= 0)
        return c->local_steps;
    return sync_like(c) && c->mode == MODE_DSSGD && c->select != SELECT_SVT
               ? CONFIG_SYNC_LOCAL_STEPS
               : 0;
}

double config_server_lr(const config_t *c)
{
    if (c->server_lr > 0)
        return c->server_lr;
    int one_state = c->schedule == SCHEDULE_SYNC || config_async_all_in_flight(c);
    return one_state && c->mode == MODE_DSSGD && when_momentum(c) ? 1.0 + c->theta_u : 1.0;
}

double config_server_momentum(const config_t *c)
{
    if (c->server_momentum >= 0)
        return c->server_momentum;
    return sync_like(c) && when_momentum(c) && config_local_steps(c) > 0 ? CONFIG_SYNC_MOMENTUM
                                                                         : CONFIG_MOMENTUM;
}

int config_momentum_warmup(const config_t *c)
{
    if (c->momentum_warmup >= 0)
        return c->momentum_warmup;
    return when_momentum(c) ? CONFIG_MOMENTUM_WARMUP : 0;
}

/* The values in force, saved and shown (config_option.in_force): what a
 * checkpoint keeps and a resume compares. */
static double local_steps_in_force(const config_t *c) { return config_local_steps(c); }
static double holdout_in_force(const config_t *c) { return (double)config_audit_holdout(c); }
static double warmup_in_force(const config_t *c) { return config_momentum_warmup(c); }

static const char USAGE_HEAD[] =
    "usage: dssgd train [options]      (run under mpirun: rank 0 is the server)\n"
    "       dssgd --help\n"
    "\n";

/* One row per option, in --help order. Each row: what it is (name, kind,
 * field, range, default), whether a resumed run must keep it, where
 * config_print shows it, and its --help entry. */
#define PROTOCOL "Protocol (mode dssgd)"
#define PRIVACY "Privacy (--select svt: the sparse vector technique, needs a finite --gamma)"
#define STATE "State (modes dssgd and standalone)"
#define AGGREGATION "Aggregation (mode dssgd)"
#define DPSGD "DP-SGD (--dpsgd: record-level (epsilon, delta)-DP, every mode)"
#define AUDIT "Privacy audit (modes dssgd and standalone)"
/* where when_momentum is true: the options of the server momentum */
#define APPLIES_MOMENTUM "--aggregate mean or mix (or auto with --schedule sync or async)"
static const config_option options[] = {
    {.name = "dataset", .kind = KIND_STRING, FIELD(dataset, char *), NAMES(dataset_names),
     .def_str = "fashion-mnist",
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN,
     .section = "Data", .metavar = "NAME",
     .help = "fashion-mnist | mnist (IDX files) | h5 (an HDF5 file,\n"
             "--data-file; README, 'Your own data')"},
    {.name = "data-dir", .kind = KIND_STRING, FIELD(data_dir, char *),
     .check = check_data_dir,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .display = data_dir_used,
     .shown = when_idx, .applies = "--dataset fashion-mnist or mnist",
     .section = "Data", .metavar = "DIR",
     .help = "directory of the four IDX files (.gz or not)\n"
             "[fashion-mnist: %s; mnist: required]", .help_default = ""},
    {.name = "data-file", .kind = KIND_STRING, FIELD(data_file, char *),
     .check = check_data_file,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .shown = when_h5,
     .applies = "--dataset h5",
     .section = "Data", .metavar = "FILE",
     .help = "--dataset h5: /train/x, /train/y, /test/x, /test/y\n"
             "(x: N x D, N x H x W or N x C x H x W, float32 or\n"
             "uint8; y: integers; root attribute classes)",
     .help_default = ""},
    {.name = "participant-data", .kind = KIND_STRING, FIELD(participant_data, char *),
     .check = check_participant_data,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .shown = when_h5,
     .applies = "--dataset h5",
     .section = "Data", .metavar = "PAT",
     .help = "--dataset h5: participant p trains on file PAT with\n"
             "%d = p (its /train), read only by the rank hosting p;\n"
             "the test set from --data-file", .help_default = ""},
    {.name = "eval-size", .kind = KIND_SIZE, FIELD(eval_size, size_t),
     .imin = 0, .imax = 1LL << 31, .def = 0,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN,
     .section = "Data", .metavar = "N", .help = "evaluate on the first N test images, 0 = all"},
    {.name = "eval-participants", .kind = KIND_SIZE, FIELD(eval_participants, size_t),
     .imin = 0, .imax = 1LL << 31, .def = 1000,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .shown = when_distributed,
     .applies = "--mode dssgd or standalone",
     .section = "Data", .metavar = "N",
     .help = "score the participants' models each epoch on a fixed\n"
             "sample of N of those images (drawn from the seed), on\n"
             "all of them at the last epoch; 0 = all, every epoch"},
    {.name = "eval-every", .kind = KIND_INT, FIELD(eval_every, int),
     .imin = 1, .imax = 1000000, .def = 1,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .shown = when_distributed,
     .applies = "--mode dssgd or standalone",
     .section = "Data", .metavar = "K",
     .help = "score the participants' models every K epochs and at\n"
             "the last (the global model: every epoch)"},
    {.name = "model", .kind = KIND_STRING, FIELD(model, char *), .check = check_model,
     .def_str = "mlp",
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN,
     .section = "Model", .metavar = "SPEC",
     .help = "mlp (784-128-64-10, ReLU) | cnn (the paper's CNN) | 784-256-10\n"
             "| layers: c5x32-tanh-p3,c5x64-tanh-p2,d200-tanh,d10"},
    {.name = "mode", .kind = KIND_ENUM, ENUM_FIELD(mode, config_mode, mode_names),
     .def = MODE_DSSGD,
     .resume = RESUME_MUST_MATCH, .print = PRINT_FIRST,
     .section = "Run", .metavar = "MODE", .help = "dssgd | centralized | standalone"},
    {.name = "participants", .kind = KIND_INT, FIELD(participants, int),
     .imin = 1, .imax = 100000, .def = 30,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN,
     .section = "Run", .metavar = "N", .help = "number of participants"},
    {.name = "partition", .kind = KIND_ENUM,
     ENUM_FIELD(partition, dataset_partition, partition_names), .def = PARTITION_PAPER,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN, .shown = when_drawn,
     .applies = "one training set (not --participant-data)",
     .section = "Run", .metavar = "KIND",
     .help = "iid | paper (independent, may overlap) | dirichlet"},
    {.name = "shard-size", .kind = KIND_SIZE, FIELD(shard_size, size_t),
     .imin = 0, .imax = 1LL << 31, .def = 600,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN, .shown = when_drawn,
     .applies = "one training set (not --participant-data)",
     .section = "Run", .metavar = "N", .help = "examples per participant, 0 = equal share"},
    {.name = "alpha", .kind = KIND_DOUBLE, FIELD(alpha, double),
     .min = 0, .min_open = 1, .max = 1e6, .def = 0.5,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN, .shown = when_dirichlet,
     .applies = "--partition dirichlet on one training set",
     .section = "Run", .metavar = "A", .help = "Dirichlet concentration (> 0)"},
    {.name = "schedule", .kind = KIND_ENUM, ENUM_FIELD(schedule, config_schedule, schedule_names),
     .def = SCHEDULE_ROUND_ROBIN,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = "Run", .metavar = "S", .help = "round-robin | random | async | sync"},
    {.name = "local-steps", .kind = KIND_INT, FIELD(local_steps, int),
     .imin = 0, .imax = 1000000, .def = -1, /* -1 = not given, outside the range */
     .resume = RESUME_MUST_MATCH, .absent = "0", .in_force = local_steps_in_force,
     .print = PRINT_DSSGD,
     .section = "Run", .metavar = "K",
     .help = "exchange after every K mini-batches: each epoch has\n"
             "ceil(batches per shard / K) downloads and uploads\n"
             "per participant; 0 = once per local epoch (the\n"
             "paper's); 5 for sync, and for async with every\n"
             "participant in flight or with theta-u x uploads in\n"
             "flight >= 4 (most entries averaged), else 0", .help_default = "[5 or 0]"},
    {.name = "epochs", .kind = KIND_INT, FIELD(epochs, int),
     .imin = 1, .imax = 1000000, .def = 20,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN,
     .section = "Run", .metavar = "N", .help = "epochs (each participant trains once each)"},
    {.name = "lr", .kind = KIND_DOUBLE, FIELD(lr, double),
     .min = 0, .min_open = 1, .max = 1e3, .def = 0.05,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN,
     .section = "Run", .metavar = "R", .help = "learning rate (> 0)"},
    {.name = "batch", .kind = KIND_INT, FIELD(batch, int),
     .imin = 1, .imax = 4096, .def = 32,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN,
     .section = "Run", .metavar = "B", .help = "mini-batch size (1..4096)"},
    {.name = "seed", .kind = KIND_U64, FIELD(seed, uint64_t),
     .imin = 0, .imax = INT64_MAX, .def = 1,
     .resume = RESUME_MUST_MATCH, .print = PRINT_MAIN,
     .section = "Run", .metavar = "S", .help = "seed of every random choice"},
    {.name = "theta-u", .kind = KIND_DOUBLE, FIELD(theta_u, double),
     .min = 0, .min_open = 1, .max = 1, .def = 0.1,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .metavar = "T", .help = "fraction of parameters uploaded, (0, 1]"},
    {.name = "theta-d", .kind = KIND_DOUBLE, FIELD(theta_d, double),
     .min = 0, .min_open = 1, .max = 1, .def = 1.0,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .metavar = "T", .help = "fraction of parameters downloaded, (0, 1]"},
    {.name = "select", .kind = KIND_ENUM, ENUM_FIELD(select, config_select, select_names),
     .def = SELECT_LARGEST,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .metavar = "S",
     .help = "largest | random (above --tau) | svt (differential privacy)\n"},
    {.name = "download", .kind = KIND_ENUM, ENUM_FIELD(download, config_download, download_names),
     .def = DOWNLOAD_STAT,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .metavar = "D", .help = "stat | random | all"},
    {.name = "gamma", .kind = KIND_DOUBLE, FIELD(gamma, double),
     .min = 0, .min_open = 1, .max = INFINITY, .def = INFINITY,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .metavar = "G", .help = "clip uploads to [-G, G], > 0, inf = off"},
    {.name = "tau", .kind = KIND_DOUBLE, FIELD(tau, double),
     .min = 0, .max = INFINITY, .def = 0.0,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD, .shown = when_threshold,
     .applies = "--select random or svt",
     .section = PROTOCOL, .metavar = "T", .help = "threshold of --select random (>= 0)"},
    {.name = "stat-decay", .kind = KIND_DOUBLE, FIELD(stat_decay, double),
     .min = 0, .min_open = 1, .max = 1, .def = 1.0,
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .metavar = "B", .help = "stat <- B * stat each epoch, (0, 1]"},
    {.name = "residual", .kind = KIND_FLAG, FIELD(residual, int),
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD,
     .section = PROTOCOL, .help = "error feedback: keep the unsent part of the update"},
    {.name = "aggregate", .kind = KIND_ENUM,
     ENUM_FIELD(aggregate, config_aggregate, aggregate_names), .def = AGGREGATE_AUTO,
     .resume = RESUME_MUST_MATCH, .absent = "sum", .saved = aggregate_saved,
     .print = PRINT_DSSGD, .display = aggregate_shown, .help_default = "[auto]",
     .section = AGGREGATION, .metavar = "A",
     .help = "sum (the paper's) | mean (per parameter, over a sync\n"
             "round's uploads) | staleness (async: weigh by (1 + s)^-E)\n"
             "| mix (async: mix each upload into the model it was\n"
             "made from, per parameter) | auto: sum for round-robin\n"
             "and random, mean for sync, mix for async"},
    {.name = "server-lr", .kind = KIND_DOUBLE, FIELD(server_lr, double),
     .min = 0, .min_open = 1, .max = 1e3, .def = -1, /* -1 = not given, outside the range */
     .resume = RESUME_MUST_MATCH, .absent = "1", .in_force = config_server_lr,
     .print = PRINT_DSSGD, .help_default = "[1 + theta-u or 1]",
     .section = AGGREGATION, .metavar = "R",
     .help = "the server's step (> 0): sum, staleness: w += R v;\n"
             "mean: w += R * the round's mean; mix: a turn's change\n"
             "is scaled to R times at its end; 1 + theta-u for\n"
             "sync and for async with every participant in flight,\n"
             "else 1"},
    {.name = "server-momentum", .kind = KIND_DOUBLE, FIELD(server_momentum, double),
     .min = 0, .max = 1, .max_open = 1, .def = -1, /* -1 = not given, outside the range */
     .resume = RESUME_MUST_MATCH, .absent = "*", .in_force = config_server_momentum,
     .print = PRINT_DSSGD, .shown = when_momentum,
     .help_default = "[0.9 or 0.7]",
     .applies = APPLIES_MOMENTUM,
     .section = AGGREGATION, .metavar = "B",
     .help = "mean, mix: the server's momentum over sync rounds\n"
             "or async turns, [0, 1) (u <- B u + mean, w += R u;\n"
             "0 = none); 0.9 where --local-steps defaults to 5,\n"
             "else 0.7"},
    {.name = "momentum-warmup", .kind = KIND_INT, FIELD(momentum_warmup, int),
     .imin = 0, .imax = 1000000, .def = -1, /* -1 = not given, outside the range */
     /* "*": a checkpoint is written after an epoch, and the warm-up of
      * one epoch (the first default) is over by then */
     .resume = RESUME_MUST_MATCH, .absent = "*", .in_force = warmup_in_force,
     .print = PRINT_DSSGD, .shown = when_momentum,
     .help_default = "[1]",
     .applies = APPLIES_MOMENTUM,
     .section = AGGREGATION, .metavar = "W",
     .help = "mean, mix: the server momentum starts after\n"
             "epoch W: the first W epochs' changes neither feed\n"
             "it nor are added by it (>= 0)"},
    {.name = "staleness-exponent", .kind = KIND_DOUBLE, FIELD(staleness_exponent, double),
     .min = 0, .max = 10, .def = 1.0,
     .resume = RESUME_MUST_MATCH, .absent = "*", .print = PRINT_DSSGD,
     .shown = when_exponent,
     .applies = "--aggregate staleness or mix (or auto with --schedule async)",
     .section = AGGREGATION, .metavar = "E",
     .help = "E in (1 + s)^-E; s = uploads applied since\n"
             "the participant's download (mix: of that\n"
             "parameter) (>= 0)"},
    {.name = "staleness-tolerance", .kind = KIND_INT, FIELD(staleness_tolerance, int),
     .imin = 0, .imax = 1000000, .def = 1,
     .resume = RESUME_MUST_MATCH, .absent = "*", .print = PRINT_DSSGD,
     .shown = when_staleness,
     .applies = "--aggregate staleness",
     .section = AGGREGATION, .metavar = "B",
     .help = "uploads at most B stale weigh in full; later ones\n"
             "(1 + s - B)^-E"},
    {.name = "simulate-staleness", .kind = KIND_INT, FIELD(simulate_staleness, int),
     .imin = 1, .imax = 100000, .def = 0, /* 0 = off, outside the range */
     .resume = RESUME_MUST_MATCH, .absent = "0", .print = PRINT_DSSGD, .shown = when_async,
     .applies = "--schedule async",
     .section = AGGREGATION, .metavar = "S",
     .help = "async on one rank: S uploads in flight, collected\n"
             "in the order --simulate-order sets (deterministic)",
     .help_default = "[off]"},
    {.name = "simulate-order", .kind = KIND_ENUM,
     ENUM_FIELD(simulate_order, config_simulate_order, simulate_order_names),
     .def = SIMULATE_RANDOM,
     .resume = RESUME_MUST_MATCH, .absent = "random", .print = PRINT_DSSGD,
     .shown = when_simulated, .applies = "--simulate-staleness",
     .section = AGGREGATION, .metavar = "O",
     .help = "which upload in flight arrives next: random\n"
             "(workers of random speeds, seeded) | fifo (the\n"
             "oldest: workers of equal speed, as real async)"},
    {.name = "dp-epsilon", .kind = KIND_DOUBLE, FIELD(dp_epsilon, double),
     .min = 0, .min_open = 1, .max = 1e12, .def = 0, /* 0 = off, outside the range */
     .resume = RESUME_MUST_MATCH, .print = PRINT_DSSGD, .shown = when_svt,
     .applies = "--select svt",
     .section = PRIVACY, .metavar = "E", .help = "epsilon per participant per epoch (> 0)",
     .help_default = "[required with svt]"},
    {.name = "dp-max-epsilon", .kind = KIND_DOUBLE, FIELD(dp_max_epsilon, double),
     .min = 0, .min_open = 1, .max = INFINITY, .def = INFINITY,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .shown = when_private,
     .applies = "--select svt or --dpsgd",
     .section = PRIVACY, .metavar = "B",
     .help = "a participant stops uploading rather than spend beyond B\n"
             "in total (svt: basic composition; --dpsgd: stops\n"
             "training before a step would pass B)", .help_default = "[none]"},
    {.name = "dpsgd", .kind = KIND_FLAG, FIELD(dpsgd, int),
     .resume = RESUME_MUST_MATCH, .absent = "0", .print = PRINT_MAIN,
     .section = DPSGD,
     .help = "DP-SGD in every participant's local training: Poisson\n"
             "batches of expected size --batch, per-example clipping,\n"
             "Gaussian noise; epsilon by a Renyi-DP accountant"},
    {.name = "dp-clip", .kind = KIND_DOUBLE, FIELD(dp_clip, double),
     .min = 0, .min_open = 1, .max = 1e6, .def = 1.0,
     .resume = RESUME_MUST_MATCH, .absent = "*", .print = PRINT_MAIN, .shown = when_dpsgd,
     .applies = "--dpsgd",
     .section = DPSGD, .metavar = "C",
     .help = "clip each example's gradient to L2 norm C over all\n"
             "parameters (> 0)"},
    {.name = "dp-noise", .kind = KIND_DOUBLE, FIELD(dp_noise, double),
     .min = 0, .max = 1e6, .def = -1, /* -1 = not given, outside the range */
     .resume = RESUME_MUST_MATCH, .absent = "*", .print = PRINT_MAIN, .shown = when_dpsgd,
     .applies = "--dpsgd",
     .section = DPSGD, .metavar = "SIGMA",
     .help = "noise multiplier: N(0, SIGMA^2 C^2) on each coordinate of\n"
             "the clipped sum (>= 0)", .help_default = "[or --dp-target-epsilon]"},
    {.name = "dp-target-epsilon", .kind = KIND_DOUBLE, FIELD(dp_target_epsilon, double),
     .min = 0, .min_open = 1, .max = 1e6, .def = 0, /* 0 = not given, outside the range */
     .resume = RESUME_MAY_DIFFER, .print = PRINT_MAIN, .shown = when_target,
     .applies = "--dpsgd",
     .section = DPSGD, .metavar = "E",
     .help = "find the SIGMA with which the planned run (--epochs)\n"
             "ends at epsilon E; a resume keeps the checkpoint's SIGMA",
     .help_default = "[or --dp-noise]"},
    {.name = "dp-delta", .kind = KIND_DOUBLE, FIELD(dp_delta, double),
     .min = 0, .min_open = 1, .max = 1, .max_open = 1, .def = 1e-5,
     .resume = RESUME_MUST_MATCH, .absent = "*", .print = PRINT_MAIN, .shown = when_dpsgd,
     .applies = "--dpsgd",
     .section = DPSGD, .metavar = "D",
     .help = "delta of the guarantee, (0, 1), below 1 / shard size"},
    {.name = "checkpoint", .kind = KIND_STRING, FIELD(checkpoint, char *),
     .check = check_checkpoint,
     .resume = RESUME_NOT_SAVED, .print = PRINT_LAST, .shown = when_checkpoint,
     .section = STATE, .metavar = "FILE", .help = "save the whole state to FILE (HDF5, atomic)",
     .help_default = "[none]"},
    {.name = "checkpoint-every", .kind = KIND_INT, FIELD(checkpoint_every, int),
     .imin = 1, .imax = 1000000, .def = 0, /* 0 = at the end only, outside the range */
     .resume = RESUME_MAY_DIFFER, .print = PRINT_LAST, .shown = when_checkpoint,
     .applies = "--checkpoint FILE",
     .section = STATE, .metavar = "K", .help = "... every K epochs, and always at the end",
     .help_default = "[end only]"},
    {.name = "resume", .kind = KIND_STRING, FIELD(resume, char *),
     .check = check_resume,
     .resume = RESUME_NOT_SAVED, .print = PRINT_LAST, .shown = when_resume,
     .section = STATE, .metavar = "FILE",
     .help = "continue from a checkpoint; --epochs is the new total", .help_default = ""},
    {.name = "metrics", .kind = KIND_STRING, FIELD(metrics, char *),
     .check = check_metrics,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_LAST,
     .section = "Output", .metavar = "FILE", .help = "CSV row per epoch (rank 0)",
     .help_default = "[none]"},
    {.name = "quiet", .kind = KIND_FLAG, FIELD(quiet, int),
     .resume = RESUME_NOT_SAVED, .print = PRINT_NEVER,
     .section = "Output", .help = "no per-epoch progress lines on stderr"},
    {.name = "rank-timeout", .kind = KIND_DOUBLE, FIELD(rank_timeout, double),
     .min = 0, .max = 1e9, .def = 600,
     .resume = RESUME_NOT_SAVED, .print = PRINT_LAST, .shown = when_distributed, .unit = " s",
     .applies = "--mode dssgd or standalone",
     .section = "Failures", .metavar = "S",
     .help = "stop the job, naming the rank, when a rank takes more than\n"
             "S seconds per participant to answer; a worker that hears\n"
             "nothing from rank 0 for S x (participants + 2) s (more\n"
             "with --local-steps) ends itself; 0 = wait forever"},
    {.name = "divergence-factor", .kind = KIND_DOUBLE, FIELD(divergence_factor, double),
     .min = 0, .max = 1e12, .def = 10,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_LAST,
     .section = "Failures", .metavar = "F",
     .help = "stop when the global loss is not finite or passes\n"
             "F times the first epoch's; 0 = never"},
    {.name = "audit", .kind = KIND_STRING, FIELD(audit, char *), .check = check_audit,
     .resume = RESUME_NOT_SAVED, .print = PRINT_LAST, .shown = when_audit,
     .section = AUDIT, .metavar = "FILE",
     .help = "membership-inference audit: AUC and TPR at 1% FPR of\n"
             "the loss and server-view attacks, CSV (rank 0)", .help_default = "[none]"},
    {.name = "audit-every", .kind = KIND_INT, FIELD(audit_every, int),
     .imin = 1, .imax = 1000000, .def = 5,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_LAST, .shown = when_audit,
     .applies = "--audit FILE",
     .section = AUDIT, .metavar = "K", .help = "audit every K epochs, and always the last"},
    {.name = "audit-holdout", .kind = KIND_SIZE, FIELD(audit_holdout, size_t),
     .imin = 1, .imax = 1LL << 31, .def = 0, /* 0 = not given, outside the range */
     .resume = RESUME_MUST_MATCH, .absent = "0", .in_force = holdout_in_force,
     .print = PRINT_LAST, .shown = when_holdout,
     .section = AUDIT, .metavar = "N",
     .help = "training records withheld from every shard as the\n"
             "audit's non-members (given without --audit: the same\n"
             "training, unaudited)", .help_default = "[2000 with --audit, else 0]"},
    {.name = "audit-sample", .kind = KIND_SIZE, FIELD(audit_sample, size_t),
     .imin = 1, .imax = 1LL << 31, .def = 200,
     .resume = RESUME_MAY_DIFFER, .print = PRINT_LAST, .shown = when_audit,
     .applies = "--audit FILE",
     .section = AUDIT, .metavar = "M",
     .help = "members audited per participant, and as many\n"
             "non-members (fewer if its shard or the holdout is)"},
    {.name = "audit-scores", .kind = KIND_STRING, FIELD(audit_scores, char *),
     .check = check_audit_scores,
     .resume = RESUME_NOT_SAVED, .print = PRINT_LAST, .shown = when_audit,
     .applies = "--audit FILE",
     .section = AUDIT, .metavar = "FILE",
     .help = "every audited score, CSV (for ROC curves)", .help_default = "[none]"},
};
#undef PROTOCOL
#undef PRIVACY
#undef STATE
#undef AGGREGATION
#undef DPSGD
#undef AUDIT

enum { N_OPTIONS = COUNT(options) };

static void *field_of(config_t *c, const config_option *o) { return (char *)c + o->offset; }
static const void *cfield_of(const config_t *c, const config_option *o)
{
    return (const char *)c + o->offset;
}

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        void *f = field_of(c, o);
        switch (o->kind) {
        case KIND_INT: case KIND_ENUM: case KIND_FLAG: *(int *)f = (int)o->def; break;
        case KIND_SIZE: *(size_t *)f = (size_t)o->def; break;
        case KIND_U64: *(uint64_t *)f = (uint64_t)o->def; break;
        case KIND_DOUBLE: *(double *)f = o->def; break;
        case KIND_STRING: snprintf(f, o->size, "%s", o->def_str ? o->def_str : ""); break;
        }
    }
}

/* ---- strict value parsing ---------------------------------------------- */

static int parse_double(const char *opt, const char *s, double lo, double hi, int lo_open,
                        int hi_open, double *out, char *err)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || isnan(v))
        return err_set(err, "--%s: '%s' is not a number", opt, s);
    /* ERANGE: a number beyond a double's reach (strtod gives +-HUGE_VAL),
     * or one that underflows. A subnormal result is a fine, if imprecise,
     * value and is range-checked as usual; one that underflows to zero
     * would silently become 0. */
    if (errno == ERANGE && fabs(v) == HUGE_VAL)
        return err_set(err, "--%s: %s is too large for a double (beyond %g)", opt, s, DBL_MAX);
    if (errno == ERANGE && v == 0)
        return err_set(err, "--%s: %s is too small for a double (it would be 0)", opt, s);
    if ((lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi))
        return err_set(err, "--%s: %s is out of range %s%g, %g%s", opt, s, lo_open ? "(" : "[",
                       lo, hi, hi_open ? ")" : "]");
    *out = v;
    return 0;
}

static int parse_long(const char *opt, const char *s, long long lo, long long hi,
                      long long *out, char *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0')
        return err_set(err, "--%s: '%s' is not an integer", opt, s);
    if (errno == ERANGE || v < lo || v > hi) /* ERANGE: beyond a long long, so out of range */
        return err_set(err, "--%s: %s is out of range [%lld, %lld]", opt, s, lo, hi);
    *out = v;
    return 0;
}

static int parse_choice(const char *opt, const char *s, const char *const *names, int count,
                        int *out, char *err)
{
    for (int i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char list[256] = "";
    for (int i = 0; i < count; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < count)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return err_set(err, "--%s: unknown value '%s' (choose from %s)", opt, s, list);
}

static int copy_string(const char *opt, const char *s, char *dst, size_t len, char *err)
{
    if (strlen(s) >= len)
        return err_set(err, "--%s: value longer than %zu characters", opt, len - 1);
    /* The configuration is stored as "key = value" lines in checkpoints: a
     * control character would forge or break a line. */
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return err_set(err, "--%s: value contains a control character (0x%02x)", opt,
                           (unsigned char)*p);
    strcpy(dst, s);
    return 0;
}

/* Sets option o from its command-line value s (NULL for a flag). A refused
 * value leaves the field as it was. */
static int set_option(config_t *c, const config_option *o, const char *s, char *err)
{
    void *f = field_of(c, o);
    if (o->check && o->check(s, err))
        return -1;
    long long v = 0;
    double d = 0;
    int choice = 0;
    switch (o->kind) {
    case KIND_INT: case KIND_SIZE: case KIND_U64:
        if (parse_long(o->name, s, o->imin, o->imax, &v, err))
            return -1;
        if (o->kind == KIND_INT)
            *(int *)f = (int)v;
        else if (o->kind == KIND_SIZE)
            *(size_t *)f = (size_t)v;
        else
            *(uint64_t *)f = (uint64_t)v;
        return 0;
    case KIND_DOUBLE:
        if (parse_double(o->name, s, o->min, o->max, o->min_open, o->max_open, &d, err))
            return -1;
        *(double *)f = d;
        return 0;
    case KIND_ENUM:
        if (parse_choice(o->name, s, o->names, o->n_names, &choice, err))
            return -1;
        *(int *)f = choice;
        return 0;
    case KIND_STRING:
        if (o->names && parse_choice(o->name, s, o->names, o->n_names, &choice, err))
            return -1;
        return copy_string(o->name, s, f, o->size, err);
    case KIND_FLAG:
        *(int *)f = 1;
        return 0;
    }
    return err_set(err, "--%s: unknown option kind", o->name);
}

/* ---- values as text ---------------------------------------------------- */

enum { VALUE_LEN = 64 }; /* any number or name; strings are returned in place */

/* Option o's value in c as text: as the checkpoint saves it (saved: doubles
 * to 17 digits, flags 0/1) or as people read it (%g, flags on/off). Returns
 * buf, the field itself (strings) or a name. */
static const char *value_text(const config_option *o, const config_t *c, int saved,
                              char buf[VALUE_LEN])
{
    if (saved && o->saved)
        return o->saved(c);
    if (o->in_force) { /* numbers exact to 2^53 */
        double v = o->in_force(c);
        if (o->kind == KIND_DOUBLE)
            snprintf(buf, VALUE_LEN, saved ? "%.17g" : "%g", v);
        else
            snprintf(buf, VALUE_LEN, "%.0f", v);
        return buf;
    }
    const void *f = cfield_of(c, o);
    switch (o->kind) {
    case KIND_INT: snprintf(buf, VALUE_LEN, "%d", *(const int *)f); return buf;
    case KIND_SIZE: snprintf(buf, VALUE_LEN, "%zu", *(const size_t *)f); return buf;
    case KIND_U64:
        snprintf(buf, VALUE_LEN, "%llu", (unsigned long long)*(const uint64_t *)f);
        return buf;
    case KIND_DOUBLE:
        snprintf(buf, VALUE_LEN, saved ? "%.17g" : "%g", *(const double *)f);
        return buf;
    case KIND_ENUM: {
        int v = *(const int *)f;
        return v >= 0 && v < o->n_names ? o->names[v] : "(invalid)";
    }
    case KIND_STRING: return f;
    case KIND_FLAG:
        if (saved) {
            snprintf(buf, VALUE_LEN, "%d", *(const int *)f);
            return buf;
        }
        return *(const int *)f ? "on" : "off";
    }
    return "";
}

/* As config_print and --help show it. */
static const char *shown_text(const config_option *o, const config_t *c, char buf[VALUE_LEN])
{
    if (o->display)
        return o->display(c);
    const char *s = value_text(o, c, 0, buf);
    return o->kind == KIND_STRING && !*s ? "(none)" : s;
}

/* ---- --help --------------------------------------------------------------- */

enum {
    USAGE_OPT_WIDTH = 24,  /* "--name VALUE" column after two spaces, at least one blank */
    USAGE_HELP_WIDTH = 43, /* help column, then the default's tag */
};

/* Writes s[0, n) with each "%s" in it replaced by def; returns the
 * characters written. */
static int put_help(FILE *out, const char *s, size_t n, const char *def)
{
    const char *end = s + n, *mark;
    int written = 0;
    while ((mark = strstr(s, "%s")) != NULL && mark + 2 <= end) {
        fwrite(s, 1, (size_t)(mark - s), out);
        fputs(def, out);
        written += (int)(mark - s) + (int)strlen(def);
        s = mark + 2;
    }
    fwrite(s, 1, (size_t)(end - s), out);
    return written + (int)(end - s);
}

void config_usage(FILE *out)
{
    config_t d;
    config_defaults(&d);
    fputs(USAGE_HEAD, out);
    const char *section = NULL;
    for (int i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (!section || strcmp(section, o->section) != 0)
            fprintf(out, "%s\n", section = o->section);
        char opt[64], buf[VALUE_LEN];
        snprintf(opt, sizeof opt, "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-*s ", USAGE_OPT_WIDTH - 1, opt);
        const char *def = shown_text(o, &d, buf);
        /* the help, each further line under the first */
        int width = 0;
        for (const char *line = o->help;;) {
            const char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) : strlen(line);
            width = put_help(out, line, n, def);
            if (!nl)
                break;
            fprintf(out, "\n%*s", USAGE_OPT_WIDTH + 2, "");
            line = nl + 1;
        }
        const char *tag = o->help_default ? o->help_default : o->kind == KIND_FLAG ? "" : "[%s]";
        if (*tag) {
            fprintf(out, "%*s", width < USAGE_HELP_WIDTH ? USAGE_HELP_WIDTH - width : 1, "");
            put_help(out, tag, strlen(tag), def);
        }
        fputc('\n', out);
    }
}

int config_validate(const config_t *c, char *err)
{
    if (c->simulate_staleness && c->schedule != SCHEDULE_ASYNC)
        return err_set(err, "--simulate-staleness applies to --schedule async only");
    if (c->aggregate == AGGREGATE_MIX && c->schedule != SCHEDULE_ASYNC)
        return err_set(err, "--aggregate mix applies to --schedule async only (sync: mean)");
    if (strcmp(c->dataset, "mnist") == 0 && c->data_dir[0] == '\0')
        return err_set(err, "--dataset mnist needs --data-dir DIR (the four MNIST IDX files)");
    if (config_is_h5(c) && !c->data_file[0])
        return err_set(err, "--dataset h5 needs --data-file FILE.h5 (its /test set, and its "
                       "/train set unless --participant-data gives one file per participant)");
    if (!config_is_h5(c) && (c->data_file[0] || c->participant_data[0]))
        return err_set(err, "--data-file and --participant-data apply to --dataset h5 (add "
                       "--dataset h5)");
    if (c->participant_data[0] && c->audit[0])
        return err_set(err, "--audit needs the participants' records at the server, and "
                       "--participant-data keeps each file on the rank that hosts its "
                       "participant: audit a run on one --data-file instead");
    /* --partition iid and dirichlet are checked against the data size when
     * the shards are made */
    if ((c->checkpoint[0] || c->resume[0] || c->checkpoint_every) && c->mode == MODE_CENTRALIZED)
        return err_set(err, "--checkpoint and --resume apply to modes dssgd and standalone");
    if (c->checkpoint_every && !c->checkpoint[0])
        return err_set(err, "--checkpoint-every needs --checkpoint FILE");
    if (c->audit[0] && c->mode == MODE_CENTRALIZED)
        return err_set(err, "--audit applies to modes dssgd and standalone");
    if (c->audit_scores[0] && !c->audit[0])
        return err_set(err, "--audit-scores needs --audit FILE");
    if (c->audit[0]) {
        const char *other[] = {c->metrics, c->checkpoint, c->resume, c->audit_scores};
        const char *names[] = {"--metrics", "--checkpoint", "--resume", "--audit-scores"};
        for (int i = 0; i < 4; i++)
            if (strcmp(c->audit, other[i]) == 0)
                return err_set(err, "--audit and %s name one file: %s", names[i], c->audit);
    }
    for (int i = 0; c->audit_scores[0] && i < 3; i++) {
        const char *other[] = {c->metrics, c->checkpoint, c->resume};
        const char *names[] = {"--metrics", "--checkpoint", "--resume"};
        if (strcmp(c->audit_scores, other[i]) == 0)
            return err_set(err, "--audit-scores and %s name one file: %s", names[i],
                           c->audit_scores);
    }
    if (c->select == SELECT_SVT && c->local_steps > 0 && c->mode == MODE_DSSGD)
        return err_set(err, "--local-steps applies to --select largest or random: --select "
                       "svt spends --dp-epsilon once per epoch, on one upload");
    if (c->select == SELECT_SVT) {
        if (c->dp_epsilon <= 0)
            return err_set(err, "--select svt needs --dp-epsilon E > 0 (epsilon per participant "
                           "per epoch)");
        if (!isfinite(c->gamma))
            return err_set(err, "--select svt needs a finite --gamma: the mechanism's sensitivity "
                           "is 2 gamma");
        if (c->mode != MODE_DSSGD)
            return err_set(err, "--select svt applies to --mode dssgd only");
    } else if (c->dp_epsilon > 0) {
        return err_set(err, "--dp-epsilon applies only with --select svt");
    } else if (isfinite(c->dp_max_epsilon) && !c->dpsgd) {
        return err_set(err, "--dp-max-epsilon applies only with --select svt or --dpsgd");
    }
    if (!c->dpsgd) {
        if (c->dp_noise >= 0 || c->dp_target_epsilon > 0 || c->dp_clip != 1.0 ||
            c->dp_delta != 1e-5)
            return err_set(err, "--dp-clip, --dp-noise, --dp-target-epsilon and --dp-delta "
                           "apply only with --dpsgd");
        return 0;
    }
    if (c->select == SELECT_SVT)
        return err_set(err, "--dpsgd and --select svt cannot be combined: their two budgets "
                       "would need a joint account (DP-SGD's epsilon already covers every "
                       "upload, whatever --select)");
    if (c->dp_noise < 0 && c->dp_target_epsilon == 0)
        return err_set(err, "--dpsgd needs --dp-noise SIGMA or --dp-target-epsilon E");
    if (c->dp_noise >= 0 && c->dp_target_epsilon > 0)
        return err_set(err, "give --dp-noise or --dp-target-epsilon, not both");
    /* Sizes known now (shards of --shard-size); the driver checks the real
     * ones, the union's in mode centralized. */
    if (c->mode != MODE_CENTRALIZED && c->shard_size > 0) {
        if ((size_t)c->batch > c->shard_size)
            return err_set(err, "--dpsgd: --batch %d is larger than --shard-size %zu: the "
                           "sampling rate batch / shard size would exceed 1", c->batch,
                           c->shard_size);
        if (c->dp_delta >= 1.0 / (double)c->shard_size)
            return err_set(err, "--dp-delta %g is not below 1 / --shard-size (%g): such a "
                           "delta allows publishing a record outright", c->dp_delta,
                           1.0 / (double)c->shard_size);
    }
    return 0;
}

/* ---- the command line ------------------------------------------------------- */

enum { OPT_FIRST = 256, OPT_HELP = OPT_FIRST + N_OPTIONS }; /* getopt values: row + 256 */

/* The message for a long option getopt refused with '?': one that takes no
 * value but was given one, an abbreviation of several options (getopt
 * accepts an abbreviation of exactly one), or an unknown name. */
static int refuse_long_option(const char *arg, char *err)
{
    if (optopt >= OPT_FIRST && optopt <= OPT_HELP) {
        const char *name = optopt == OPT_HELP ? "help" : options[optopt - OPT_FIRST].name;
        return err_set(err, "--%s takes no value, given '%s'", name, arg);
    }
    const char *names[N_OPTIONS];
    for (int i = 0; i < N_OPTIONS; i++)
        names[i] = options[i].name;
    if (err_ambiguous_option(strncmp(arg, "--", 2) == 0 ? arg + 2 : arg, names, N_OPTIONS, err))
        return -1;
    return err_set(err, "unknown option '%s' (see dssgd --help)", arg);
}

int config_parse(config_t *c, int argc, char **argv, FILE *out, char *err)
{
    struct option longopts[N_OPTIONS + 2];
    for (int i = 0; i < N_OPTIONS; i++)
        longopts[i] = (struct option){options[i].name,
                                      options[i].kind == KIND_FLAG ? no_argument
                                                                   : required_argument,
                                      NULL, OPT_FIRST + i};
    longopts[N_OPTIONS] = (struct option){"help", no_argument, NULL, OPT_HELP};
    longopts[N_OPTIONS + 1] = (struct option){NULL, 0, NULL, 0};

    optind = 0; /* 0, not 1: glibc then also forgets its place in the last argv */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (opt >= OPT_FIRST && opt < OPT_HELP) {
            if (set_option(c, &options[opt - OPT_FIRST], optarg, err))
                return -1;
        } else if (opt == OPT_HELP) {
            if (out)
                config_usage(out);
            return 1;
        } else if (opt == ':') {
            return err_set(err, "%s needs a value", argv[optind - 1]);
        } else if (optopt && optopt < OPT_FIRST) {
            return err_set(err, "unknown option '-%c' (options are long: --name value; "
                           "see dssgd --help)", optopt);
        } else {
            return refuse_long_option(argv[optind - 1], err);
        }
    }
    if (optind < argc)
        return err_set(err, "unexpected argument '%s' (see dssgd --help)", argv[optind]);
    return config_validate(c, err);
}

/* ---- options without effect ---------------------------------------------- */

/* Whether option o has the same value in a and b. */
static int same_value(const config_option *o, const config_t *a, const config_t *b)
{
    const void *x = cfield_of(a, o), *y = cfield_of(b, o);
    switch (o->kind) {
    case KIND_DOUBLE: return *(const double *)x == *(const double *)y;
    case KIND_STRING: return strcmp(x, y) == 0;
    default: return memcmp(x, y, o->size) == 0;
    }
}

int config_ignored(const config_t *c, char *buf, size_t len)
{
    config_t d;
    config_defaults(&d);
    size_t used = 0;
    int count = 0, fits = 1;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (o->print == PRINT_NEVER || same_value(o, c, &d))
            continue;
        /* The printed table's rule: what it hides has no effect. */
        const char *applies;
        if (o->print == PRINT_DSSGD && c->mode != MODE_DSSGD)
            applies = "--mode dssgd";
        else if (o->shown && !o->shown(c))
            applies = o->applies ? o->applies : "another configuration";
        else
            continue;
        char vbuf[VALUE_LEN];
        const char *v = o->kind == KIND_FLAG ? "" : value_text(o, c, 0, vbuf);
        int n = fits ? snprintf(buf + used, len - used, "--%s%s%s is ignored: it has an effect "
                                "only with %s\n", o->name, *v ? " " : "", v, applies)
                     : 0;
        if (n < 0 || (size_t)n >= len - used) {
            if (len)
                buf[used] = '\0'; /* whole lines only */
            fits = 0;
        } else {
            used += (size_t)n;
        }
        count++;
    }
    return fits ? count : -1;
}

/* ---- the printed table ------------------------------------------------------ */

enum { PRINT_VALUE_WIDTH = 40 };

static void print_border(FILE *out, int key_width)
{
    fputc('+', out);
    for (int i = 0; i < key_width + 2; i++)
        fputc('-', out);
    fputc('+', out);
    for (int i = 0; i < PRINT_VALUE_WIDTH + 2; i++)
        fputc('-', out);
    fputs("+\n", out);
}

void config_print(const config_t *c, FILE *out)
{
    int key_width = 0; /* the longest name, shown or not: one width for every run */
    for (int i = 0; i < N_OPTIONS; i++)
        if (options[i].print != PRINT_NEVER && (int)strlen(options[i].name) > key_width)
            key_width = (int)strlen(options[i].name);
    print_border(out, key_width);
    for (print_block b = PRINT_FIRST; b <= PRINT_LAST; b++) {
        if (b == PRINT_DSSGD && c->mode != MODE_DSSGD)
            continue;
        for (int i = 0; i < N_OPTIONS; i++) {
            const config_option *o = &options[i];
            if (o->print != b || (o->shown && !o->shown(c)))
                continue;
            char buf[VALUE_LEN];
            const char *v = shown_text(o, c, buf), *unit = o->unit ? o->unit : "";
            int pad = PRINT_VALUE_WIDTH - (int)(strlen(v) + strlen(unit));
            fprintf(out, "| %-*s | %s%s%*s |\n", key_width, o->name, v, unit, pad > 0 ? pad : 0,
                    "");
        }
    }
    print_border(out, key_width);
}

/* ---- configuration as text (checkpoints) ------------------------------- */

int config_to_text(const config_t *c, char *buf, size_t len)
{
    size_t used = 0;
    for (int i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (o->resume == RESUME_NOT_SAVED)
            continue;
        char vbuf[VALUE_LEN];
        int n = snprintf(buf + used, len - used, "%s = %s\n", o->name, value_text(o, c, 1, vbuf));
        if (n < 0 || (size_t)n >= len - used)
            return -1;
        used += (size_t)n;
    }
    return (int)used;
}

/* The value of `key` in config text: its start, and its length in *len;
 * NULL if the key is absent. */
static const char *find_value(const char *text, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line; ) {
        const char *end = strchr(line, '\n');
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        if (llen >= klen + 3 && strncmp(line, key, klen) == 0 && strncmp(line + klen, " = ", 3) == 0) {
            *len = llen - klen - 3;
            return line + klen + 3;
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

int config_check_resume(const config_t *c, const char *saved, char *err)
{
    for (int i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (o->resume != RESUME_MUST_MATCH)
            continue;
        char buf[VALUE_LEN];
        const char *now = value_text(o, c, 1, buf);
        size_t len;
        const char *old = find_value(saved, o->name, &len);
        if (!old && o->absent && strcmp(o->absent, "*") == 0)
            continue;
        if (!old && o->absent)
            len = strlen(old = o->absent);
        if (!old)
            return err_set(err, "the checkpoint's configuration has no '%s'", o->name);
        int differs = len != strlen(now) || memcmp(old, now, len) != 0;
        if (differs && strcmp(o->name, "dp-noise") == 0 && c->dp_target_epsilon > 0)
            return err_set(err, "--dp-noise differs: the checkpoint was made with %.*s, this "
                           "run's --dp-target-epsilon %g over --epochs %d gives %s (the noise "
                           "cannot change within a run: resume with --dp-noise %.*s instead)",
                           (int)len, old, c->dp_target_epsilon, c->epochs, now, (int)len, old);
        if (!differs)
            continue;
        /* a number as people read it (the checkpoint keeps 17 digits), and
         * the option that keeps the checkpoint's */
        char was[VALUE_LEN], is[VALUE_LEN], hint[VALUE_LEN * 2];
        hint[0] = '\0';
        if (o->kind == KIND_DOUBLE) {
            snprintf(was, sizeof was, "%.*s", (int)len, old);
            char *end;
            double v = strtod(was, &end);
            if (end != was && *end == '\0')
                snprintf(was, sizeof was, "%g", v);
            snprintf(is, sizeof is, "%g", strtod(now, NULL));
            snprintf(hint, sizeof hint, "resume with --%s %s to keep it; ", o->name, was);
            old = was;
            len = strlen(was);
            now = is;
        }
        return err_set(err, "--%s differs: the checkpoint was made with %.*s, this run has %s "
                       "(%sonly --epochs, paths, --eval-size, --eval-participants, "
                       "--eval-every, --dp-max-epsilon, --dp-target-epsilon and "
                       "--divergence-factor may change on resume; data files may move, "
                       "not change)",
                       o->name, (int)len, old, now, hint);
    }
    return 0;
}
