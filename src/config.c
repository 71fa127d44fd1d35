/* config: getopt_long parsing into one struct, strict number parsing with
 * range checks, and the usage text (which prints the real defaults). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static const char *const mode_names[] = {"dssgd", "centralized", "standalone"};
static const char *const schedule_names[] = {"round-robin", "random", "async", "sync"};
static const char *const select_names[] = {"largest", "random", "svt"};
static const char *const download_names[] = {"stat", "random", "all"};
static const char *const partition_names[] = {"iid", "paper", "dirichlet"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *config_mode_name(config_mode m) { return mode_names[m]; }
const char *config_schedule_name(config_schedule s) { return schedule_names[s]; }
const char *config_select_name(config_select s) { return select_names[s]; }
const char *config_download_name(config_download d) { return download_names[d]; }
const char *config_partition_name(dataset_partition p) { return partition_names[p]; }

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->dataset, "fashion-mnist");
    strcpy(c->model, "mlp");
    c->mode = MODE_DSSGD;
    c->participants = 30;
    c->partition = PARTITION_PAPER;
    c->shard_size = 600;
    c->alpha = 0.5;
    c->schedule = SCHEDULE_ROUND_ROBIN;
    c->epochs = 20;
    c->lr = 0.05;
    c->batch = 32;
    c->seed = 1;
    c->theta_u = 0.1;
    c->theta_d = 1.0;
    c->select = SELECT_LARGEST;
    c->download = DOWNLOAD_STAT;
    c->gamma = INFINITY;
    c->tau = 0.0;
    c->stat_decay = 1.0;
    c->dp_max_epsilon = INFINITY;
    c->rank_timeout = 600;
}

/* ---- strict value parsing ---------------------------------------------- */

static int parse_double(const char *opt, const char *s, double lo, double hi, int lo_open,
                        double *out, char *err)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || isnan(v))
        return err_set(err, "--%s: '%s' is not a number", opt, s);
    if ((lo_open ? v <= lo : v < lo) || v > hi)
        return err_set(err, "--%s: %s is out of range %s%g, %g]", opt, s, lo_open ? "(" : "[",
                       lo, hi);
    *out = v;
    return 0;
}

static int parse_long(const char *opt, const char *s, long long lo, long long hi,
                      long long *out, char *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE)
        return err_set(err, "--%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi)
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

/* ---- options ----------------------------------------------------------- */

enum {
    OPT_DATASET = 256, OPT_DATA_DIR, OPT_EVAL_SIZE, OPT_MODEL, OPT_MODE, OPT_PARTICIPANTS,
    OPT_PARTITION, OPT_SHARD_SIZE, OPT_ALPHA, OPT_SCHEDULE, OPT_EPOCHS, OPT_LR, OPT_BATCH,
    OPT_SEED, OPT_THETA_U, OPT_THETA_D, OPT_SELECT, OPT_DOWNLOAD, OPT_GAMMA, OPT_TAU,
    OPT_STAT_DECAY, OPT_RESIDUAL, OPT_DP_EPSILON, OPT_DP_MAX_EPSILON, OPT_CHECKPOINT, OPT_CHECKPOINT_EVERY, OPT_RESUME,
    OPT_METRICS, OPT_QUIET, OPT_RANK_TIMEOUT, OPT_HELP,
};

static const struct option long_options[] = {
    {"dataset", required_argument, 0, OPT_DATASET},
    {"data-dir", required_argument, 0, OPT_DATA_DIR},
    {"eval-size", required_argument, 0, OPT_EVAL_SIZE},
    {"model", required_argument, 0, OPT_MODEL},
    {"mode", required_argument, 0, OPT_MODE},
    {"participants", required_argument, 0, OPT_PARTICIPANTS},
    {"partition", required_argument, 0, OPT_PARTITION},
    {"shard-size", required_argument, 0, OPT_SHARD_SIZE},
    {"alpha", required_argument, 0, OPT_ALPHA},
    {"schedule", required_argument, 0, OPT_SCHEDULE},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"lr", required_argument, 0, OPT_LR},
    {"batch", required_argument, 0, OPT_BATCH},
    {"seed", required_argument, 0, OPT_SEED},
    {"theta-u", required_argument, 0, OPT_THETA_U},
    {"theta-d", required_argument, 0, OPT_THETA_D},
    {"select", required_argument, 0, OPT_SELECT},
    {"download", required_argument, 0, OPT_DOWNLOAD},
    {"gamma", required_argument, 0, OPT_GAMMA},
    {"tau", required_argument, 0, OPT_TAU},
    {"stat-decay", required_argument, 0, OPT_STAT_DECAY},
    {"residual", no_argument, 0, OPT_RESIDUAL},
    {"dp-epsilon", required_argument, 0, OPT_DP_EPSILON},
    {"dp-max-epsilon", required_argument, 0, OPT_DP_MAX_EPSILON},
    {"checkpoint", required_argument, 0, OPT_CHECKPOINT},
    {"checkpoint-every", required_argument, 0, OPT_CHECKPOINT_EVERY},
    {"resume", required_argument, 0, OPT_RESUME},
    {"metrics", required_argument, 0, OPT_METRICS},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"rank-timeout", required_argument, 0, OPT_RANK_TIMEOUT},
    {"help", no_argument, 0, OPT_HELP},
    {0, 0, 0, 0},
};

