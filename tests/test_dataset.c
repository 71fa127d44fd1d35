/* test_dataset: loading IDX image/label pairs (pixels byte/255, refusals naming
 * the file) and the iid, paper and Dirichlet partitions and their union. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataset.h"
#include "err.h"
#include "idx.h"
#include "rng.h"
#include "test_util.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- a scratch directory for the synthetic IDX files ------------------- */

static char tmpdir[TU_TMPDIR_CAP];

static int group_setup(void **state)
{
    (void)state;
    return tu_make_tmpdir(tmpdir, "test_dataset");
}

static int group_teardown(void **state)
{
    (void)state;
    tu_remove_tree(tmpdir);
    return 0;
}

/* tmpdir/name, created. */
static void make_subdir(char *buf, size_t len, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < len);
    assert_int_equal(mkdir(buf, 0700), 0);
}

static void write_idx(const char *dir, const char *base, int ndims, const uint32_t *dims,
                      const uint8_t *data, int gzip)
{
    idx_array a = {.ndims = ndims, .size = 1};
    for (int i = 0; i < ndims; i++) {
        a.dims[i] = dims[i];
        a.size *= dims[i];
    }
    a.data = (uint8_t *)data;
    char path[512], err[ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/%s%s", dir, base, gzip ? ".gz" : "");
    if (idx_write(path, &a, gzip, err) != 0)
        fail_msg("idx_write: %s", err);
}

/* Synthetic split: count images of rows x cols whose bytes run through all of
 * 0..255, and labels i % 10 unless given. */
enum { SYN_COUNT = 16, SYN_ROWS = 4, SYN_COLS = 4 };

static void syn_pixels(uint8_t *px)
{
    for (size_t i = 0; i < SYN_COUNT * SYN_ROWS * SYN_COLS; i++)
        px[i] = (uint8_t)((i * 37 + 11) % 256); /* 37 is odd: a permutation of 0..255 */
}

static void write_split(const char *dir, const char *prefix, const uint8_t *labels,
                        uint32_t label_count, int gzip)
{
    uint8_t px[SYN_COUNT * SYN_ROWS * SYN_COLS];
    syn_pixels(px);
    char base[64];
    uint32_t idims[3] = {SYN_COUNT, SYN_ROWS, SYN_COLS};
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    write_idx(dir, base, 3, idims, px, gzip);
    uint8_t lab[SYN_COUNT + 8];
    for (uint32_t i = 0; i < label_count; i++)
        lab[i] = labels ? labels[i] : (uint8_t)(i % 10);
    uint32_t ldims[1] = {label_count};
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    write_idx(dir, base, 1, ldims, lab, gzip);
}

static void assert_synthetic(const dataset_t *ds)
{
    assert_int_equal(ds->count, SYN_COUNT);
    assert_int_equal(ds->rows, SYN_ROWS);
    assert_int_equal(ds->cols, SYN_COLS);
    assert_int_equal(ds->dim, SYN_ROWS * SYN_COLS);
    uint8_t px[SYN_COUNT * SYN_ROWS * SYN_COLS];
    syn_pixels(px);
    for (size_t i = 0; i < sizeof px; i++) {
        /* expected byte/255 in double; tolerance 1.2e-7 relative (about
         * 2^-23, one float ulp); the exact test is separate below */
        double want = px[i] / 255.0;
        if (fabs(ds->x[i] - want) > 1.2e-7 * (want > 0 ? want : 1) || ds->x[i] < 0 || ds->x[i] > 1)
            fail_msg("pixel %zu: byte %u gave %.9g, expected %.9g", i, px[i], ds->x[i], want);
    }
    for (size_t i = 0; i < SYN_COUNT; i++)
        assert_int_equal(ds->y[i], i % 10);
}

static void assert_load_fails(const char *dir, int train, const char *const *phrases)
{
    dataset_t ds;
    memset(&ds, 0xAB, sizeof ds);
    char err[ERR_LEN] = "";
    assert_int_equal(dataset_load(dir, train, &ds, err), -1);
    for (; *phrases; phrases++)
        if (!strstr(err, *phrases))
            fail_msg("message \"%s\" should contain \"%s\"", err, *phrases);
    /* the output is left empty: safe to free, nothing to leak */
    assert_null(ds.x);
    assert_null(ds.y);
    assert_int_equal(ds.count, 0);
    dataset_free(&ds);
}

/* ---- loading ------------------------------------------------------------- */

static void test_load_plain_gives_shape_pixels_and_labels(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "plain");
    write_split(dir, "train", NULL, SYN_COUNT, 0);
    dataset_t ds;
    char err[ERR_LEN] = "";
    if (dataset_load(dir, 1, &ds, err) != 0)
        fail_msg("%s", err);
    assert_synthetic(&ds);
    /* the extremes exactly: 0 -> 0 and 255 -> 1 */
    uint8_t px[SYN_COUNT * SYN_ROWS * SYN_COLS];
    syn_pixels(px);
    for (size_t i = 0; i < sizeof px; i++) {
        if (px[i] == 0)
            assert_true(ds.x[i] == 0.0f);
        if (px[i] == 255)
            assert_true(ds.x[i] == 1.0f);
    }
    dataset_free(&ds);
}

