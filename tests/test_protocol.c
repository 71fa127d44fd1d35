/* test_protocol: the DSSGD rules of server.c and participant.c without MPI:
 * uploads are the true top-k (against a full sort), clipped, the residual
 * keeps exactly what was not sent, and the server applies or refuses whole. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "err.h"
#include "model.h"
#include "participant.h"
#include "rng.h"
#include "select.h"
#include "server.h"
#include "test_util.h"
#include "wire.h"

typedef struct {
    dataset_t ds;
    model_t model;
    participant_ctx ctx;
    uint32_t shard[64];
    float *init;
    uint8_t *buf;
    size_t cap;
} fixture;

/* A small synthetic task: 200 random 4x4 images, random labels. */
static fixture *fixture_make(double theta_u, config_select select, float gamma, float tau)
{
    fixture *f = calloc(1, sizeof *f);
    char err[ERR_LEN];
    rng_t rng;
    rng_init(&rng, 11, 1);
    f->ds.count = 200; f->ds.rows = 4; f->ds.cols = 4; f->ds.dim = 16;
    f->ds.x = malloc(200 * 16 * sizeof(float));
    f->ds.y = malloc(200);
    for (size_t i = 0; i < 200 * 16; i++)
        f->ds.x[i] = (float)rng_uniform(&rng);
    for (size_t i = 0; i < 200; i++)
        f->ds.y[i] = (uint8_t)rng_below(&rng, 10);
    assert_int_equal(model_build(&f->model, "d12-relu,d10", 1, 4, 4, 10, err), 0);
    size_t n = f->model.num_params;
    f->init = malloc(n * sizeof *f->init);
    model_init_params(&f->model, f->init, &rng);
    for (uint32_t i = 0; i < 64; i++)
        f->shard[i] = i * 3;
    f->ctx.model = &f->model;
    f->ctx.train = &f->ds;
    f->ctx.ws = model_ws_create(&f->model, 8);
    f->ctx.batch = 8;
    f->ctx.lr = 0.5f;
    f->ctx.k_up = select_count(theta_u, n);
    f->ctx.select = select;
    f->ctx.gamma = gamma;
    f->ctx.tau = tau;
    assert_int_equal(participant_ctx_init(&f->ctx, n), 0);
    f->cap = wire_size(n);
    f->buf = malloc(f->cap);
    return f;
}

static void fixture_free(fixture *f)
{
    model_ws_free(f->ctx.ws);
    participant_ctx_free(&f->ctx);
    dataset_free(&f->ds);
    free(f->init);
    free(f->buf);
    free(f);
}

/* Gives p the whole initial model, as the first download does. */
static void download_init(fixture *f, participant_t *p)
{
    size_t n = f->model.num_params;
    uint32_t *idx = malloc(n * sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_DOWNLOAD, participant_id(p), 0, (uint32_t)n,
                     (uint32_t)n};
    size_t len = wire_pack(f->buf, f->cap, &h, idx, f->init);
    assert_int_equal(participant_download(p, &f->ctx, f->buf, len, 0), WIRE_OK);
    free(idx);
}

static size_t decode(fixture *f, size_t len, uint32_t *idx, float *val, float gamma)
{
    size_t n = f->model.num_params;
    wire_expect e = {WIRE_UPLOAD, UINT32_MAX, UINT32_MAX, (uint32_t)n, (uint32_t)n, gamma};
    wire_header h;
    assert_int_equal(wire_unpack(f->buf, len, &e, &h, idx, val), WIRE_OK);
    return h.count;
}

static const float *sort_keys;
static int by_magnitude_then_index(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float x = fabsf(sort_keys[i]), y = fabsf(sort_keys[j]);
    if (x != y)
        return x > y ? -1 : 1;
    return i < j ? -1 : 1;
}
static int ascending(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    return i < j ? -1 : i > j;
}

/* Reference: the k largest |delta| by a full sort, ties to lower index. */
static void reference_topk(const float *delta, size_t n, size_t k, uint32_t *out)
{
    uint32_t *all = malloc(n * sizeof *all);
    for (size_t i = 0; i < n; i++)
        all[i] = (uint32_t)i;
    sort_keys = delta;
    qsort(all, n, sizeof *all, by_magnitude_then_index);
    memcpy(out, all, k * sizeof *out);
    qsort(out, k, sizeof *out, ascending);
    free(all);
}

static void test_upload_is_the_true_topk_of_the_change(void **state)
{
    (void)state;
    for (int t = 0; t < 3; t++) {
        double theta = (double[]){1.0, 0.1, 0.01}[t];
        fixture *f = fixture_make(theta, SELECT_LARGEST, INFINITY, 0);
        size_t n = f->model.num_params, k = f->ctx.k_up;
        participant_t *p = participant_create(0, n, f->shard, 64, 5, 0);
        download_init(f, p);
        for (uint32_t epoch = 1; epoch <= 3; epoch++) {
            float *before = malloc(n * sizeof *before), *delta = malloc(n * sizeof *delta);
            memcpy(before, participant_params(p), n * sizeof *before);
            sgd_stats stats;
            size_t len = participant_epoch(p, &f->ctx, epoch, f->buf, f->cap, &stats);
            for (size_t i = 0; i < n; i++)
                delta[i] = participant_params(p)[i] - before[i];
            uint32_t *idx = malloc(n * sizeof *idx), *want = malloc(k * sizeof *want);
            float *val = malloc(n * sizeof *val);
            size_t count = decode(f, len, idx, val, INFINITY);
            assert_int_equal(count, k);
            reference_topk(delta, n, k, want);
            assert_memory_equal(idx, want, k * sizeof *idx);
            for (size_t i = 0; i < k; i++)
                assert_true(val[i] == delta[idx[i]]); /* the change itself, unaltered */
            free(before); free(delta); free(idx); free(want); free(val);
        }
        participant_free(p);
        fixture_free(f);
    }
}

static void test_uploaded_values_are_clipped_to_gamma(void **state)
{
    (void)state;
    const float gamma = 1e-3f;
    fixture *f = fixture_make(0.3, SELECT_LARGEST, gamma, 0);
    size_t n = f->model.num_params;
    participant_t *p = participant_create(0, n, f->shard, 64, 5, 0);
    download_init(f, p);
    sgd_stats stats;
    size_t len = participant_epoch(p, &f->ctx, 1, f->buf, f->cap, &stats);
    uint32_t *idx = malloc(n * sizeof *idx);
    float *val = malloc(n * sizeof *val);
    size_t count = decode(f, len, idx, val, gamma); /* refuses anything beyond gamma */
    size_t at_bound = 0;
    for (size_t i = 0; i < count; i++)
        at_bound += fabsf(val[i]) == gamma;
    assert_true(at_bound > 0); /* lr 0.5 moves many weights further than 1e-3 */
    free(idx); free(val);
    participant_free(p);
    fixture_free(f);
}

/* Error feedback: residual + sent == delta + old residual for every entry
 * (to one rounding), and the next selection ranks delta + residual. */
