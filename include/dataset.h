/* dataset: labelled examples in memory and their partition into shards.
 * An example is an image of channels x rows x cols floats (IDX sets: grey,
 * 1 x 28 x 28, in [0,1]; a vector of D features is 1 x 1 x D); labels are
 * bytes below `classes`. */
#ifndef DSSGD_DATASET_H
#define DSSGD_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/* The classes of the IDX sets (MNIST, Fashion-MNIST). */
#define DATASET_IDX_CLASSES 10
/* Labels are bytes: a set may have up to 256 classes. */
#define DATASET_MAX_CLASSES 256

typedef struct {
    size_t count;       /* number of examples */
    int channels;       /* image channels (1 for the IDX sets) */
    int rows, cols;     /* image size (28 x 28 for MNIST) */
    size_t dim;         /* channels * rows * cols */
    int classes;        /* labels are below it; 2 to DATASET_MAX_CLASSES */
    float *x;           /* (count, dim) pixels, channel-major within an example */
    uint8_t *y;         /* (count) labels in [0, classes) */
} dataset_t;

/* The default directory of a named dataset ("fashion-mnist" has Debian's
 * package directory; "mnist" has none: NULL). */
const char *dataset_default_dir(const char *name);

/* Loads the training ("train-") or test ("t10k-") split from dir: the
 * standard file names, with or without ".gz". Checks that images and labels
 * agree in count and that every label is in range. */
int dataset_load(const char *dir, int train, dataset_t *out, char *err);

/* The same without the pixels: every field but x (NULL), from the labels
 * and the images' header, for a rank that draws the shards but trains on
 * nothing (the pixels are neither read nor checked). */
int dataset_load_labels(const char *dir, int train, dataset_t *out, char *err);

/* Adds the pixels to a set dataset_load_labels read from the same dir and
 * split, for the examples keep[i] marks (keep: count flags; NULL: all);
 * the others stay zero and, being untouched, take no memory. For a rank
 * that trains only the shards of its own participants. The images must
 * still match the labels' count and shape. */
int dataset_load_pixels(const char *dir, int train, dataset_t *ds, const uint8_t *keep,
                        char *err);

void dataset_free(dataset_t *ds);

/* The data files dataset_load reads from dir (the training and test
 * images and labels, each with or without ".gz", as found): writes up to 4
 * paths of DATASET_PATH_LEN into paths and returns how many exist. For
 * refusing an output that would overwrite one. */
#define DATASET_PATH_LEN 4096
int dataset_files(const char *dir, char paths[4][DATASET_PATH_LEN]);

/* Checks that a model trained on `train` can be evaluated on `test`: the
 * two must have the same example shape (channels, rows, cols and so dim).
 * The counts and the classes may differ (the caller decides the model's
 * classes). On a mismatch the message names both shapes and which set has
 * which. */
int dataset_check_compatible(const dataset_t *train, const dataset_t *test, char *err);

/* Shards: each participant's training examples as indices into the
 * training set. */
typedef struct {
    int count;            /* participants */
    size_t *sizes;        /* (count) examples per shard */
    uint32_t **indices;   /* (count) arrays of sizes[p] indices */
} dataset_shards;

typedef enum { PARTITION_IID, PARTITION_PAPER, PARTITION_DIRICHLET } dataset_partition;

/* Splits ds into `participants` shards of `shard_size` examples
 * (0 = an equal share of all examples):
 *  iid        disjoint shards from one seeded permutation;
 *  paper      each shard sampled independently without replacement within
 *             it, so shards may overlap (the paper's 1% per participant);
 *  dirichlet  disjoint, label proportions per shard ~ Dirichlet(alpha).
 * Draws from rng (the partition stream). */
int dataset_partition_make(const dataset_t *ds, dataset_partition kind, int participants,
                           size_t shard_size, double alpha, rng_t *rng,
                           dataset_shards *out, char *err);

/* The distinct indices of all shards, ascending (the centralized baseline's
 * training set). Caller frees *out. */
int dataset_shards_union(const dataset_shards *shards, size_t total, uint32_t **out,
                         size_t *out_count, char *err);

void dataset_shards_free(dataset_shards *shards);

#endif
