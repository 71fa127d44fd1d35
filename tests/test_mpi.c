/* test_mpi: run under mpirun with 1, 2 and 3 ranks. Proves the invariants of
 * docs/DESIGN.md ('Protocol') on the real driver: same bits whatever the rank
 * count, N = 1 equals plain SGD, and hostile uploads change nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
#include "dpsgd.h"
#include "err.h"
#include "model.h"
#include "rng.h"
#include "run.h"
#include "select.h"
#include "sgd.h"
#include "test_util.h"

static int rank, size;

/* A small but real task: Fashion-MNIST, a small MLP, a few participants. */
static void small_config(config_t *c)
{
    config_defaults(c);
    strcpy(c->model, "d16-relu,d10");
    c->participants = 5;
    c->shard_size = 100;
    c->partition = PARTITION_PAPER;
    c->epochs = 3;
    c->eval_size = 300;
    c->batch = 8;
    c->lr = 0.1;
    c->seed = 77;
    c->quiet = 1;
}

/* Waits for rank 0 without spinning a core (rank 0 may be computing alone). */
static void gentle_barrier(void)
{
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    int done = 0;
    while (!done) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done)
            nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

static void run_ok(const config_t *c, MPI_Comm comm, const run_hooks *hooks, run_result *r)
{
    char err[ERR_LEN] = "";
    if (run_train(c, comm, hooks, r, err))
        fail_msg("run_train: %s", err);
}

/* The run on all ranks and the same run in one process give the same bits:
 * global parameters and every metrics figure but the time. */
static void same_bits_config(const config_t *cfg)
{
    config_t c = *cfg;
    run_result all;
    run_ok(&c, MPI_COMM_WORLD, NULL, &all);
    if (rank == 0) {
        run_result one;
        run_ok(&c, MPI_COMM_SELF, NULL, &one);
        assert_int_equal(all.n, one.n);
        assert_true((all.params != NULL) == (one.params != NULL));
        if (all.params) /* standalone has no global model: its rows compare the rest */
            assert_memory_equal(all.params, one.params, all.n * sizeof(float));
        for (int e = 0; e < c.epochs; e++) {
            metrics_row a = all.rows[e], b = one.rows[e];
            a.seconds = b.seconds = 0;
            assert_memory_equal(&a, &b, sizeof a);
        }
        run_result_free(&one);
    }
    gentle_barrier();
    run_result_free(&all);
}

static void same_bits_with_local_steps(config_schedule schedule, double theta_u, int residual,
                                       int svt, int local_steps)
{
    config_t c;
    small_config(&c);
    c.schedule = schedule;
    c.local_steps = local_steps;
    if (svt) {
        c.select = SELECT_SVT;
        c.dp_epsilon = 500;
        c.gamma = 0.01;
        c.tau = 1e-4;
    }
    c.theta_u = theta_u;
    c.residual = residual;
    c.download = DOWNLOAD_STAT;
    c.theta_d = 0.5;
    same_bits_config(&c);
}

static void same_bits_as_one_process(config_schedule schedule, double theta_u, int residual,
                                     int svt)
{
    same_bits_with_local_steps(schedule, theta_u, residual, svt, 0);
}

static void test_round_robin_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    same_bits_as_one_process(SCHEDULE_ROUND_ROBIN, 0.1, 0, 0);
}

static void test_random_schedule_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    same_bits_as_one_process(SCHEDULE_RANDOM, 0.05, 1, 0);
}

static void test_sync_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    same_bits_as_one_process(SCHEDULE_SYNC, 0.2, 0, 0);
}

/* --local-steps 3: 13 batches of 8 per shard of 100, so 5 exchanges an
 * epoch, each turn a message of its own. */
static void test_local_steps_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    same_bits_with_local_steps(SCHEDULE_SYNC, 0.2, 1, 0, 3);
    same_bits_with_local_steps(SCHEDULE_RANDOM, 0.1, 0, 0, 3);
}