static void test_residual_keeps_exactly_the_unsent_part(void **state)
{
    (void)state;
    const float gamma = 2e-3f;
    fixture *f = fixture_make(0.05, SELECT_LARGEST, gamma, 0);
    size_t n = f->model.num_params, k = f->ctx.k_up;
    participant_t *p = participant_create(0, n, f->shard, 64, 5, 1);
    download_init(f, p);
    float *old_res = calloc(n, sizeof *old_res), *before = malloc(n * sizeof *before);
    float *target = malloc(n * sizeof *target), *val = malloc(n * sizeof *val);
    uint32_t *idx = malloc(n * sizeof *idx), *want = malloc(k * sizeof *want);
    for (uint32_t epoch = 1; epoch <= 3; epoch++) {
        memcpy(before, participant_params(p), n * sizeof *before);
        sgd_stats stats;
        size_t len = participant_epoch(p, &f->ctx, epoch, f->buf, f->cap, &stats);
        for (size_t i = 0; i < n; i++)
            target[i] = (participant_params(p)[i] - before[i]) + old_res[i];
        size_t count = decode(f, len, idx, val, gamma);
        reference_topk(target, n, k, want);
        assert_int_equal(count, k);
        assert_memory_equal(idx, want, k * sizeof *idx);
        const float *res = participant_residual(p);
        float *sent = calloc(n, sizeof *sent);
        for (size_t i = 0; i < count; i++) {
            assert_true(val[i] == select_clip(target[idx[i]], gamma));
            sent[idx[i]] = val[i];
        }
        for (size_t i = 0; i < n; i++)
            assert_float_equal(res[i] + sent[i], target[i], 1e-7 * fmaxf(1.0f, fabsf(target[i])));
        memcpy(old_res, res, n * sizeof *old_res);
        free(sent);
    }
    free(old_res); free(before); free(target); free(val); free(idx); free(want);
    participant_free(p);
    fixture_free(f);
}

/* --local-steps: the rounds of a local epoch, with nothing downloaded in
 * between, take the same mini-batches in the same order as one whole
 * epoch (same bits); a round past the shard's end trains nothing and
 * uploads nothing; the next epoch's first round draws a new order. */
static void test_local_steps_split_an_epoch_into_rounds(void **state)
{
    (void)state;
    fixture *f = fixture_make(0.1, SELECT_LARGEST, INFINITY, 0);
    size_t n = f->model.num_params;
    participant_t *whole = participant_create(0, n, f->shard, 64, 5, 0);
    participant_t *split = participant_create(0, n, f->shard, 64, 5, 0);
    download_init(f, whole);
    download_init(f, split);
    sgd_stats stats;
    uint32_t idx[4];
    float val[4];
    for (uint32_t epoch = 1; epoch <= 2; epoch++) {
        f->ctx.local_steps = 0;
        f->ctx.rounds = 1;
        participant_epoch(whole, &f->ctx, epoch, f->buf, f->cap, &stats);
        /* 64 examples in batches of 8: rounds of 3, 3, 2 batches and an
         * empty fourth one (as when another participant's shard is larger). */
        f->ctx.local_steps = 3;
        f->ctx.rounds = 4;
        size_t seen = 0;
        for (uint32_t r = 0; r < 4; r++) {
            uint32_t turn = (epoch - 1) * 4 + r + 1;
            float before = participant_params(split)[0];
            size_t len = participant_epoch(split, &f->ctx, turn, f->buf, f->cap, &stats);
            seen += stats.count;
            assert_int_equal(stats.count, r < 2 ? 24 : r == 2 ? 16 : 0);
            if (r == 3) {
                assert_int_equal(decode(f, len, idx, val, INFINITY), 0);
                assert_true(participant_params(split)[0] == before);
            }
        }
        assert_int_equal(seen, 64);
        assert_memory_equal(participant_params(split), participant_params(whole),
                            n * sizeof(float));
    }
    participant_free(whole);
    participant_free(split);
    fixture_free(f);
}

static void test_random_selection_takes_only_entries_above_tau(void **state)
{
    (void)state;
    const float tau = 1e-3f;
    fixture *f = fixture_make(0.2, SELECT_RANDOM, INFINITY, tau);
    size_t n = f->model.num_params;
    participant_t *p = participant_create(0, n, f->shard, 64, 5, 0);
    download_init(f, p);
    float *before = malloc(n * sizeof *before);
    memcpy(before, participant_params(p), n * sizeof *before);
    sgd_stats stats;
    size_t len = participant_epoch(p, &f->ctx, 1, f->buf, f->cap, &stats);
    uint32_t *idx = malloc(n * sizeof *idx);
    float *val = malloc(n * sizeof *val);
    size_t count = decode(f, len, idx, val, INFINITY);
    size_t eligible = 0;
    for (size_t i = 0; i < n; i++)
        eligible += fabsf(participant_params(p)[i] - before[i]) >= tau;
    assert_int_equal(count, eligible < f->ctx.k_up ? eligible : f->ctx.k_up);
    for (size_t i = 0; i < count; i++)
        assert_true(fabsf(val[i]) >= tau);
    free(before); free(idx); free(val);
    participant_free(p);
    fixture_free(f);
}

static server_t *small_server(size_t n, size_t k_up, float gamma, config_download d,
                              size_t k_down)
{
    float *init = malloc(n * sizeof *init);
    for (size_t i = 0; i < n; i++)
        init[i] = (float)i;
    server_opts o = {.n = n, .k_up = k_up, .k_down = k_down, .gamma = gamma, .download = d,
                     .stat_decay = 0.5, .seed = 3};
    server_t *s = server_create(&o, init);
    free(init);
    return s;
}

static size_t pack_upload(uint8_t *buf, size_t cap, uint32_t p, uint32_t epoch, uint32_t n,
                          uint32_t count, const uint32_t *idx, const float *val)
{
    wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, p, epoch, n, count};
    return wire_pack(buf, cap, &h, idx, val);
}

/* An upload in the delta encoding, written by hand as a careless sender
 * would (tu_put_deltas): a repeated or decreasing index becomes a gap that
 * wraps past 2^32, and an index >= n stays one. */
static size_t pack_upload_unchecked(uint8_t *buf, uint32_t p, uint32_t epoch, uint32_t n,
                                    uint32_t count, const uint32_t *idx, const float *val)
{
    tu_put32(buf, WIRE_MAGIC);
    buf[4] = WIRE_VERSION; buf[5] = 0;
    buf[6] = WIRE_UPLOAD; buf[7] = 0;
    tu_put32(buf + 8, p);
    tu_put32(buf + 12, epoch);
    tu_put32(buf + 16, n);
    return tu_put_deltas(buf, count, idx, val);
}

/* The privacy ledger survives a checkpoint: a participant restored from
 * another's saved state has the same epsilon and epoch count, stops at the
 * cap at the same epoch, and reports the stop (the driver prints it). */
