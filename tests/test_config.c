/* test_config: `dssgd train` option parsing: defaults, every option reaching its
 * field, every refusal naming its option, --help, the printed table, re-parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"

#define MAX_ARGS 64

/* Parses "train" followed by the NULL-terminated arguments, starting from
 * the defaults. getopt may permute argv, so it gets a scratch copy. */
static int parse_list(config_t *c, FILE *out, char *err, va_list ap)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = "train";
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = (char *)a;
    }
    argv[argc] = NULL;
    config_defaults(c);
    err[0] = '\0';
    return config_parse(c, argc, argv, out, err);
}

static int parse(config_t *c, char *err, ...)
{
    va_list ap;
    va_start(ap, err);
    int rc = parse_list(c, NULL, err, ap);
    va_end(ap);
    return rc;
}

/* Parsing must succeed. */
static void parse_ok(config_t *c, ...)
{
    char err[ERR_LEN];
    va_list ap;
    va_start(ap, c);
    int rc = parse_list(c, NULL, err, ap);
    va_end(ap);
    if (rc != 0)
        fail_msg("parse failed (%d): %s", rc, err);
}

/* Parsing "train OPT VALUE" must fail with a message containing each of the
 * NULL-terminated phrases (the first is normally the option's name). */
static void assert_refused(const char *opt, const char *value, ...)
{
    config_t c;
    char err[ERR_LEN];
    int rc = value ? parse(&c, err, opt, value, (char *)NULL) : parse(&c, err, opt, (char *)NULL);
    if (rc != -1)
        fail_msg("'%s %s' was accepted (rc %d)", opt, value ? value : "", rc);
    if (err[0] == '\0')
        fail_msg("'%s %s' refused without a message", opt, value ? value : "");
    va_list ap;
    va_start(ap, value);
    const char *phrase;
    while ((phrase = va_arg(ap, const char *)) != NULL)
        if (!strstr(err, phrase))
            fail_msg("message for '%s %s' is \"%s\"; it should contain \"%s\"", opt,
                     value ? value : "", err, phrase);
    va_end(ap);
}

/* ---- defaults and fields --------------------------------------------------- */

static void test_no_options_gives_the_defaults(void **state)
{
    (void)state;
    config_t c, d;
    parse_ok(&c, (char *)NULL);
    config_defaults(&d);
    assert_memory_equal(&c, &d, sizeof c);
    /* the documented defaults (config_usage, docs/DESIGN.md 'Configuration') */
    assert_string_equal(c.dataset, "fashion-mnist");
    assert_string_equal(c.data_dir, "");
    assert_string_equal(c.model, "mlp");
    assert_int_equal(c.mode, MODE_DSSGD);
    assert_int_equal(c.participants, 30);
    assert_int_equal(c.partition, PARTITION_PAPER);
    assert_int_equal(c.shard_size, 600);
    assert_int_equal(c.schedule, SCHEDULE_ROUND_ROBIN);
    assert_int_equal(c.select, SELECT_LARGEST);
    assert_int_equal(c.download, DOWNLOAD_STAT);
    assert_true(isinf(c.gamma) && c.gamma > 0);
    assert_true(c.stat_decay == 1.0);
    assert_int_equal(c.residual, 0);
    assert_string_equal(c.metrics, "");
    assert_int_equal(c.quiet, 0);
}

static void test_every_option_sets_its_field(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--dataset", "mnist", "--data-dir", "/data/mnist", "--eval-size", "500",
             "--model", "784-256-10", "--mode", "centralized", "--participants", "5",
             "--partition", "dirichlet", "--shard-size", "100", "--alpha", "0.25",
             "--schedule", "sync", "--epochs", "3", "--lr", "0.125", "--batch", "64",
             "--seed", "42", "--theta-u", "0.01", "--theta-d", "0.5", "--select", "random",
             "--download", "random", "--gamma", "0.001", "--tau", "0.0001",
             "--stat-decay", "0.75", "--residual", "--metrics", "/tmp/m.csv", "--quiet",
             (char *)NULL);
    /* doubles compared exactly: strtod of the same decimal text */
    assert_string_equal(c.dataset, "mnist");
    assert_string_equal(c.data_dir, "/data/mnist");
    assert_int_equal(c.eval_size, 500);
    assert_string_equal(c.model, "784-256-10");
    assert_int_equal(c.mode, MODE_CENTRALIZED);
    assert_int_equal(c.participants, 5);
    assert_int_equal(c.partition, PARTITION_DIRICHLET);
    assert_int_equal(c.shard_size, 100);
    assert_true(c.alpha == 0.25);
    assert_int_equal(c.schedule, SCHEDULE_SYNC);
    assert_int_equal(c.epochs, 3);
    assert_true(c.lr == 0.125);
    assert_int_equal(c.batch, 64);
    assert_int_equal(c.seed, 42);
    assert_true(c.theta_u == 0.01);
    assert_true(c.theta_d == 0.5);
    assert_int_equal(c.select, SELECT_RANDOM);
    assert_int_equal(c.download, DOWNLOAD_RANDOM);
    assert_true(c.gamma == 0.001);
    assert_true(c.tau == 0.0001);
    assert_true(c.stat_decay == 0.75);
    assert_int_equal(c.residual, 1);
    assert_string_equal(c.metrics, "/tmp/m.csv");
    assert_int_equal(c.quiet, 1);
}

static void test_every_choice_maps_to_its_value(void **state)
{
    (void)state;
    config_t c;
    static const char *const modes[] = {"dssgd", "centralized", "standalone"};
    for (int i = 0; i < 3; i++) {
        parse_ok(&c, "--mode", modes[i], (char *)NULL);
        assert_int_equal(c.mode, i);
        assert_string_equal(config_mode_name(c.mode), modes[i]);
    }
    static const char *const schedules[] = {"round-robin", "random", "async", "sync"};
    for (int i = 0; i < 4; i++) {
        parse_ok(&c, "--schedule", schedules[i], (char *)NULL);
        assert_int_equal(c.schedule, i);
        assert_string_equal(config_schedule_name(c.schedule), schedules[i]);
    }
    static const char *const selects[] = {"largest", "random"};
    for (int i = 0; i < 2; i++) {
        parse_ok(&c, "--select", selects[i], (char *)NULL);
        assert_int_equal(c.select, i);
        assert_string_equal(config_select_name(c.select), selects[i]);
    }
    static const char *const downloads[] = {"stat", "random", "all"};
    for (int i = 0; i < 3; i++) {
        parse_ok(&c, "--download", downloads[i], (char *)NULL);
        assert_int_equal(c.download, i);
        assert_string_equal(config_download_name(c.download), downloads[i]);
    }
    static const char *const partitions[] = {"iid", "paper", "dirichlet"};
    for (int i = 0; i < 3; i++) {
        parse_ok(&c, "--partition", partitions[i], (char *)NULL);
        assert_int_equal(c.partition, i);
        assert_string_equal(config_partition_name(c.partition), partitions[i]);
    }
    parse_ok(&c, "--dataset", "fashion-mnist", (char *)NULL);
    assert_string_equal(c.dataset, "fashion-mnist");
}