/* Workers under round-robin and random score their participants batch by
 * batch between commands (run.c, score_while_idle): with scorings of
 * several batches (a sample of 700 and, at the last epoch, 1300 images, in
 * batches of 500), and with 13 exchanges an epoch (scoring begins after
 * the last), every figure is still that of one process scoring at the
 * epoch's end. */
static void test_scoring_between_turns_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    const config_schedule schedules[] = {SCHEDULE_ROUND_ROBIN, SCHEDULE_RANDOM};
    for (int i = 0; i < 2; i++) {
        config_t c;
        small_config(&c);
        c.schedule = schedules[i];
        c.eval_size = 1300;
        c.eval_participants = 700;
        c.local_steps = i; /* random with 13 exchanges an epoch */
        same_bits_config(&c);
    }
}

/* A DP run is reproducible too: all its noise comes from the participants'
 * seeded streams, wherever they live. */
static void test_svt_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    same_bits_as_one_process(SCHEDULE_ROUND_ROBIN, 0.05, 1, 1);
    same_bits_as_one_process(SCHEDULE_SYNC, 0.05, 0, 1);
}

/* DP-SGD in every participant: a small config with sigma 1, C 1 (13
 * Poisson steps of expected batch 8 per shard of 100 each epoch). */
static void dpsgd_config(config_t *c, config_mode mode, config_schedule schedule)
{
    small_config(c);
    c->mode = mode;
    c->schedule = schedule;
    c->dpsgd = 1;
    c->dp_noise = 1.0;
    c->dp_clip = 1.0;
    c->dp_delta = 1e-5;
    c->lr = 0.2;
}

/* DP-SGD's sampling and noise come from each participant's own stream:
 * the same bits wherever it lives, also with --local-steps, a residual,
 * the budget cap stopping participants mid-epoch, and in standalone mode. */
static void test_dpsgd_same_bits_whatever_the_rank_count(void **state)
{
    (void)state;
    config_t c;
    dpsgd_config(&c, MODE_DSSGD, SCHEDULE_ROUND_ROBIN);
    same_bits_config(&c);
    dpsgd_config(&c, MODE_DSSGD, SCHEDULE_SYNC);
    c.local_steps = 5;
    c.residual = 1;
    c.theta_u = 0.05;
    same_bits_config(&c);
    dpsgd_account a; /* a cap that stops everyone 4 steps into epoch 2 */
    assert_int_equal(dpsgd_account_init(&a, 8.0 / 100, 1.0, 1e-5, NULL), 0);
    dpsgd_config(&c, MODE_DSSGD, SCHEDULE_RANDOM);
    c.dp_max_epsilon = dpsgd_account_epsilon(&a, 17);
    same_bits_config(&c);
    dpsgd_config(&c, MODE_DSSGD, SCHEDULE_ROUND_ROBIN); /* sigma from a target */
    c.dp_noise = -1;
    c.dp_target_epsilon = 8;
    same_bits_config(&c);
    dpsgd_config(&c, MODE_STANDALONE, SCHEDULE_ROUND_ROBIN);
    same_bits_config(&c);
}

/* ---- checkpoints -------------------------------------------------------- */

/* Rank 0's checkpoint path, the same string on every rank. */
static void checkpoint_path(char *path, size_t len)
{
    int pid = (int)getpid();
    MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
    snprintf(path, len, "/tmp/dssgd-test-mpi-%d.h5", pid);
}

/* 4 epochs in one go, or 2, saved, then resumed for 2 more: the same bits in
 * the global model and the same metrics rows (time aside). */
/* 4 epochs in one run equal 2 + 2 through a checkpoint: parameters and
 * every metrics figure. `cut` (may be NULL) applies to the checkpointed
 * and resumed runs only, so the straight run is its reference. */