static void test_restore_keeps_the_privacy_ledger(void **state)
{
    (void)state;
    fixture *f = fixture_make(0.1, SELECT_SVT, 0.01f, 0.0f);
    size_t n = f->model.num_params;
    f->ctx.dp_epsilon = 2;
    f->ctx.dp_max_epsilon = 7; /* three epochs fit, the fourth does not */
    participant_t *a = participant_create(0, n, f->shard, 64, 5, 0);
    participant_t *b = participant_create(0, n, f->shard, 64, 5, 0);
    download_init(f, a);
    sgd_stats stats;
    for (uint32_t e = 1; e <= 2; e++) {
        participant_epoch(a, &f->ctx, e, f->buf, f->cap, &stats);
        assert_false(participant_budget_stopped(a));
    }
    float *w = malloc(n * sizeof *w);
    uint64_t rng[RNG_STATE_WORDS];
    double eps = -1;
    participant_save(a, w, NULL, rng, &eps);
    assert_true(eps == 4.0);
    assert_int_equal(participant_restore(b, &f->ctx, w, NULL, rng, eps), 0);
    assert_true(participant_ledger(b)->spent == participant_ledger(a)->spent);
    assert_int_equal(participant_ledger(b)->epochs, 2);
    assert_int_equal(participant_ledger(a)->epochs, 2);
    for (uint32_t e = 3; e <= 4; e++) {
        size_t la = participant_epoch(a, &f->ctx, e, f->buf, f->cap, &stats);
        size_t lb = participant_epoch(b, &f->ctx, e, f->buf, f->cap, &stats);
        assert_int_equal(la, lb);
        assert_int_equal(participant_budget_stopped(a), e == 4);
        assert_int_equal(participant_budget_stopped(b), e == 4);
        assert_int_equal(participant_ledger(b)->epochs, 3);
        assert_true(participant_ledger(b)->spent == 6.0);
    }
    assert_int_equal(participant_ledger(a)->epochs, participant_ledger(b)->epochs);
    /* a negative epsilon is refused */
    assert_int_equal(participant_restore(b, &f->ctx, w, NULL, rng, -1.0), -1);
    free(w);
    participant_free(a);
    participant_free(b);
    fixture_free(f);
}

static void test_server_adds_accepted_uploads_and_counts_updates(void **state)
{
    (void)state;
    server_t *s = small_server(10, 3, 1.0f, DOWNLOAD_STAT, 10);
    uint8_t buf[256];
    uint32_t idx[3] = {1, 4, 9};
    float val[3] = {0.5f, -1.0f, 0.25f};
    size_t len = pack_upload(buf, sizeof buf, 2, 7, 10, 3, idx, val);
    assert_int_equal(server_apply_upload(s, buf, len, 2, 7), WIRE_OK);
    const float *w = server_params(s);
    assert_true(w[1] == 1.5f && w[4] == 3.0f && w[9] == 9.25f && w[0] == 0.0f);
    assert_true(server_stat(s)[4] == 1.0 && server_stat(s)[5] == 0.0);
    server_end_epoch(s); /* beta = 0.5 */
    assert_true(server_stat(s)[4] == 0.5);
    assert_int_equal(server_accepted(s), 1);
    server_free(s);
}

/* A server of n = 10 (w[i] = i) with an aggregation rule, for 4 participants. */
static server_t *rule_server(config_aggregate rule, float server_lr, double exponent)
{
    float init[10];
    for (int i = 0; i < 10; i++)
        init[i] = (float)i;
    server_opts o = {.n = 10, .k_up = 3, .k_down = 10, .gamma = INFINITY,
                     .download = DOWNLOAD_ALL, .stat_decay = 1, .seed = 3, .aggregate = rule,
                     .server_lr = server_lr, .staleness_exponent = exponent,
                     .participants = 4};
    return server_create(&o, init);
}

static void upload(server_t *s, uint32_t p, uint32_t count, const uint32_t *idx,
                   const float *val)
{
    uint8_t buf[256];
    size_t len = pack_upload(buf, sizeof buf, p, 1, 10, count, idx, val);
    assert_int_equal(server_apply_upload(s, buf, len, p, 1), WIRE_OK);
}

static void download(server_t *s, uint32_t p)
{
    uint8_t buf[256];
    assert_true(server_pack_download(s, p, 1, 0, buf, sizeof buf) > 0);
}

/* mean: a round's uploads are averaged per parameter over those that
 * carried it, applied when the round ends, times the server's step;
 * outside a round each upload is applied at once. */
static void test_mean_rule_averages_a_round_per_parameter(void **state)
{
    (void)state;
    server_t *s = rule_server(AGGREGATE_MEAN, 0.5f, 0);
    server_round_begin(s);
    upload(s, 0, 2, (uint32_t[]){1, 4}, (float[]){1.0f, 2.0f});
    upload(s, 1, 2, (uint32_t[]){4, 9}, (float[]){4.0f, -8.0f});
    upload(s, 2, 1, (uint32_t[]){4}, (float[]){-3.0f});
    const float *w = server_params(s);
    assert_true(w[1] == 1.0f && w[4] == 4.0f && w[9] == 9.0f); /* nothing yet */
    server_round_end(s);
    /* w += 0.5 * mean: w[1] 1 + 0.5*1, w[4] 4 + 0.5*(2+4-3)/3, w[9] 9 + 0.5*(-8) */
    assert_true(w[1] == 1.5f && w[4] == 4.5f && w[9] == 5.0f);
    assert_true(w[0] == 0.0f && w[5] == 5.0f);
    assert_true(server_stat(s)[4] == 3.0 && server_stat(s)[1] == 1.0);
    assert_int_equal(server_accepted(s), 3);
    upload(s, 3, 1, (uint32_t[]){0}, (float[]){2.0f}); /* no round: at once */
    assert_true(w[0] == 1.0f);
    server_round_end(s); /* no round open: changes nothing */
    assert_true(w[0] == 1.0f && w[4] == 4.5f);
    server_free(s);
}

/* staleness: an upload weighs eta_s (1 + s)^-a, s = uploads applied since
 * its participant's download was packed (WIRE_ANY_PARTICIPANT: everyone's). */
static void test_staleness_rule_weighs_by_uploads_applied_since_the_download(void **state)
{
    (void)state;
    server_t *s = rule_server(AGGREGATE_STALENESS, 2.0f, 1.0);
    download(s, 0);
    download(s, 1);
    download(s, 2);
    upload(s, 0, 1, (uint32_t[]){1}, (float[]){3.0f});  /* s = 0: weight 2 */
    upload(s, 1, 1, (uint32_t[]){2}, (float[]){3.0f});  /* s = 1: weight 1 */
    upload(s, 2, 1, (uint32_t[]){3}, (float[]){3.0f});  /* s = 2: weight 2/3 */
    download(s, 0);
    upload(s, 0, 1, (uint32_t[]){4}, (float[]){3.0f});  /* s = 0 again */
    const float *w = server_params(s);
    assert_true(w[1] == 1.0f + 6.0f && w[2] == 2.0f + 3.0f);
    assert_true(w[3] == 3.0f + (float)(2.0 / 3.0) * 3.0f && w[4] == 4.0f + 6.0f);
    uint64_t count, sum, max;
    server_staleness(s, &count, &sum, &max);
    assert_true(count == 4 && sum == 3 && max == 2);
    server_free(s);

    s = rule_server(AGGREGATE_STALENESS, 1.0f, 0.5);
    uint8_t buf[256];
    assert_true(server_pack_download(s, WIRE_ANY_PARTICIPANT, 1, 0, buf, sizeof buf) > 0);
    for (uint32_t p = 0; p < 4; p++)
        upload(s, p, 1, (uint32_t[]){5}, (float[]){1.0f});
    double want = 5;
    for (int k = 0; k < 4; k++)
        want = (double)(float)(want + (double)((float)pow(1.0 + k, -0.5) * 1.0f));
    assert_true(server_params(s)[5] == (float)want);
    server_free(s);
}

/* The tolerance B: uploads at most B stale weigh in full, later ones
 * (1 + s - B)^-a (FedAsync's hinge). */
