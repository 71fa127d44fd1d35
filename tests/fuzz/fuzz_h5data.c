/* fuzz_h5data: libFuzzer target for h5data_load_unguarded, the reader of
 * users' HDF5 data files (--data-file, --participant-data), in process so
 * that HDF5's own crashes show. Both groups are read; an accepted set must
 * keep every promise of include/h5data.h, load the same through the guard,
 * and come back bit for bit through h5data_write. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hdf5.h>

#include "dataset.h"
#include "err.h"
#include "fuzz_common.h"
#include "h5data.h"

static const char *in_path, *out_path;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* h5data silences HDF5's error printing per call; this keeps anything
     * outside it quiet too. */
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    in_path = fuzz_scratch_new("h5data.h5");
    out_path = fuzz_scratch_new("h5data-out.h5");
    return 0;
}

/* What h5data_load promises of an accepted set. */
static void check_set(const dataset_t *d)
{
    FUZZ_CHECK(d->count >= 1 && d->x && d->y, "count %zu", d->count);
    FUZZ_CHECK(d->channels >= 1 && d->rows >= 1 && d->cols >= 1 &&
                   (size_t)d->channels * (size_t)d->rows * (size_t)d->cols == d->dim,
               "shape %d x %d x %d, dim %zu", d->channels, d->rows, d->cols, d->dim);
    FUZZ_CHECK(d->classes >= 2 && d->classes <= DATASET_MAX_CLASSES, "classes %d", d->classes);
    FUZZ_CHECK(d->count <= H5DATA_MAX_BYTES / (d->dim * 4 + 1), "over the size limit");
    for (size_t i = 0; i < d->count; i++)
        FUZZ_CHECK(d->y[i] < d->classes, "label %zu is %u of %d classes", i, d->y[i], d->classes);
    for (size_t i = 0; i < d->count * d->dim; i++)
        FUZZ_CHECK(isfinite(d->x[i]), "x[%zu] not finite", i);
}

static int same_set(const dataset_t *a, const dataset_t *b)
{
    return a->count == b->count && a->channels == b->channels && a->rows == b->rows &&
           a->cols == b->cols && a->dim == b->dim && a->classes == b->classes &&
           memcmp(a->x, b->x, a->count * a->dim * sizeof *a->x) == 0 &&
           memcmp(a->y, b->y, a->count) == 0;
}

static void one_group(const char *group)
{
    dataset_t d;
    char err[ERR_LEN] = "";
    memset(&d, 0xA5, sizeof d);
    int rc = h5data_load_unguarded(in_path, group, &d, err);
    if (rc != 0) {
        static const dataset_t zero;
        size_t len = strlen(in_path);
        FUZZ_CHECK(rc == -1, "rc %d", rc);
        FUZZ_CHECK(strncmp(err, in_path, len) == 0 && err[len] == ':',
                   "message '%s' does not start with the file", err);
        FUZZ_CHECK(memcmp(&d, &zero, sizeof d) == 0, "set not zeroed on error");
        return;
    }
    check_set(&d);
    /* The guarded load (a child process, the set sent back through a pipe)
     * gives the same set. Only accepted files pay for the fork. */
    dataset_t guarded;
    FUZZ_CHECK(h5data_load(in_path, group, &guarded, err) == 0,
               "in process accepts, guarded refuses: %s", err);
    FUZZ_CHECK(same_set(&d, &guarded), "the guarded load gave another set");
    dataset_free(&guarded);
    /* Whatever load accepts, write takes and load gives back bit for bit. */
    FUZZ_CHECK(h5data_write(out_path, &d, NULL, 0, err) == 0, "write refuses a loaded set: %s",
               err);
    dataset_t back;
    FUZZ_CHECK(h5data_load_unguarded(out_path, "train", &back, err) == 0,
               "cannot reload a written set: %s", err);
    FUZZ_CHECK(same_set(&d, &back), "the set changed through write and load");
    dataset_free(&back);
    dataset_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(in_path, data, size);
    one_group("train");
    one_group("test");
    return 0;
}