static void resume_is_exact_config(const config_t *cfg, const run_hooks *cut)
{
    config_t c = *cfg;
    c.epochs = 4;
    int svt = c.select == SELECT_SVT;
    run_result whole, first, second;
    run_ok(&c, MPI_COMM_WORLD, NULL, &whole);
    char path[256];
    checkpoint_path(path, sizeof path);
    c.epochs = 2;
    strcpy(c.checkpoint, path);
    run_ok(&c, MPI_COMM_WORLD, cut, &first);
    c.epochs = 4;
    strcpy(c.resume, path);
    run_ok(&c, MPI_COMM_WORLD, cut, &second);
    if (rank == 0) {
        if (whole.params) /* none in standalone: its rows compare the rest */
            assert_memory_equal(whole.params, second.params, whole.n * sizeof(float));
        for (int e = 0; e < 4; e++) {
            metrics_row a = whole.rows[e], b = e < 2 ? first.rows[e] : second.rows[e];
            a.seconds = b.seconds = 0;
            assert_memory_equal(&a, &b, sizeof a);
        }
        if (svt) /* the ledger survived the restart: 4 epochs' worth */
            assert_float_equal(second.rows[3].epsilon, 4 * c.dp_epsilon, 1e-9);
        if (c.dpsgd && isinf(c.dp_max_epsilon)) { /* and DP-SGD's: 4 epochs of 13 steps */
            dpsgd_account a;
            assert_int_equal(dpsgd_account_init(&a, 8.0 / 100, c.dp_noise, c.dp_delta, NULL), 0);
            assert_true(second.rows[3].epsilon == dpsgd_account_epsilon(&a, 52));
        }
        remove(path);
    }
    run_result_free(&whole);
    run_result_free(&first);
    run_result_free(&second);
}

static void resume_is_exact_with(config_schedule schedule, int svt, int local_steps,
                                 const run_hooks *cut)
{
    config_t c;
    small_config(&c);
    c.schedule = schedule;
    c.local_steps = local_steps;
    c.theta_u = 0.1;
    c.residual = 1;
    if (svt) {
        c.select = SELECT_SVT;
        c.dp_epsilon = 500;
        c.gamma = 0.01;
        c.tau = 1e-4;
    }
    resume_is_exact_config(&c, cut);
}

static void resume_is_exact(config_schedule schedule, int svt, const run_hooks *cut)
{
    resume_is_exact_with(schedule, svt, 0, cut);
}

static void test_resume_is_exact_round_robin(void **state)
{
    (void)state;
    resume_is_exact(SCHEDULE_ROUND_ROBIN, 0, NULL);
}

static void test_resume_is_exact_random(void **state)
{
    (void)state;
    resume_is_exact(SCHEDULE_RANDOM, 0, NULL);
}

static void test_resume_is_exact_sync(void **state)
{
    (void)state;
    resume_is_exact(SCHEDULE_SYNC, 0, NULL);
}

static void test_resume_is_exact_with_local_steps(void **state)
{
    (void)state;
    resume_is_exact_with(SCHEDULE_SYNC, 0, 3, NULL);
}

static void test_resume_is_exact_with_svt(void **state)
{
    (void)state;
    resume_is_exact(SCHEDULE_ROUND_ROBIN, 1, NULL);
    resume_is_exact(SCHEDULE_SYNC, 1, NULL);
}

/* DP-SGD resumes bit-exactly: the participants' streams are in the
 * checkpoint and their steps follow from (epsilon, epochs), also for
 * participants the cap stopped before the checkpoint (cap at 20 steps:
 * inside epoch 2) or after it (cap at 30 steps: inside epoch 3), and in
 * standalone mode. */
static void test_resume_is_exact_with_dpsgd(void **state)
{
    (void)state;
    config_t c;
    dpsgd_config(&c, MODE_DSSGD, SCHEDULE_ROUND_ROBIN);
    c.residual = 1;
    resume_is_exact_config(&c, NULL);
    dpsgd_config(&c, MODE_DSSGD, SCHEDULE_SYNC);
    c.local_steps = 4;
    resume_is_exact_config(&c, NULL);
    dpsgd_account a;
    assert_int_equal(dpsgd_account_init(&a, 8.0 / 100, 1.0, 1e-5, NULL), 0);
    const uint64_t stops[] = {20, 30};
    for (int i = 0; i < 2; i++) {
        dpsgd_config(&c, MODE_DSSGD, SCHEDULE_ROUND_ROBIN);
        c.dp_max_epsilon = dpsgd_account_epsilon(&a, stops[i]);
        resume_is_exact_config(&c, NULL);
    }
    dpsgd_config(&c, MODE_STANDALONE, SCHEDULE_ROUND_ROBIN);
    resume_is_exact_config(&c, NULL);
}

