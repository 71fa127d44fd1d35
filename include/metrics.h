/* metrics: one CSV row per epoch (flushed at once, so a crash loses no
 * finished epoch) and a one-line progress report on stderr. */
#ifndef DSSGD_METRICS_H
#define DSSGD_METRICS_H

#include <stdint.h>
#include <stdio.h>

#define METRICS_HEADER "epoch,seconds,global_acc,global_loss,part_acc_mean,part_acc_min," \
    "part_acc_max,bytes_up,bytes_down,uploads_accepted,uploads_rejected,epsilon"

typedef struct {
    int epoch;                 /* 1-based */
    double seconds;            /* wall time of this epoch */
    int has_global;            /* 0 in standalone mode: no global model */
    double global_acc, global_loss;
    int has_part;              /* 0 in centralized mode, or an epoch the participants'
                                  models were not evaluated (--eval-every) */
    double part_acc_mean, part_acc_min, part_acc_max;
    size_t part_sample;        /* the participants' figures are on this many sampled
                                  test images (--eval-participants); 0 = on all */
    uint64_t bytes_up, bytes_down;   /* protocol bytes this epoch */
    uint64_t uploads_accepted, uploads_rejected;
    double epsilon;            /* largest cumulative epsilon, 0 without DP */
} metrics_row;

/* Opens path for writing and writes the header. NULL with err on failure. */
FILE *metrics_open(const char *path, char *err);
/* Opens an existing metrics file to continue a resumed run: keeps the header
 * and the rows of epochs 1..upto (rows after it came from a run that died
 * after its last checkpoint), rewritten atomically, and appends from there.
 * A missing file is started afresh. NULL with err on failure or if the file
 * is not a dssgd metrics file. */
FILE *metrics_open_resume(const char *path, int upto, char *err);
/* Writes one row and flushes; -1 with err if the write failed. */
int metrics_write(FILE *f, const metrics_row *row, char *err);
/* "epoch 3/20  12.1s  global acc 0.8412 loss 0.4413  ..." on out. */
void metrics_progress(FILE *out, const metrics_row *row, int epochs);

#endif