static void test_staleness_tolerance_is_a_hinge(void **state)
{
    (void)state;
    float init[10] = {0};
    server_opts o = {.n = 10, .k_up = 3, .k_down = 10, .gamma = INFINITY,
                     .download = DOWNLOAD_ALL, .stat_decay = 1, .seed = 3,
                     .aggregate = AGGREGATE_STALENESS, .server_lr = 1,
                     .staleness_exponent = 1, .staleness_tolerance = 1, .participants = 4};
    server_t *s = server_create(&o, init);
    for (uint32_t p = 0; p < 4; p++)
        download(s, p);
    for (uint32_t p = 0; p < 4; p++) /* stale by 0, 1, 2, 3 */
        upload(s, p, 1, (uint32_t[]){p}, (float[]){1.0f});
    const float *w = server_params(s);
    assert_true(w[0] == 1.0f && w[1] == 1.0f && w[2] == 0.5f && w[3] == (float)(1.0 / 3.0));
    server_free(s);
}

/* A server of n = 10 (w[i] = i) with the mix rule, for 4 participants. */
static server_t *mix_server(float server_lr, double exponent, float momentum)
{
    float init[10];
    for (int i = 0; i < 10; i++)
        init[i] = (float)i;
    server_opts o = {.n = 10, .k_up = 10, .k_down = 10, .gamma = INFINITY,
                     .download = DOWNLOAD_ALL, .stat_decay = 1, .seed = 3,
                     .aggregate = AGGREGATE_MIX, .server_lr = server_lr,
                     .server_momentum = momentum, .staleness_exponent = exponent,
                     .participants = 4};
    return server_create(&o, init);
}

/* mix: FedAsync's w += alpha (w at the download + v - w) per parameter,
 * alpha = (1 + c)^-1 with c the uploads of that parameter since the
 * download. Uploads made from one state end at their per-parameter mean
 * over those that carried it (here with more downloads out than the turn
 * announced: the snapshots grow); a fresh one is added whole. */
static void test_mix_rule_ends_a_wave_at_its_per_parameter_mean(void **state)
{
    (void)state;
    server_t *s = mix_server(1.0f, 1.0, 0);
    assert_int_equal(server_async_begin(s, 1), 0);
    for (uint32_t p = 0; p < 3; p++)
        download(s, p);
    upload(s, 0, 2, (uint32_t[]){1, 4}, (float[]){1.0f, 2.0f});
    upload(s, 1, 2, (uint32_t[]){4, 9}, (float[]){4.0f, -8.0f});
    upload(s, 2, 1, (uint32_t[]){4}, (float[]){-3.0f});
    const float *w = server_params(s);
    /* w[1] 1 + 1, w[4] 4 + (2 + 4 - 3) / 3, w[9] 9 - 8: at once, no round */
    assert_true(w[1] == 2.0f && fabsf(w[4] - 5.0f) < 1e-6f && w[9] == 1.0f);
    assert_true(w[0] == 0.0f && server_stat(s)[4] == 3.0);
    download(s, 3); /* fresh: c = 0 */
    upload(s, 3, 1, (uint32_t[]){4}, (float[]){0.5f});
    assert_true(fabsf(w[4] - 5.5f) < 1e-6f);
    server_round_end(s); /* no momentum: nothing more */
    assert_true(fabsf(w[4] - 5.5f) < 1e-6f && w[1] == 2.0f);
    upload(s, 0, 1, (uint32_t[]){0}, (float[]){2.0f}); /* outside a turn: sum */
    assert_true(w[0] == 2.0f);
    server_free(s);
}

/* Interleaved: each upload is mixed against the model of its own download,
 * counting only the uploads of that parameter since; the exponent and the
 * server's step scale alpha. */
static void test_mix_rule_counts_each_parameters_uploads_since_the_download(void **state)
{
    (void)state;
    server_t *s = mix_server(1.0f, 1.0, 0);
    assert_int_equal(server_async_begin(s, 3), 0);
    download(s, 0);
    download(s, 1);
    upload(s, 1, 1, (uint32_t[]){2}, (float[]){3.0f}); /* c = 0: w[2] 2 + 3 = 5 */
    download(s, 2);                                    /* sees w[2] = 5 */
    upload(s, 0, 2, (uint32_t[]){2, 3}, (float[]){1.0f, 1.0f});
    const float *w = server_params(s);
    /* w[2]: c = 1, 5 + (2 + 1 - 5) / 2 = 4; w[3]: c = 0, 3 + 1 */
    assert_true(w[2] == 4.0f && w[3] == 4.0f);
    upload(s, 2, 1, (uint32_t[]){2}, (float[]){2.0f}); /* c = 1: 4 + (5 + 2 - 4) / 2 */
    assert_true(w[2] == 5.5f);
    server_round_end(s);
    server_free(s);

    s = mix_server(0.5f, 2.0, 0); /* alpha = (1 + c)^-2; eta_s at the turn's end */
    assert_int_equal(server_async_begin(s, 2), 0);
    download(s, 0);
    download(s, 1);
    upload(s, 0, 1, (uint32_t[]){6}, (float[]){4.0f}); /* 6 + 4 = 10 */
    upload(s, 1, 1, (uint32_t[]){6}, (float[]){8.0f}); /* 10 + 0.25 (6 + 8 - 10) */
    assert_true(server_params(s)[6] == 11.0f);
    server_round_end(s); /* the turn's change 5, scaled to 0.5 x: 6 + 2.5 */
    assert_true(server_params(s)[6] == 8.5f && server_params(s)[5] == 5.0f);
    server_free(s);
}

/* mix with a server momentum: at the end of each turn w += beta u and
 * u <- beta u + the turn's change (FedAvgM over turns). A refused upload
 * ends its participant's snapshot and changes nothing. */
static void test_mix_rule_adds_the_momentum_at_the_end_of_a_turn(void **state)
{
    (void)state;
    server_t *s = mix_server(1.0f, 1.0, 0.5f);
    const float *w = server_params(s);
    assert_non_null(server_velocity(s));
    assert_int_equal(server_async_begin(s, 2), 0);
    download(s, 0);
    upload(s, 0, 1, (uint32_t[]){0}, (float[]){2.0f});
    server_round_end(s); /* w[0] 2, u[0] = 0.5 * 0 + 2 */
    assert_true(w[0] == 2.0f && server_velocity(s)[0] == 2.0f);
    assert_int_equal(server_async_begin(s, 2), 0);
    download(s, 0);
    download(s, 1);
    upload(s, 0, 1, (uint32_t[]){0}, (float[]){1.0f}); /* 3 */
    uint8_t buf[256];
    size_t len = pack_upload(buf, sizeof buf, 1, 2, 10, 1, (uint32_t[]){0}, (float[]){9.0f});
    assert_int_equal(server_apply_upload(s, buf, len, 1, 1), WIRE_BAD_EPOCH);
    assert_true(w[0] == 3.0f);
    server_round_end(s); /* w[0] 3 + 0.5 * 2 = 4, u[0] = 1 + 1 */
    assert_true(w[0] == 4.0f && server_velocity(s)[0] == 2.0f);
    assert_int_equal(server_async_begin(s, 2), 0);
    server_round_end(s); /* a turn without uploads: 4 + 1, u = 1 */
    assert_true(w[0] == 5.0f && server_velocity(s)[0] == 1.0f);
    assert_true(w[5] == 5.0f && server_velocity(s)[5] == 0.0f);
    server_free(s);
}

/* The momentum warm-up: while held, turns and rounds end as without a
 * momentum and u stays zero; the first turn after the hold starts u from
 * its own change alone. The same for the mean rule's rounds. */
