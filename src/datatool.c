/* datatool: `dssgd data convert` and `dssgd data split` (include/datatool.h).
 * Options come from one table per command (name, kind, field, range, help),
 * which parsing and --help both walk. Library errors become one line on
 * stderr and the exit status `dssgd train` gives the same kind of error. */
#include "datatool.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
#include "err.h"
#include "h5data.h"
#include "paths.h"
#include "rng.h"

/* Exit statuses, as `dssgd train`'s. */
enum { EXIT_USAGE = 2, EXIT_FAILED = 1 };

/* The longest site file name a pattern may expand to. */
#define SITE_PATH_LEN 4096

/* ---- options -------------------------------------------------------------- */

/* Every option of every command; each command's table names its own. */
typedef struct {
    const char *data_dir, *data_file, *out; /* NULL = not given */
    int dataset;                            /* dataset_choice's index */
    int partition;                          /* dataset_partition */
    long long sites, shard_size, seed;
    double alpha;
    int alpha_given;
} data_opts;

typedef enum { ARG_PATH, ARG_INT, ARG_DOUBLE, ARG_CHOICE } arg_kind;

typedef struct {
    const char *name, *metavar, *help;
    arg_kind kind;
    size_t offset;                  /* of the field in data_opts */
    long long lo, hi;               /* ARG_INT: the accepted range */
    double dlo, dhi;                /* ARG_DOUBLE: the range (dlo, dhi] */
    const char *(*choice)(int i);   /* ARG_CHOICE: the name of choice i, NULL past the last */
    int required;
} arg_row;

static const char *dataset_choice(int i)
{
    static const char *const names[] = {"fashion-mnist", "mnist"};
    return i >= 0 && i < 2 ? names[i] : NULL;
}

/* The names `dssgd train --partition` takes, from config's own list. */
static const char *partition_choice(int i)
{
    return i >= 0 && i <= PARTITION_DIRICHLET ? config_partition_name((dataset_partition)i) : NULL;
}

#define OFF(f) offsetof(data_opts, f)

static const arg_row convert_args[] = {
    {.name = "data-dir", .metavar = "DIR", .kind = ARG_PATH, .offset = OFF(data_dir),
     .help = "the IDX files (train-*, t10k-*, gzipped or not)"},
    {.name = "dataset", .metavar = "NAME", .kind = ARG_CHOICE, .offset = OFF(dataset),
     .choice = dataset_choice,
     .help = "fashion-mnist | mnist: whose default --data-dir"},
    {.name = "out", .metavar = "FILE.h5", .kind = ARG_PATH, .offset = OFF(out), .required = 1,
     .help = "the data file written (replaced if it exists)"},
};

static const arg_row split_args[] = {
    {.name = "data-file", .metavar = "FILE.h5", .kind = ARG_PATH, .offset = OFF(data_file),
     .required = 1, .help = "the data file whose /train is split"},
    {.name = "sites", .metavar = "N", .kind = ARG_INT, .offset = OFF(sites), .lo = 1,
     .hi = 100000, .required = 1, .help = "site files written (= dssgd train --participants)"},
    {.name = "out", .metavar = "PATTERN", .kind = ARG_PATH, .offset = OFF(out), .required = 1,
     .help = "the site files: one %d, the site id 0..N-1\n(e.g. sites/site-%d.h5); no other %"},
    {.name = "partition", .metavar = "KIND", .kind = ARG_CHOICE, .offset = OFF(partition),
     .choice = partition_choice, .help = "iid | paper (independent, may overlap) | dirichlet"},
    {.name = "shard-size", .metavar = "N", .kind = ARG_INT, .offset = OFF(shard_size), .lo = 0,
     .hi = 1LL << 31, .help = "examples per site, 0 = an equal share of all"},
    {.name = "alpha", .metavar = "A", .kind = ARG_DOUBLE, .offset = OFF(alpha), .dlo = 0,
     .dhi = 1e6, .help = "Dirichlet concentration (> 0), with --partition dirichlet"},
    {.name = "seed", .metavar = "S", .kind = ARG_INT, .offset = OFF(seed), .lo = 0,
     .hi = INT64_MAX, .help = "seed of the partition (dssgd train --seed)"},
};