static void test_load_pixels_are_exactly_byte_over_255(void **state)
{
    (void)state;
    /* Expected value: (float)b / 255.0f, the correctly rounded quotient
     * (what numpy's x.astype(float32) / 255 and torchvision's ToTensor give);
     * tolerance 0. All 256 byte values occur in the synthetic images. */
    char dir[256];
    make_subdir(dir, sizeof dir, "exact");
    write_split(dir, "train", NULL, SYN_COUNT, 0);
    dataset_t ds;
    char err[ERR_LEN] = "";
    if (dataset_load(dir, 1, &ds, err) != 0)
        fail_msg("%s", err);
    uint8_t px[SYN_COUNT * SYN_ROWS * SYN_COLS];
    syn_pixels(px);
    int wrong = 0, first = -1;
    for (size_t i = 0; i < sizeof px; i++)
        if (ds.x[i] != (float)px[i] / 255.0f) {
            if (first < 0)
                first = (int)i;
            wrong++;
        }
    if (wrong) {
        uint8_t b = px[first];
        float got = ds.x[first];
        dataset_free(&ds);
        fail_msg("%d of %zu pixels differ from byte/255, e.g. byte %u gave %.9g, expected %.9g",
                 wrong, sizeof px, b, got, (float)b / 255.0f);
    }
    dataset_free(&ds);
}

static void test_load_gzip_gives_same_as_plain(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "gz");
    write_split(dir, "train", NULL, SYN_COUNT, 1);
    write_split(dir, "t10k", NULL, SYN_COUNT, 1);
    char err[ERR_LEN] = "";
    for (int train = 0; train < 2; train++) {
        dataset_t ds;
        if (dataset_load(dir, train, &ds, err) != 0)
            fail_msg("%s", err);
        assert_synthetic(&ds);
        dataset_free(&ds);
    }
}

/* Without the pixels: the same count, shape, classes and labels as the
 * full load (gzip and plain), x NULL; the labels are still checked. */
static void test_load_labels_only_gives_all_but_the_pixels(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "labels");
    write_split(dir, "train", NULL, SYN_COUNT, 1);
    write_split(dir, "t10k", NULL, SYN_COUNT, 0);
    char err[ERR_LEN] = "";
    for (int train = 0; train < 2; train++) {
        dataset_t all, labels;
        if (dataset_load(dir, train, &all, err) || dataset_load_labels(dir, train, &labels, err))
            fail_msg("%s", err);
        assert_null(labels.x);
        assert_int_equal(labels.count, all.count);
        assert_int_equal(labels.dim, all.dim);
        assert_int_equal(labels.rows, all.rows);
        assert_int_equal(labels.cols, all.cols);
        assert_int_equal(labels.channels, all.channels);
        assert_int_equal(labels.classes, all.classes);
        assert_memory_equal(labels.y, all.y, all.count);
        dataset_free(&all);
        dataset_free(&labels);
    }
}

/* Pixels added later for some examples: those examples exactly as the
 * full load has them (gzip and plain), every other example zero; with
 * keep NULL the whole full load. A file whose shape no longer matches the
 * labels' is refused, naming it. */