static void test_held_momentum_neither_moves_nor_is_fed(void **state)
{
    (void)state;
    server_t *s = mix_server(1.0f, 1.0, 0.5f);
    const float *w = server_params(s);
    server_hold_momentum(s, 1);
    assert_int_equal(server_async_begin(s, 2), 0);
    download(s, 0);
    upload(s, 0, 1, (uint32_t[]){0}, (float[]){2.0f});
    server_round_end(s); /* held: w[0] 2, u[0] stays 0 */
    assert_true(w[0] == 2.0f && server_velocity(s)[0] == 0.0f);
    server_hold_momentum(s, 0);
    assert_int_equal(server_async_begin(s, 2), 0);
    download(s, 0);
    upload(s, 0, 1, (uint32_t[]){0}, (float[]){1.0f});
    server_round_end(s); /* 3 + 0.5 * 0, u[0] = 1: the first turn's 2 is not in it */
    assert_true(w[0] == 3.0f && server_velocity(s)[0] == 1.0f);
    assert_int_equal(server_async_begin(s, 2), 0);
    server_round_end(s); /* 3 + 0.5 * 1 */
    assert_true(w[0] == 3.5f && server_velocity(s)[0] == 0.5f);
    server_free(s);

    float init[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    server_opts o = {.n = 10, .k_up = 3, .k_down = 10, .gamma = INFINITY,
                     .download = DOWNLOAD_ALL, .stat_decay = 1, .seed = 3,
                     .aggregate = AGGREGATE_MEAN, .server_lr = 1.0f, .server_momentum = 0.5f,
                     .participants = 4};
    s = server_create(&o, init);
    w = server_params(s);
    server_hold_momentum(s, 1);
    server_round_begin(s);
    upload(s, 0, 1, (uint32_t[]){1}, (float[]){2.0f});
    upload(s, 1, 1, (uint32_t[]){1}, (float[]){4.0f});
    server_round_end(s); /* held: 1 + mean 3, u stays 0 */
    assert_true(w[1] == 4.0f && server_velocity(s)[1] == 0.0f);
    server_hold_momentum(s, 0);
    server_round_begin(s);
    upload(s, 0, 1, (uint32_t[]){1}, (float[]){2.0f});
    server_round_end(s); /* u = 0.5 * 0 + 2, w 4 + 2 */
    assert_true(w[1] == 6.0f && server_velocity(s)[1] == 2.0f);
    server_free(s);
}

/* A mix turn whose uploads all come from one state ends where a round of
 * mean with the same server step and momentum ends, computed here by a
 * plain loop: m the per-parameter mean over the uploads that carried each
 * entry, u <- beta u + m, w <- w + eta u (while the momentum is held, the
 * first turn: w <- w + eta m, u stays 0). */
static void test_mix_turns_from_one_state_end_as_rounds_of_mean(void **state)
{
    (void)state;
    enum { NP = 4, N_REF = 1000 };
    const size_t n = N_REF;
    const float lr = 1.5f, beta = 0.5f;
    static uint8_t buf[WIRE_HEADER_BYTES + 8 * N_REF + 15];
    static uint32_t idx[N_REF], count[N_REF];
    static float val[N_REF], init[N_REF];
    static double sum[N_REF], w[N_REF], u[N_REF];
    rng_t rng;
    rng_init(&rng, 23, 1);
    for (size_t j = 0; j < n; j++)
        w[j] = init[j] = (float)rng_normal(&rng);
    server_opts o = {.n = n, .k_up = n, .k_down = n, .gamma = INFINITY,
                     .download = DOWNLOAD_ALL, .stat_decay = 1, .seed = 3,
                     .aggregate = AGGREGATE_MIX, .server_lr = lr, .server_momentum = beta,
                     .staleness_exponent = 1, .participants = NP};
    server_t *s = server_create(&o, init);
    assert_non_null(s);
    for (int turn = 0; turn < 3; turn++) {
        int held = turn == 0;
        server_hold_momentum(s, held);
        assert_int_equal(server_async_begin(s, NP), 0);
        memset(sum, 0, sizeof sum);
        memset(count, 0, sizeof count);
        for (uint32_t p = 0; p < NP; p++)
            assert_true(server_pack_download(s, p, 5, 0, buf, sizeof buf) > 0);
        for (uint32_t p = 0; p < NP; p++) {
            uint32_t k = 0;
            for (uint32_t j = 0; j < n; j++)
                if (rng_uniform(&rng) < 0.5) {
                    idx[k] = j;
                    val[k++] = 0.1f * (float)rng_normal(&rng);
                }
            wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, p, 5, (uint32_t)n, k};
            size_t len = wire_pack(buf, sizeof buf, &h, idx, val);
            assert_int_equal(server_apply_upload(s, buf, len, p, 5), WIRE_OK);
            for (uint32_t i = 0; i < k; i++) {
                sum[idx[i]] += val[i];
                count[idx[i]]++;
            }
        }
        server_round_end(s);
        for (size_t j = 0; j < n; j++) {
            double m = count[j] ? sum[j] / count[j] : 0;
            if (held) {
                w[j] += lr * m;
            } else {
                u[j] = beta * u[j] + m;
                w[j] += lr * u[j];
            }
            assert_true(fabs(server_params(s)[j] - w[j]) < 1e-5);
            assert_true(fabs(server_velocity(s)[j] - u[j]) < 1e-5);
        }
    }
    server_free(s);
}

/* Against a plain reference on 1000 parameters: sparse uploads of every
 * encoding, all made from one state, end at the per-parameter mean of
 * those that carried each entry (untouched entries keep their bits); then
 * uploads each downloaded just before are added whole. */
static void test_mix_rule_matches_the_mean_and_the_sum_it_generalises(void **state)
{
    (void)state;
    enum { NP = 4, N_REF = 1000 };
    const size_t n = N_REF;
    static uint8_t buf[WIRE_HEADER_BYTES + 8 * N_REF + 15];
    static uint32_t idx[N_REF];
    static float val[N_REF], init[N_REF], want[N_REF];
    static double sum[N_REF];
    static uint32_t count[N_REF];
    const wire_encoding encs[NP] = {WIRE_ENC_DELTA, WIRE_ENC_BITMAP, WIRE_ENC_DENSE,
                                    WIRE_ENC_COMPLEMENT};
    const double densities[NP] = {0.01, 0.3, 1, 0.999};
    rng_t rng;
    rng_init(&rng, 19, 1);
    for (size_t j = 0; j < n; j++)
        init[j] = (float)rng_normal(&rng);
    server_opts o = {.n = n, .k_up = n, .k_down = n, .gamma = INFINITY,
                     .download = DOWNLOAD_ALL, .stat_decay = 1, .seed = 3,
                     .aggregate = AGGREGATE_MIX, .server_lr = 1, .staleness_exponent = 1,
                     .participants = NP};
    server_t *s = server_create(&o, init);
    assert_non_null(s);
    for (int fresh = 0; fresh < 2; fresh++) {
        assert_int_equal(server_async_begin(s, NP), 0);
        memcpy(want, server_params(s), sizeof want);
        memset(sum, 0, sizeof sum);
        memset(count, 0, sizeof count);
        for (uint32_t p = 0; p < NP && !fresh; p++)
            assert_true(server_pack_download(s, p, 5, 0, buf, sizeof buf) > 0);
        for (uint32_t p = 0; p < NP; p++) {
            if (fresh) {
                assert_true(server_pack_download(s, p, 5, 0, buf, sizeof buf) > 0);
                memcpy(want, server_params(s), sizeof want);
            }
            uint32_t k = 0;
            for (uint32_t j = 0; j < n; j++)
                if (encs[p] == WIRE_ENC_DENSE || rng_uniform(&rng) < densities[p]) {
                    idx[k] = j;
                    val[k++] = 0.1f * (float)rng_normal(&rng);
                }
            wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, p, 5, (uint32_t)n, k};
            size_t len = wire_pack_as(buf, sizeof buf, &h, idx, val, encs[p]);
            assert_true(len > 0);
            assert_int_equal(server_apply_upload(s, buf, len, p, 5), WIRE_OK);
            for (uint32_t i = 0; i < k; i++) {
                sum[idx[i]] += val[i];
                count[idx[i]]++;
                if (fresh)
                    want[idx[i]] += val[i];
            }
            if (fresh)
                assert_memory_equal(server_params(s), want, sizeof want);
        }
        for (size_t j = 0; j < n && !fresh; j++) {
            if (count[j])
                assert_true(fabs(server_params(s)[j] - (want[j] + sum[j] / count[j])) < 1e-5);
            else
                assert_true(server_params(s)[j] == want[j]);
        }
        server_round_end(s);
    }
    server_free(s);
}