#define N_ROWS(t) ((int)(sizeof t / sizeof t[0]))
#define MAX_ROWS 8
_Static_assert(N_ROWS(convert_args) <= MAX_ROWS && N_ROWS(split_args) <= MAX_ROWS,
               "parse_args holds MAX_ROWS options");

/* The defaults are `dssgd train`'s, read from config, so that a split and
 * a training run given the same options (or none) draw the same shards. */
static void opts_defaults(data_opts *o)
{
    config_t c;
    config_defaults(&c);
    memset(o, 0, sizeof *o);
    o->dataset = 0;
    for (int i = 0; dataset_choice(i); i++)
        if (strcmp(dataset_choice(i), c.dataset) == 0)
            o->dataset = i;
    o->partition = (int)c.partition;
    o->shard_size = (long long)c.shard_size;
    o->seed = (long long)c.seed;
    o->alpha = c.alpha;
}

/* An integer of digits only (a '-' is read, to be refused by its range;
 * no '+', space or suffix) in [lo, hi]. */
static int parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out,
                     char *err)
{
    char *end = NULL;
    errno = 0;
    int starts = isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]));
    long long v = starts ? strtoll(s, &end, 10) : 0;
    if (!starts || *end != '\0')
        return err_set(err, "--%s: '%.64s' is not a whole number (digits only)", opt, s);
    if (errno == ERANGE || v < lo || v > hi)
        return err_set(err, "--%s: %.64s is out of range [%lld, %lld]", opt, s, lo, hi);
    *out = v;
    return 0;
}

/* A finite decimal number in (lo, hi], without sign or leading space. */
static int parse_real(const char *opt, const char *s, double lo, double hi, double *out,
                      char *err)
{
    char *end = NULL;
    errno = 0;
    int starts = isdigit((unsigned char)s[0]) || (s[0] == '.' && isdigit((unsigned char)s[1]));
    double v = starts ? strtod(s, &end) : 0;
    if (!starts || *end != '\0' || !isfinite(v))
        return err_set(err, "--%s: '%.64s' is not a number", opt, s);
    if (errno == ERANGE && v == 0)
        return err_set(err, "--%s: %.64s is too small for a double (it would be 0)", opt, s);
    if (errno == ERANGE || !(v > lo) || v > hi)
        return err_set(err, "--%s: %.64s is out of range (%g, %g]", opt, s, lo, hi);
    *out = v;
    return 0;
}

static int set_arg(data_opts *o, const arg_row *a, const char *s, char *err)
{
    void *f = (char *)o + a->offset;
    switch (a->kind) {
    case ARG_PATH:
        /* An empty path (an unset shell variable, most often) names nothing. */
        if (!*s)
            return err_set(err, "--%s: empty path", a->name);
        *(const char **)f = s;
        return 0;
    case ARG_INT:
        return parse_int(a->name, s, a->lo, a->hi, f, err);
    case ARG_DOUBLE:
        if (parse_real(a->name, s, a->dlo, a->dhi, f, err))
            return -1;
        if (a->offset == OFF(alpha))
            o->alpha_given = 1;
        return 0;
    case ARG_CHOICE: {
        char list[128] = "";
        for (int i = 0; a->choice(i); i++) {
            if (strcmp(s, a->choice(i)) == 0) {
                *(int *)f = i;
                return 0;
            }
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", a->choice(i));
        }
        return err_set(err, "--%s: unknown value '%.64s' (choose from %s)", a->name, s, list);
    }
    }
    return err_set(err, "--%s: unknown option kind", a->name);
}

/* An option getopt_long did not accept: unknown, ambiguous, or a value
 * given to --help. */
static int refuse_option(const char *cmd, const char *arg, const arg_row *args, int n, char *err)
{
    if (strncmp(arg, "--", 2) != 0)
        return err_set(err, "unknown option '%.64s' (options are long: --name value; see dssgd "
                       "data %s --help)", arg, cmd);
    const char *names[MAX_ROWS];
    for (int i = 0; i < n && i < MAX_ROWS; i++)
        names[i] = args[i].name;
    if (err_ambiguous_option(arg + 2, names, n < MAX_ROWS ? n : MAX_ROWS, err))
        return -1;
    return err_set(err, "unknown option '%.64s' (see dssgd data %s --help)", arg, cmd);
}

/* Parses argv (argv[0] is the command's name) into o by the table args.
 * Returns 0, 1 for --help, -1 with err on a usage error. Long options may
 * be abbreviated and given as --name=value, as `dssgd train`'s. */