void config_usage(FILE *out)
{
    config_t d;
    config_defaults(&d);
    fprintf(out,
"usage: dssgd train [options]      (run under mpirun: rank 0 is the server)\n"
"       dssgd --help\n"
"\n"
"Data\n"
"  --dataset NAME        fashion-mnist | mnist                      [%s]\n"
"  --data-dir DIR        directory of the four IDX files (.gz or not)\n"
"                        [fashion-mnist: %s; mnist: required]\n"
"  --eval-size N         evaluate on the first N test images, 0 = all [%zu]\n"
"Model\n"
"  --model SPEC          mlp (784-128-64-10, ReLU) | cnn (the paper's CNN) | 784-256-10\n"
"                        | layers: c5x32-tanh-p3,c5x64-tanh-p2,d200-tanh,d10 [%s]\n"
"Run\n"
"  --mode MODE           dssgd | centralized | standalone           [%s]\n"
"  --participants N      number of participants                     [%d]\n"
"  --partition KIND      iid | paper (independent, may overlap) | dirichlet [%s]\n"
"  --shard-size N        examples per participant, 0 = equal share  [%zu]\n"
"  --alpha A             Dirichlet concentration (> 0)              [%g]\n"
"  --schedule S          round-robin | random | async | sync        [%s]\n"
"  --epochs N            epochs (each participant trains once each) [%d]\n"
"  --lr R                learning rate (> 0)                        [%g]\n"
"  --batch B             mini-batch size (1..4096)                  [%d]\n"
"  --seed S              seed of every random choice                [%llu]\n"
"Protocol (mode dssgd)\n"
"  --theta-u T           fraction of parameters uploaded, (0, 1]    [%g]\n"
"  --theta-d T           fraction of parameters downloaded, (0, 1]  [%g]\n"
"  --select S            largest | random (above --tau) | svt (differential privacy)\n"
"                                                                   [%s]\n"
"  --download D          stat | random | all                        [%s]\n"
"  --gamma G             clip uploads to [-G, G], > 0, inf = off     [%g]\n"
"  --tau T               threshold of --select random (>= 0)        [%g]\n"
"  --stat-decay B        stat <- B * stat each epoch, (0, 1]        [%g]\n"
"  --residual            error feedback: keep the unsent part of the update\n"
"Privacy (--select svt: the sparse vector technique, needs a finite --gamma)\n"
"  --dp-epsilon E        epsilon per participant per epoch (> 0)    [required with svt]\n"
"  --dp-max-epsilon B    a participant stops uploading rather than spend beyond B\n"
"                        in total (basic composition)               [none]\n"
"State (modes dssgd and standalone)\n"
"  --checkpoint FILE     save the whole state to FILE (HDF5, atomic) [none]\n"
"  --checkpoint-every K  ... every K epochs, and always at the end  [end only]\n"
"  --resume FILE         continue from a checkpoint; --epochs is the new total\n"
"Output\n"
"  --metrics FILE        CSV row per epoch (rank 0)                 [none]\n"
"  --quiet               no per-epoch progress lines on stderr\n"
"Failures\n"
"  --rank-timeout S      stop the job, naming the rank, when a rank takes more than\n"
"                        S seconds per participant to answer; 0 = wait forever [%g]\n",
        d.dataset, dataset_default_dir("fashion-mnist"), d.eval_size, d.model,
        mode_names[d.mode], d.participants, partition_names[d.partition], d.shard_size,
        d.alpha, schedule_names[d.schedule], d.epochs, d.lr, d.batch,
        (unsigned long long)d.seed, d.theta_u, d.theta_d, select_names[d.select],
        download_names[d.download], d.gamma, d.tau, d.stat_decay, d.rank_timeout);
}