/* A checkpoint resumed with an option that changes the run's meaning is
 * refused, naming the option; --epochs may change. */
static void test_resume_refuses_a_different_run(void **state)
{
    (void)state;
    config_t c;
    small_config(&c);
    c.epochs = 1;
    char path[256];
    checkpoint_path(path, sizeof path);
    strcpy(c.checkpoint, path);
    run_ok(&c, MPI_COMM_WORLD, NULL, NULL);
    strcpy(c.resume, path);
    c.epochs = 2;
    c.lr = 0.2;
    char err[ERR_LEN] = "";
    int rc = run_train(&c, MPI_COMM_WORLD, NULL, NULL, err);
    if (rank == 0) {
        assert_int_equal(rc, -1);
        if (!strstr(err, "--lr differs"))
            fail_msg("message: %s", err);
    }
    c.lr = 0.1;
    c.participants = 4;
    rc = run_train(&c, MPI_COMM_WORLD, NULL, NULL, err);
    if (rank == 0) {
        assert_int_equal(rc, -1);
        if (!strstr(err, "--participants differs"))
            fail_msg("message: %s", err);
        remove(path);
    }
}

/* Same seed, same run: two runs on all ranks agree bit for bit. */
/* --eval-participants and --eval-every change what is scored, never what
 * is trained: the global figures of every epoch and the participants' at
 * the last are those of scoring everything every epoch; between, the
 * participants' come from the sample (flagged) or are absent. The sample is
 * drawn from the seed: the same bits on any number of ranks. */
static void test_eval_sample_and_every_change_only_the_scoring(void **state)
{
    (void)state;
    config_t c;
    small_config(&c);
    c.epochs = 5;
    c.eval_size = 600;
    c.eval_participants = 0;
    run_result all;
    run_ok(&c, MPI_COMM_WORLD, NULL, &all);
    c.eval_participants = 200;
    c.eval_every = 2;
    same_bits_config(&c);
    run_result some;
    run_ok(&c, MPI_COMM_WORLD, NULL, &some);
    if (rank == 0) {
        assert_memory_equal(all.params, some.params, all.n * sizeof(float));
        for (int e = 0; e < c.epochs; e++) {
            metrics_row a = all.rows[e], s = some.rows[e];
            assert_true(a.global_acc == s.global_acc && a.global_loss == s.global_loss);
            assert_true(a.epsilon == s.epsilon && a.bytes_up == s.bytes_up);
            assert_int_equal(a.has_part, 1);
            assert_int_equal(a.part_sample, 0);
            if (e + 1 == c.epochs) { /* the last: everything */
                assert_int_equal(s.has_part, 1);
                assert_int_equal(s.part_sample, 0);
                assert_true(a.part_acc_mean == s.part_acc_mean &&
                            a.part_acc_min == s.part_acc_min && a.part_acc_max == s.part_acc_max);
            } else if ((e + 1) % 2 == 0) { /* due: on the sample of 200 */
                assert_int_equal(s.has_part, 1);
                assert_int_equal(s.part_sample, 200);
                /* 200 images: accuracies are multiples of 1/200 */
                double k = s.part_acc_min * 200;
                assert_true(fabs(k - round(k)) < 1e-9);
                assert_true(s.part_acc_min <= s.part_acc_mean && s.part_acc_mean <= s.part_acc_max);
            } else {
                assert_int_equal(s.has_part, 0);
            }
        }
    }
    gentle_barrier();
    run_result_free(&all);
    run_result_free(&some);
}

