/* Tests of the privacy audit (src/audit.c): the AUC against a naive pair
 * count, TPR at 1% FPR against a brute-force threshold sweep, the loss
 * attack on an overfit model and on one that never saw its members, the
 * server view of a theta_u = 1 upload from a one-record shard, and the
 * holdout that no partition can hand out. */
#include "test_util.h"

#include <math.h>

#include "audit.h"
#include "dataset.h"
#include "err.h"
#include "model.h"
#include "rng.h"
#include "sgd.h"
#include "wire.h"

/* count random 8x8 "images" with random labels; with `tag`, x[i * dim]
 * carries i instead (an identity that survives moves). */
static dataset_t random_data(size_t count, uint64_t seed, int tag)
{
    dataset_t d = {.count = count, .channels = 1, .rows = 8, .cols = 8, .dim = 64,
                   .classes = DATASET_IDX_CLASSES};
    d.x = malloc(count * d.dim * sizeof *d.x);
    d.y = malloc(count);
    assert_non_null(d.x);
    assert_non_null(d.y);
    rng_t rng;
    rng_init(&rng, seed, 99);
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < d.dim; j++)
            d.x[i * d.dim + j] = (float)rng_uniform(&rng);
        if (tag)
            d.x[i * d.dim] = (float)i;
        d.y[i] = (uint8_t)rng_below(&rng, DATASET_IDX_CLASSES);
    }
    return d;
}

static uint32_t *range(size_t from, size_t count)
{
    uint32_t *a = malloc(count * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < count; i++)
        a[i] = (uint32_t)(from + i);
    return a;
}

/* ---- metrics ----------------------------------------------------------- */

static double naive_auc(const double *mem, size_t m, const double *non, size_t k)
{
    double wins = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < k; j++)
            wins += mem[i] > non[j] ? 1 : mem[i] == non[j] ? 0.5 : 0;
    return wins / ((double)m * (double)k);
}

static void test_auc_equals_the_pair_count_with_ties(void **state)
{
    (void)state;
    rng_t rng;
    rng_init(&rng, 7, 1);
    for (int trial = 0; trial < 50; trial++) {
        size_t m = 1 + rng_below(&rng, 60), k = 1 + rng_below(&rng, 80);
        int levels = 1 + (int)rng_below(&rng, 6); /* few levels: many ties */
        double mem[60], non[80];
        for (size_t i = 0; i < m; i++)
            mem[i] = (double)rng_below(&rng, (uint32_t)levels) + (trial % 2) * 0.5;
        for (size_t i = 0; i < k; i++)
            non[i] = (double)rng_below(&rng, (uint32_t)levels);
        double got = audit_auc(mem, m, non, k), want = naive_auc(mem, m, non, k);
        if (fabs(got - want) > 1e-12)
            fail_msg("trial %d: AUC %.15f, pair count %.15f", trial, got, want);
    }
    double one = 1, zero = 0;
    assert_true(audit_auc(&one, 1, &zero, 1) == 1.0);
    assert_true(audit_auc(&zero, 1, &one, 1) == 0.0);
    assert_true(audit_auc(&one, 1, &one, 1) == 0.5);
}

/* The definition written out: every threshold among the scores and +inf,
 * "member" when score >= t; the best TPR with FP / k <= 1%. */
static double brute_tpr(const double *mem, size_t m, const double *non, size_t k)
{
    double best = 0;
    for (size_t c = 0; c <= m + k; c++) {
        double t = c < m ? mem[c] : c < m + k ? non[c - m] : INFINITY;
        size_t tp = 0, fp = 0;
        for (size_t i = 0; i < m; i++)
            tp += mem[i] >= t;
        for (size_t i = 0; i < k; i++)
            fp += non[i] >= t;
        if (fp * 100 <= k && (double)tp / (double)m > best)
            best = (double)tp / (double)m;
    }
    return best;
}