/* sum with eta_s = 1 (and all-zero options) is the paper's rule, bit for bit. */
static void test_sum_rule_is_the_papers(void **state)
{
    (void)state;
    server_t *a = rule_server(AGGREGATE_SUM, 1.0f, 0), *b = small_server(10, 3, INFINITY,
                                                                          DOWNLOAD_ALL, 10);
    float v = 0.1f;
    for (uint32_t p = 0; p < 4; p++, v *= -1.7f) {
        download(a, p);
        upload(a, p, 2, (uint32_t[]){p, 7}, (float[]){v, v / 3});
        upload(b, p, 2, (uint32_t[]){p, 7}, (float[]){v, v / 3});
    }
    assert_memory_equal(server_params(a), server_params(b), 10 * sizeof(float));
    server_free(a);
    server_free(b);
}

/* Every kind of bad upload is refused whole: parameters and counters keep
 * their exact bits, and the refusal is counted under its reason. */
static void test_server_refuses_bad_uploads_without_any_change(void **state)
{
    (void)state;
    server_t *s = small_server(10, 3, 1.0f, DOWNLOAD_STAT, 10);
    float w0[10];
    memcpy(w0, server_params(s), sizeof w0);
    uint8_t buf[256];
    struct { uint32_t p, epoch, n, count; uint32_t idx[4]; float val[4]; wire_reason why; } bad[] = {
        {2, 7, 10, 4, {0, 1, 2, 3}, {0, 0, 0, 0}, WIRE_TOO_MANY},
        {2, 7, 10, 2, {3, 10}, {0.1f, 0.1f}, WIRE_BAD_INDEX},
        {2, 7, 10, 2, {5, 5}, {0.1f, 0.1f}, WIRE_NOT_INCREASING},
        {2, 7, 10, 2, {6, 2}, {0.1f, 0.1f}, WIRE_NOT_INCREASING},
        {2, 7, 10, 2, {1, 2}, {0.1f, NAN}, WIRE_NOT_FINITE},
        {2, 7, 10, 2, {1, 2}, {INFINITY, 0.1f}, WIRE_NOT_FINITE},
        {2, 7, 10, 2, {1, 2}, {0.1f, 1.5f}, WIRE_OUT_OF_BOUNDS},
        {3, 7, 10, 1, {1}, {0.1f}, WIRE_BAD_SENDER},
        {2, 6, 10, 1, {1}, {0.1f}, WIRE_BAD_EPOCH},
        {2, 7, 11, 1, {1}, {0.1f}, WIRE_BAD_N},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = pack_upload_unchecked(buf, bad[i].p, bad[i].epoch, bad[i].n, bad[i].count,
                                           bad[i].idx, bad[i].val);
        assert_int_equal(server_apply_upload(s, buf, len, 2, 7), bad[i].why);
    }
    uint32_t idx[1] = {1};
    float val[1] = {0.1f};
    size_t len = pack_upload(buf, sizeof buf, 2, 7, 10, 1, idx, val);
    assert_int_equal(server_apply_upload(s, buf, len - 1, 2, 7), WIRE_TRUNCATED);
    buf[0] ^= 1;
    assert_int_equal(server_apply_upload(s, buf, len, 2, 7), WIRE_BAD_MAGIC);
    assert_memory_equal(server_params(s), w0, sizeof w0);
    for (int i = 0; i < 10; i++)
        assert_true(server_stat(s)[i] == 0.0);
    assert_int_equal(server_accepted(s), 0);
    assert_int_equal(server_rejected(s), sizeof bad / sizeof bad[0] + 2);
    assert_int_equal(server_rejected_for(s, WIRE_NOT_INCREASING), 2);
    server_free(s);
}

/* A server of n = 203 (w[j] = j / 7) for the end-of-message tests below. */
#define END_N 203
static server_t *end_server(config_aggregate rule)
{
    float init[END_N];
    for (int j = 0; j < END_N; j++)
        init[j] = (float)j / 7;
    server_opts o = {.n = END_N, .k_up = END_N, .k_down = 10, .gamma = 1.0f,
                     .download = DOWNLOAD_STAT, .stat_decay = 1, .seed = 3, .aggregate = rule,
                     .server_lr = 0.5f, .server_momentum = 0.25f, .participants = 4};
    return server_create(&o, init);
}

static void upload_as(server_t *s, uint32_t count, const uint32_t *idx, const float *val,
                      wire_encoding enc, uint8_t *buf, size_t *len)
{
    wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, 1, 5, END_N, count};
    *len = wire_pack_as(buf, wire_size(END_N), &h, idx, val, enc);
    assert_true(*len > 0);
    (void)s;
}

/* The server decodes and applies in one pass after checking the whole
 * message: a message valid but for its LAST index or its LAST value, in
 * each encoding, changes nothing (parameters, statistic, accepted and
 * staleness counters, and with the mean rule the open round: ending it gives
 * what a server that never saw the message gives), and is counted under its
 * reason. */