static void test_same_seed_same_bits(void **state)
{
    (void)state;
    config_t c;
    small_config(&c);
    c.schedule = SCHEDULE_RANDOM;
    run_result a, b;
    run_ok(&c, MPI_COMM_WORLD, NULL, &a);
    run_ok(&c, MPI_COMM_WORLD, NULL, &b);
    if (rank == 0)
        assert_memory_equal(a.params, b.params, a.n * sizeof(float));
    run_result_free(&a);
    run_result_free(&b);
}

/* N = 1, theta_u = theta_d = 1, gamma = inf: the global model equals plain
 * SGD on the participant's shard, computed here independently, where each
 * epoch ends with the protocol's one rounding w + fl(w' - w) (float32 deltas
 * cannot carry w' - w exactly when a weight crosses zero; see docs/DESIGN.md). */
static void test_single_participant_full_sharing_is_plain_sgd(void **state)
{
    (void)state;
    config_t c;
    small_config(&c);
    c.participants = 1;
    c.shard_size = 300;
    c.theta_u = 1;
    c.theta_d = 1;
    c.download = DOWNLOAD_ALL;
    c.epochs = 3;
    run_result r;
    run_ok(&c, MPI_COMM_WORLD, NULL, &r);
    if (rank == 0) {
        char err[ERR_LEN];
        dataset_t train;
        model_t m;
        assert_int_equal(dataset_load(dataset_default_dir("fashion-mnist"), 1, &train, err), 0);
        assert_int_equal(model_build(&m, c.model, 1, 28, 28, 10, err), 0);
        dataset_shards shards;
        rng_t part, init, sgd_rng;
        rng_init(&part, c.seed, RNG_STREAM_PARTITION);
        assert_int_equal(dataset_partition_make(&train, c.partition, 1, c.shard_size, c.alpha,
                                                &part, &shards, err), 0);
        float *w = malloc(m.num_params * sizeof *w), *plain = malloc(m.num_params * sizeof *w);
        float *before = malloc(m.num_params * sizeof *w);
        rng_init(&init, c.seed, RNG_STREAM_INIT);
        model_init_params(&m, w, &init);
        memcpy(plain, w, m.num_params * sizeof *w);
        rng_init(&sgd_rng, c.seed, rng_participant_stream(0));
        rng_t plain_rng = sgd_rng;
        uint32_t *order = malloc(c.shard_size * sizeof *order);
        uint32_t *plain_order = malloc(c.shard_size * sizeof *order);
        memcpy(order, shards.indices[0], c.shard_size * sizeof *order);
        memcpy(plain_order, order, c.shard_size * sizeof *order);
        model_ws *ws = model_ws_create(&m, c.batch);
        sgd_stats stats;
        for (int e = 0; e < c.epochs; e++) {
            memcpy(before, w, m.num_params * sizeof *w);
            /* each epoch shuffles the shard afresh (see participant_train) */
            memcpy(order, shards.indices[0], c.shard_size * sizeof *order);
            memcpy(plain_order, order, c.shard_size * sizeof *order);
            sgd_epoch(&m, w, ws, &train, order, c.shard_size, c.batch, (float)c.lr, &sgd_rng,
                      &stats);
            for (size_t i = 0; i < m.num_params; i++)
                w[i] = before[i] + (w[i] - before[i]);
            sgd_epoch(&m, plain, ws, &train, plain_order, c.shard_size, c.batch, (float)c.lr,
                      &plain_rng, &stats);
        }
        assert_memory_equal(r.params, w, m.num_params * sizeof *w);
        /* And the rounding is the only difference from SGD with no protocol
         * at all: tiny (1e-5 absolute after 3 epochs). */
        size_t differ = 0;
        for (size_t i = 0; i < m.num_params; i++) {
            differ += r.params[i] != plain[i];
            assert_float_equal(r.params[i], plain[i], 1e-5);
        }
        print_message("N=1 theta=1: %zu of %zu parameters differ from protocol-free SGD "
                      "in the last bits\n", differ, m.num_params);
        free(w); free(plain); free(before); free(order); free(plain_order);
        model_ws_free(ws);
        dataset_shards_free(&shards);
        dataset_free(&train);
    }
    gentle_barrier();
    run_result_free(&r);
}