static int parse_args(const char *cmd, const arg_row *args, int n, int argc, char **argv,
                      data_opts *o, char *err)
{
    enum { OPT_FIRST = 256 };
    struct option longopts[MAX_ROWS + 2];
    int given[MAX_ROWS] = {0};
    for (int i = 0; i < n; i++)
        longopts[i] = (struct option){args[i].name, required_argument, NULL, OPT_FIRST + i};
    longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n + 1] = (struct option){NULL, 0, NULL, 0};
    optind = 0; /* 0, not 1: glibc then also forgets its place in the last argv */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (opt >= OPT_FIRST && opt < OPT_FIRST + n) {
            if (set_arg(o, &args[opt - OPT_FIRST], optarg, err))
                return -1;
            given[opt - OPT_FIRST] = 1;
        } else if (opt == 'h') {
            return 1;
        } else if (opt == ':') {
            return err_set(err, "%.64s needs a value", argv[optind - 1]);
        } else if (optopt == 'h' && strncmp(argv[optind - 1], "--", 2) == 0) {
            return err_set(err, "--help takes no value, given '%.64s'", argv[optind - 1]);
        } else if (optopt) {
            return err_set(err, "unknown option '-%c' (options are long: --name value; see "
                           "dssgd data %s --help)", optopt, cmd);
        } else {
            return refuse_option(cmd, argv[optind - 1], args, n, err);
        }
    }
    if (optind < argc)
        return err_set(err, "unexpected argument '%.64s' (see dssgd data %s --help)",
                       argv[optind], cmd);
    for (int i = 0; i < n; i++)
        if (args[i].required && !given[i])
            return err_set(err, "dssgd data %s needs --%s %s (see dssgd data %s --help)", cmd,
                           args[i].name, args[i].metavar, cmd);
    return 0;
}

/* "--name METAVAR   help [default]" for each row, defaults from o. */
static void print_args(FILE *out, const arg_row *args, int n, const data_opts *o)
{
    for (int i = 0; i < n; i++) {
        const arg_row *a = &args[i];
        const void *f = (const char *)o + a->offset;
        char opt[48], def[64] = "";
        snprintf(opt, sizeof opt, "--%s %s", a->name, a->metavar);
        if (a->kind == ARG_INT && !a->required)
            snprintf(def, sizeof def, " [%lld]", *(const long long *)f);
        else if (a->kind == ARG_DOUBLE)
            snprintf(def, sizeof def, " [%g]", *(const double *)f);
        else if (a->kind == ARG_CHOICE)
            snprintf(def, sizeof def, " [%s]", a->choice(*(const int *)f));
        else if (a->required)
            snprintf(def, sizeof def, " [required]");
        const char *nl = strchr(a->help, '\n');
        if (nl)
            fprintf(out, "  %-22s %.*s\n  %-22s %s%s\n", opt, (int)(nl - a->help), a->help, "",
                    nl + 1, def);
        else
            fprintf(out, "  %-22s %s%s\n", opt, a->help, def);
    }
}

/* ---- shared steps ------------------------------------------------------------ */

static int failed(const char *err)
{
    fprintf(stderr, "dssgd: %s\n", err);
    return EXIT_FAILED;
}

/* Whether every pixel of ds is bit for bit a byte b as a uint8 file loads
 * it (b / 255 in float, as dataset_load reads IDX bytes): then storing the
 * bytes loses nothing. -0.0 is not (it would come back as +0.0). */
static int pixels_are_bytes(const dataset_t *ds)
{
    size_t n = ds->count * ds->dim;
    for (size_t i = 0; i < n; i++) {
        float v = ds->x[i];
        if (!(v >= 0.0f && v <= 1.0f))
            return 0;
        float back = nearbyintf(v * 255.0f) / 255.0f;
        if (memcmp(&back, &v, sizeof v) != 0)
            return 0;
    }
    return 1;
}

/* Compares a set reloaded from path with the one written, every field and
 * every bit of x and y. */