static void test_equals_form_and_range_edges_accepted(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--lr=0.5", "--batch=1", "--theta-u", "1", "--theta-d", "1", "--stat-decay",
             "1", "--tau", "0", "--batch", "4096", "--shard-size", "0", "--eval-size", "0",
             (char *)NULL);
    assert_true(c.lr == 0.5);
    assert_int_equal(c.batch, 4096);
    assert_true(c.theta_u == 1.0 && c.theta_d == 1.0 && c.stat_decay == 1.0 && c.tau == 0.0);
    assert_int_equal(c.shard_size, 0);
}

static void test_gamma_inf_accepted(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--gamma", "0.5", "--gamma", "inf", (char *)NULL);
    assert_true(isinf(c.gamma) && c.gamma > 0);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_refuses_nonpositive_lr(void **state)
{
    (void)state;
    assert_refused("--lr", "0", "--lr", "range", (char *)NULL);
    assert_refused("--lr", "-0.1", "--lr", "range", (char *)NULL);
}

static void test_refuses_batch_out_of_range(void **state)
{
    (void)state;
    assert_refused("--batch", "0", "--batch", "range", (char *)NULL);
    assert_refused("--batch", "5000", "--batch", "range", (char *)NULL);
}

static void test_refuses_zero_epochs(void **state)
{
    (void)state;
    assert_refused("--epochs", "0", "--epochs", (char *)NULL);
}

/* --select svt spends its epsilon once per epoch, on one upload. */
static void test_refuses_local_steps_out_of_range_or_with_svt(void **state)
{
    (void)state;
    assert_refused("--local-steps", "-1", "--local-steps", "range", (char *)NULL);
    config_t c;
    char err[ERR_LEN];
    assert_int_equal(parse(&c, err, "--select", "svt", "--dp-epsilon", "1", "--local-steps", "2",
                           (char *)NULL), -1);
    assert_non_null(strstr(err, "--local-steps applies to --select largest or random"));
    parse_ok(&c, "--local-steps", "2", (char *)NULL);
    assert_int_equal(c.local_steps, 2);
}

/* The defaults that depend on the schedule: sync, and async with every
 * participant in flight (simulated S >= N, or a worker rank per
 * participant) or dense (theta_u x uploads in flight >= 4), exchange
 * every 5 mini-batches with a momentum of 0.9;
 * the other schedules once an epoch with 0.7; given values win; a server
 * momentum waits out one epoch wherever there is one. The server's step is
 * 1 + theta_u for sync and async with every participant in flight (under
 * mean and mix), else 1. */
static void test_defaults_that_depend_on_the_schedule(void **state)
{
    (void)state;
    static const struct {
        const char *args[10];
        int ranks, local_steps, all_in_flight, warmup;
        double momentum, server_lr;
    } cases[] = {
        {{"--schedule", "sync"}, 1, 5, 0, 1, 0.9, 1.1},
        {{"--schedule", "sync"}, 8, 5, 0, 1, 0.9, 1.1},
        {{"--schedule", "round-robin"}, 31, 0, 0, 0, 0.7, 1},
        {{"--schedule", "async"}, 1, 0, 0, 1, 0.7, 1},
        {{"--schedule", "async"}, 30, 0, 0, 1, 0.7, 1}, /* 29 workers for 30 */
        {{"--schedule", "async"}, 31, 5, 1, 1, 0.9, 1.1},
        {{"--schedule", "async", "--simulate-staleness", "29"}, 1, 0, 0, 1, 0.7, 1},
        {{"--schedule", "async", "--simulate-staleness", "30"}, 1, 5, 1, 1, 0.9, 1.1},
        {{"--schedule", "async", "--simulate-staleness", "30", "--local-steps", "0"}, 1, 0, 1, 1,
         0.7, 1.1},
        {{"--schedule", "async", "--local-steps", "3"}, 31, 3, 1, 1, 0.9, 1.1},
        {{"--schedule", "sync", "--server-momentum", "0.5"}, 1, 5, 0, 1, 0.5, 1.1},
        {{"--schedule", "sync", "--momentum-warmup", "0"}, 1, 5, 0, 0, 0.9, 1.1},
        {{"--schedule", "sync", "--select", "svt", "--dp-epsilon", "1", "--gamma", "1"}, 1, 0, 0, 1,
         0.7, 1.1},
        /* dense: theta_u x uploads in flight >= 4 */
        {{"--schedule", "async", "--theta-u", "1"}, 1, 0, 0, 1, 0.7, 1},  /* one in flight */
        {{"--schedule", "async", "--theta-u", "1"}, 4, 0, 0, 1, 0.7, 1},  /* 3 workers */
        {{"--schedule", "async", "--theta-u", "1"}, 5, 5, 0, 1, 0.9, 1},  /* 4 workers */
        {{"--schedule", "async", "--theta-u", "1", "--simulate-staleness", "3"}, 1, 0, 0, 1, 0.7, 1},
        {{"--schedule", "async", "--theta-u", "1", "--simulate-staleness", "4"}, 1, 5, 0, 1, 0.9, 1},
        {{"--schedule", "async", "--theta-u", "0.5", "--simulate-staleness", "8"}, 1, 5, 0, 1, 0.9, 1},
        {{"--schedule", "async", "--theta-u", "0.5", "--simulate-staleness", "7"}, 1, 0, 0, 1, 0.7, 1},
        {{"--schedule", "async", "--simulate-staleness", "15"}, 1, 0, 0, 1, 0.7, 1}, /* 0.1 x 15 */
        {{"--schedule", "async", "--theta-u", "1", "--simulate-staleness", "4", "--local-steps",
          "0"}, 1, 0, 0, 1, 0.7, 1},
        /* the server's step: 1 + theta_u where a round's uploads come from one state */
        {{"--schedule", "sync", "--theta-u", "1"}, 1, 5, 0, 1, 0.9, 2},
        {{"--schedule", "sync", "--theta-u", "0.25"}, 4, 5, 0, 1, 0.9, 1.25},
        {{"--schedule", "async", "--theta-u", "1", "--simulate-staleness", "30"}, 1, 5, 1, 1, 0.9,
         2},
        {{"--schedule", "sync", "--server-lr", "0.5"}, 1, 5, 0, 1, 0.9, 0.5},
        {{"--schedule", "sync", "--aggregate", "sum"}, 1, 5, 0, 0, 0.7, 1},
        {{"--schedule", "round-robin", "--theta-u", "1"}, 1, 0, 0, 0, 0.7, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_t c;
        const char *const *a = cases[i].args;
        parse_ok(&c, "--participants", "30", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                 a[8], a[9], (char *)NULL);
        c.ranks = cases[i].ranks;
        if (config_local_steps(&c) != cases[i].local_steps ||
            config_async_all_in_flight(&c) != cases[i].all_in_flight ||
            config_momentum_warmup(&c) != cases[i].warmup ||
            config_server_momentum(&c) != cases[i].momentum ||
            fabs(config_server_lr(&c) - cases[i].server_lr) > 1e-12)
            fail_msg("case %zu (%s %s %s %s, %d ranks): local steps %d, all in flight %d, "
                     "warm-up %d, momentum %g, server step %g", i, a[0], a[1], a[2] ? a[2] : "",
                     a[3] ? a[3] : "", cases[i].ranks, config_local_steps(&c),
                     config_async_all_in_flight(&c), config_momentum_warmup(&c),
                     config_server_momentum(&c), config_server_lr(&c));
    }
}

/* --dataset h5 and its files: what each needs, and --participant-data's
 * pattern (one %d, %% for a '%', nothing else) expanded per participant. */
static void test_h5_data_options(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN], path[64];
    parse_ok(&c, "--dataset", "h5", "--data-file", "all.h5", "--participant-data",
             "site%%-%d.h5", (char *)NULL);
    assert_true(config_is_h5(&c));
    assert_string_equal(c.data_file, "all.h5");
    assert_int_equal(config_participant_file(&c, 12, path, sizeof path), 0);
    assert_string_equal(path, "site%-12.h5");
    assert_int_equal(config_participant_file(&c, 12, path, 8), -1); /* does not fit */
    static const struct {
        const char *args[6], *phrase;
    } bad[] = {
        {{"--dataset", "h5"}, "--dataset h5 needs --data-file"},
        {{"--data-file", "all.h5"}, "apply to --dataset h5"},
        {{"--participant-data", "s-%d.h5"}, "apply to --dataset h5"},
        {{"--dataset", "h5", "--data-file", ""}, "--data-file: empty path"},
        {{"--dataset", "h5", "--data-file", "a.h5", "--participant-data", "s.h5"},
         "needs exactly one %d"},
        {{"--dataset", "h5", "--data-file", "a.h5", "--participant-data", "s-%d-%d.h5"},
         "has 2"},
        {{"--dataset", "h5", "--data-file", "a.h5", "--participant-data", "s-%s.h5"},
         "'%s' is not allowed"},
        {{"--dataset", "h5", "--data-file", "a.h5", "--participant-data", "s-%5d.h5"},
         "'%5' is not allowed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *const *a = bad[i].args;
        int rc = parse(&c, err, a[0], a[1], a[2], a[3], a[4], a[5], (char *)NULL);
        if (rc != -1 || !strstr(err, bad[i].phrase))
            fail_msg("case %zu: rc %d, '%s' lacks '%s'", i, rc, err, bad[i].phrase);
    }
    assert_int_equal(parse(&c, err, "--dataset", "h5", "--data-file", "a.h5",
                           "--participant-data", "s-%d.h5", "--audit", "x.csv", (char *)NULL),
                     -1);
    assert_non_null(strstr(err, "--audit needs the participants' records at the server"));
}

/* --dpsgd and its options: each reaches its field, the defaults are C = 1
 * and delta = 1e-5, and it works in every mode and with --local-steps. */
static void test_dpsgd_options_set_their_fields(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--dpsgd", "--dp-noise", "1.1", (char *)NULL);
    assert_int_equal(c.dpsgd, 1);
    assert_true(c.dp_noise == 1.1 && c.dp_clip == 1.0 && c.dp_delta == 1e-5);
    assert_true(c.dp_target_epsilon == 0 && isinf(c.dp_max_epsilon));
    parse_ok(&c, "--dpsgd", "--dp-target-epsilon", "4", "--dp-clip", "0.5", "--dp-delta",
             "1e-6", "--dp-max-epsilon", "8", "--local-steps", "3", (char *)NULL);
    assert_true(c.dp_target_epsilon == 4 && c.dp_clip == 0.5 && c.dp_delta == 1e-6);
    assert_true(c.dp_max_epsilon == 8 && c.dp_noise < 0 && c.local_steps == 3);
    parse_ok(&c, "--dpsgd", "--dp-noise", "0", "--mode", "standalone", (char *)NULL);
    assert_true(c.dp_noise == 0 && c.mode == MODE_STANDALONE);
    /* centralized: the union's size is checked when it is known, not the shard's */
    parse_ok(&c, "--dpsgd", "--dp-noise", "2", "--mode", "centralized", "--batch", "700",
             (char *)NULL);
}

/* Every refusal of issue 15, each naming what is wrong. */
static void test_dpsgd_refusals(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    struct { const char *args[10]; const char *phrase; } cases[] = {
        {{"--dpsgd"}, "--dpsgd needs --dp-noise SIGMA or --dp-target-epsilon E"},
        {{"--dpsgd", "--dp-noise", "1", "--dp-target-epsilon", "2"}, "not both"},
        {{"--dpsgd", "--dp-noise", "1", "--select", "svt", "--dp-epsilon", "1", "--gamma",
          "0.1"}, "--dpsgd and --select svt cannot be combined"},
        {{"--dpsgd", "--dp-noise", "1", "--dp-clip", "0"}, "--dp-clip: 0 is out of range"},
        {{"--dpsgd", "--dp-noise", "1", "--dp-clip", "-1"}, "--dp-clip: -1 is out of range"},
        {{"--dpsgd", "--dp-noise", "-0.5"}, "--dp-noise: -0.5 is out of range"},
        {{"--dpsgd", "--dp-noise", "1", "--dp-delta", "0"}, "--dp-delta: 0 is out of range"},
        {{"--dpsgd", "--dp-noise", "1", "--dp-delta", "1"}, "--dp-delta: 1 is out of range"},
        {{"--dpsgd", "--dp-noise", "1", "--dp-delta", "0.002"},
         "--dp-delta 0.002 is not below 1 / --shard-size"},
        {{"--dpsgd", "--dp-noise", "1", "--batch", "700"},
         "--batch 700 is larger than --shard-size 600"},
        {{"--dpsgd", "--dp-target-epsilon", "0"}, "--dp-target-epsilon: 0 is out of range"},
        {{"--dp-noise", "1"}, "apply only with --dpsgd"},
        {{"--dp-clip", "2"}, "apply only with --dpsgd"},
        {{"--dp-max-epsilon", "5"}, "--dp-max-epsilon applies only with --select svt or --dpsgd"},
        {{"--dp-epsilon", "5"}, "--dp-epsilon applies only with --select svt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].args;
        int rc = parse(&c, err, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
        if (rc != -1 || !strstr(err, cases[i].phrase))
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err,
                     cases[i].phrase);
    }
}

/* The server's step in force is saved: a sync checkpoint made with step 1
 * (so any made before the default became 1 + theta_u) does not resume
 * under the new default, and the refusal shows both values as people read
 * them, with the option that keeps the checkpoint's. */
static void test_server_step_resume_rule(void **state)
{
    (void)state;
    config_t a, b;
    char err[ERR_LEN], text[1 << 14];
    parse_ok(&a, "--schedule", "sync", "--server-lr", "1", (char *)NULL);
    assert_true(config_to_text(&a, text, sizeof text) > 0);
    parse_ok(&b, "--schedule", "sync", (char *)NULL);
    assert_int_equal(config_check_resume(&b, text, err), -1);
    assert_non_null(strstr(err, "--server-lr differs: the checkpoint was made with 1, this run "
                                "has 1.1 (resume with --server-lr 1 to keep it"));
    parse_ok(&b, "--schedule", "sync", "--server-lr", "1", (char *)NULL);
    assert_int_equal(config_check_resume(&b, text, err), 0);
    parse_ok(&a, "--schedule", "sync", (char *)NULL); /* the default saved in force */
    assert_true(config_to_text(&a, text, sizeof text) > 0);
    assert_int_equal(config_check_resume(&a, text, err), 0);
}

/* Resume rules: --dpsgd, --dp-clip, --dp-noise (the resolved sigma) and
 * --dp-delta must match; --dp-target-epsilon may differ (it only chose
 * sigma), and a target that gives another sigma is told how to keep the
 * checkpoint's. A checkpoint from before --dpsgd resumes only without it. */
static void test_dpsgd_resume_rules(void **state)
{
    (void)state;
    config_t a, b;
    char err[ERR_LEN], text[1 << 14];
    parse_ok(&a, "--dpsgd", "--dp-noise", "1.25", (char *)NULL);
    assert_true(config_to_text(&a, text, sizeof text) > 0);
    assert_non_null(strstr(text, "dpsgd = 1\n"));
    assert_non_null(strstr(text, "dp-noise = 1.25\n"));
    b = a;
    assert_int_equal(config_check_resume(&b, text, err), 0);
    b.dp_clip = 2;
    assert_int_equal(config_check_resume(&b, text, err), -1);
    assert_non_null(strstr(err, "--dp-clip differs"));
    b = a;
    b.dp_delta = 1e-6;
    assert_int_equal(config_check_resume(&b, text, err), -1);
    assert_non_null(strstr(err, "--dp-delta differs"));
    b = a;
    b.dpsgd = 0;
    assert_int_equal(config_check_resume(&b, text, err), -1);
    assert_non_null(strstr(err, "--dpsgd differs"));
    /* a target: the driver resolves it into dp_noise before the check */
    b = a;
    b.dp_target_epsilon = 4;
    assert_int_equal(config_check_resume(&b, text, err), 0);
    b.dp_noise = 1.5;
    b.epochs = 40;
    assert_int_equal(config_check_resume(&b, text, err), -1);
    assert_non_null(strstr(err, "resume with --dp-noise 1.25 instead"));
    /* the text of a checkpoint written before --dpsgd existed */
    config_t old;
    parse_ok(&old, (char *)NULL);
    assert_true(config_to_text(&old, text, sizeof text) > 0);
    char *cut = strstr(text, "dpsgd = ");
    assert_non_null(cut);
    char *end = strstr(cut, "dp-delta = ");
    memmove(cut, strchr(end, '\n') + 1, strlen(strchr(end, '\n') + 1) + 1);
    assert_null(strstr(text, "dpsgd"));
    assert_null(strstr(text, "dp-clip"));
    assert_int_equal(config_check_resume(&old, text, err), 0);
    assert_int_equal(config_check_resume(&a, text, err), -1);
    assert_non_null(strstr(err, "--dpsgd differs"));
}

/* --audit and its options (issue 16): fields, defaults, the holdout in
 * force, every refusal. */
static void test_audit_options(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    parse_ok(&c, (char *)NULL);
    assert_string_equal(c.audit, "");
    assert_int_equal(c.audit_every, 5);
    assert_int_equal(c.audit_sample, 200);
    assert_int_equal(config_audit_holdout(&c), 0); /* no audit: no holdout, same shards */
    parse_ok(&c, "--audit", "/tmp/a.csv", (char *)NULL);
    assert_int_equal(config_audit_holdout(&c), CONFIG_AUDIT_HOLDOUT);
    parse_ok(&c, "--audit", "/tmp/a.csv", "--audit-every", "3", "--audit-holdout", "500",
             "--audit-sample", "50", "--audit-scores", "/tmp/s.csv", (char *)NULL);
    assert_string_equal(c.audit, "/tmp/a.csv");
    assert_string_equal(c.audit_scores, "/tmp/s.csv");
    assert_int_equal(c.audit_every, 3);
    assert_int_equal(c.audit_sample, 50);
    assert_int_equal(config_audit_holdout(&c), 500);
    parse_ok(&c, "--audit-holdout", "700", (char *)NULL); /* the same training, unaudited */
    assert_int_equal(config_audit_holdout(&c), 700);
    struct { const char *args[7]; const char *phrase; } cases[] = {
        {{"--audit", "/tmp/a.csv", "--audit-every", "0"}, "--audit-every: 0 is out of range"},
        {{"--audit", "/tmp/a.csv", "--audit-holdout", "0"}, "--audit-holdout: 0 is out of range"},
        {{"--audit", "/tmp/a.csv", "--audit-sample", "0"}, "--audit-sample: 0 is out of range"},
        {{"--audit", ""}, "--audit: empty path"},
        {{"--audit", "/tmp/a.csv", "--audit-scores", ""}, "--audit-scores: empty path"},
        {{"--audit-scores", "/tmp/s.csv"}, "--audit-scores needs --audit FILE"},
        {{"--audit", "/tmp/a.csv", "--mode", "centralized"},
         "--audit applies to modes dssgd and standalone"},
        {{"--audit", "/tmp/a.csv", "--metrics", "/tmp/a.csv"},
         "--audit and --metrics name one file"},
        {{"--audit", "/tmp/a.csv", "--audit-scores", "/tmp/a.csv"},
         "--audit and --audit-scores name one file"},
        {{"--audit", "/tmp/a.csv", "--audit-scores", "/tmp/m.csv", "--metrics", "/tmp/m.csv"},
         "--audit-scores and --metrics name one file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].args;
        int rc = parse(&c, err, a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
        if (rc != -1 || !strstr(err, cases[i].phrase))
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err,
                     cases[i].phrase);
    }
    /* --audit-every without --audit does nothing: a warning names it */
    char buf[1024];
    parse_ok(&c, "--audit-every", "2", (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 1);
    assert_non_null(strstr(buf, "--audit-every 2 is ignored"));
}

/* The holdout decides the partition: a resume keeps the holdout in force
 * (--audit alone means 2000), whether or not it audits; the audit's other
 * options may change. A checkpoint from before the audit had no holdout. */
static void test_audit_resume_rules(void **state)
{
    (void)state;
    config_t a, b;
    char err[ERR_LEN], text[1 << 14];
    parse_ok(&a, "--audit", "/tmp/a.csv", (char *)NULL);
    assert_true(config_to_text(&a, text, sizeof text) > 0);
    assert_non_null(strstr(text, "audit-holdout = 2000\n"));
    parse_ok(&b, "--audit-holdout", "2000", (char *)NULL);
    assert_int_equal(config_check_resume(&b, text, err), 0);
    parse_ok(&b, "--audit", "/tmp/b.csv", "--audit-every", "1", "--audit-sample", "10",
             (char *)NULL);
    assert_int_equal(config_check_resume(&b, text, err), 0);
    parse_ok(&b, (char *)NULL);
    assert_int_equal(config_check_resume(&b, text, err), -1);
    assert_non_null(strstr(err, "--audit-holdout differs"));
    /* the text of a checkpoint written before the audit existed */
    parse_ok(&b, (char *)NULL);
    assert_true(config_to_text(&b, text, sizeof text) > 0);
    char *cut = strstr(text, "audit-every = ");
    assert_non_null(cut);
    *cut = '\0';
    assert_null(strstr(text, "audit"));
    assert_int_equal(config_check_resume(&b, text, err), 0);
    assert_int_equal(config_check_resume(&a, text, err), -1);
    assert_non_null(strstr(err, "--audit-holdout differs"));
}

static void test_refuses_zero_participants(void **state)
{
    (void)state;
    assert_refused("--participants", "0", "--participants", (char *)NULL);
}

static void test_refuses_theta_u_outside_zero_one(void **state)
{
    (void)state;
    assert_refused("--theta-u", "0", "--theta-u", (char *)NULL);
    assert_refused("--theta-u", "1.5", "--theta-u", (char *)NULL);
}

static void test_refuses_zero_theta_d(void **state)
{
    (void)state;
    assert_refused("--theta-d", "0", "--theta-d", (char *)NULL);
}

static void test_refuses_nonpositive_gamma(void **state)
{
    (void)state;
    assert_refused("--gamma", "0", "--gamma", (char *)NULL);
    assert_refused("--gamma", "-1", "--gamma", (char *)NULL);
    assert_refused("--gamma", "-inf", "--gamma", (char *)NULL);
}

static void test_refuses_negative_tau(void **state)
{
    (void)state;
    assert_refused("--tau", "-1", "--tau", (char *)NULL);
}

static void test_refuses_stat_decay_outside_zero_one(void **state)
{
    (void)state;
    assert_refused("--stat-decay", "0", "--stat-decay", (char *)NULL);
    assert_refused("--stat-decay", "1.5", "--stat-decay", (char *)NULL);
}

static void test_refuses_nonpositive_alpha(void **state)
{
    (void)state;
    assert_refused("--alpha", "0", "--alpha", (char *)NULL);
    assert_refused("--alpha", "-2", "--alpha", (char *)NULL);
}

static void test_refuses_non_numeric_values(void **state)
{
    (void)state;
    static const char *const numeric[] = {
        "--eval-size", "--participants", "--shard-size", "--alpha", "--epochs", "--lr",
        "--batch", "--seed", "--theta-u", "--theta-d", "--gamma", "--tau", "--stat-decay",
    };
    static const char *const bad[] = {"abc", "1e", "", "0x", "nan"};
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++)
        for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++)
            assert_refused(numeric[i], bad[j], numeric[i], (char *)NULL);
}

static void test_refuses_trailing_garbage(void **state)
{
    (void)state;
    assert_refused("--lr", "0.1x", "--lr", "0.1x", (char *)NULL);
    assert_refused("--theta-u", "0.1 ", "--theta-u", (char *)NULL);
    assert_refused("--batch", "32x", "--batch", (char *)NULL);
    assert_refused("--batch", "1.5", "--batch", (char *)NULL);
    assert_refused("--epochs", "1e3", "--epochs", (char *)NULL);
}

static void test_refuses_unknown_choice_listing_the_choices(void **state)
{
    (void)state;
    assert_refused("--dataset", "cifar", "--dataset", "cifar", "fashion-mnist", "mnist",
                   (char *)NULL);
    assert_refused("--mode", "federated", "--mode", "dssgd", "centralized", "standalone",
                   (char *)NULL);
    assert_refused("--schedule", "parallel", "--schedule", "round-robin", "random", "async",
                   "sync", (char *)NULL);
    assert_refused("--select", "svt2", "--select", "largest", "random", (char *)NULL);
    assert_refused("--download", "none", "--download", "stat", "random", "all", (char *)NULL);
    assert_refused("--partition", "noniid", "--partition", "iid", "paper", "dirichlet",
                   (char *)NULL);
    assert_refused("--mode", "", "--mode", (char *)NULL);
    assert_refused("--schedule", "Sync", "--schedule", (char *)NULL); /* case matters */
}

static void test_refuses_unknown_long_option(void **state)
{
    (void)state;
    assert_refused("--bogus", NULL, "--bogus", (char *)NULL);
    assert_refused("--learning-rate", "0.1", "--learning-rate", (char *)NULL);
}

/* getopt_long takes an abbreviation of exactly one option; an abbreviation
 * of several is named as such, with the candidates. */
static void test_refuses_ambiguous_prefix_naming_the_candidates(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    const char *dp = "ambiguous option '--dp' (could be --dp-epsilon, --dp-max-epsilon, "
                     "--dpsgd, --dp-clip, --dp-noise, --dp-target-epsilon, --dp-delta)";
    assert_int_equal(parse(&c, err, "--dp", "1", (char *)NULL), -1);
    assert_string_equal(err, dp);
    assert_int_equal(parse(&c, err, "--dp=1", (char *)NULL), -1);
    assert_string_equal(err, dp);
    assert_refused("--theta", "0.5", "ambiguous option '--theta'", "--theta-u", "--theta-d",
                   (char *)NULL);
    assert_refused("--check", "f.h5", "--checkpoint, --checkpoint-every", (char *)NULL);
    assert_refused("--s", "1", "--shard-size", "--seed", "--select", "--stat-decay",
                   (char *)NULL);
    assert_int_equal(parse(&c, err, "--he", (char *)NULL), 1); /* only --help begins so */
    assert_refused("--dpx", "1", "unknown option '--dpx'", (char *)NULL);
}

static void test_unambiguous_abbreviations_still_accepted(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--epo", "3", "--stat", "0.5", "--resid", "--dp-max", "4", "--select", "svt",
             "--dp-e", "1", "--gam", "0.01", (char *)NULL);
    assert_int_equal(c.epochs, 3);
    assert_true(c.stat_decay == 0.5);
    assert_int_equal(c.residual, 1);
    assert_true(c.dp_max_epsilon == 4.0 && c.dp_epsilon == 1.0);
    /* an exact name wins over the longer names it begins */
    parse_ok(&c, "--checkpoint", "f.h5", (char *)NULL);
    assert_string_equal(c.checkpoint, "f.h5");
}

static void test_refuses_a_value_given_to_a_flag(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    assert_int_equal(parse(&c, err, "--residual=1", (char *)NULL), -1);
    assert_string_equal(err, "--residual takes no value, given '--residual=1'");
    assert_refused("--quiet=yes", NULL, "--quiet takes no value", (char *)NULL);
    assert_refused("--help=x", NULL, "--help takes no value", (char *)NULL);
}

/* strtod reports ERANGE for overflow and for underflow, subnormals
 * included. A subnormal is a number and is range-checked like any other;
 * underflow to 0 and overflow are named as such, not "not a number". */
static void test_subnormal_accepted_and_range_checked(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--tau", "1e-310", "--lr", "4.9e-324", (char *)NULL);
    assert_true(c.tau == 1e-310 && c.tau > 0);
    assert_true(c.lr > 0 && c.lr < 1e-323);
    assert_refused("--lr", "-1e-310", "--lr", "out of range (0, 1000]", (char *)NULL);
    assert_refused("--tau", "-1e-310", "--tau", "out of range [0, inf]", (char *)NULL);
    assert_refused("--lr", "1e-400", "--lr: 1e-400 is too small for a double (it would be 0)",
                   (char *)NULL);
    assert_refused("--gamma", "1e999", "--gamma: 1e999 is too large for a double",
                   (char *)NULL);
    assert_refused("--alpha", "-1e999", "--alpha: -1e999 is too large", (char *)NULL);
    /* an integer beyond long long is out of range, not "not an integer" */
    assert_refused("--seed", "99999999999999999999", "--seed: 99999999999999999999 is out of "
                   "range [0, 9223372036854775807]", (char *)NULL);
    assert_refused("--epochs", "-99999999999999999999", "--epochs", "out of range", (char *)NULL);
}

/* config_ignored: the options set away from their defaults that the
 * configuration does not use, one line each. */
static void test_ignored_options_are_listed(void **state)
{
    (void)state;
    config_t c;
    char buf[1024];
    parse_ok(&c, (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    parse_ok(&c, "--mode", "centralized", "--theta-u", "0.2", "--residual", "--schedule", "sync",
             "--rank-timeout", "5", "--lr", "0.1", (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 4);
    assert_string_equal(buf,
        "--schedule sync is ignored: it has an effect only with --mode dssgd\n"
        "--theta-u 0.2 is ignored: it has an effect only with --mode dssgd\n"
        "--residual is ignored: it has an effect only with --mode dssgd\n"
        "--rank-timeout 5 is ignored: it has an effect only with --mode dssgd or standalone\n");
    parse_ok(&c, "--mode", "standalone", "--aggregate", "mean", "--rank-timeout", "5",
             (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 1);
    assert_string_equal(buf, "--aggregate mean is ignored: it has an effect only with --mode "
                             "dssgd\n");
    /* within mode dssgd, what another option switches off */
    parse_ok(&c, "--tau", "0.5", "--alpha", "2", "--staleness-exponent", "2", (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 3);
    assert_string_equal(buf,
        "--alpha 2 is ignored: it has an effect only with --partition dirichlet on one "
        "training set\n"
        "--tau 0.5 is ignored: it has an effect only with --select random or svt\n"
        "--staleness-exponent 2 is ignored: it has an effect only with --aggregate staleness "
        "or mix (or auto with --schedule async)\n");
    parse_ok(&c, "--select", "random", "--tau", "0.5", "--partition", "dirichlet", "--alpha",
             "2", "--schedule", "async", "--staleness-exponent", "2", (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 0);
    /* site files are the shards; an HDF5 file has no data directory */
    parse_ok(&c, "--dataset", "h5", "--data-file", "d.h5", "--participant-data", "s-%d.h5",
             "--partition", "iid", "--shard-size", "100", "--data-dir", "idx", (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 3);
    assert_string_equal(buf,
        "--data-dir idx is ignored: it has an effect only with --dataset fashion-mnist or "
        "mnist\n"
        "--partition iid is ignored: it has an effect only with one training set (not "
        "--participant-data)\n"
        "--shard-size 100 is ignored: it has an effect only with one training set (not "
        "--participant-data)\n");
    /* a value equal to the default is not seen */
    parse_ok(&c, "--mode", "centralized", "--theta-u", "0.1", (char *)NULL);
    assert_int_equal(config_ignored(&c, buf, sizeof buf), 0);
    /* too small a buffer: -1, and whole lines only */
    parse_ok(&c, "--mode", "centralized", "--theta-u", "0.2", "--theta-d", "0.5", (char *)NULL);
    char small[80];
    assert_int_equal(config_ignored(&c, small, sizeof small), -1);
    assert_string_equal(small, "--theta-u 0.2 is ignored: it has an effect only with --mode "
                               "dssgd\n");
}

static void test_refuses_missing_value(void **state)
{
    (void)state;
    assert_refused("--lr", NULL, "--lr", (char *)NULL);
    assert_refused("--metrics", NULL, "--metrics", (char *)NULL);
    assert_refused("--dataset", NULL, "--dataset", (char *)NULL);
}

static void test_refuses_stray_positional_argument(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    assert_int_equal(parse(&c, err, "--lr", "0.1", "extra", (char *)NULL), -1);
    if (!strstr(err, "extra"))
        fail_msg("message \"%s\" should name 'extra'", err);
    assert_int_equal(parse(&c, err, "0.1", "--epochs", "2", (char *)NULL), -1);
    if (!strstr(err, "0.1"))
        fail_msg("message \"%s\" should name '0.1'", err);
}

static void test_refuses_mnist_without_data_dir(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    assert_int_equal(parse(&c, err, "--dataset", "mnist", (char *)NULL), -1);
    if (!strstr(err, "--data-dir") || !strstr(err, "mnist"))
        fail_msg("message \"%s\" should name --dataset mnist and --data-dir", err);
    parse_ok(&c, "--dataset", "mnist", "--data-dir", "/somewhere", (char *)NULL);
    parse_ok(&c, "--data-dir", "/somewhere", "--dataset", "mnist", (char *)NULL);
}

static void test_refuses_overlong_path(void **state)
{
    (void)state;
    char *path = malloc(CONFIG_PATH_LEN + 1);
    assert_non_null(path);
    memset(path, 'a', CONFIG_PATH_LEN);
    path[CONFIG_PATH_LEN] = '\0';
    assert_refused("--metrics", path, "--metrics", (char *)NULL);
    assert_refused("--data-dir", path, "--data-dir", (char *)NULL);
    path[CONFIG_PATH_LEN - 1] = '\0'; /* exactly fits with its terminator */
    config_t c;
    parse_ok(&c, "--metrics", path, (char *)NULL);
    assert_int_equal(strlen(c.metrics), CONFIG_PATH_LEN - 1);
    free(path);
}

/* ---- help and the table ---------------------------------------------------- */

static void test_help_returns_one_and_lists_every_option(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    config_t c;
    char err[ERR_LEN] = "";
    char *argv[] = {"train", "--lr", "0.1", "--help", NULL};
    config_defaults(&c);
    assert_int_equal(config_parse(&c, 4, argv, out, err), 1);
    assert_int_equal(fclose(out), 0);
    assert_non_null(text);
    static const char *const names[] = {
        "--dataset", "--data-dir", "--eval-size", "--model", "--mode", "--participants",
        "--partition", "--shard-size", "--alpha", "--schedule", "--epochs", "--lr", "--batch",
        "--seed", "--theta-u", "--theta-d", "--select", "--download", "--gamma", "--tau",
        "--stat-decay", "--residual", "--metrics", "--quiet", "--help",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strstr(text, names[i]))
            fail_msg("usage does not mention %s", names[i]);
    /* the real default of --participants, on its own line */
    char *line = strstr(text, "--participants");
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    *eol = '\0';
    if (!strstr(line, "30"))
        fail_msg("the --participants line \"%s\" does not show the default 30", line);
    free(text);
}

/* The value cell of the table row for key, trimmed; "" if there is none. */
static void table_value(const char *table, const char *key, char *out, size_t len)
{
    /* Rows are "| key<padding> | value<padding> |": match the key cell
     * whatever the column's width. */
    out[0] = '\0';
    const char *p = NULL;
    size_t klen = strlen(key);
    for (const char *row = table; (row = strstr(row, "| ")) != NULL; row++) {
        const char *k = row + 2;
        if (strncmp(k, key, klen) != 0)
            continue;
        const char *q = k + klen;
        while (*q == ' ')
            q++;
        if (q[0] == '|' && q[1] == ' ' && q > k + klen) {
            p = q + 2;
            break;
        }
    }
    if (!p)
        return;
    const char *end = strstr(p, " |");
    assert_non_null(end);
    while (end > p && end[-1] == ' ')
        end--;
    size_t n = (size_t)(end - p) < len - 1 ? (size_t)(end - p) : len - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static void assert_row(const char *table, const char *key, const char *want)
{
    char got[256];
    table_value(table, key, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("table row '%s' is \"%s\", expected \"%s\"\n%s", key, got, want, table);
}

static void test_print_shows_resolved_values(void **state)
{
    (void)state;
    config_t c;
    parse_ok(&c, "--participants", "7", "--lr", "0.125", "--seed", "99", "--schedule", "sync",
             "--theta-u", "0.01", "--residual", "--metrics", "out.csv", "--epochs", "4",
             "--batch", "16", (char *)NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    config_print(&c, out);
    assert_int_equal(fclose(out), 0);
    assert_row(text, "mode", "dssgd");
    assert_row(text, "dataset", "fashion-mnist");
    /* no --data-dir: the dataset's default directory, resolved */
    assert_row(text, "data-dir", "/usr/share/datasets/fashion-mnist");
    assert_row(text, "participants", "7");
    assert_row(text, "partition", "paper");
    assert_row(text, "shard-size", "600");
    assert_row(text, "epochs", "4");
    assert_row(text, "lr", "0.125");
    assert_row(text, "batch", "16");
    assert_row(text, "seed", "99");
    assert_row(text, "schedule", "sync");
    assert_row(text, "theta-u", "0.01");
    assert_row(text, "theta-d", "1");
    assert_row(text, "gamma", "inf");
    assert_row(text, "residual", "on");
    assert_row(text, "metrics", "out.csv");
    free(text);
}

/* ---- repeated calls --------------------------------------------------------- */

static void test_repeated_calls_start_fresh(void **state)
{
    (void)state;
    config_t c;
    char err[ERR_LEN];
    parse_ok(&c, "--lr", "0.2", "--epochs", "3", (char *)NULL);
    assert_true(c.lr == 0.2);
    /* a failed parse, a help request and a stray argument in between */
    assert_int_equal(parse(&c, err, "--batch", "0", (char *)NULL), -1);
    assert_int_equal(parse(&c, err, "--help", "--lr", "0.9", (char *)NULL), 1);
    assert_int_equal(parse(&c, err, "--lr", "0.1", "stray", "--epochs", "2", (char *)NULL), -1);
    assert_int_equal(parse(&c, err, "--bogus", "--lr", "0.9", (char *)NULL), -1);
    assert_int_equal(parse(&c, err, "--lr", (char *)NULL), -1);
    /* each later parse sees all of its own options, none of the old ones */
    parse_ok(&c, "--lr", "0.3", (char *)NULL);
    assert_true(c.lr == 0.3);
    assert_int_equal(c.epochs, 20);
    parse_ok(&c, "--epochs", "5", "--lr", "0.4", (char *)NULL);
    assert_true(c.lr == 0.4);
    assert_int_equal(c.epochs, 5);
}

/* What one run of `steps` in a child process found. */
typedef struct {
    int rc[2];
    double lr[2];
    char err[2][ERR_LEN];
} child_result;

/* Runs "train" + first, then "train" + second, in a child process: a
 * failure there leaves getopt's hidden state behind, and it must not leak into
 * the other tests of this binary. */
static child_result parse_twice_in_child(char **first, int first_argc, char **second,
                                         int second_argc)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        child_result r;
        memset(&r, 0, sizeof r);
        config_t c;
        char **argvs[2] = {first, second};
        int argcs[2] = {first_argc, second_argc};
        for (int i = 0; i < 2; i++) {
            config_defaults(&c);
            r.rc[i] = config_parse(&c, argcs[i], argvs[i], NULL, r.err[i]);
            r.lr[i] = c.lr;
        }
        ssize_t w = write(fd[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    child_result r;
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = read(fd[0], (char *)&r + got, sizeof r - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got, sizeof r);
    return r;
}

static void test_refuses_single_dash_typo_naming_it(void **state)
{
    (void)state;
    /* "-lr 0.1" (one dash) is read by getopt as short options 'l', 'r' */
    char *first[] = {"train", "-lr", "0.1", NULL};
    char *second[] = {"train", NULL};
    child_result r = parse_twice_in_child(first, 3, second, 1);
    assert_int_equal(r.rc[0], -1);
    if (!strstr(r.err[0], "-l"))
        fail_msg("message \"%s\" should name the option '-lr'", r.err[0]);
}

static void test_parse_after_bad_short_option_starts_fresh(void **state)
{
    (void)state;
    /* A refused "-lr" stops getopt in the middle of "-lr"; the next call,
     * with its own argv, must not resume scanning the old one. */
    char *first[] = {"train", "-lr", "0.1", NULL};
    char *second[] = {"train", "--lr", "0.2", NULL};
    child_result r = parse_twice_in_child(first, 3, second, 3);
    assert_int_equal(r.rc[0], -1);
    if (r.rc[1] != 0)
        fail_msg("second parse refused: \"%s\"", r.err[1]);
    assert_true(r.lr[1] == 0.2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_options_gives_the_defaults),
        cmocka_unit_test(test_every_option_sets_its_field),
        cmocka_unit_test(test_every_choice_maps_to_its_value),
        cmocka_unit_test(test_equals_form_and_range_edges_accepted),
        cmocka_unit_test(test_gamma_inf_accepted),
        cmocka_unit_test(test_refuses_nonpositive_lr),
        cmocka_unit_test(test_refuses_batch_out_of_range),
        cmocka_unit_test(test_refuses_zero_epochs),
        cmocka_unit_test(test_refuses_local_steps_out_of_range_or_with_svt),
        cmocka_unit_test(test_defaults_that_depend_on_the_schedule),
        cmocka_unit_test(test_h5_data_options),
        cmocka_unit_test(test_dpsgd_options_set_their_fields),
        cmocka_unit_test(test_dpsgd_refusals),
        cmocka_unit_test(test_server_step_resume_rule),
        cmocka_unit_test(test_dpsgd_resume_rules),
        cmocka_unit_test(test_audit_options),
        cmocka_unit_test(test_audit_resume_rules),
        cmocka_unit_test(test_refuses_zero_participants),
        cmocka_unit_test(test_refuses_theta_u_outside_zero_one),
        cmocka_unit_test(test_refuses_zero_theta_d),
        cmocka_unit_test(test_refuses_nonpositive_gamma),
        cmocka_unit_test(test_refuses_negative_tau),
        cmocka_unit_test(test_refuses_stat_decay_outside_zero_one),
        cmocka_unit_test(test_refuses_nonpositive_alpha),
        cmocka_unit_test(test_refuses_non_numeric_values),
        cmocka_unit_test(test_refuses_trailing_garbage),
        cmocka_unit_test(test_refuses_unknown_choice_listing_the_choices),
        cmocka_unit_test(test_refuses_unknown_long_option),
        cmocka_unit_test(test_refuses_ambiguous_prefix_naming_the_candidates),
        cmocka_unit_test(test_unambiguous_abbreviations_still_accepted),
        cmocka_unit_test(test_refuses_a_value_given_to_a_flag),
        cmocka_unit_test(test_subnormal_accepted_and_range_checked),
        cmocka_unit_test(test_ignored_options_are_listed),
        cmocka_unit_test(test_refuses_missing_value),
        cmocka_unit_test(test_refuses_stray_positional_argument),
        cmocka_unit_test(test_refuses_mnist_without_data_dir),
        cmocka_unit_test(test_refuses_overlong_path),
        cmocka_unit_test(test_help_returns_one_and_lists_every_option),
        cmocka_unit_test(test_print_shows_resolved_values),
        cmocka_unit_test(test_repeated_calls_start_fresh),
        cmocka_unit_test(test_refuses_single_dash_typo_naming_it),
        cmocka_unit_test(test_parse_after_bad_short_option_starts_fresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