/* async: nondeterministic order, but every participant uploads once per
 * epoch and the model learns. */
static void test_async_serves_every_participant_each_epoch(void **state)
{
    (void)state;
    config_t c;
    small_config(&c);
    c.schedule = SCHEDULE_ASYNC;
    c.participants = 6;
    run_result r;
    run_ok(&c, MPI_COMM_WORLD, NULL, &r);
    if (rank == 0)
        for (int e = 0; e < c.epochs; e++) {
            assert_int_equal(r.rows[e].uploads_accepted, 6);
            assert_int_equal(r.rows[e].uploads_rejected, 0);
            assert_true(r.rows[e].global_acc > 0.3); /* chance is 0.1 */
        }
    run_result_free(&r);
}

/* ---- hostile participant ----------------------------------------------- */

enum { HOSTILE_KINDS = 12 };
typedef struct { int calls; size_t k; uint32_t n; int honest; } hostile;

/* A hook runs on a worker rank inside run(): a failed cmocka assert there
 * would leave the other ranks waiting, so it ends the job instead. */
#define tamper_check(cond)                                                        \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: tamper hook: %s failed\n", __FILE__, __LINE__, \
                    #cond);                                                       \
            MPI_Abort(MPI_COMM_WORLD, 1);                                         \
        }                                                                         \
    } while (0)

/* Participant 1's uploads: a different malformation each epoch (or, for the
 * reference run, a valid empty upload, which changes nothing either). The
 * honest message may come in any encoding: its values are always its last
 * 4 * count bytes, and the index malformations re-encode its entries. */
static size_t tamper(void *arg, uint32_t participant, uint32_t epoch, uint8_t *msg, size_t len,
                     size_t cap)
{
    hostile *h = arg;
    if (participant != 1)
        return len;
    wire_header w;
    tamper_check(wire_peek(msg, len, &w) == WIRE_OK);
    uint32_t count = w.count;
    if (h->honest) {
        w.count = 0;
        return wire_pack(msg, cap, &w, NULL, NULL);
    }
    uint8_t *val = msg + len - 4 * (size_t)count;
    float nan = NAN, inf = INFINITY, big = 1.0f;
    uint32_t kind = (uint32_t)(h->calls++) % HOSTILE_KINDS;
    if (kind == 2) { /* more entries than k: a longer, well-formed message */
        w.count = (uint32_t)h->k + 1;
        uint32_t *idx = malloc(w.count * sizeof *idx);
        float *zero = calloc(w.count, sizeof *zero);
        tamper_check(idx && zero);
        for (uint32_t i = 0; i < w.count; i++)
            idx[i] = i;
        size_t grown = wire_pack(msg, cap, &w, idx, zero);
        tamper_check(grown > 0);
        free(idx);
        free(zero);
        return grown;
    }
    if (kind == 3 || kind == 4) { /* the same entries, one index changed */
        uint32_t *idx = malloc(count * sizeof *idx);
        float *v = malloc(count * sizeof *v);
        tamper_check(idx && v && count >= 2);
        wire_expect any = {WIRE_UPLOAD, UINT32_MAX, UINT32_MAX, w.n, count, INFINITY};
        tamper_check(wire_unpack(msg, len, &any, &w, idx, v) == WIRE_OK);
        if (kind == 3)
            idx[0] = h->n;      /* index out of range */
        else
            idx[0] = idx[1];    /* repeated index */
        len = tu_put_deltas(msg, count, idx, v);
        tamper_check(len <= cap);
        free(idx);
        free(v);
        return len;
    }
    switch (kind) {
    case 0: msg[0] ^= 0xff; break;                              /* bad magic */
    case 1: msg[4] = 9; break;                                  /* bad version */
    case 5: memcpy(val, &nan, 4); break;
    case 6: memcpy(val + 4, &inf, 4); break;
    case 7: memcpy(val, &big, 4); break;                        /* beyond gamma */
    case 8: return len - 3;                                     /* truncated */
    case 9: tu_put32(msg + 8, 0); break;                          /* claims participant 0 */
    case 10: tu_put32(msg + 12, epoch + 1); break;                /* wrong epoch */
    case 11: msg[len] = 0; return len + 1;                      /* trailing byte */
    }
    return len;
}