static int same_set(const char *path, const char *group, const dataset_t *want,
                    const dataset_t *got, char *err)
{
    if (got->count != want->count || got->channels != want->channels ||
        got->rows != want->rows || got->cols != want->cols || got->dim != want->dim ||
        got->classes != want->classes)
        return err_set(err, "%s: /%s reloads as %zu examples of %dx%dx%d, %d classes, not the "
                       "%zu of %dx%dx%d, %d classes written", path, group, got->count,
                       got->channels, got->rows, got->cols, got->classes, want->count,
                       want->channels, want->rows, want->cols, want->classes);
    for (size_t i = 0; i < want->count; i++) {
        if (got->y[i] != want->y[i])
            return err_set(err, "%s: /%s reloads with label %d for example %zu, not %d", path,
                           group, got->y[i], i, want->y[i]);
        if (memcmp(got->x + i * want->dim, want->x + i * want->dim,
                   want->dim * sizeof *want->x) != 0)
            return err_set(err, "%s: /%s reloads with other pixels for example %zu than "
                           "written", path, group, i);
    }
    return 0;
}

/* Loads group `group` of path back and checks that it holds exactly want.
 * A file that does not is removed, so that nothing trains on it. */
static int verify_written(const char *path, const char *group, const dataset_t *want, char *err)
{
    dataset_t got;
    if (h5data_load(path, group, &got, err))
        return err_prefix(err, "reloading what was written");
    int rc = same_set(path, group, want, &got, err);
    dataset_free(&got);
    if (rc)
        unlink(path);
    return rc;
}

/* ---- dssgd data convert ------------------------------------------------------- */

static int run_convert(const data_opts *o)
{
    char err[ERR_LEN] = "";
    const char *name = dataset_choice(o->dataset);
    const char *dir = o->data_dir ? o->data_dir : dataset_default_dir(name);
    if (!dir) {
        fprintf(stderr, "dssgd: --dataset %s needs --data-dir DIR (the four IDX files)\n", name);
        return EXIT_USAGE;
    }
    if (paths_check_output(o->out, "--out", err))
        return failed(err);
    /* Never write over an input, whatever the path says (links included). */
    char inputs[4][DATASET_PATH_LEN];
    int n_inputs = dataset_files(dir, inputs);
    for (int i = 0; i < n_inputs; i++) {
        const char *paths[2] = {inputs[i], o->out}, *whats[2] = {"a data file", "--out"};
        if (paths_check_distinct(paths, whats, 2, err))
            return failed(err);
    }

    dataset_t train = {0}, test = {0};
    int rc = dataset_load(dir, 1, &train, err) || dataset_load(dir, 0, &test, err) ||
             dataset_check_compatible(&train, &test, err) ||
             h5data_write(o->out, &train, &test, 1, err) ||
             verify_written(o->out, "train", &train, err) ||
             verify_written(o->out, "test", &test, err);
    if (rc == 0)
        printf("wrote %s: /train %zu and /test %zu examples of %dx%dx%d, %d classes, pixels "
               "as uint8 (from %s)\n", o->out, train.count, test.count, train.channels,
               train.rows, train.cols, train.classes, dir);
    dataset_free(&train);
    dataset_free(&test);
    return rc ? failed(err) : 0;
}

/* ---- dssgd data split --------------------------------------------------------- */

/* Checks a site file pattern: exactly one "%d" and no other '%' (the site
 * files' names must be unambiguous, and the pattern is never used as a
 * printf format). Sets *cut to the offset of the %d. */
static int pattern_check(const char *pattern, size_t *cut, char *err)
{
    const char *d = strchr(pattern, '%');
    if (!d)
        return err_set(err, "--out '%.128s': a site file pattern needs a %%d, the site id "
                       "(e.g. sites/site-%%d.h5)", pattern);
    if (d[1] != 'd' || strchr(d + 2, '%'))
        return err_set(err, "--out '%.128s': a site file pattern has exactly one %%d (the "
                       "site id) and no other %%", pattern);
    *cut = (size_t)(d - pattern);
    return 0;
}

/* Site p's file name: the pattern with the %d at cut replaced by p. */
static int site_path(const char *pattern, size_t cut, int p, char *buf, size_t len, char *err)
{
    int n = snprintf(buf, len, "%.*s%d%s", (int)cut, pattern, p, pattern + cut + 2);
    if (n < 0 || (size_t)n >= len)
        return err_set(err, "--out '%.64s...': site %d's file name is longer than %zu bytes",
                       pattern, p, len - 1);
    return 0;
}

/* The examples of one shard, in the shard's order, as a data set of their
 * own (shape and classes of the whole). */