static void test_tpr_at_one_percent_fpr_matches_a_threshold_sweep(void **state)
{
    (void)state;
    rng_t rng;
    rng_init(&rng, 11, 1);
    static const size_t ks[] = {1, 50, 99, 100, 101, 250, 1000};
    static double mem[400], non[1000];
    for (int trial = 0; trial < 70; trial++) {
        size_t k = ks[trial % 7], m = 1 + rng_below(&rng, 400);
        int tied = trial % 2;
        for (size_t i = 0; i < m; i++)
            mem[i] = tied ? (double)rng_below(&rng, 8) : rng_normal(&rng) + 1.0;
        for (size_t i = 0; i < k; i++)
            non[i] = tied ? (double)rng_below(&rng, 8) : rng_normal(&rng);
        double got = audit_tpr_at_fpr(mem, m, non, k, AUDIT_FPR);
        double want = brute_tpr(mem, m, non, k);
        if (got != want)
            fail_msg("trial %d (m %zu, k %zu): TPR %.6f, sweep %.6f", trial, m, k, got, want);
    }
}

static void test_hanley_mcneil_at_a_half(void **state)
{
    (void)state;
    /* At A = 1/2: Q1 = 1/3, Q2 = 1/3, var = (1/4 + (m + k - 2) / 12) / (m k). */
    double se = audit_auc_se(0.5, 100, 300);
    assert_true(fabs(se - sqrt((0.25 + 398.0 / 12) / 30000.0)) < 1e-12);
}

/* ---- the loss attack -------------------------------------------------- */

/* A small MLP on the 8x8 records, trained `epochs` local epochs on
 * train[order[0..count)]. */
static float *trained(const model_t *m, model_ws *ws, const dataset_t *d, uint32_t *order,
                      size_t count, int epochs)
{
    float *w = malloc(m->num_params * sizeof *w);
    assert_non_null(w);
    rng_t rng;
    rng_init(&rng, 3, 1);
    model_init_params(m, w, &rng);
    for (int e = 0; e < epochs; e++)
        sgd_epoch(m, w, ws, d, order, count, 10, 0.1f, &rng, &(sgd_stats){0});
    return w;
}

static void test_loss_attack_on_an_overfit_model(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "d64-relu,d10", 1, 8, 8, 10, err), 0);
    model_ws *ws = model_ws_create(&m, 64);
    dataset_t d = random_data(100, 1, 0);
    uint32_t *mem = range(0, 50), *non = range(50, 50);
    float *w = trained(&m, ws, &d, mem, 50, 300);
    double sm[50], sn[50];
    uint32_t *order = range(0, 50); /* sgd_epoch shuffled mem */
    audit_loss_scores(&m, w, ws, &d, order, 50, sm);
    audit_loss_scores(&m, w, ws, &d, non, 50, sn);
    double auc = audit_auc(sm, 50, sn, 50);
    if (!(auc > 0.9))
        fail_msg("loss attack AUC %.3f on a model overfit on its 50 members", auc);
    /* The scores are the losses model_forward sums. */
    sgd_gather(&d, order, 50, ws);
    double sum = model_forward(&m, w, ws, 50, NULL), mine = 0;
    for (int i = 0; i < 50; i++)
        mine -= sm[i];
    assert_true(fabs(sum - mine) < 1e-3 * (1 + fabs(sum)));
    free(w);
    free(mem);
    free(non);
    free(order);
    model_ws_free(ws);
    dataset_free(&d);
}

static void test_loss_attack_on_a_model_that_never_saw_the_members(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "d64-relu,d10", 1, 8, 8, 10, err), 0);
    model_ws *ws = model_ws_create(&m, 64);
    enum { SEEN = 50, M = 500 };
    dataset_t d = random_data(SEEN + 2 * M, 2, 0);
    uint32_t *seen = range(0, SEEN), *mem = range(SEEN, M), *non = range(SEEN + M, M);
    float *w = trained(&m, ws, &d, seen, SEEN, 100);
    static double sm[M], sn[M];
    audit_loss_scores(&m, w, ws, &d, mem, M, sm);
    audit_loss_scores(&m, w, ws, &d, non, M, sn);
    double auc = audit_auc(sm, M, sn, M), se = audit_auc_se(0.5, M, M);
    if (fabs(auc - 0.5) > 3 * se)
        fail_msg("AUC %.4f on unseen 'members' is not within 0.5 +- 3 SE (%.4f)", auc, se);
    free(w);
    free(seen);
    free(mem);
    free(non);
    model_ws_free(ws);
    dataset_free(&d);
}

/* ---- the server view ------------------------------------------------- */

/* A one-record shard at theta_u = 1: the upload is a whole local epoch's
 * change (one SGD step on the record); through audit_t as the server sees
 * it: noted download, the packed upload. */