static void test_server_refuses_an_upload_bad_only_at_its_end(void **state)
{
    (void)state;
    static uint8_t buf[WIRE_HEADER_BYTES + 8 * END_N + 15];
    uint32_t idx[END_N];
    float val[END_N];
    const config_aggregate rules[] = {AGGREGATE_SUM, AGGREGATE_MEAN};
    const wire_encoding encs[] = {WIRE_ENC_DELTA, WIRE_ENC_BITMAP, WIRE_ENC_DENSE,
                                  WIRE_ENC_COMPLEMENT};
    for (size_t ri = 0; ri < 2; ri++) {
        server_t *s = end_server(rules[ri]), *twin = end_server(rules[ri]);
        server_round_begin(s);
        server_round_begin(twin);
        /* One good upload first, so nothing is all zero. */
        for (uint32_t i = 0; i < 30; i++) {
            idx[i] = 6 * i + 1;
            val[i] = 0.03f * (float)i - 0.4f;
        }
        size_t len;
        upload_as(s, 30, idx, val, WIRE_ENC_DELTA, buf, &len);
        assert_int_equal(server_apply_upload(s, buf, len, 1, 5), WIRE_OK);
        assert_int_equal(server_apply_upload(twin, buf, len, 1, 5), WIRE_OK);
        float w0[END_N];
        double stat0[END_N];
        memcpy(w0, server_params(s), sizeof w0);
        memcpy(stat0, server_stat(s), sizeof stat0);
        uint64_t c0, sum0, max0, rejected = 0;
        server_staleness(s, &c0, &sum0, &max0);
        for (size_t ei = 0; ei < 4; ei++) {
            wire_encoding enc = encs[ei];
            /* delta: the last two indices 190, 191, a 1-byte last gap;
             * complement: the absent 10, 80, 150 (1-byte varints) */
            uint32_t count = enc == WIRE_ENC_DENSE ? END_N
                           : enc == WIRE_ENC_COMPLEMENT ? END_N - 3
                           : enc == WIRE_ENC_BITMAP ? 101 : 20;
            uint32_t k = 0;
            for (uint32_t j = 0; j < END_N && k < count; j++) {
                int take = enc == WIRE_ENC_DENSE ? 1
                         : enc == WIRE_ENC_COMPLEMENT ? j != 10 && j != 80 && j != 150
                         : enc == WIRE_ENC_BITMAP ? j % 2 == 0
                         : j >= 191 - (count - 1);
                if (take) {
                    idx[k] = j;
                    val[k++] = 0.25f - 0.01f * (float)(j % 50);
                }
            }
            assert_int_equal(k, count);
            for (int fault = 0; fault < 3; fault++) {
                upload_as(s, count, idx, val, enc, buf, &len);
                size_t vals = len - 4 * (size_t)count, last_index = vals - 1;
                wire_reason want;
                if (fault == 0) { /* the last index moves to >= n */
                    if (enc == WIRE_ENC_DENSE)
                        continue; /* no index section */
                    if (enc == WIRE_ENC_BITMAP) {
                        uint32_t j = idx[count - 1];
                        buf[WIRE_HEADER_BYTES + j / 8] &= (uint8_t)~(1u << (j % 8));
                        buf[WIRE_HEADER_BYTES + 205 / 8] |= 1u << (205 % 8);
                    } else {
                        assert_true(buf[last_index] < 0x80);
                        buf[last_index] = 0x7f;
                    }
                    want = WIRE_BAD_INDEX;
                } else if (fault == 1) {
                    tu_put32(buf + len - 4, 0x7fc00000u); /* NaN */
                    want = WIRE_NOT_FINITE;
                } else {
                    float big = 1.5f; /* beyond gamma = 1 */
                    uint32_t u;
                    memcpy(&u, &big, 4);
                    tu_put32(buf + len - 4, u);
                    want = WIRE_OUT_OF_BOUNDS;
                }
                uint64_t before = server_rejected_for(s, want);
                assert_int_equal(server_apply_upload(s, buf, len, 1, 5), want);
                rejected++;
                assert_int_equal(server_rejected_for(s, want), before + 1);
                assert_memory_equal(server_params(s), w0, sizeof w0);
                assert_memory_equal(server_stat(s), stat0, sizeof stat0);
                uint64_t c, sum, max;
                server_staleness(s, &c, &sum, &max);
                assert_true(c == c0 && sum == sum0 && max == max0);
                assert_int_equal(server_accepted(s), 1);
                assert_int_equal(server_rejected(s), rejected);
            }
        }
        server_round_end(s);
        server_round_end(twin);
        assert_memory_equal(server_params(s), server_params(twin), END_N * sizeof(float));
        assert_memory_equal(server_stat(s), server_stat(twin), END_N * sizeof(double));
        server_free(s);
        server_free(twin);
    }
}

/* The fused decode-and-apply gives the same bits as the rules applied
 * plainly to the entries that were packed (not decoded): sum with eta_s 1
 * and 0.7, staleness (a = 0.5, tolerance 1), mean in rounds with a server
 * momentum; uploads in every encoding, from one entry to all n, so blocks
 * are crossed and cut anywhere. */