static void test_hostile_uploads_are_refused_and_change_nothing(void **state)
{
    (void)state;
    if (size < 2) {
        skip(); /* needs a participant on a rank other than the server's */
        return;
    }
    config_t c;
    small_config(&c);
    c.epochs = HOSTILE_KINDS;
    c.gamma = 0.5;
    c.theta_u = 0.05;
    c.eval_size = 100;
    char err[ERR_LEN];
    model_t m;
    model_build(&m, c.model, 1, 28, 28, 10, err);
    hostile bad = {0, select_count(c.theta_u, m.num_params), (uint32_t)m.num_params, 0};
    hostile good = bad;
    good.honest = 1;
    int victim_rank = 1 + 1 % (size - 1); /* where participant 1 lives */
    run_hooks hb = {.tamper_rank = victim_rank, .tamper = tamper, .tamper_arg = &bad},
              hg = {.tamper_rank = victim_rank, .tamper = tamper, .tamper_arg = &good};
    run_result rb, rg;
    run_ok(&c, MPI_COMM_WORLD, &hb, &rb);
    run_ok(&c, MPI_COMM_WORLD, &hg, &rg);
    if (rank == 0) {
        assert_memory_equal(rb.params, rg.params, rb.n * sizeof(float));
        uint64_t rejected = 0, accepted = 0;
        for (int e = 0; e < c.epochs; e++) {
            rejected += rb.rows[e].uploads_rejected;
            accepted += rb.rows[e].uploads_accepted;
            assert_int_equal(rg.rows[e].uploads_rejected, 0);
        }
        assert_int_equal(rejected, HOSTILE_KINDS);
        assert_int_equal(accepted, (uint64_t)(c.participants - 1) * c.epochs);
        const wire_reason expected[] = {WIRE_BAD_MAGIC, WIRE_BAD_VERSION, WIRE_TOO_MANY,
            WIRE_BAD_INDEX, WIRE_NOT_INCREASING, WIRE_NOT_FINITE, WIRE_OUT_OF_BOUNDS,
            WIRE_TRUNCATED, WIRE_BAD_SENDER, WIRE_BAD_EPOCH, WIRE_BAD_LENGTH};
        for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
            if (rb.rejected_for[expected[i]] == 0)
                fail_msg("no upload refused as '%s'", wire_reason_name(expected[i]));
    }
    run_result_free(&rb);
    run_result_free(&rg);
}

/* A rank that sends each upload six times. With theta_u = 0.005 the copies
 * are small (Open MPI sends them eagerly); with theta_u = 1 they are large
 * (rendezvous: the flooding rank blocks in its own sends until the server
 * takes each copy). Every copy is refused as unsolicited and nothing else
 * is; every turn, the flooding rank's own included, is served; and for the
 * deterministic schedules the final model is bit-identical to the run
 * without the flood, because a copy carries a tag no later turn waits for. */