int config_validate(const config_t *c, char *err)
{
    if (strcmp(c->dataset, "mnist") == 0 && c->data_dir[0] == '\0')
        return err_set(err, "--dataset mnist needs --data-dir DIR (the four MNIST IDX files)");
    if (c->partition == PARTITION_IID || c->partition == PARTITION_DIRICHLET) {
        /* checked against the data size when the shards are made */
    }
    if ((c->checkpoint[0] || c->resume[0] || c->checkpoint_every) && c->mode == MODE_CENTRALIZED)
        return err_set(err, "--checkpoint and --resume apply to modes dssgd and standalone");
    if (c->checkpoint_every && !c->checkpoint[0])
        return err_set(err, "--checkpoint-every needs --checkpoint FILE");
    if (c->select == SELECT_SVT) {
        if (c->dp_epsilon <= 0)
            return err_set(err, "--select svt needs --dp-epsilon E > 0 (epsilon per participant "
                           "per epoch)");
        if (!isfinite(c->gamma))
            return err_set(err, "--select svt needs a finite --gamma: the mechanism's sensitivity "
                           "is 2 gamma");
        if (c->mode != MODE_DSSGD)
            return err_set(err, "--select svt applies to --mode dssgd only");
    } else if (c->dp_epsilon > 0 || isfinite(c->dp_max_epsilon)) {
        return err_set(err, "--dp-epsilon and --dp-max-epsilon apply only with --select svt");
    }
    return 0;
}

