/* audit: measures membership leakage of a run (docs/DESIGN.md, "Privacy
 * audit"). Two standard attacks, scored on a fixed sample of each
 * participant's training records (members) and of a holdout that no
 * participant trains on (non-members):
 *   loss    Yeom et al. 2018: score = -loss(x) under a model (the global
 *           model, or the participant's own);
 *   server  Nasr et al. 2019's passive global attacker: score = cosine
 *           between participant p's upload values and -grad loss(x; w) over
 *           the uploaded indices, w the state p downloaded.
 * Higher scores mean "member". The audit only reads: it owns its samples,
 * workspaces, random streams and files, and never touches training state.
 * Pure computation and CSV output: no MPI (run.c moves what it needs). */
#ifndef DSSGD_AUDIT_H
#define DSSGD_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "model.h"

/* The audit's random streams: (2 << 32) | k lies outside the fixed streams
 * of rng.h (small numbers) and the participants' (1 << 32) | p. */
#define AUDIT_STREAM_HOLDOUT (((uint64_t)2 << 32) | 1) /* which records are held out */
#define AUDIT_STREAM_SAMPLE (((uint64_t)2 << 32) | 2)  /* the audited samples */

#define AUDIT_FPR 0.01  /* the FPR of the tpr_at_fpr_0.01 column */

/* ---- metrics of a score split ------------------------------------------ */

/* AUC as the Mann-Whitney statistic: the fraction of (member, non-member)
 * pairs in which the member scores higher, ties counting 1/2. O((m + k)
 * log(m + k)). 0.5 when either side is empty. */
double audit_auc(const double *member, size_t m, const double *nonmember, size_t k);

/* The largest TPR over thresholds t whose FPR is at most fpr, where a score
 * >= t is called "member": TPR = #{member >= t} / m, FPR = #{non-member >=
 * t} / k. Equals #{member > s} / m with s the (floor(fpr k) + 1)-th largest
 * non-member score (every member when floor(fpr k) >= k). 0 when m = 0. */
double audit_tpr_at_fpr(const double *member, size_t m, const double *nonmember, size_t k,
                        double fpr);

/* Hanley and McNeil (1982)'s standard error of an AUC estimate from m
 * positives and k negatives. */
double audit_auc_se(double auc, size_t m, size_t k);

/* ---- the attacks' scores ---------------------------------------------- */

/* score[i] = -loss(params; ds[idx[i]]) for i < count, in batches of the
 * workspace's max batch. */
void audit_loss_scores(const model_t *m, const float *params, model_ws *ws, const dataset_t *ds,
                       const uint32_t *idx, size_t count, double *score);

/* score[i] = cos(v, -g_i restricted to up_idx), g_i = grad loss(w; ds[idx[i]]),
 * v = up_val[0..k); 0 when either vector is zero. grad is scratch of
 * m->num_params floats; ws needs a max batch >= 1. */
void audit_server_scores(const model_t *m, const float *w, model_ws *ws, const dataset_t *ds,
                         const uint32_t *idx, size_t count, const uint32_t *up_idx,
                         const float *up_val, size_t k, float *grad, double *score);

/* ---- the holdout -------------------------------------------------------- */

/* Moves `holdout` records of train, drawn uniformly from the stream
 * (seed, AUDIT_STREAM_HOLDOUT), into *out (a new dataset), and closes up
 * train over the rest in their original order (train->count shrinks by
 * holdout). Partitioning train afterwards can hand out no holdout record,
 * whatever the partition kind. Refuses a holdout that would leave fewer
 * than one record. */
int audit_carve_holdout(dataset_t *train, size_t holdout, uint64_t seed, dataset_t *out,
                        char *err);

/* ---- one run's audit (rank 0) ----------------------------------------- */

typedef struct {
    const model_t *model;
    const dataset_t *train, *holdout;
    const dataset_shards *shards;  /* the participants' (indices into train) */
    uint64_t seed;
    size_t sample;                 /* members (and as many non-members) per participant */
    int every, epochs;             /* audit epochs: multiples of every, and the last */
    uint32_t rounds;               /* turns per epoch: the server view reads the first */
    size_t k_up;                   /* most entries an upload carries */
    const char *path, *scores_path;/* CSV outputs; scores_path "" = none */
    int append;                    /* a resumed run: append to existing files */
} audit_opts;

typedef struct audit audit_t;

/* Draws the samples and opens the files (with their headers unless
 * appending to a non-empty file). NULL with err on failure. */
audit_t *audit_create(const audit_opts *o, char *err);
void audit_free(audit_t *a);

/* Whether epoch is an audit epoch; whether turn is the one whose uploads
 * the server view scores (the first turn of an audit epoch). */
int audit_epoch_due(const audit_t *a, int epoch);
int audit_turn_due(const audit_t *a, int turn);

/* The server packed participant p's download of turn from w (n floats);
 * p = UINT32_MAX: everyone's (a sync round). Copies w when the turn is due. */
int audit_note_download(audit_t *a, uint32_t p, int turn, const float *w);

/* The server is about to apply p's upload msg[0..len) of turn: scores p's
 * samples by the server view (against the state noted for p) when the
 * turn is due. A message that does not parse is skipped (the server
 * refuses it too). -1 only if out of memory. */
int audit_upload(audit_t *a, uint32_t p, int turn, const uint8_t *msg, size_t len);

/* Loss attack on the global model / on participant p's own model, for the
 * epoch being audited. */
void audit_global(audit_t *a, const float *params);
void audit_participant(audit_t *a, uint32_t p, const float *params);

/* Writes the epoch's rows (and scores), then forgets its scores. -1 with
 * err if a write failed. */
int audit_write_epoch(audit_t *a, int epoch, char *err);

#endif