static void test_server_view_singles_out_a_one_record_shard(void **state)
{
    (void)state;
    char err[ERR_LEN], dir[TU_TMPDIR_CAP], path[128], scores[128];
    assert_int_equal(tu_make_tmpdir(dir, "test_audit"), 0);
    snprintf(path, sizeof path, "%s/audit.csv", dir);
    snprintf(scores, sizeof scores, "%s/scores.csv", dir);
    model_t m;
    assert_int_equal(model_build(&m, "d32-relu,d10", 1, 8, 8, 10, err), 0);
    size_t n = m.num_params;
    dataset_t train = random_data(10, 4, 0), holdout = random_data(99, 5, 0);
    model_ws *ws = model_ws_create(&m, 1);
    float *w = malloc(n * sizeof *w), *after = malloc(n * sizeof *after),
          *val = malloc(n * sizeof *val);
    uint32_t *idx = range(0, n), member = 6;
    uint8_t *msg = malloc(wire_size(n));
    rng_t rng;
    rng_init(&rng, 8, 1);
    model_init_params(&m, w, &rng);
    memcpy(after, w, n * sizeof *w);
    sgd_batches(&m, after, ws, &train, &member, 1, 1, 0.05f, &(sgd_stats){0});
    for (size_t j = 0; j < n; j++)
        val[j] = after[j] - w[j];
    wire_header h = {.magic = WIRE_MAGIC, .version = WIRE_VERSION, .type = WIRE_UPLOAD,
                     .participant = 0, .epoch = 1, .n = (uint32_t)n, .count = (uint32_t)n};
    size_t len = wire_pack(msg, wire_size(n), &h, idx, val);
    assert_true(len > 0);

    /* Every candidate: the member and the 99 holdout records. */
    double s_mem, s_non[99];
    float *grad = malloc(n * sizeof *grad);
    uint32_t *hidx = range(0, 99);
    audit_server_scores(&m, w, ws, &train, &member, 1, idx, val, n, grad, &s_mem);
    audit_server_scores(&m, w, ws, &holdout, hidx, 99, idx, val, n, grad, s_non);
    assert_true(fabs(s_mem - 1.0) < 1e-4); /* the upload is -lr times its gradient */
    for (int i = 0; i < 99; i++)
        if (!(s_non[i] < s_mem))
            fail_msg("non-member %d scores %.6f, the member %.6f", i, s_non[i], s_mem);

    /* The same through audit_t: participant 0 holds only the member. */
    size_t size = 1;
    uint32_t *sh = &member;
    dataset_shards shards = {.count = 1, .sizes = &size, .indices = &sh};
    audit_opts o = {.model = &m, .train = &train, .holdout = &holdout, .shards = &shards,
                    .seed = 1, .sample = 200, .every = 1, .epochs = 1, .rounds = 1, .k_up = n,
                    .path = path, .scores_path = scores};
    audit_t *a = audit_create(&o, err);
    assert_non_null(a);
    assert_int_equal(audit_note_download(a, 0, 1, w), 0);
    assert_int_equal(audit_upload(a, 0, 1, msg, len), 0);
    assert_int_equal(audit_write_epoch(a, 1, err), 0);
    audit_free(a);
    char *text = (char *)tu_read_file(path, NULL);
    assert_non_null(strstr(text, "epoch,attack,target,auc,tpr_at_fpr_0.01,members,nonmembers\n"
                                 "1,server,0,1.000000,1.000000,1,1\n"));
    free(text);
    text = (char *)tu_read_file(scores, NULL);
    assert_non_null(strstr(text, "epoch,attack,target,participant,member,score\n1,server,own,0,1,"));
    free(text);

    tu_remove_tree(dir);
    free(grad);
    free(hidx);
    free(w);
    free(after);
    free(val);
    free(idx);
    free(msg);
    model_ws_free(ws);
    dataset_free(&train);
    dataset_free(&holdout);
}

/* ---- the holdout ------------------------------------------------------ */