int config_parse(config_t *c, int argc, char **argv, FILE *out, char *err)
{
    optind = 0; /* 0, not 1: glibc then also forgets its place in the last argv */
    opterr = 0;
    int opt;
    long long v = 0;
    int choice = 0;
    while ((opt = getopt_long(argc, argv, ":", long_options, NULL)) != -1) {
        const char *name = NULL;
        for (const struct option *o = long_options; o->name; o++)
            if (o->val == opt)
                name = o->name;
        int rc = 0;
        switch (opt) {
        case OPT_DATASET:
            rc = parse_choice(name, optarg, (const char *const[]){"fashion-mnist", "mnist"}, 2,
                              &choice, err);
            if (!rc)
                strcpy(c->dataset, optarg);
            break;
        case OPT_DATA_DIR: rc = copy_string(name, optarg, c->data_dir, sizeof c->data_dir, err); break;
        case OPT_EVAL_SIZE:
            rc = parse_long(name, optarg, 0, 1LL << 31, &v, err);
            if (!rc)
                c->eval_size = (size_t)v;
            break;
        case OPT_MODEL:
            rc = *optarg ? copy_string(name, optarg, c->model, sizeof c->model, err)
                         : err_set(err, "--model: empty value (try mlp or cnn)");
            break;
        case OPT_MODE:
            rc = parse_choice(name, optarg, mode_names, COUNT(mode_names), &choice, err);
            if (!rc)
                c->mode = (config_mode)choice;
            break;
        case OPT_PARTICIPANTS:
            rc = parse_long(name, optarg, 1, 100000, &v, err);
            if (!rc)
                c->participants = (int)v;
            break;
        case OPT_PARTITION:
            rc = parse_choice(name, optarg, partition_names, COUNT(partition_names), &choice, err);
            if (!rc)
                c->partition = (dataset_partition)choice;
            break;
        case OPT_SHARD_SIZE:
            rc = parse_long(name, optarg, 0, 1LL << 31, &v, err);
            if (!rc)
                c->shard_size = (size_t)v;
            break;
        case OPT_ALPHA: rc = parse_double(name, optarg, 0, 1e6, 1, &c->alpha, err); break;
        case OPT_SCHEDULE:
            rc = parse_choice(name, optarg, schedule_names, COUNT(schedule_names), &choice, err);
            if (!rc)
                c->schedule = (config_schedule)choice;
            break;
        case OPT_EPOCHS:
            rc = parse_long(name, optarg, 1, 1000000, &v, err);
            if (!rc)
                c->epochs = (int)v;
            break;
        case OPT_LR: rc = parse_double(name, optarg, 0, 1e3, 1, &c->lr, err); break;
        case OPT_BATCH:
            rc = parse_long(name, optarg, 1, 4096, &v, err);
            if (!rc)
                c->batch = (int)v;
            break;
        case OPT_SEED:
            rc = parse_long(name, optarg, 0, INT64_MAX, &v, err);
            if (!rc)
                c->seed = (uint64_t)v;
            break;
        case OPT_THETA_U: rc = parse_double(name, optarg, 0, 1, 1, &c->theta_u, err); break;
        case OPT_THETA_D: rc = parse_double(name, optarg, 0, 1, 1, &c->theta_d, err); break;
        case OPT_SELECT:
            rc = parse_choice(name, optarg, select_names, COUNT(select_names), &choice, err);
            if (!rc)
                c->select = (config_select)choice;
            break;
        case OPT_DOWNLOAD:
            rc = parse_choice(name, optarg, download_names, COUNT(download_names), &choice, err);
            if (!rc)
                c->download = (config_download)choice;
            break;
        case OPT_GAMMA: rc = parse_double(name, optarg, 0, INFINITY, 1, &c->gamma, err); break;
        case OPT_TAU: rc = parse_double(name, optarg, 0, INFINITY, 0, &c->tau, err); break;
        case OPT_STAT_DECAY: rc = parse_double(name, optarg, 0, 1, 1, &c->stat_decay, err); break;
        case OPT_RESIDUAL: c->residual = 1; break;
        case OPT_DP_EPSILON: rc = parse_double(name, optarg, 0, 1e12, 1, &c->dp_epsilon, err); break;
        case OPT_DP_MAX_EPSILON:
            rc = parse_double(name, optarg, 0, INFINITY, 1, &c->dp_max_epsilon, err);
            break;
        case OPT_CHECKPOINT:
            rc = copy_string(name, optarg, c->checkpoint, sizeof c->checkpoint, err);
            break;
        case OPT_CHECKPOINT_EVERY:
            rc = parse_long(name, optarg, 1, 1000000, &v, err);
            if (!rc)
                c->checkpoint_every = (int)v;
            break;
        case OPT_RESUME: rc = copy_string(name, optarg, c->resume, sizeof c->resume, err); break;
        case OPT_METRICS: rc = copy_string(name, optarg, c->metrics, sizeof c->metrics, err); break;
        case OPT_QUIET: c->quiet = 1; break;
        case OPT_RANK_TIMEOUT:
            rc = parse_double(name, optarg, 0, 1e9, 0, &c->rank_timeout, err);
            break;
        case OPT_HELP:
            if (out)
                config_usage(out);
            return 1;
        case ':':
            return err_set(err, "%s needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt < OPT_DATASET)
                return err_set(err, "unknown option '-%c' (options are long: --name value; "
                               "see dssgd --help)", optopt);
            return err_set(err, "unknown option '%s' (see dssgd --help)", argv[optind - 1]);
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return err_set(err, "unexpected argument '%s' (see dssgd --help)", argv[optind]);
    return config_validate(c, err);
}

void config_print(const config_t *c, FILE *out)
{
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    const char *dir = c->data_dir[0] ? c->data_dir : dataset_default_dir(c->dataset);
    fprintf(out, "+------------------+------------------------------------------+\n");
#define ROW_S(k, v) fprintf(out, "| %-16s | %-40s |\n", k, v)
#define ROW_F(k, fmt, v) do { char b_[64]; snprintf(b_, sizeof b_, fmt, v); ROW_S(k, b_); } while (0)
    ROW_S("mode", mode_names[c->mode]);
    ROW_S("dataset", c->dataset);
    ROW_S("data-dir", dir ? dir : "");
    ROW_F("eval-size", "%zu", c->eval_size);
    ROW_S("model", c->model);
    ROW_F("participants", "%d", c->participants);
    ROW_S("partition", partition_names[c->partition]);
    ROW_F("shard-size", "%zu", c->shard_size);
    if (c->partition == PARTITION_DIRICHLET)
        ROW_F("alpha", "%g", c->alpha);
    ROW_F("epochs", "%d", c->epochs);
    ROW_F("lr", "%g", c->lr);
    ROW_F("batch", "%d", c->batch);
    ROW_S("seed", seed);
    if (c->mode == MODE_DSSGD) {
        ROW_S("schedule", schedule_names[c->schedule]);
        ROW_F("theta-u", "%g", c->theta_u);
        ROW_F("theta-d", "%g", c->theta_d);
        ROW_S("select", select_names[c->select]);
        ROW_S("download", download_names[c->download]);
        ROW_F("gamma", "%g", c->gamma);
        if (c->select != SELECT_LARGEST)
            ROW_F("tau", "%g", c->tau);
        ROW_F("stat-decay", "%g", c->stat_decay);
        ROW_S("residual", c->residual ? "on" : "off");
        if (c->select == SELECT_SVT) {
            ROW_F("dp-epsilon", "%g", c->dp_epsilon);
            ROW_F("dp-max-epsilon", "%g", c->dp_max_epsilon);
        }
    }
    if (c->checkpoint[0]) {
        ROW_S("checkpoint", c->checkpoint);
        ROW_F("checkpoint-every", "%d", c->checkpoint_every);
    }
    if (c->resume[0])
        ROW_S("resume", c->resume);
    ROW_S("metrics", c->metrics[0] ? c->metrics : "(none)");
    if (c->mode != MODE_CENTRALIZED)
        ROW_F("rank-timeout", "%g s", c->rank_timeout);
#undef ROW_S
#undef ROW_F
    fprintf(out, "+------------------+------------------------------------------+\n");
}

/* ---- configuration as text (checkpoints) ------------------------------- */

/* Every option, its text form, and whether a resumed run must keep it. */
typedef struct { const char *key; char value[CONFIG_PATH_LEN + 32]; int must_match; } config_item;

enum { CONFIG_ITEMS = 26 };

static void config_items(const config_t *c, config_item *it)
{
    int i = 0;
#define ITEM(k, m, ...) do { it[i].key = k; it[i].must_match = m; \
        snprintf(it[i].value, sizeof it[i].value, __VA_ARGS__); i++; } while (0)
    ITEM("dataset", 1, "%s", c->dataset);
    ITEM("data-dir", 0, "%s", c->data_dir);
    ITEM("eval-size", 0, "%zu", c->eval_size);
    ITEM("model", 1, "%s", c->model);
    ITEM("mode", 1, "%s", mode_names[c->mode]);
    ITEM("participants", 1, "%d", c->participants);
    ITEM("partition", 1, "%s", partition_names[c->partition]);
    ITEM("shard-size", 1, "%zu", c->shard_size);
    ITEM("alpha", 1, "%.17g", c->alpha);
    ITEM("schedule", 1, "%s", schedule_names[c->schedule]);
    ITEM("epochs", 0, "%d", c->epochs);
    ITEM("lr", 1, "%.17g", c->lr);
    ITEM("batch", 1, "%d", c->batch);
    ITEM("seed", 1, "%llu", (unsigned long long)c->seed);
    ITEM("theta-u", 1, "%.17g", c->theta_u);
    ITEM("theta-d", 1, "%.17g", c->theta_d);
    ITEM("select", 1, "%s", select_names[c->select]);
    ITEM("download", 1, "%s", download_names[c->download]);
    ITEM("gamma", 1, "%.17g", c->gamma);
    ITEM("tau", 1, "%.17g", c->tau);
    ITEM("stat-decay", 1, "%.17g", c->stat_decay);
    ITEM("residual", 1, "%d", c->residual);
    ITEM("dp-epsilon", 1, "%.17g", c->dp_epsilon);
    ITEM("dp-max-epsilon", 0, "%.17g", c->dp_max_epsilon);
    ITEM("checkpoint-every", 0, "%d", c->checkpoint_every);
    ITEM("metrics", 0, "%s", c->metrics);
#undef ITEM
}

int config_to_text(const config_t *c, char *buf, size_t len)
{
    config_item it[CONFIG_ITEMS];
    config_items(c, it);
    size_t used = 0;
    for (int i = 0; i < CONFIG_ITEMS; i++) {
        int n = snprintf(buf + used, len - used, "%s = %s\n", it[i].key, it[i].value);
        if (n < 0 || (size_t)n >= len - used)
            return -1;
        used += (size_t)n;
    }
    return (int)used;
}

/* The value of `key` in config text, copied to out; 0 if found. */
static int find_value(const char *text, const char *key, char *out, size_t len)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line; ) {
        const char *end = strchr(line, '\n');
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        if (llen >= klen + 3 && strncmp(line, key, klen) == 0 && strncmp(line + klen, " = ", 3) == 0) {
            size_t vlen = llen - klen - 3;
            if (vlen >= len)
                vlen = len - 1;
            memcpy(out, line + klen + 3, vlen);
            out[vlen] = '\0';
            return 0;
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

int config_check_resume(const config_t *c, const char *saved, char *err)
{
    config_item it[CONFIG_ITEMS];
    config_items(c, it);
    for (int i = 0; i < CONFIG_ITEMS; i++) {
        if (!it[i].must_match)
            continue;
        char old[CONFIG_PATH_LEN + 32];
        if (find_value(saved, it[i].key, old, sizeof old))
            return err_set(err, "the checkpoint's configuration has no '%s'", it[i].key);
        if (strcmp(old, it[i].value) != 0)
            return err_set(err, "--%s differs: the checkpoint was made with %s, this run has %s "
                           "(only --epochs, paths, --eval-size and --dp-max-epsilon may change "
                           "on resume)", it[i].key, old, it[i].value);
    }
    return 0;
}