static int shard_set(const dataset_t *all, const uint32_t *idx, size_t n, dataset_t *out,
                     char *err)
{
    *out = *all;
    out->count = n;
    out->x = err_calloc(n * all->dim, sizeof *out->x);
    out->y = err_calloc(n, sizeof *out->y);
    if (!out->x || !out->y) {
        dataset_free(out);
        return err_set(err, "out of memory for a shard of %zu examples", n);
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(out->x + i * all->dim, all->x + (size_t)idx[i] * all->dim,
               all->dim * sizeof *out->x);
        out->y[i] = all->y[idx[i]];
    }
    return 0;
}

/* "site 0: sites/site-0.h5, 333 examples, labels 0:31 1:36 ..." */
static void print_site(int p, const char *path, const dataset_t *site)
{
    size_t counts[DATASET_MAX_CLASSES] = {0};
    for (size_t i = 0; i < site->count; i++)
        counts[site->y[i]]++;
    printf("site %d: %s, %zu examples, labels", p, path, site->count);
    for (int c = 0; c < site->classes; c++)
        printf(" %d:%zu", c, counts[c]);
    putchar('\n');
}

/* Refuses before anything is written: a bad pattern (usage), an input that
 * cannot be read or an output that cannot be written or names the input
 * (failures). Returns 0, or the exit status. */
static int split_check_paths(const data_opts *o, size_t *cut, char *err)
{
    char path[SITE_PATH_LEN];
    if (pattern_check(o->out, cut, err) ||
        site_path(o->out, *cut, (int)o->sites - 1, path, sizeof path, err)) {
        fprintf(stderr, "dssgd: %s\n", err);
        return EXIT_USAGE;
    }
    if (paths_check_input(o->data_file, "--data-file", err))
        return failed(err);
    for (int p = 0; p < o->sites; p++) {
        const char *paths[2] = {o->data_file, path}, *whats[2] = {"--data-file", "--out"};
        if (site_path(o->out, *cut, p, path, sizeof path, err) ||
            paths_check_distinct(paths, whats, 2, err) ||
            paths_check_output(path, "--out", err))
            return failed(err);
    }
    return 0;
}

static int run_split(const data_opts *o)
{
    char err[ERR_LEN] = "";
    size_t cut = 0;
    int rc = split_check_paths(o, &cut, err);
    if (rc)
        return rc;
    if (o->alpha_given && o->partition != PARTITION_DIRICHLET)
        fprintf(stderr, "dssgd: warning: --alpha %g is ignored: it has an effect only with "
                "--partition dirichlet\n", o->alpha);

    dataset_t train;
    if (h5data_load(o->data_file, "train", &train, err))
        return failed(err);
    /* Exactly the draw of run.c's setup(): the partition stream of the
     * seed, on the training set as loaded. */
    dataset_shards shards;
    rng_t rng;
    rng_init(&rng, (uint64_t)o->seed, RNG_STREAM_PARTITION);
    if (dataset_partition_make(&train, (dataset_partition)o->partition, (int)o->sites,
                               (size_t)o->shard_size, o->alpha, &rng, &shards, err)) {
        dataset_free(&train);
        return failed(err);
    }
    int as_uint8 = pixels_are_bytes(&train);

    size_t total = 0;
    int p = 0;
    for (; p < shards.count; p++) {
        char path[SITE_PATH_LEN];
        dataset_t site;
        if (site_path(o->out, cut, p, path, sizeof path, err) ||
            shard_set(&train, shards.indices[p], shards.sizes[p], &site, err))
            break;
        rc = h5data_write(path, &site, NULL, as_uint8, err) ||
             verify_written(path, "train", &site, err);
        if (rc == 0)
            print_site(p, path, &site);
        dataset_free(&site);
        if (rc)
            break;
        total += shards.sizes[p];
    }
    if (p < shards.count) {
        if (p > 0)
            err_prefix(err, "sites 0 to %d were written, site %d and on not", p - 1, p);
        rc = failed(err);
    } else {
        char alpha[48] = "";
        if (o->partition == PARTITION_DIRICHLET)
            snprintf(alpha, sizeof alpha, " --alpha %g", o->alpha);
        printf("split %s: %zu of its %zu training examples (%dx%dx%d, %d classes) into %d "
               "site files, the shards of dssgd train --partition %s --participants %d "
               "--shard-size %zu%s --seed %llu; pixels as %s\n", o->data_file, total,
               train.count, train.channels, train.rows, train.cols, train.classes, shards.count,
               config_partition_name((dataset_partition)o->partition), shards.count,
               shards.sizes[0], alpha, (unsigned long long)o->seed,
               as_uint8 ? "uint8 (every pixel is some k/255)"
                        : "float32 (not every pixel is some k/255)");
        rc = 0;
    }
    dataset_shards_free(&shards);
    dataset_free(&train);
    return rc;
}