static void flood_is_refused(config_schedule schedule, double theta_u)
{
    config_t c;
    small_config(&c);
    c.schedule = schedule;
    c.local_steps = 0; /* one upload per participant and epoch, sync's included */
    c.epochs = 3;
    c.theta_u = theta_u;
    int victim_rank = 1 + 1 % (size - 1);
    run_hooks flood = {.tamper_rank = victim_rank, .flood = 5};
    run_result b, clean;
    run_ok(&c, MPI_COMM_WORLD, &flood, &b);
    run_ok(&c, MPI_COMM_WORLD, NULL, &clean);
    if (rank == 0) {
        uint64_t accepted = 0, hosted = 0;
        for (int p = 0; p < c.participants; p++)
            hosted += 1 + p % (size - 1) == victim_rank;
        for (int e = 0; e < c.epochs; e++)
            accepted += b.rows[e].uploads_accepted;
        uint64_t copies = 5 * hosted * (uint64_t)c.epochs, unsolicited =
            b.rejected_for[WIRE_UNSOLICITED];
        print_message("flood (%s, theta_u %g): %llu of %llu copies refused by the end\n",
                      config_schedule_name(schedule), theta_u, (unsigned long long)unsolicited,
                      (unsigned long long)copies);
        assert_int_equal(accepted, (uint64_t)c.participants * c.epochs);
        assert_true(unsolicited >= 1 && unsolicited <= copies);
        for (int r = 0; r < WIRE_REASONS; r++)
            if (r != WIRE_UNSOLICITED && b.rejected_for[r])
                fail_msg("%llu uploads refused as '%s'", (unsigned long long)b.rejected_for[r],
                         wire_reason_name((wire_reason)r));
        if (schedule != SCHEDULE_ASYNC) /* async applies in arrival order */
            assert_memory_equal(b.params, clean.params, b.n * sizeof(float));
    }
    run_result_free(&b);
    run_result_free(&clean);
}

static void test_flooding_rank_is_refused_and_changes_nothing(void **state)
{
    (void)state;
    if (size < 2) {
        skip();
        return;
    }
    const config_schedule schedules[] = {SCHEDULE_ROUND_ROBIN, SCHEDULE_SYNC, SCHEDULE_ASYNC};
    for (size_t i = 0; i < 3; i++) {
        flood_is_refused(schedules[i], 0.005);
        flood_is_refused(schedules[i], 1);
    }
}

/* Messages cut into pieces of 100 (and 4096) bytes, as messages past MPI's
 * int count are cut into 1 GiB pieces, give the same bits: downloads,
 * uploads, and the state a checkpoint gathers and a resume scatters. */
static void test_messages_in_pieces_same_bits(void **state)
{
    (void)state;
    const config_schedule schedules[] = {SCHEDULE_ROUND_ROBIN, SCHEDULE_SYNC};
    const size_t pieces[] = {100, 4096};
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 2; j++) {
            run_hooks cut = {.piece_bytes = pieces[j]};
            resume_is_exact(schedules[i], 0, &cut);
        }
    /* async: arrival order decides the bits, so only completeness. */
    config_t c;
    small_config(&c);
    c.schedule = SCHEDULE_ASYNC;
    run_hooks cut = {.piece_bytes = 100};
    run_result r;
    run_ok(&c, MPI_COMM_WORLD, &cut, &r);
    if (rank == 0)
        for (int e = 0; e < c.epochs; e++)
            assert_int_equal(r.rows[e].uploads_accepted, (uint64_t)c.participants);
    run_result_free(&r);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_random_schedule_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_sync_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_scoring_between_turns_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_local_steps_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_svt_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_dpsgd_same_bits_whatever_the_rank_count),
        cmocka_unit_test(test_eval_sample_and_every_change_only_the_scoring),
        cmocka_unit_test(test_same_seed_same_bits),
        cmocka_unit_test(test_resume_is_exact_round_robin),
        cmocka_unit_test(test_resume_is_exact_random),
        cmocka_unit_test(test_resume_is_exact_sync),
        cmocka_unit_test(test_resume_is_exact_with_local_steps),
        cmocka_unit_test(test_resume_is_exact_with_svt),
        cmocka_unit_test(test_resume_is_exact_with_dpsgd),
        cmocka_unit_test(test_resume_refuses_a_different_run),
        cmocka_unit_test(test_single_participant_full_sharing_is_plain_sgd),
        cmocka_unit_test(test_async_serves_every_participant_each_epoch),
        cmocka_unit_test(test_hostile_uploads_are_refused_and_change_nothing),
        cmocka_unit_test(test_flooding_rank_is_refused_and_changes_nothing),
        cmocka_unit_test(test_messages_in_pieces_same_bits),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* Any rank's failure fails the whole test. */
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? 1 : 0;
}