static void test_holdout_is_never_handed_out(void **state)
{
    (void)state;
    char err[ERR_LEN];
    enum { COUNT = 1000, HOLD = 300 };
    dataset_t d = random_data(COUNT, 6, 1), held;
    assert_int_equal(audit_carve_holdout(&d, HOLD, 42, &held, err), 0);
    assert_int_equal(d.count, COUNT - HOLD);
    assert_int_equal(held.count, HOLD);
    char in_holdout[COUNT] = {0}, seen[COUNT] = {0};
    for (size_t i = 0; i < HOLD; i++) {
        int id = (int)held.x[i * held.dim];
        assert_false(in_holdout[id]);
        in_holdout[id] = 1;
    }
    /* The rest in their order, every record exactly once in one of the two. */
    for (size_t i = 0; i < d.count; i++) {
        int id = (int)d.x[i * d.dim];
        assert_false(in_holdout[id]);
        assert_false(seen[id]);
        seen[id] = 1;
        if (i > 0)
            assert_true(d.x[(i - 1) * d.dim] < d.x[i * d.dim]);
    }
    static const dataset_partition kinds[] = {PARTITION_PAPER, PARTITION_IID,
                                              PARTITION_DIRICHLET};
    for (int k = 0; k < 3; k++) {
        rng_t rng;
        rng_init(&rng, 9, RNG_STREAM_PARTITION);
        dataset_shards s;
        int parts = kinds[k] == PARTITION_PAPER ? 20 : 7;
        assert_int_equal(dataset_partition_make(&d, kinds[k], parts, 100, 0.3, &rng, &s, err), 0);
        for (int p = 0; p < s.count; p++)
            for (size_t i = 0; i < s.sizes[p]; i++)
                assert_false(in_holdout[(int)d.x[(size_t)s.indices[p][i] * d.dim]]);
        dataset_shards_free(&s);
    }
    /* The same seed, the same holdout. */
    dataset_t again = random_data(COUNT, 6, 1), held2;
    assert_int_equal(audit_carve_holdout(&again, HOLD, 42, &held2, err), 0);
    assert_memory_equal(held.x, held2.x, HOLD * held.dim * sizeof(float));
    dataset_free(&again);
    dataset_free(&held2);
    /* A holdout must leave something to train on. */
    dataset_t small = random_data(10, 7, 0), none;
    assert_int_equal(audit_carve_holdout(&small, 10, 1, &none, err), -1);
    assert_non_null(strstr(err, "--audit-holdout 10"));
    assert_int_equal(small.count, 10);
    dataset_free(&small);
    dataset_free(&d);
    dataset_free(&held);
}

/* Audit epochs: multiples of --audit-every and the last; the server view
 * reads the first turn of each. */
static void test_audit_epochs_and_turns(void **state)
{
    (void)state;
    char err[ERR_LEN], dir[TU_TMPDIR_CAP], path[128];
    assert_int_equal(tu_make_tmpdir(dir, "test_audit"), 0);
    snprintf(path, sizeof path, "%s/a.csv", dir);
    model_t m;
    assert_int_equal(model_build(&m, "d10", 1, 8, 8, 10, err), 0);
    dataset_t train = random_data(10, 4, 0), holdout = random_data(10, 5, 0);
    size_t size = 5;
    uint32_t *sh = range(0, 5);
    dataset_shards shards = {.count = 1, .sizes = &size, .indices = &sh};
    audit_opts o = {.model = &m, .train = &train, .holdout = &holdout, .shards = &shards,
                    .seed = 1, .sample = 3, .every = 3, .epochs = 7, .rounds = 2, .k_up = 1,
                    .path = path, .scores_path = ""};
    audit_t *a = audit_create(&o, err);
    assert_non_null(a);
    int due[8] = {0, 0, 0, 1, 0, 0, 1, 1};
    for (int e = 0; e <= 7; e++)
        assert_int_equal(audit_epoch_due(a, e), due[e]);
    for (int turn = 1; turn <= 14; turn++) /* epoch (turn - 1) / 2 + 1, first turn odd */
        assert_int_equal(audit_turn_due(a, turn), turn % 2 == 1 && due[(turn - 1) / 2 + 1]);
    audit_free(a);
    tu_remove_tree(dir);
    free(sh);
    dataset_free(&train);
    dataset_free(&holdout);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_equals_the_pair_count_with_ties),
        cmocka_unit_test(test_tpr_at_one_percent_fpr_matches_a_threshold_sweep),
        cmocka_unit_test(test_hanley_mcneil_at_a_half),
        cmocka_unit_test(test_loss_attack_on_an_overfit_model),
        cmocka_unit_test(test_loss_attack_on_a_model_that_never_saw_the_members),
        cmocka_unit_test(test_server_view_singles_out_a_one_record_shard),
        cmocka_unit_test(test_holdout_is_never_handed_out),
        cmocka_unit_test(test_audit_epochs_and_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
