/* audit: membership-inference scores, their AUC and TPR at low FPR, the
 * holdout, and the audit files (see audit.h; docs/DESIGN.md, "Privacy
 * audit"). */
#include "audit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "rng.h"
#include "sgd.h"
#include "wire.h"

/* ---- metrics ------------------------------------------------------------ */

typedef struct {
    double score;
    int member;
} labelled;

static int by_score(const void *a, const void *b)
{
    double x = ((const labelled *)a)->score, y = ((const labelled *)b)->score;
    return x < y ? -1 : x > y;
}

static int descending(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

double audit_auc(const double *member, size_t m, const double *nonmember, size_t k)
{
    if (m == 0 || k == 0)
        return 0.5;
    labelled *all = malloc((m + k) * sizeof *all);
    if (!all)
        return NAN;
    for (size_t i = 0; i < m; i++)
        all[i] = (labelled){member[i], 1};
    for (size_t i = 0; i < k; i++)
        all[m + i] = (labelled){nonmember[i], 0};
    qsort(all, m + k, sizeof *all, by_score);
    /* Rank sum of the members with mid-ranks for ties: each tied pair then
     * counts 1/2, which is the Mann-Whitney U. */
    double rank_sum = 0;
    for (size_t i = 0; i < m + k;) {
        size_t j = i, members = 0;
        while (j < m + k && all[j].score == all[i].score)
            members += (size_t)all[j++].member;
        double mid = 0.5 * (double)(i + 1 + j); /* mean of ranks i+1 .. j */
        rank_sum += mid * (double)members;
        i = j;
    }
    free(all);
    double u = rank_sum - 0.5 * (double)m * (double)(m + 1);
    return u / ((double)m * (double)k);
}

double audit_tpr_at_fpr(const double *member, size_t m, const double *nonmember, size_t k,
                        double fpr)
{
    if (m == 0)
        return 0;
    /* The false positives allowed: the largest f with f / k <= fpr. */
    size_t f = (size_t)floor(fpr * (double)k + 1e-9);
    if (f >= k)
        return 1;
    double *s = malloc(k * sizeof *s);
    if (!s)
        return NAN;
    memcpy(s, nonmember, k * sizeof *s);
    qsort(s, k, sizeof *s, descending);
    double bar = s[f]; /* the (f+1)-th largest: a threshold must pass it */
    free(s);
    size_t tp = 0;
    for (size_t i = 0; i < m; i++)
        tp += member[i] > bar;
    return (double)tp / (double)m;
}

double audit_auc_se(double a, size_t m, size_t k)
{
    double q1 = a / (2 - a), q2 = 2 * a * a / (1 + a);
    double var = (a * (1 - a) + ((double)m - 1) * (q1 - a * a) + ((double)k - 1) * (q2 - a * a)) /
                 ((double)m * (double)k);
    return sqrt(var > 0 ? var : 0);
}

/* ---- scores --------------------------------------------------------------- */

void audit_loss_scores(const model_t *m, const float *params, model_ws *ws, const dataset_t *ds,
                       const uint32_t *idx, size_t count, double *score)
{
    size_t max_batch = (size_t)model_ws_max_batch(ws);
    int C = m->num_classes;
    for (size_t start = 0; start < count; start += max_batch) {
        int b = (int)(count - start < max_batch ? count - start : max_batch);
        sgd_gather(ds, idx + start, b, ws);
        model_forward(m, params, ws, b, NULL);
        const float *probs = model_ws_probs(ws);
        const uint8_t *y = model_ws_labels(ws);
        for (int r = 0; r < b; r++) {
            double p = probs[(size_t)r * (size_t)C + y[r]];
            /* the loss the model reports, floored as a probability can be 0 */
            score[start + (size_t)r] = log(p > 1e-30 ? p : 1e-30);
        }
    }
}

void audit_server_scores(const model_t *m, const float *w, model_ws *ws, const dataset_t *ds,
                         const uint32_t *idx, size_t count, const uint32_t *up_idx,
                         const float *up_val, size_t k, float *grad, double *score)
{
    double vv = 0;
    for (size_t j = 0; j < k; j++)
        vv += (double)up_val[j] * up_val[j];
    for (size_t i = 0; i < count; i++) {
        /* One example at a time: its own gradient at w. */
        sgd_gather(ds, idx + i, 1, ws);
        model_forward(m, w, ws, 1, NULL);
        memset(grad, 0, m->num_params * sizeof *grad);
        model_backward(m, w, ws, 1, 1.0f, grad);
        double dot = 0, gg = 0;
        for (size_t j = 0; j < k; j++) {
            double g = grad[up_idx[j]];
            dot -= (double)up_val[j] * g; /* against -g: the direction SGD moves */
            gg += g * g;
        }
        score[i] = vv > 0 && gg > 0 ? dot / sqrt(vv * gg) : 0;
    }
}

/* ---- holdout ---------------------------------------------------------------- */

int audit_carve_holdout(dataset_t *train, size_t holdout, uint64_t seed, dataset_t *out,
                        char *err)
{
    memset(out, 0, sizeof *out);
    size_t n = train->count, dim = train->dim;
    if (holdout == 0 || holdout >= n || n > UINT32_MAX)
        return err_set(err, "--audit-holdout %zu: the training set has %zu records; the "
                       "holdout must leave at least one to train on", holdout, n);
    uint32_t *perm = malloc(n * sizeof *perm);
    uint8_t *held = calloc(n, 1);
    out->x = malloc(holdout * dim * sizeof *out->x);
    out->y = malloc(holdout);
    if (!perm || !held || !out->x || !out->y) {
        free(perm);
        free(held);
        dataset_free(out);
        return err_set(err, "--audit-holdout: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    rng_t rng;
    rng_init(&rng, seed, AUDIT_STREAM_HOLDOUT);
    for (size_t i = 0; i < holdout; i++) { /* partial Fisher-Yates: a uniform subset */
        size_t j = i + rng_below(&rng, (uint32_t)(n - i));
        uint32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
        held[perm[i]] = 1;
    }
    /* The holdout in ascending index order, then the rest closed up. */
    size_t h = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (held[i]) {
            memcpy(out->x + h * dim, train->x + i * dim, dim * sizeof *out->x);
            out->y[h++] = train->y[i];
        } else {
            if (kept != i) {
                memmove(train->x + kept * dim, train->x + i * dim, dim * sizeof *train->x);
                train->y[kept] = train->y[i];
            }
            kept++;
        }
    }
    free(perm);
    free(held);
    out->count = holdout;
    out->channels = train->channels;
    out->rows = train->rows;
    out->cols = train->cols;
    out->dim = dim;
    out->classes = train->classes;
    train->count = kept;
    return 0;
}

/* ---- one run's audit ---------------------------------------------------- */

enum { LOSS_GLOBAL, LOSS_LOCAL, SERVER, ATTACKS };
static const char *const attack_name[ATTACKS] = {"loss", "loss", "server"};

struct audit {
    audit_opts o;
    int N;
    size_t n;
    size_t *count;            /* (N) members = non-members audited for p */
    uint32_t **mem, **non;    /* (N) sample indices: into train, into holdout */
    double **score[ATTACKS];  /* (N) 2 count[p] scores: members then non-members */
    char *have[ATTACKS];      /* (N) scored this epoch */
    float **down;             /* (N) the state p downloaded in the due turn, or NULL */
    float *shared;            /* a sync round's download, for everyone */
    char *shared_for;         /* (N) p's due download is `shared` */
    uint32_t *up_idx;
    float *up_val, *grad;
    model_ws *ws, *ws1;       /* batches for losses; one example for gradients */
    FILE *out, *scores;
};

static FILE *open_csv(const char *path, const char *header, int append, char *err)
{
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        err_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!append || ftell(f) == 0)
        fprintf(f, "%s\n", header);
    if (fflush(f)) {
        err_set(err, "%s: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    return f;
}

audit_t *audit_create(const audit_opts *o, char *err)
{
    audit_t *a = calloc(1, sizeof *a);
    if (!a) {
        err_set(err, "audit: out of memory");
        return NULL;
    }
    a->o = *o;
    a->N = o->shards->count;
    a->n = o->model->num_params;
    size_t N = (size_t)a->N, H = o->holdout->count;
    a->count = calloc(N, sizeof *a->count);
    a->mem = calloc(N, sizeof *a->mem);
    a->non = calloc(N, sizeof *a->non);
    a->down = calloc(N, sizeof *a->down);
    a->shared_for = calloc(N, 1);
    for (int t = 0; t < ATTACKS; t++) {
        a->score[t] = calloc(N, sizeof *a->score[t]);
        a->have[t] = calloc(N, 1);
    }
    uint32_t *pool = malloc((H ? H : 1) * sizeof *pool);
    size_t largest = 0;
    for (size_t p = 0; p < N; p++)
        largest = o->shards->sizes[p] > largest ? o->shards->sizes[p] : largest;
    uint32_t *shard = malloc((largest ? largest : 1) * sizeof *shard);
    a->up_idx = malloc((o->k_up ? o->k_up : 1) * sizeof *a->up_idx);
    a->up_val = malloc((o->k_up ? o->k_up : 1) * sizeof *a->up_val);
    a->grad = malloc(a->n * sizeof *a->grad);
    a->ws = model_ws_create(o->model, 256);
    a->ws1 = model_ws_create(o->model, 1);
    if (!a->count || !a->mem || !a->non || !a->down || !a->shared_for || !pool || !shard ||
        !a->up_idx || !a->up_val || !a->grad || !a->ws || !a->ws1)
        goto oom;
    for (int t = 0; t < ATTACKS; t++)
        if (!a->score[t] || !a->have[t])
            goto oom;
    /* Each participant's sample: count records of its shard and as many of
     * the holdout, uniform subsets drawn from the audit's own stream. */
    rng_t rng;
    rng_init(&rng, o->seed, AUDIT_STREAM_SAMPLE);
    for (size_t p = 0; p < N; p++) {
        size_t c = o->sample, s = o->shards->sizes[p];
        c = c < s ? c : s;
        c = c < H ? c : H;
        a->count[p] = c;
        a->mem[p] = malloc((c ? c : 1) * sizeof *a->mem[p]);
        a->non[p] = malloc((c ? c : 1) * sizeof *a->non[p]);
        for (int t = 0; t < ATTACKS; t++)
            if (!(a->score[t][p] = malloc((c ? 2 * c : 1) * sizeof(double))))
                goto oom;
        if (!a->mem[p] || !a->non[p])
            goto oom;
        memcpy(shard, o->shards->indices[p], s * sizeof *shard);
        for (size_t i = 0; i < c; i++) {
            size_t j = i + rng_below(&rng, (uint32_t)(s - i));
            uint32_t t = shard[i]; shard[i] = shard[j]; shard[j] = t;
        }
        memcpy(a->mem[p], shard, c * sizeof *shard);
        for (size_t i = 0; i < H; i++)
            pool[i] = (uint32_t)i;
        for (size_t i = 0; i < c; i++) {
            size_t j = i + rng_below(&rng, (uint32_t)(H - i));
            uint32_t t = pool[i]; pool[i] = pool[j]; pool[j] = t;
        }
        memcpy(a->non[p], pool, c * sizeof *pool);
    }
    free(pool);
    free(shard);
    pool = shard = NULL;
    if (!(a->out = open_csv(o->path, "epoch,attack,target,auc,tpr_at_fpr_0.01,members,nonmembers",
                            o->append, err)))
        goto fail;
    if (o->scores_path && o->scores_path[0] &&
        !(a->scores = open_csv(o->scores_path, "epoch,attack,target,participant,member,score",
                               o->append, err)))
        goto fail;
    return a;
oom:
    err_set(err, "audit: out of memory");
fail:
    free(pool);
    free(shard);
    audit_free(a);
    return NULL;
}

void audit_free(audit_t *a)
{
    if (!a)
        return;
    for (int p = 0; p < a->N; p++) {
        if (a->mem) free(a->mem[p]);
        if (a->non) free(a->non[p]);
        if (a->down) free(a->down[p]);
        for (int t = 0; t < ATTACKS; t++)
            if (a->score[t])
                free(a->score[t][p]);
    }
    for (int t = 0; t < ATTACKS; t++) {
        free(a->score[t]);
        free(a->have[t]);
    }
    free(a->count);
    free(a->mem);
    free(a->non);
    free(a->down);
    free(a->shared);
    free(a->shared_for);
    free(a->up_idx);
    free(a->up_val);
    free(a->grad);
    model_ws_free(a->ws);
    model_ws_free(a->ws1);
    if (a->out)
        fclose(a->out);
    if (a->scores)
        fclose(a->scores);
    free(a);
}

int audit_epoch_due(const audit_t *a, int epoch)
{
    return epoch >= 1 && (epoch % a->o.every == 0 || epoch == a->o.epochs);
}

int audit_turn_due(const audit_t *a, int turn)
{
    uint32_t r = a->o.rounds ? a->o.rounds : 1;
    return turn >= 1 && (uint32_t)(turn - 1) % r == 0 &&
           audit_epoch_due(a, (int)((uint32_t)(turn - 1) / r) + 1);
}

int audit_note_download(audit_t *a, uint32_t p, int turn, const float *w)
{
    if (!audit_turn_due(a, turn))
        return 0;
    if (p == UINT32_MAX) {
        if (!a->shared && !(a->shared = malloc(a->n * sizeof *a->shared)))
            return -1;
        memcpy(a->shared, w, a->n * sizeof *w);
        memset(a->shared_for, 1, (size_t)a->N);
        return 0;
    }
    if (p >= (uint32_t)a->N)
        return 0;
    if (!a->down[p] && !(a->down[p] = malloc(a->n * sizeof *a->down[p])))
        return -1;
    memcpy(a->down[p], w, a->n * sizeof *w);
    a->shared_for[p] = 0;
    return 0;
}

int audit_upload(audit_t *a, uint32_t p, int turn, const uint8_t *msg, size_t len)
{
    if (!audit_turn_due(a, turn) || p >= (uint32_t)a->N)
        return 0;
    const float *w = a->shared_for[p] ? a->shared : a->down[p];
    if (!w)
        return 0;
    wire_expect ex = {.type = WIRE_UPLOAD, .participant = p, .epoch = UINT32_MAX,
                      .n = (uint32_t)a->n, .max_count = (uint32_t)a->o.k_up, .gamma = INFINITY};
    wire_header h;
    if (wire_unpack(msg, len, &ex, &h, a->up_idx, a->up_val) == WIRE_OK && h.count > 0) {
        size_t c = a->count[p];
        double *s = a->score[SERVER][p];
        audit_server_scores(a->o.model, w, a->ws1, a->o.train, a->mem[p], c, a->up_idx,
                            a->up_val, h.count, a->grad, s);
        audit_server_scores(a->o.model, w, a->ws1, a->o.holdout, a->non[p], c, a->up_idx,
                            a->up_val, h.count, a->grad, s + c);
        a->have[SERVER][p] = 1;
    }
    free(a->down[p]);
    a->down[p] = NULL;
    a->shared_for[p] = 0;
    return 0;
}

static void loss_attack(audit_t *a, int attack, uint32_t p, const float *params)
{
    size_t c = a->count[p];
    double *s = a->score[attack][p];
    audit_loss_scores(a->o.model, params, a->ws, a->o.train, a->mem[p], c, s);
    audit_loss_scores(a->o.model, params, a->ws, a->o.holdout, a->non[p], c, s + c);
    a->have[attack][p] = 1;
}

void audit_global(audit_t *a, const float *params)
{
    for (int p = 0; p < a->N; p++)
        loss_attack(a, LOSS_GLOBAL, (uint32_t)p, params);
}

void audit_participant(audit_t *a, uint32_t p, const float *params)
{
    if (p < (uint32_t)a->N)
        loss_attack(a, LOSS_LOCAL, p, params);
}

static int row(audit_t *a, int epoch, int attack, const char *target, double auc, double tpr,
               size_t m, size_t k)
{
    return fprintf(a->out, "%d,%s,%s,%.6f,%.6f,%zu,%zu\n", epoch, attack_name[attack], target,
                   auc, tpr, m, k) < 0;
}

int audit_write_epoch(audit_t *a, int epoch, char *err)
{
    int bad = 0;
    for (int t = 0; t < ATTACKS; t++) {
        /* global: every participant's sample pooled */
        if (t == LOSS_GLOBAL) {
            size_t total = 0;
            for (int p = 0; p < a->N; p++)
                total += a->have[t][p] ? a->count[p] : 0;
            if (total == 0)
                continue;
            double *mem = malloc(total * sizeof *mem), *non = malloc(total * sizeof *non);
            if (!mem || !non) {
                free(mem);
                free(non);
                return err_set(err, "audit: out of memory");
            }
            size_t at = 0;
            for (int p = 0; p < a->N; p++) {
                if (!a->have[t][p])
                    continue;
                memcpy(mem + at, a->score[t][p], a->count[p] * sizeof *mem);
                memcpy(non + at, a->score[t][p] + a->count[p], a->count[p] * sizeof *non);
                at += a->count[p];
            }
            bad |= row(a, epoch, t, "global", audit_auc(mem, total, non, total),
                       audit_tpr_at_fpr(mem, total, non, total, AUDIT_FPR), total, total);
            free(mem);
            free(non);
        } else {
            double auc_sum = 0, tpr_sum = 0, auc_max = -1, tpr_max = -1;
            size_t total = 0;
            int seen = 0;
            for (int p = 0; p < a->N; p++) {
                if (!a->have[t][p])
                    continue;
                size_t c = a->count[p];
                double auc = audit_auc(a->score[t][p], c, a->score[t][p] + c, c);
                double tpr = audit_tpr_at_fpr(a->score[t][p], c, a->score[t][p] + c, c,
                                              AUDIT_FPR);
                char id[24];
                snprintf(id, sizeof id, "%d", p);
                bad |= row(a, epoch, t, id, auc, tpr, c, c);
                auc_sum += auc;
                tpr_sum += tpr;
                auc_max = fmax(auc_max, auc);
                tpr_max = fmax(tpr_max, tpr);
                total += c;
                seen++;
            }
            if (seen) {
                bad |= row(a, epoch, t, "mean", auc_sum / seen, tpr_sum / seen, total, total);
                bad |= row(a, epoch, t, "worst", auc_max, tpr_max, total, total);
            }
        }
        if (a->scores)
            for (int p = 0; p < a->N; p++) {
                if (!a->have[t][p])
                    continue;
                size_t c = a->count[p];
                for (size_t i = 0; i < 2 * c; i++)
                    bad |= fprintf(a->scores, "%d,%s,%s,%d,%d,%.9g\n", epoch, attack_name[t],
                                   t == LOSS_GLOBAL ? "global" : "own", p, i < c,
                                   a->score[t][p][i]) < 0;
            }
        memset(a->have[t], 0, (size_t)a->N);
    }
    if (fflush(a->out) || (a->scores && fflush(a->scores)))
        bad = 1;
    return bad ? err_set(err, "--audit: writing failed: %s", strerror(errno)) : 0;
}