static void test_server_apply_matches_plain_rules_bit_for_bit(void **state)
{
    (void)state;
    enum { NP = 4, N_REF = 1000 };
    const size_t n = N_REF;
    static uint8_t buf[WIRE_HEADER_BYTES + 8 * N_REF + 15];
    static uint32_t idx[N_REF];
    static float val[N_REF], w[N_REF], init[N_REF], u[N_REF];
    static double stat[N_REF], rsum[N_REF];
    static uint32_t rcount[N_REF];
    const double densities[] = {0.001, 0.01, 0.1, 0.5, 0.999, 1};
    const wire_encoding encs[] = {WIRE_ENC_DELTA, WIRE_ENC_BITMAP, WIRE_ENC_DENSE,
                                  WIRE_ENC_COMPLEMENT};
    struct { config_aggregate rule; float lr; } cases[] = {
        {AGGREGATE_SUM, 1.0f}, {AGGREGATE_SUM, 0.7f}, {AGGREGATE_STALENESS, 0.9f},
        {AGGREGATE_MEAN, 0.6f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        rng_t rng;
        rng_init(&rng, 17, ci + 1);
        for (size_t j = 0; j < n; j++)
            init[j] = (float)rng_normal(&rng);
        server_opts o = {.n = n, .k_up = n, .k_down = 10, .gamma = INFINITY,
                         .download = DOWNLOAD_STAT, .stat_decay = 1, .seed = 3,
                         .aggregate = cases[ci].rule, .server_lr = cases[ci].lr,
                         .server_momentum = 0.3f, .staleness_exponent = 0.5,
                         .staleness_tolerance = 1, .participants = NP};
        server_t *s = server_create(&o, init);
        assert_non_null(s);
        memcpy(w, init, sizeof w);
        memset(stat, 0, sizeof stat);
        memset(u, 0, sizeof u);
        memset(rsum, 0, sizeof rsum);
        memset(rcount, 0, sizeof rcount);
        uint64_t accepted = 0, version[NP] = {0};
        int mean = cases[ci].rule == AGGREGATE_MEAN;
        for (size_t di = 0; di < sizeof densities / sizeof densities[0]; di++) {
            if (mean)
                server_round_begin(s);
            for (size_t ei = 0; ei < 4; ei++) {
                uint32_t p = (uint32_t)((di + ei) % NP);
                if (ei % 2 == 0) {
                    assert_true(server_pack_download(s, p, 5, 0, buf, sizeof buf) > 0);
                    version[p] = accepted;
                }
                uint32_t count = 0;
                for (uint32_t j = 0; j < n; j++)
                    if (encs[ei] == WIRE_ENC_DENSE || rng_uniform(&rng) < densities[di]) {
                        idx[count] = j;
                        val[count++] = 0.1f * (float)rng_normal(&rng);
                    }
                wire_header h = {WIRE_MAGIC, WIRE_VERSION, WIRE_UPLOAD, p, 5, (uint32_t)n,
                                 count};
                size_t len = wire_pack_as(buf, sizeof buf, &h, idx, val, encs[ei]);
                assert_true(len > 0);
                assert_int_equal(server_apply_upload(s, buf, len, p, 5), WIRE_OK);
                /* the rule, plainly */
                uint64_t stale = accepted - version[p];
                float step = cases[ci].lr;
                if (cases[ci].rule == AGGREGATE_STALENESS)
                    step = (float)(cases[ci].lr *
                                   pow(1.0 + (double)(stale > 1 ? stale - 1 : 0), -0.5));
                for (uint32_t i = 0; i < count; i++) {
                    if (mean) {
                        rsum[idx[i]] += val[i];
                        rcount[idx[i]]++;
                    } else {
                        w[idx[i]] += step * val[i];
                    }
                    stat[idx[i]] += 1.0;
                }
                accepted++;
            }
            if (mean) {
                server_round_end(s);
                for (size_t j = 0; j < n; j++) {
                    double m = rcount[j] ? rsum[j] / rcount[j] : 0;
                    u[j] = (float)(0.3f * (double)u[j] + m);
                    w[j] += (float)(0.6f * (double)u[j]);
                    rsum[j] = 0;
                    rcount[j] = 0;
                }
            }
            assert_memory_equal(server_params(s), w, sizeof w);
            assert_memory_equal(server_stat(s), stat, sizeof stat);
        }
        server_free(s);
    }
}

/* --download stat sends the most-updated entries (ties to lower index). */
static void test_stat_download_sends_the_most_updated_entries(void **state)
{
    (void)state;
    server_t *s = small_server(10, 10, INFINITY, DOWNLOAD_STAT, 3);
    uint8_t buf[512];
    uint32_t a[2] = {7, 8}, b[1] = {8};
    float va[2] = {1, 1}, vb[1] = {1};
    size_t len = pack_upload(buf, sizeof buf, 0, 1, 10, 2, a, va);
    assert_int_equal(server_apply_upload(s, buf, len, 0, 1), WIRE_OK);
    len = pack_upload(buf, sizeof buf, 0, 1, 10, 1, b, vb);
    assert_int_equal(server_apply_upload(s, buf, len, 0, 1), WIRE_OK);
    len = server_pack_download(s, 4, 2, 0, buf, sizeof buf);
    wire_expect e = {WIRE_DOWNLOAD, 4, 2, 10, 10, INFINITY};
    wire_header h;
    uint32_t idx[10];
    float val[10];
    assert_int_equal(wire_unpack(buf, len, &e, &h, idx, val), WIRE_OK);
    assert_int_equal(h.count, 3);
    /* stat: 8 -> 2, 7 -> 1, the rest 0: entry 0 wins the tie */
    assert_int_equal(idx[0], 0); assert_int_equal(idx[1], 7); assert_int_equal(idx[2], 8);
    assert_true(val[2] == 10.0f);
    /* The first download is the whole model. */
    len = server_pack_download(s, 4, 0, 1, buf, sizeof buf);
    assert_int_equal(wire_unpack(buf, len, &(wire_expect){WIRE_DOWNLOAD, 4, 0, 10, 10, INFINITY},
                                 &h, idx, val), WIRE_OK);
    assert_int_equal(h.count, 10);
    server_free(s);
}

/* The update counters equal stat[j] += 1.0 per entry, one add at a time,
 * *= beta at each epoch's end, bit for bit, however the server batches the
 * adds (an upload's counts wait in bytes, added after 255 uploads or when
 * stat is read): over 700 uploads of random density, 320 of them in a row
 * unread, and a stat download now and then, from counters that are
 * integers, halves, -0, near 2^52 and past 2^53 (where + 1 rounds), with
 * beta 1 and 0.9, n not a multiple of 8 or 64. */
static void test_stat_counts_match_one_add_at_a_time(void **state)
{
    (void)state;
    enum { N_STAT = 1003 };
    const size_t n = N_STAT;
    static uint8_t buf[WIRE_HEADER_BYTES + 8 * N_STAT + 15];
    static uint32_t idx[N_STAT];
    static float val[N_STAT], init[N_STAT];
    static double ref[N_STAT];
    const double betas[] = {1.0, 0.9};
    for (size_t bi = 0; bi < sizeof betas / sizeof betas[0]; bi++) {
        server_opts o = {.n = n, .k_up = n, .k_down = 50, .gamma = INFINITY,
                         .download = DOWNLOAD_STAT, .stat_decay = betas[bi], .seed = 3};
        server_t *s = server_create(&o, init);
        assert_non_null(s);
        for (size_t j = 0; j < n; j++) {
            static const double starts[] = {0, 3, 0.5, -0.0, 0x1p52 - 300, 0x1p53 - 3, 1e300};
            ref[j] = starts[j % (sizeof starts / sizeof starts[0])];
        }
        uint64_t rngw[RNG_STATE_WORDS], counters[2];
        server_save(s, rngw, counters);
        assert_int_equal(server_restore(s, init, ref, rngw, counters, NULL), 0);
        rng_t rng;
        rng_init(&rng, 23, bi + 1);
        for (int u = 0; u < 700; u++) {
            /* uploads 200..519 carry every entry and nothing reads stat:
             * 320 adds wait, more than a byte holds */
            int quiet = u >= 200 && u < 520;
            double density = quiet ? 1.0 : (u % 5 == 0) ? 0.9 : 0.02 * (double)(1 + u % 7);
            uint32_t count = 0;
            for (uint32_t j = 0; j < n; j++)
                if (rng_uniform(&rng) < density) {
                    idx[count] = j;
                    val[count++] = 0.01f;
                    ref[j] += 1.0;
                }
            size_t len = pack_upload(buf, sizeof buf, 1, 2, (uint32_t)n, count, idx, val);
            assert_int_equal(server_apply_upload(s, buf, len, 1, 2), WIRE_OK);
            if (quiet)
                continue;
            if (u % 37 == 36)
                assert_true(server_pack_download(s, 1, 2, 0, buf, sizeof buf) > 0);
            if (u % 100 == 99) {
                server_end_epoch(s);
                for (size_t j = 0; j < n; j++)
                    ref[j] *= betas[bi];
            }
            if (u % 150 == 149)
                assert_memory_equal(server_stat(s), ref, sizeof ref);
        }
        assert_memory_equal(server_stat(s), ref, sizeof ref);
        server_free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upload_is_the_true_topk_of_the_change),
        cmocka_unit_test(test_uploaded_values_are_clipped_to_gamma),
        cmocka_unit_test(test_residual_keeps_exactly_the_unsent_part),
        cmocka_unit_test(test_local_steps_split_an_epoch_into_rounds),
        cmocka_unit_test(test_random_selection_takes_only_entries_above_tau),
        cmocka_unit_test(test_server_adds_accepted_uploads_and_counts_updates),
        cmocka_unit_test(test_server_refuses_bad_uploads_without_any_change),
        cmocka_unit_test(test_stat_download_sends_the_most_updated_entries),
        cmocka_unit_test(test_stat_counts_match_one_add_at_a_time),
        cmocka_unit_test(test_restore_keeps_the_privacy_ledger),
        cmocka_unit_test(test_mean_rule_averages_a_round_per_parameter),
        cmocka_unit_test(test_staleness_rule_weighs_by_uploads_applied_since_the_download),
        cmocka_unit_test(test_staleness_tolerance_is_a_hinge),
        cmocka_unit_test(test_mix_rule_ends_a_wave_at_its_per_parameter_mean),
        cmocka_unit_test(test_mix_rule_counts_each_parameters_uploads_since_the_download),
        cmocka_unit_test(test_mix_rule_adds_the_momentum_at_the_end_of_a_turn),
        cmocka_unit_test(test_held_momentum_neither_moves_nor_is_fed),
        cmocka_unit_test(test_mix_rule_matches_the_mean_and_the_sum_it_generalises),
        cmocka_unit_test(test_mix_turns_from_one_state_end_as_rounds_of_mean),
        cmocka_unit_test(test_sum_rule_is_the_papers),
        cmocka_unit_test(test_server_refuses_an_upload_bad_only_at_its_end),
        cmocka_unit_test(test_server_apply_matches_plain_rules_bit_for_bit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
