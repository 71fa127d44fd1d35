/* dataset: loads the image/label IDX pairs into floats in [0,1] and splits
 * the training set into participants' shards (iid, paper, Dirichlet). */
#include "dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "idx.h"

const char *dataset_default_dir(const char *name)
{
    if (strcmp(name, "fashion-mnist") == 0)
        return "/usr/share/datasets/fashion-mnist";
    return NULL;
}

/* Finds dir/base or dir/base.gz. */
static int find_file(const char *dir, const char *base, char *path, size_t len, char *err)
{
    snprintf(path, len, "%s/%s", dir, base);
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(path, len, "%s/%s.gz", dir, base);
    if (access(path, R_OK) == 0)
        return 0;
    return err_set(err, "%s: no readable %s or %s.gz", dir, base, base);
}

int dataset_files(const char *dir, char paths[4][DATASET_PATH_LEN])
{
    static const char *const bases[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    int found = 0;
    char err[ERR_LEN];
    for (int i = 0; i < 4 && dir; i++)
        if (find_file(dir, bases[i], paths[found], DATASET_PATH_LEN, err) == 0)
            found++;
    return found;
}

/* The split's image and label files under dir. */
static int split_files(const char *dir, int train, char *images_path, char *labels_path,
                       size_t len, char *err)
{
    const char *prefix = train ? "train" : "t10k";
    char base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    if (find_file(dir, base, images_path, len, err))
        return -1;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    return find_file(dir, base, labels_path, len, err);
}

/* ds->x: count x dim floats, zero but for the examples keep[i] marks (all
 * with keep NULL), each pixel byte/255. calloc leaves the pages it maps
 * untouched until written, so a rank that keeps a few shards holds only
 * their pages. */
static int fill_pixels(dataset_t *ds, const idx_array *images, const uint8_t *keep,
                       const char *path, char *err)
{
    ds->x = err_calloc(images->size, sizeof *ds->x);
    if (!ds->x)
        return err_set(err, "%s: out of memory for %zu pixels", path, images->size);
    for (size_t e = 0; e < ds->count; e++) {
        if (keep && !keep[e])
            continue;
        const uint8_t *from = images->data + e * ds->dim;
        float *to = ds->x + e * ds->dim;
        for (size_t i = 0; i < ds->dim; i++)
            to[i] = (float)from[i] / 255.0f; /* correctly rounded, as numpy's */
    }
    return 0;
}

static int load(const char *dir, int train, int pixels, dataset_t *out, char *err)
{
    memset(out, 0, sizeof *out);
    char images_path[4096], labels_path[4096];
    if (split_files(dir, train, images_path, labels_path, sizeof images_path, err))
        return -1;

    idx_array images = {0}, labels = {0};
    if ((pixels ? idx_read(images_path, 3, &images, err)
                : idx_read_header(images_path, 3, &images, err)) ||
        idx_read(labels_path, 1, &labels, err))
        goto fail;
    if (images.dims[0] != labels.dims[0]) {
        err_set(err, "%s has %u images but %s has %u labels", images_path, images.dims[0],
                labels_path, labels.dims[0]);
        goto fail;
    }
    for (size_t i = 0; i < labels.size; i++) {
        if (labels.data[i] >= DATASET_IDX_CLASSES) {
            err_set(err, "%s: label %u of item %zu is not below %d", labels_path,
                    labels.data[i], i, DATASET_IDX_CLASSES);
            goto fail;
        }
    }
    out->count = images.dims[0];
    out->channels = 1;
    out->rows = (int)images.dims[1];
    out->cols = (int)images.dims[2];
    out->dim = (size_t)out->rows * out->cols;
    out->classes = DATASET_IDX_CLASSES;
    if (pixels && fill_pixels(out, &images, NULL, images_path, err))
        goto fail;
    out->y = labels.data; /* take ownership */
    labels.data = NULL;
    idx_free(&images);
    return 0;
fail:
    idx_free(&images);
    idx_free(&labels);
    dataset_free(out);
    return -1;
}

int dataset_load(const char *dir, int train, dataset_t *out, char *err)
{
    return load(dir, train, 1, out, err);
}

int dataset_load_labels(const char *dir, int train, dataset_t *out, char *err)
{
    return load(dir, train, 0, out, err);
}

int dataset_load_pixels(const char *dir, int train, dataset_t *ds, const uint8_t *keep,
                        char *err)
{
    char images_path[4096], labels_path[4096];
    if (ds->x)
        return err_set(err, "internal error: the pixels of this set are already loaded");
    if (split_files(dir, train, images_path, labels_path, sizeof images_path, err))
        return -1;
    idx_array images = {0};
    if (idx_read(images_path, 3, &images, err))
        return -1;
    int rc = 0;
    /* The file may have changed since its header was read. */
    if (images.dims[0] != ds->count || images.dims[1] != (uint32_t)ds->rows ||
        images.dims[2] != (uint32_t)ds->cols)
        rc = err_set(err, "%s: now %u images of %ux%u, but %zu of %dx%d when its labels were "
                     "read: the file changed during start-up", images_path, images.dims[0],
                     images.dims[1], images.dims[2], ds->count, ds->rows, ds->cols);
    else
        rc = fill_pixels(ds, &images, keep, images_path, err);
    idx_free(&images);
    return rc;
}

void dataset_free(dataset_t *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

int dataset_check_compatible(const dataset_t *train, const dataset_t *test, char *err)
{
    /* The model's input size comes from the training images; evaluation
     * copies test->dim floats per example into a workspace sized by the
     * model, so any difference overflows it or reads misaligned images. */
    if (train->channels != test->channels || train->rows != test->rows ||
        train->cols != test->cols || train->dim != test->dim ||
        train->dim != (size_t)train->channels * train->rows * train->cols)
        return err_set(err, "the training images are %dx%dx%d but the test images are "
                       "%dx%dx%d (channels x rows x cols): both sets must have one image "
                       "shape", train->channels, train->rows, train->cols, test->channels,
                       test->rows, test->cols);
    return 0;
}

/* ---- partitions -------------------------------------------------------- */

static int shards_alloc(dataset_shards *s, int participants, size_t shard_size)
{
    s->count = participants;
    s->sizes = calloc((size_t)participants, sizeof *s->sizes);
    s->indices = calloc((size_t)participants, sizeof *s->indices);
    if (!s->sizes || !s->indices)
        return -1;
    for (int p = 0; p < participants; p++) {
        s->sizes[p] = shard_size;
        s->indices[p] = err_calloc(shard_size, sizeof(uint32_t));
        if (!s->indices[p])
            return -1;
    }
    return 0;
}

static uint32_t *identity(size_t n)
{
    uint32_t *a = err_calloc(n, sizeof *a);
    if (a)
        for (size_t i = 0; i < n; i++)
            a[i] = (uint32_t)i;
    return a;
}

/* Partial Fisher-Yates: the first k entries of a become a uniform random
 * k-subset, whatever permutation a held before. */
static void partial_shuffle(rng_t *rng, uint32_t *a, size_t n, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        size_t j = i + rng_below(rng, (uint32_t)(n - i));
        uint32_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

static int partition_dirichlet(const dataset_t *ds, dataset_shards *s, size_t shard_size,
                               double alpha, rng_t *rng)
{
    /* Pools of each class's examples, shuffled; participants draw label
     * proportions ~ Dirichlet(alpha) and take from the pools without
     * replacement, falling back to the fullest pool when one runs dry. */
    const int K = ds->classes;
    size_t class_count[DATASET_MAX_CLASSES] = {0}, taken[DATASET_MAX_CLASSES] = {0};
    for (size_t i = 0; i < ds->count; i++)
        class_count[ds->y[i]]++;
    uint32_t *pool[DATASET_MAX_CLASSES] = {0};
    int rc = -1;
    for (int c = 0; c < K; c++) {
        pool[c] = err_calloc(class_count[c] ? class_count[c] : 1, sizeof(uint32_t));
        if (!pool[c])
            goto done;
        class_count[c] = 0;
    }
    for (size_t i = 0; i < ds->count; i++)
        pool[ds->y[i]][class_count[ds->y[i]]++] = (uint32_t)i;
    for (int c = 0; c < K; c++)
        rng_shuffle_u32(rng, pool[c], class_count[c]);

    for (int p = 0; p < s->count; p++) {
        double q[DATASET_MAX_CLASSES] = {0}, sum = 0;
        for (int c = 0; c < K; c++)
            sum += q[c] = rng_gamma(rng, alpha);
        if (!(sum > 0) || !isfinite(sum)) {
            /* Tiny alpha: every Gamma draw underflowed. The limit of
             * Dirichlet(alpha -> 0) is one class chosen uniformly. */
            memset(q, 0, sizeof q);
            q[rng_below(rng, (uint32_t)K)] = sum = 1.0;
        }
        size_t filled = 0;
        for (int c = 0; c < K && filled < shard_size; c++) {
            size_t want = (size_t)(q[c] / sum * (double)shard_size + 0.5);
            if (want > shard_size - filled)
                want = shard_size - filled;
            while (want > 0 && taken[c] < class_count[c]) {
                s->indices[p][filled++] = pool[c][taken[c]++];
                want--;
            }
        }
        while (filled < shard_size) { /* rounding or exhausted pools */
            int fullest = 0;
            for (int c = 1; c < K; c++)
                if (class_count[c] - taken[c] > class_count[fullest] - taken[fullest])
                    fullest = c;
            s->indices[p][filled++] = pool[fullest][taken[fullest]++];
        }
    }
    rc = 0;
done:
    for (int c = 0; c < K; c++)
        free(pool[c]);
    return rc;
}

int dataset_partition_make(const dataset_t *ds, dataset_partition kind, int participants,
                           size_t shard_size, double alpha, rng_t *rng,
                           dataset_shards *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (participants < 1)
        return err_set(err, "partition: need at least one participant");
    if (ds->count == 0 || ds->count > UINT32_MAX)
        return err_set(err, "partition: dataset of %zu examples", ds->count);
    if (shard_size == 0)
        shard_size = ds->count / (size_t)participants;
    if (shard_size == 0)
        return err_set(err, "partition: %zu examples cannot give %d participants one each",
                       ds->count, participants);
    if (shard_size > ds->count)
        return err_set(err, "partition: shard size %zu exceeds the %zu training examples",
                       shard_size, ds->count);
    if (kind != PARTITION_PAPER && shard_size * (size_t)participants > ds->count)
        return err_set(err, "partition: %d disjoint shards of %zu need %zu examples, have %zu "
                       "(use --partition paper for overlapping shards)", participants,
                       shard_size, shard_size * (size_t)participants, ds->count);
    if (kind == PARTITION_DIRICHLET && !(alpha > 0))
        return err_set(err, "partition: Dirichlet alpha must be > 0");
    if (kind == PARTITION_DIRICHLET && (ds->classes < 1 || ds->classes > DATASET_MAX_CLASSES))
        return err_set(err, "partition: a data set of %d classes", ds->classes);
    if (shards_alloc(out, participants, shard_size))
        goto oom;

    if (kind == PARTITION_DIRICHLET) {
        if (partition_dirichlet(ds, out, shard_size, alpha, rng))
            goto oom;
        return 0;
    }
    uint32_t *perm = identity(ds->count);
    if (!perm)
        goto oom;
    if (kind == PARTITION_IID) {
        rng_shuffle_u32(rng, perm, ds->count);
        for (int p = 0; p < participants; p++)
            memcpy(out->indices[p], perm + (size_t)p * shard_size, shard_size * sizeof *perm);
    } else {
        for (int p = 0; p < participants; p++) {
            partial_shuffle(rng, perm, ds->count, shard_size);
            memcpy(out->indices[p], perm, shard_size * sizeof *perm);
        }
    }
    free(perm);
    return 0;
oom:
    dataset_shards_free(out);
    return err_set(err, "partition: out of memory");
}

int dataset_shards_union(const dataset_shards *shards, size_t total, uint32_t **out,
                         size_t *out_count, char *err)
{
    uint8_t *seen = err_calloc(total, 1);
    if (!seen)
        return err_set(err, "union: out of memory");
    size_t count = 0;
    for (int p = 0; p < shards->count; p++)
        for (size_t i = 0; i < shards->sizes[p]; i++) {
            uint32_t j = shards->indices[p][i];
            if (j < total && !seen[j]) {
                seen[j] = 1;
                count++;
            }
        }
    uint32_t *u = err_calloc(count ? count : 1, sizeof *u);
    if (!u) {
        free(seen);
        return err_set(err, "union: out of memory");
    }
    size_t k = 0;
    for (size_t j = 0; j < total; j++)
        if (seen[j])
            u[k++] = (uint32_t)j;
    free(seen);
    *out = u;
    *out_count = count;
    return 0;
}

void dataset_shards_free(dataset_shards *shards)
{
    if (!shards)
        return;
    for (int p = 0; p < shards->count && shards->indices; p++)
        free(shards->indices[p]);
    free(shards->indices);
    free(shards->sizes);
    memset(shards, 0, sizeof *shards);
}
