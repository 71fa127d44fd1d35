/* h5data: data sets in HDF5 files (include/h5data.h): what the reader and
 * the writer share (HDF5 error messages, row selection), the writer
 * (h5data_write: checked like the reader checks, chunked and deflated,
 * atomic), and the SHA-256 digest of a file's bytes. The reader is in
 * h5data_read.c (src/h5data_internal.h); the HDF5 helpers shared with the
 * checkpoint module in h5util.c. */
#include "h5data_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "sha256.h"

/* Elements per chunk in the files h5data_write makes (1 MiB of float32). */
#define CHUNK_ELEMS ((size_t)1 << 18)

/* ---- HDF5 error messages ----------------------------------------------- */

int h5data_h5_fail(char *err, const char *file, const char *obj, const char *call)
{
    h5util_failure f = h5util_last_failure();
    return err_set(err, "%s: %s: %s failed%s%s%s", file, obj, call, f.desc[0] ? " (" : "", f.desc,
                   f.desc[0] ? ")" : "");
}

void h5data_h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *file, const char *obj, int *rc,
                     char *err)
{
    if (h5util_close(id, fn) < 0 && *rc == 0)
        *rc = h5data_h5_fail(err, file, obj, "close");
}

/* ---- row selection --------------------------------------------------------- */