/* ---- dispatch -------------------------------------------------------------------- */

typedef struct {
    const char *name, *synopsis, *about;
    const arg_row *args;
    int n_args;
    int (*run)(const data_opts *o);
} data_command;

static const data_command commands[] = {
    {"convert", "dssgd data convert --out FILE.h5 [--data-dir DIR] [--dataset NAME]",
     "Writes the IDX training and test sets of DIR into one HDF5 data file\n"
     "(/train/x, /train/y, /test/x, /test/y; x as uint8, N x 1 x H x W; the root\n"
     "attribute classes, 10), then reloads it and checks that it holds the same bits\n"
     "as the IDX files. DIR defaults to the --dataset's directory (fashion-mnist:\n"
     "/usr/share/datasets/fashion-mnist; mnist has none). An existing FILE.h5 is\n"
     "replaced (through a temporary file and a rename); an output that names an\n"
     "input file is refused.\n",
     convert_args, N_ROWS(convert_args), run_convert},
    {"split", "dssgd data split --data-file FILE.h5 --sites N --out PATTERN [options]",
     "Splits the training set (/train) of FILE.h5 into N site files, PATTERN with %d\n"
     "replaced by the site id 0..N-1. Site p's file holds, in order, the examples of\n"
     "the shard that `dssgd train` draws for participant p with the same --partition,\n"
     "--shard-size, --alpha and --seed and --participants N (the defaults are train's),\n"
     "so training on the site files gives the same bits as training on FILE.h5 with\n"
     "those options. Each file has /train and the root attribute classes; x is stored\n"
     "as uint8 when every pixel is some k/255, else as float32. Each file is written\n"
     "through a temporary file and a rename, reloaded and checked bit for bit. One\n"
     "line per site file (its name, examples, count of each label), then a summary.\n"
     "Refused: an output that names FILE.h5; a directory of PATTERN that does not\n"
     "exist; shards the data cannot give (see dssgd train --partition).\n",
     split_args, N_ROWS(split_args), run_split},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage_top(FILE *out)
{
    fprintf(out, "usage: dssgd data convert --out FILE.h5 [options]\n"
                 "           IDX training and test sets into one HDF5 data file\n"
                 "       dssgd data split --data-file FILE.h5 --sites N --out PATTERN [options]\n"
                 "           a data file's training set into one file per site, the shards\n"
                 "           `dssgd train` draws\n"
                 "       dssgd data COMMAND --help   (a command's options)\n"
                 "Runs in one process, without mpirun. Exit status: 0 done, 2 a usage error,\n"
                 "1 a failure.\n");
}

static void usage_command(const data_command *c, FILE *out)
{
    data_opts d;
    opts_defaults(&d);
    fprintf(out, "usage: %s\n%s\nOptions (long names may be abbreviated; --name=value works "
                 "too):\n", c->synopsis, c->about);
    print_args(out, c->args, c->n_args, &d);
}

int datatool_main(int argc, char **argv)
{
    if (argc < 2) {
        usage_top(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_top(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        const data_command *c = &commands[i];
        if (strcmp(argv[1], c->name) != 0)
            continue;
        data_opts o;
        opts_defaults(&o);
        char err[ERR_LEN] = "";
        int rc = parse_args(c->name, c->args, c->n_args, argc - 1, argv + 1, &o, err);
        if (rc < 0) {
            fprintf(stderr, "dssgd: %s\n", err);
            return EXIT_USAGE;
        }
        if (rc == 1) {
            usage_command(c, stdout);
            return 0;
        }
        return c->run(&o);
    }
    fprintf(stderr, "dssgd: unknown data command '%.64s' (convert or split)\n", argv[1]);
    usage_top(stderr);
    return EXIT_USAGE;
}