static void test_load_pixels_of_kept_examples_only(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "kept");
    write_split(dir, "train", NULL, SYN_COUNT, 1);
    write_split(dir, "t10k", NULL, SYN_COUNT, 0);
    char err[ERR_LEN] = "";
    uint8_t keep[SYN_COUNT] = {0};
    keep[0] = keep[5] = keep[SYN_COUNT - 1] = 1;
    for (int train = 0; train < 2; train++) {
        dataset_t all, some, every;
        if (dataset_load(dir, train, &all, err) || dataset_load_labels(dir, train, &some, err) ||
            dataset_load_pixels(dir, train, &some, keep, err) ||
            dataset_load_labels(dir, train, &every, err) ||
            dataset_load_pixels(dir, train, &every, NULL, err))
            fail_msg("%s", err);
        assert_memory_equal(every.x, all.x, all.count * all.dim * sizeof *all.x);
        for (size_t e = 0; e < all.count; e++)
            for (size_t i = 0; i < all.dim; i++) {
                float want = keep[e] ? all.x[e * all.dim + i] : 0.0f;
                if (memcmp(&some.x[e * all.dim + i], &want, sizeof want) != 0)
                    fail_msg("example %zu pixel %zu: %.9g, want %.9g", e, i,
                             some.x[e * all.dim + i], want);
            }
        assert_int_equal(dataset_load_pixels(dir, train, &some, keep, err), -1); /* twice */
        dataset_free(&all);
        dataset_free(&some);
        dataset_free(&every);
    }
    dataset_t labels;
    if (dataset_load_labels(dir, 1, &labels, err))
        fail_msg("%s", err);
    labels.count = SYN_COUNT - 1; /* as if the images file had changed since */
    assert_int_equal(dataset_load_pixels(dir, 1, &labels, NULL, err), -1);
    assert_non_null(strstr(err, "train-images-idx3-ubyte"));
    assert_non_null(strstr(err, "changed"));
    assert_null(labels.x);
    dataset_free(&labels);
}

static void test_load_test_split_reads_t10k_files(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "t10k-only");
    uint8_t labels[SYN_COUNT];
    for (int i = 0; i < SYN_COUNT; i++)
        labels[i] = (uint8_t)(9 - i % 10);
    write_split(dir, "t10k", labels, SYN_COUNT, 0);
    dataset_t ds;
    char err[ERR_LEN] = "";
    if (dataset_load(dir, 0, &ds, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(ds.count, SYN_COUNT);
    for (int i = 0; i < SYN_COUNT; i++)
        assert_int_equal(ds.y[i], 9 - i % 10);
    dataset_free(&ds);
    /* the training split is not there */
    const char *phrases[] = {dir, "train-images-idx3-ubyte", NULL};
    assert_load_fails(dir, 1, phrases);
}

static void test_load_refuses_missing_files_naming_dir_and_file(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "empty");
    const char *images[] = {dir, "train-images-idx3-ubyte", NULL};
    assert_load_fails(dir, 1, images);
    /* images present, labels missing */
    uint8_t px[SYN_COUNT * SYN_ROWS * SYN_COLS];
    syn_pixels(px);
    uint32_t idims[3] = {SYN_COUNT, SYN_ROWS, SYN_COLS};
    write_idx(dir, "train-images-idx3-ubyte", 3, idims, px, 0);
    const char *labels[] = {dir, "train-labels-idx1-ubyte", NULL};
    assert_load_fails(dir, 1, labels);
    /* a directory that does not exist */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-dir", tmpdir);
    const char *nodir[] = {missing, "train-images-idx3-ubyte", NULL};
    assert_load_fails(missing, 1, nodir);
}

static void test_load_refuses_count_mismatch(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "mismatch");
    write_split(dir, "train", NULL, SYN_COUNT - 1, 0);
    const char *phrases[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "16", "15",
                             NULL};
    assert_load_fails(dir, 1, phrases);
}

static void test_load_refuses_label_out_of_range(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "label10");
    uint8_t labels[SYN_COUNT];
    for (int i = 0; i < SYN_COUNT; i++)
        labels[i] = (uint8_t)(i % 10);
    labels[13] = 10;
    write_split(dir, "train", labels, SYN_COUNT, 0);
    const char *phrases[] = {"train-labels-idx1-ubyte", "13", "10", NULL};
    assert_load_fails(dir, 1, phrases);
}

static void test_load_refuses_labels_with_three_dims(void **state)
{
    (void)state;
    char dir[256];
    make_subdir(dir, sizeof dir, "labels3d");
    uint8_t px[SYN_COUNT * SYN_ROWS * SYN_COLS];
    syn_pixels(px);
    uint32_t idims[3] = {SYN_COUNT, SYN_ROWS, SYN_COLS};
    write_idx(dir, "train-images-idx3-ubyte", 3, idims, px, 0);
    uint8_t lab[SYN_COUNT];
    memset(lab, 1, sizeof lab);
    uint32_t ldims[3] = {SYN_COUNT, 1, 1};
    write_idx(dir, "train-labels-idx1-ubyte", 3, ldims, lab, 0);
    const char *phrases[] = {"train-labels-idx1-ubyte", NULL};
    assert_load_fails(dir, 1, phrases);
}