int h5data_select_rows(hid_t file_space, int rank, const hsize_t *dims, hsize_t first, hsize_t n,
                       hid_t *mem)
{
    hsize_t start[4] = {first, 0, 0, 0}, count[4];
    count[0] = n;
    for (int d = 1; d < rank; d++)
        count[d] = dims[d];
    if (H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
        return -1;
    *mem = H5Screate_simple(rank, count, NULL);
    return *mem < 0 ? -1 : 0;
}

/* ---- writing ------------------------------------------------------------- */

/* What the reader will check, checked before writing, so that a written
 * file always loads. name is "train" or "test". */
static int check_set(const dataset_t *d, const char *name, int as_uint8, const char *path,
                     char *err)
{
    if (d->count == 0)
        return err_set(err, "%s: refusing to write: the %s set has no examples", path, name);
    if (d->channels < 1 || d->rows < 1 || d->cols < 1 ||
        (uint64_t)d->channels * (uint64_t)d->rows * (uint64_t)d->cols != d->dim)
        return err_set(err, "%s: refusing to write: the %s set's shape %d x %d x %d does not make "
                       "its dim %zu", path, name, d->channels, d->rows, d->cols, d->dim);
    if (d->dim > H5DATA_MAX_BYTES / 4 || d->count > H5DATA_MAX_BYTES / (d->dim * 4 + 1))
        return err_set(err, "%s: refusing to write: the %s set is over the %zu GiB limit", path,
                       name, H5DATA_MAX_BYTES >> 30);
    if (!d->x || !d->y)
        return err_set(err, "%s: refusing to write: the %s set has no %s", path, name,
                       d->x ? "labels" : "pixels");
    if (d->classes < 2 || d->classes > DATASET_MAX_CLASSES)
        return err_set(err, "%s: refusing to write: the %s set has %d classes, expected 2 to %d",
                       path, name, d->classes, DATASET_MAX_CLASSES);
    for (size_t i = 0; i < d->count; i++)
        if (d->y[i] >= d->classes)
            return err_set(err, "%s: refusing to write: the %s set's label %zu is %u, not below "
                           "its %d classes", path, name, i, d->y[i], d->classes);
    for (size_t i = 0; i < d->count * d->dim; i++) {
        float v = d->x[i];
        if (!isfinite(v) || (as_uint8 && !(v >= 0.0f && v <= 1.0f)))
            return err_set(err, "%s: refusing to write: the %s set's example %zu, element %zu is "
                           "%g, %s", path, name, i / d->dim, i % d->dim, (double)v,
                           as_uint8 ? "outside [0, 1] (bytes hold x * 255)" : "not finite");
    }
    return 0;
}

/* Chunk shape for dims: whole examples along dimension 0, as many as make
 * about CHUNK_ELEMS elements; an example larger than that is cut along its
 * first dimensions instead. */
static void chunk_shape(int rank, const hsize_t *dims, hsize_t *chunk)
{
    for (int d = 0; d < rank; d++)
        chunk[d] = dims[d];
    for (int d = 0; d < rank; d++) {
        hsize_t inner = 1;
        for (int e = d + 1; e < rank; e++)
            inner *= dims[e];
        if (inner <= CHUNK_ELEMS) {
            hsize_t take = CHUNK_ELEMS / inner;
            chunk[d] = dims[d] < take ? dims[d] : take;
            return;
        }
        chunk[d] = 1;
    }
}

/* One dataset, chunked and deflated: rank dims, stored as file_type. Rows
 * are taken a block at a time from fill (which converts into buf). */
typedef int (*fill_fn)(const dataset_t *d, size_t first, size_t n, void *buf);

static int fill_x_float(const dataset_t *d, size_t first, size_t n, void *buf)
{
    memcpy(buf, d->x + first * d->dim, n * d->dim * sizeof *d->x);
    return 0;
}

static int fill_x_uint8(const dataset_t *d, size_t first, size_t n, void *buf)
{
    uint8_t *b = buf;
    const float *x = d->x + first * d->dim;
    for (size_t i = 0; i < n * d->dim; i++)
        b[i] = (uint8_t)lrintf(x[i] * 255.0f); /* x in [0, 1], checked */
    return 0;
}

static int fill_y(const dataset_t *d, size_t first, size_t n, void *buf)
{
    memcpy(buf, d->y + first, n);
    return 0;
}

static int write_dataset(hid_t g, const char *name, const char *obj, int rank, const hsize_t *dims,
                         hid_t file_type, hid_t mem_type, size_t elem_bytes, const dataset_t *d,
                         fill_fn fill, const char *path, char *err)
{
    hid_t space = -1, dcpl = -1, dset = -1, mem = -1;
    void *buf = NULL;
    int rc = -1;
    hsize_t chunk[4];
    chunk_shape(rank, dims, chunk);
    size_t row = 1;
    for (int k = 1; k < rank; k++)
        row *= (size_t)dims[k];
    size_t rows = H5DATA_BLOCK_ELEMS / row ? H5DATA_BLOCK_ELEMS / row : 1;
    if (rows > d->count)
        rows = d->count;
    if (!(buf = err_calloc(rows * row, elem_bytes))) {
        err_set(err, "%s: %s: out of memory", path, obj);
        goto done;
    }
    if ((space = H5Screate_simple(rank, dims, NULL)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 ||
        (elem_bytes > 1 && H5Pset_shuffle(dcpl) < 0) || H5Pset_deflate(dcpl, 4) < 0) {
        h5data_h5_fail(err, path, obj, "setting up the dataset");
        goto done;
    }
    if ((dset = H5Dcreate2(g, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        h5data_h5_fail(err, path, obj, "H5Dcreate2");
        goto done;
    }
    for (size_t first = 0; first < d->count; first += rows) {
        size_t n = d->count - first < rows ? d->count - first : rows;
        fill(d, first, n, buf);
        if (h5data_select_rows(space, rank, dims, first, n, &mem) < 0) {
            h5data_h5_fail(err, path, obj, "H5Sselect_hyperslab");
            goto done;
        }
        if (H5Dwrite(dset, mem_type, mem, space, H5P_DEFAULT, buf) < 0) {
            h5data_h5_fail(err, path, obj, "H5Dwrite");
            goto done;
        }
        H5Sclose(mem);
        mem = -1;
    }
    rc = 0;
done:
    free(buf);
    if (mem >= 0)
        H5Sclose(mem);
    h5data_h5_close(&dset, H5Dclose, path, obj, &rc, err);
    h5data_h5_close(&dcpl, H5Pclose, path, obj, &rc, err);
    h5data_h5_close(&space, H5Sclose, path, obj, &rc, err);
    return rc;
}

static int write_group(hid_t fid, const char *group, const dataset_t *d, int as_uint8,
                       const char *path, char *err)
{
    char gname[16], xname[16], yname[16];
    snprintf(gname, sizeof gname, "/%s", group);
    snprintf(xname, sizeof xname, "/%s/x", group);
    snprintf(yname, sizeof yname, "/%s/y", group);
    hid_t g = H5Gcreate2(fid, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return h5data_h5_fail(err, path, gname, "H5Gcreate2");
    int rank;
    hsize_t dims[4] = {d->count};
    if (d->channels == 1 && d->rows == 1) {
        rank = 2;
        dims[1] = (hsize_t)d->cols;
    } else {
        rank = 4;
        dims[1] = (hsize_t)d->channels;
        dims[2] = (hsize_t)d->rows;
        dims[3] = (hsize_t)d->cols;
    }
    hsize_t ydims[1] = {d->count};
    int rc = -1;
    if (write_dataset(g, "x", xname, rank, dims, as_uint8 ? H5T_STD_U8LE : H5T_IEEE_F32LE,
                      as_uint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, as_uint8 ? 1 : 4, d,
                      as_uint8 ? fill_x_uint8 : fill_x_float, path, err) == 0 &&
        write_dataset(g, "y", yname, 1, ydims, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d, fill_y, path,
                      err) == 0)
        rc = 0;
    h5data_h5_close(&g, H5Gclose, path, gname, &rc, err);
    return rc;
}

/* The whole HDF5 file at tmp, closed; messages name path. */
static int write_file(const char *tmp, const char *path, const dataset_t *train,
                      const dataset_t *test, int classes, int as_uint8, char *err)
{
    hid_t fapl = -1, fid = -1, space = -1, attr = -1;
    int rc = -1;
    /* The 1.10 format checksums all metadata: a damaged file is refused
     * rather than read wrong (h5py and HDF5 1.10 or later read it). */
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0) {
        h5data_h5_fail(err, path, "/", "H5Pset_libver_bounds");
        goto done;
    }
    if ((fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5data_h5_fail(err, path, tmp, "H5Fcreate");
        goto done;
    }
    if ((space = H5Screate(H5S_SCALAR)) < 0 ||
        (attr = H5Acreate2(fid, "classes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, H5T_NATIVE_INT, &classes) < 0) {
        h5data_h5_fail(err, path, "/: attribute 'classes'", "H5Awrite");
        goto done;
    }
    if ((train && write_group(fid, "train", train, as_uint8, path, err) < 0) ||
        (test && write_group(fid, "test", test, as_uint8, path, err) < 0))
        goto done;
    if (H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0) {
        h5data_h5_fail(err, path, tmp, "H5Fflush");
        goto done;
    }
    rc = 0;
done:
    h5data_h5_close(&attr, H5Aclose, path, "/: attribute 'classes'", &rc, err);
    h5data_h5_close(&space, H5Sclose, path, "/", &rc, err);
    h5data_h5_close(&fid, H5Fclose, path, tmp, &rc, err);
    h5data_h5_close(&fapl, H5Pclose, path, "/", &rc, err);
    return rc;
}

int h5data_write(const char *path, const dataset_t *train, const dataset_t *test, int as_uint8,
                 char *err)
{
    if (!path || !*path)
        return err_set(err, "data file: empty file name");
    if (!train && !test)
        return err_set(err, "%s: refusing to write: neither a train nor a test set", path);
    if ((train && check_set(train, "train", as_uint8, path, err) < 0) ||
        (test && check_set(test, "test", as_uint8, path, err) < 0))
        return -1;
    if (train && test && train->classes != test->classes)
        return err_set(err, "%s: refusing to write: the train set has %d classes, the test set %d",
                       path, train->classes, test->classes);
    int classes = train ? train->classes : test->classes;
    if (H5open() < 0)
        return err_set(err, "%s: H5open failed", path);

    /* Atomic and durable: the steps are in src/h5util.h. */
    char *tmp = h5util_temp_name(path, err);
    if (!tmp)
        return -1;
    h5util_quiet quiet;
    h5util_quiet_begin(&quiet);
    int rc = write_file(tmp, path, train, test, classes, as_uint8, err);
    h5util_quiet_end(&quiet);
    if (rc == 0)
        rc = h5util_fsync(tmp, 0, path, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = err_set(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc != 0)
        h5util_remove_temp(tmp);
    if (rc == 0)
        rc = h5util_fsync_parent(path, err);
    free(tmp);
    return rc;
}

/* ---- digests --------------------------------------------------------------- */

int h5data_digest_file(const char *path, h5data_digest *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path)
        return err_set(err, "data file: empty file name");
    /* Only regular files hash; a FIFO must not hang the open. */
    struct stat st;
    int fd = h5util_open_regular(path, &st, err);
    if (fd < 0)
        return -1;
    enum { CAP = 1 << 20 };
    unsigned char *buf = malloc(CAP);
    if (!buf) {
        close(fd);
        return err_set(err, "%s: out of memory", path);
    }
    sha256_ctx c;
    sha256_init(&c);
    uint64_t size = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, buf, CAP);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = err_set(err, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        sha256_update(&c, buf, (size_t)got);
        size += (uint64_t)got;
    }
    free(buf);
    close(fd);
    if (rc < 0)
        return -1;
    out->size = size;
    sha256_final(&c, out->sha256);
    return 0;
}

void h5data_digest_hex(const h5data_digest *d, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[d->sha256[i] >> 4];
        hex[2 * i + 1] = digits[d->sha256[i] & 15];
    }
    hex[64] = '\0';
}