static void test_load_real_fashion_mnist(void **state)
{
    (void)state;
    if (access(FASHION_DIR, R_OK) != 0)
        skip();
    /* Fashion-MNIST: 60,000 training and 10,000 test images of 28 x 28,
     * 6,000 training images per class (Xiao et al., 2017). */
    dataset_t ds;
    char err[ERR_LEN] = "";
    if (dataset_load(FASHION_DIR, 1, &ds, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(ds.count, 60000);
    assert_int_equal(ds.rows, 28);
    assert_int_equal(ds.cols, 28);
    assert_int_equal(ds.dim, 784);
    size_t per_class[DATASET_IDX_CLASSES] = {0};
    for (size_t i = 0; i < ds.count; i++) {
        assert_true(ds.y[i] < DATASET_IDX_CLASSES);
        per_class[ds.y[i]]++;
    }
    for (int c = 0; c < DATASET_IDX_CLASSES; c++)
        assert_int_equal(per_class[c], 6000);
    float lo = 1, hi = 0;
    for (size_t i = 0; i < ds.count * ds.dim; i++) {
        lo = ds.x[i] < lo ? ds.x[i] : lo;
        hi = ds.x[i] > hi ? ds.x[i] : hi;
    }
    assert_true(lo == 0.0f && hi == 1.0f);
    dataset_free(&ds);

    if (dataset_load(FASHION_DIR, 0, &ds, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(ds.count, 10000);
    assert_int_equal(ds.rows, 28);
    assert_int_equal(ds.cols, 28);
    for (size_t i = 0; i < ds.count; i++)
        assert_true(ds.y[i] < DATASET_IDX_CLASSES);
    dataset_free(&ds);
}

/* ---- partitions ------------------------------------------------------------- */

enum { PART_COUNT = 1000 };

/* 1000 examples of one pixel, label i % 10. */
static dataset_t synthetic(void)
{
    dataset_t ds = {.count = PART_COUNT, .channels = 1, .rows = 1, .cols = 1, .dim = 1,
                    .classes = DATASET_IDX_CLASSES};
    ds.x = calloc(PART_COUNT, sizeof *ds.x);
    ds.y = malloc(PART_COUNT);
    assert_true(ds.x && ds.y);
    for (size_t i = 0; i < PART_COUNT; i++)
        ds.y[i] = (uint8_t)(i % 10);
    return ds;
}

static void make_partition(const dataset_t *ds, dataset_partition kind, int participants,
                           size_t shard_size, double alpha, uint64_t seed, dataset_shards *out)
{
    rng_t rng;
    rng_init(&rng, seed, RNG_STREAM_PARTITION);
    char err[ERR_LEN] = "";
    if (dataset_partition_make(ds, kind, participants, shard_size, alpha, &rng, out, err) != 0)
        fail_msg("partition: %s", err);
    assert_int_equal(out->count, participants);
}

static int shards_equal(const dataset_shards *a, const dataset_shards *b)
{
    if (a->count != b->count)
        return 0;
    for (int p = 0; p < a->count; p++)
        if (a->sizes[p] != b->sizes[p] ||
            memcmp(a->indices[p], b->indices[p], a->sizes[p] * sizeof(uint32_t)) != 0)
            return 0;
    return 1;
}

/* Every shard has `size` in-range indices, distinct within the shard;
 * returns how many indices appear in more than one shard. */
static size_t check_shards(const dataset_shards *s, size_t size, size_t total)
{
    int *owner = malloc(total * sizeof *owner);
    assert_non_null(owner);
    for (size_t j = 0; j < total; j++)
        owner[j] = -1;
    size_t shared = 0;
    for (int p = 0; p < s->count; p++) {
        assert_int_equal(s->sizes[p], size);
        for (size_t i = 0; i < s->sizes[p]; i++) {
            uint32_t j = s->indices[p][i];
            assert_true(j < total);
            if (owner[j] == p)
                fail_msg("shard %d holds index %u twice", p, j);
            if (owner[j] >= 0)
                shared++;
            owner[j] = p;
        }
    }
    free(owner);
    return shared;
}

static void test_iid_shards_disjoint_equal_and_in_range(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    dataset_shards s;
    make_partition(&ds, PARTITION_IID, 10, 100, 0, 1, &s);
    assert_int_equal(check_shards(&s, 100, PART_COUNT), 0);
    dataset_shards_free(&s);
    make_partition(&ds, PARTITION_IID, 3, 250, 0, 1, &s);
    assert_int_equal(check_shards(&s, 250, PART_COUNT), 0);
    dataset_shards_free(&s);
    dataset_free(&ds);
}

static void test_iid_deterministic_for_a_seed_and_varies_with_it(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    dataset_shards a, b, c;
    make_partition(&ds, PARTITION_IID, 10, 100, 0, 7, &a);
    make_partition(&ds, PARTITION_IID, 10, 100, 0, 7, &b);
    make_partition(&ds, PARTITION_IID, 10, 100, 0, 8, &c);
    assert_true(shards_equal(&a, &b));
    assert_false(shards_equal(&a, &c));
    /* and it is shuffled: the first shard is not simply 0..99 */
    int identity = 1;
    for (uint32_t i = 0; i < 100; i++)
        identity &= a.indices[0][i] == i;
    assert_false(identity);
    dataset_shards_free(&a);
    dataset_shards_free(&b);
    dataset_shards_free(&c);
    dataset_free(&ds);
}

static void test_shard_size_zero_is_equal_share(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    dataset_shards s;
    make_partition(&ds, PARTITION_IID, 7, 0, 0, 1, &s);
    assert_int_equal(check_shards(&s, PART_COUNT / 7, PART_COUNT), 0); /* 142 each */
    dataset_shards_free(&s);
    make_partition(&ds, PARTITION_PAPER, 4, 0, 0, 1, &s);
    (void)check_shards(&s, 250, PART_COUNT);
    dataset_shards_free(&s);
    make_partition(&ds, PARTITION_DIRICHLET, 8, 0, 1.0, 1, &s);
    assert_int_equal(check_shards(&s, 125, PART_COUNT), 0);
    dataset_shards_free(&s);
    dataset_free(&ds);
}

static void test_paper_shards_distinct_within_and_may_overlap(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    dataset_shards a, b;
    /* 30 shards of 100 from 1000 (more than the data: allowed, unlike iid) */
    make_partition(&ds, PARTITION_PAPER, 30, 100, 0, 3, &a);
    assert_true(check_shards(&a, 100, PART_COUNT) > 0);
    make_partition(&ds, PARTITION_PAPER, 30, 100, 0, 3, &b);
    assert_true(shards_equal(&a, &b));
    dataset_shards_free(&a);
    dataset_shards_free(&b);
    /* sampled independently: two shards of 100 overlap even though they
     * could be disjoint (P(no overlap) = C(900,100)/C(1000,100) < 1e-4) */
    make_partition(&ds, PARTITION_PAPER, 2, 100, 0, 3, &a);
    assert_true(check_shards(&a, 100, PART_COUNT) > 0);
    dataset_shards_free(&a);
    dataset_free(&ds);
}

/* Mean over shards of the largest class fraction, and the largest of them. */
static void class_skew(const dataset_t *ds, const dataset_shards *s, double *mean_max,
                       double *max_max, double *min_max)
{
    double sum = 0;
    *max_max = 0;
    *min_max = 1;
    for (int p = 0; p < s->count; p++) {
        size_t hist[DATASET_IDX_CLASSES] = {0}, top = 0;
        for (size_t i = 0; i < s->sizes[p]; i++)
            hist[ds->y[s->indices[p][i]]]++;
        for (int c = 0; c < DATASET_IDX_CLASSES; c++)
            top = hist[c] > top ? hist[c] : top;
        double f = (double)top / (double)s->sizes[p];
        sum += f;
        *max_max = f > *max_max ? f : *max_max;
        *min_max = f < *min_max ? f : *min_max;
    }
    *mean_max = sum / s->count;
}

static void test_dirichlet_disjoint_with_exact_sizes(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    static const double alphas[] = {1e-4, 0.05, 0.5, 1000};
    for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
        dataset_shards s;
        make_partition(&ds, PARTITION_DIRICHLET, 10, 50, alphas[a], 5, &s);
        assert_int_equal(check_shards(&s, 50, PART_COUNT), 0);
        dataset_shards_free(&s);
        /* the whole set: pools run dry and the fallback fills the shards */
        make_partition(&ds, PARTITION_DIRICHLET, 10, 100, alphas[a], 5, &s);
        assert_int_equal(check_shards(&s, 100, PART_COUNT), 0);
        dataset_shards_free(&s);
    }
    dataset_free(&ds);
}

static void test_dirichlet_deterministic_for_a_seed(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    dataset_shards a, b, c;
    make_partition(&ds, PARTITION_DIRICHLET, 10, 50, 0.5, 9, &a);
    make_partition(&ds, PARTITION_DIRICHLET, 10, 50, 0.5, 9, &b);
    make_partition(&ds, PARTITION_DIRICHLET, 10, 50, 0.5, 10, &c);
    assert_true(shards_equal(&a, &b));
    assert_false(shards_equal(&a, &c));
    dataset_shards_free(&a);
    dataset_shards_free(&b);
    dataset_shards_free(&c);
    dataset_free(&ds);
}

static void test_dirichlet_small_alpha_skews_large_alpha_evens(void **state)
{
    (void)state;
    /* Properties, for 10 shards of 50 from 1000 examples of 10 classes, over
     * 5 seeds: alpha = 0.05 puts most of a shard in one class (mean over
     * shards of the largest class fraction > 0.5; for Dirichlet(0.05 x 10)
     * its expectation is about 0.8); alpha = 1000 gives every shard nearly
     * uniform labels (largest class fraction < 0.2 in every shard, against
     * 0.1 + rounding for exact proportions). */
    dataset_t ds = synthetic();
    for (uint64_t seed = 1; seed <= 5; seed++) {
        dataset_shards s;
        double mean_max, max_max, min_max;
        make_partition(&ds, PARTITION_DIRICHLET, 10, 50, 0.05, seed, &s);
        class_skew(&ds, &s, &mean_max, &max_max, &min_max);
        if (!(mean_max > 0.5))
            fail_msg("alpha 0.05, seed %llu: mean largest class fraction %.3f <= 0.5",
                     (unsigned long long)seed, mean_max);
        dataset_shards_free(&s);

        make_partition(&ds, PARTITION_DIRICHLET, 10, 50, 1000, seed, &s);
        class_skew(&ds, &s, &mean_max, &max_max, &min_max);
        if (!(max_max < 0.2))
            fail_msg("alpha 1000, seed %llu: a shard has largest class fraction %.3f >= 0.2",
                     (unsigned long long)seed, max_max);
        dataset_shards_free(&s);
    }
    dataset_free(&ds);
}

static void test_dirichlet_tiny_alpha_picks_dominant_class_uniformly(void **state)
{
    (void)state;
    /* Dirichlet(1e-4 x 10) is in effect one-hot on a uniformly random class,
     * though its Gamma draws all underflow to 0 about half the time. Property,
     * over seeds 1..200 of one shard of 10: label 0 dominates the shard fewer
     * than 40 times (uniform: 20 expected, standard deviation 4.2). */
    dataset_t ds = synthetic();
    int dominant[DATASET_IDX_CLASSES] = {0};
    for (uint64_t seed = 1; seed <= 200; seed++) {
        dataset_shards s;
        make_partition(&ds, PARTITION_DIRICHLET, 1, 10, 1e-4, seed, &s);
        size_t hist[DATASET_IDX_CLASSES] = {0}, top = 0;
        int top_class = 0;
        for (size_t i = 0; i < s.sizes[0]; i++)
            hist[ds.y[s.indices[0][i]]]++;
        for (int c = 0; c < DATASET_IDX_CLASSES; c++)
            if (hist[c] > top) {
                top = hist[c];
                top_class = c;
            }
        dominant[top_class]++;
        dataset_shards_free(&s);
    }
    dataset_free(&ds);
    if (dominant[0] >= 40)
        fail_msg("label 0 dominates %d of 200 shards (uniform: about 20); label 1: %d",
                 dominant[0], dominant[1]);
}

static void assert_partition_refused(const dataset_t *ds, dataset_partition kind,
                                     int participants, size_t shard_size, double alpha)
{
    rng_t rng;
    rng_init(&rng, 1, RNG_STREAM_PARTITION);
    dataset_shards s;
    memset(&s, 0xAB, sizeof s);
    char err[ERR_LEN] = "";
    assert_int_equal(dataset_partition_make(ds, kind, participants, shard_size, alpha, &rng,
                                            &s, err), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(s.count, 0);
    assert_null(s.sizes);
    assert_null(s.indices);
    dataset_shards_free(&s);
}

static void test_partition_refusals(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    /* no participants */
    assert_partition_refused(&ds, PARTITION_IID, 0, 10, 0);
    assert_partition_refused(&ds, PARTITION_PAPER, 0, 10, 0);
    assert_partition_refused(&ds, PARTITION_DIRICHLET, -1, 10, 1);
    /* disjoint shards needing more than the data: 11 x 100 > 1000 */
    assert_partition_refused(&ds, PARTITION_IID, 11, 100, 0);
    assert_partition_refused(&ds, PARTITION_DIRICHLET, 11, 100, 1);
    /* a shard larger than the data, even when overlap is allowed */
    assert_partition_refused(&ds, PARTITION_PAPER, 1, PART_COUNT + 1, 0);
    assert_partition_refused(&ds, PARTITION_IID, 1, PART_COUNT + 1, 0);
    /* equal share of zero: more participants than examples */
    assert_partition_refused(&ds, PARTITION_IID, PART_COUNT + 1, 0, 0);
    /* Dirichlet needs alpha > 0 */
    assert_partition_refused(&ds, PARTITION_DIRICHLET, 10, 50, 0);
    assert_partition_refused(&ds, PARTITION_DIRICHLET, 10, 50, -1);
    assert_partition_refused(&ds, PARTITION_DIRICHLET, 10, 50, NAN);
    dataset_free(&ds);
}

/* ---- union ------------------------------------------------------------------ */

static void test_union_is_distinct_ascending_and_equals_naive_union(void **state)
{
    (void)state;
    dataset_t ds = synthetic();
    dataset_shards s;
    make_partition(&ds, PARTITION_PAPER, 5, 150, 0, 11, &s);
    uint32_t *u = NULL;
    size_t n = 0;
    char err[ERR_LEN] = "";
    if (dataset_shards_union(&s, PART_COUNT, &u, &n, err) != 0)
        fail_msg("%s", err);
    for (size_t i = 1; i < n; i++)
        assert_true(u[i] > u[i - 1]);
    /* the naive union: every candidate index, looked up in every shard */
    size_t k = 0;
    for (uint32_t j = 0; j < PART_COUNT; j++) {
        int in = 0;
        for (int p = 0; p < s.count && !in; p++)
            for (size_t i = 0; i < s.sizes[p] && !in; i++)
                in = s.indices[p][i] == j;
        if (in) {
            assert_true(k < n);
            assert_int_equal(u[k], j);
            k++;
        }
    }
    assert_int_equal(k, n);
    assert_true(n < 5 * 150); /* the shards overlapped */
    free(u);
    dataset_shards_free(&s);

    /* iid shards covering everything: the union is 0..999 */
    make_partition(&ds, PARTITION_IID, 10, 0, 0, 11, &s);
    assert_int_equal(dataset_shards_union(&s, PART_COUNT, &u, &n, err), 0);
    assert_int_equal(n, PART_COUNT);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(u[i], i);
    free(u);
    dataset_shards_free(&s);
    dataset_free(&ds);
}

static void test_free_accepts_zeroed_structs(void **state)
{
    (void)state;
    dataset_t ds = {0};
    dataset_free(&ds);
    dataset_free(NULL);
    dataset_shards s = {0};
    dataset_shards_free(&s);
    dataset_shards_free(NULL);
    /* and freeing twice is harmless: free zeroes the struct */
    dataset_t d2 = synthetic();
    dataset_free(&d2);
    assert_null(d2.x);
    dataset_free(&d2);
}

/* ---- train and test shapes ---------------------------------------------- */

/* A header-only dataset of the given shape: dataset_check_compatible reads
 * no pixels. */
static dataset_t shaped(size_t count, int rows, int cols)
{
    return (dataset_t){.count = count, .channels = 1, .rows = rows, .cols = cols,
                       .dim = (size_t)rows * (size_t)cols, .classes = DATASET_IDX_CLASSES};
}

static void test_compatible_accepts_one_shape_with_different_counts(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    dataset_t train = shaped(60000, 28, 28), test = shaped(10000, 28, 28);
    assert_int_equal(dataset_check_compatible(&train, &test, err), 0);
    assert_string_equal(err, "");
}

/* Train smaller than test overflowed sgd_evaluate's workspace; test smaller
 * gave a wrong accuracy. Both are refused, naming each set's shape. */
static void test_compatible_refuses_each_way_naming_both_shapes(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    dataset_t small = shaped(100, 27, 27), big = shaped(100, 28, 28);
    assert_int_equal(dataset_check_compatible(&small, &big, err), -1);
    assert_string_equal(err, "the training images are 1x27x27 but the test images are 1x28x28 "
                             "(channels x rows x cols): both sets must have one image shape");
    err[0] = '\0';
    assert_int_equal(dataset_check_compatible(&big, &small, err), -1);
    assert_non_null(strstr(err, "training images are 1x28x28"));
    assert_non_null(strstr(err, "test images are 1x27x27"));
    /* channels count: 3 x 28 x 28 is not 1 x 28 x 28 */
    dataset_t colour = shaped(100, 28, 28);
    colour.channels = 3;
    colour.dim *= 3;
    assert_int_equal(dataset_check_compatible(&colour, &big, err), -1);
    assert_non_null(strstr(err, "training images are 3x28x28"));
}

/* 28x27 and 27x28 have the same number of pixels but not the same images. */
static void test_compatible_refuses_transposed_shape_of_equal_size(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    dataset_t a = shaped(10, 28, 27), b = shaped(10, 27, 28);
    assert_int_equal(dataset_check_compatible(&a, &b, err), -1);
    assert_non_null(strstr(err, "28x27"));
    assert_non_null(strstr(err, "27x28"));
}

/* Two sets loaded from files: the loader's shape is what is compared. */
static void test_compatible_on_loaded_splits(void **state)
{
    (void)state;
    char dir[512], err[ERR_LEN] = "";
    make_subdir(dir, sizeof dir, "shapes");
    write_split(dir, "train", NULL, SYN_COUNT, 0);
    write_split(dir, "t10k", NULL, SYN_COUNT, 0);
    dataset_t train, test;
    assert_int_equal(dataset_load(dir, 1, &train, err), 0);
    assert_int_equal(dataset_load(dir, 0, &test, err), 0);
    assert_int_equal(dataset_check_compatible(&train, &test, err), 0);
    test.cols = SYN_COLS + 1; /* as if the test files were wider */
    test.dim = (size_t)test.rows * (size_t)test.cols;
    assert_int_equal(dataset_check_compatible(&train, &test, err), -1);
    assert_non_null(strstr(err, "test images are 1x4x5"));
    dataset_free(&train);
    dataset_free(&test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_plain_gives_shape_pixels_and_labels),
        cmocka_unit_test(test_load_pixels_are_exactly_byte_over_255),
        cmocka_unit_test(test_load_gzip_gives_same_as_plain),
        cmocka_unit_test(test_load_labels_only_gives_all_but_the_pixels),
        cmocka_unit_test(test_load_pixels_of_kept_examples_only),
        cmocka_unit_test(test_load_test_split_reads_t10k_files),
        cmocka_unit_test(test_load_refuses_missing_files_naming_dir_and_file),
        cmocka_unit_test(test_load_refuses_count_mismatch),
        cmocka_unit_test(test_load_refuses_label_out_of_range),
        cmocka_unit_test(test_load_refuses_labels_with_three_dims),
        cmocka_unit_test(test_load_real_fashion_mnist),
        cmocka_unit_test(test_iid_shards_disjoint_equal_and_in_range),
        cmocka_unit_test(test_iid_deterministic_for_a_seed_and_varies_with_it),
        cmocka_unit_test(test_shard_size_zero_is_equal_share),
        cmocka_unit_test(test_paper_shards_distinct_within_and_may_overlap),
        cmocka_unit_test(test_dirichlet_disjoint_with_exact_sizes),
        cmocka_unit_test(test_dirichlet_deterministic_for_a_seed),
        cmocka_unit_test(test_dirichlet_small_alpha_skews_large_alpha_evens),
        cmocka_unit_test(test_dirichlet_tiny_alpha_picks_dominant_class_uniformly),
        cmocka_unit_test(test_partition_refusals),
        cmocka_unit_test(test_union_is_distinct_ascending_and_equals_naive_union),
        cmocka_unit_test(test_free_accepts_zeroed_structs),
        cmocka_unit_test(test_compatible_accepts_one_shape_with_different_counts),
        cmocka_unit_test(test_compatible_refuses_each_way_naming_both_shapes),
        cmocka_unit_test(test_compatible_refuses_transposed_shape_of_equal_size),
        cmocka_unit_test(test_compatible_on_loaded_splits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
