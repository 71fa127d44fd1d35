/* h5data: data sets in HDF5 files (include/h5data.h): the writer, the
 * reader with every check (h5data_load_unguarded), the same reader run in
 * a forked, time-limited child (h5data_load, through guard.c), and the
 * SHA-256 digest of a file's bytes. */
#include "h5data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "err.h"
#include "guard.h"
#include "sha256.h"

#define H5DATA_ENV "DSSGD_DATA_PARSE_TIMEOUT"
/* Elements per block when x or y is read or written a slab at a time:
 * bounds the conversion buffers whatever the set's size. */
#define BLOCK_ELEMS ((size_t)1 << 22)
/* Elements per chunk in the files h5data_write makes (1 MiB of float32). */
#define CHUNK_ELEMS ((size_t)1 << 18)

/* ---- HDF5 error reporting ---------------------------------------------- */

static herr_t walk_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    char *desc = data;
    if (n == 0 && e->desc) {
        snprintf(desc, 160, "%s", e->desc);
        for (char *p = desc; *p; p++) /* HDF5 embeds newlines: keep one line */
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    return 0;
}

/* Sets err to "<file>: <obj>: <call> failed (<HDF5's innermost reason>)"
 * and returns -1. Call right after the failed call: the next one clears
 * HDF5's error stack. */
static int h5_fail(char *err, const char *file, const char *obj, const char *call)
{
    char desc[160] = "";
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, desc) < 0)
        desc[0] = '\0';
    return err_set(err, "%s: %s: %s failed%s%s%s", file, obj, call, desc[0] ? " (" : "", desc,
                   desc[0] ? ")" : "");
}

/* Closes *id with fn if open and sets it to -1; a failure sets *rc and err
 * only when *rc is 0, so the first error's message survives. */
static void h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *file, const char *obj, int *rc,
                     char *err)
{
    if (*id < 0)
        return;
    if (fn(*id) < 0 && *rc == 0)
        *rc = h5_fail(err, file, obj, "close");
    *id = -1;
}

/* HDF5's automatic error printing off between begin and end, so that a bad
 * file gives only our message; end restores what begin found. */
typedef struct {
    H5E_auto2_t func;
    void *data;
    int saved;
} quiet_t;

static void quiet_begin(quiet_t *q)
{
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) >= 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(const quiet_t *q)
{
    if (q->saved)
        H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* "float32", "int16", "uint8", ... for messages. */
static void type_name(hid_t type, char *buf, size_t cap)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT)
        snprintf(buf, cap, "float%zu", size * 8);
    else if (cls == H5T_INTEGER)
        snprintf(buf, cap, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8);
    else if (cls == H5T_STRING)
        snprintf(buf, cap, "a string");
    else if (cls == H5T_ENUM)
        snprintf(buf, cap, "an enumeration (numpy bool, say)");
    else if (cls == H5T_COMPOUND)
        snprintf(buf, cap, "a compound type");
    else
        snprintf(buf, cap, "HDF5 type class %d", (int)cls);
}

/* ---- reading: shapes, attributes, blocks -------------------------------- */

/* Rows [first, first + n) of a dataset whose space is file_space (rank
 * dimensions dims): selects them in file_space and makes the memory space.
 * The caller closes *mem. */
static int select_rows(hid_t file_space, int rank, const hsize_t *dims, hsize_t first, hsize_t n,
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

/* Rows per block for reading dset (row_elems elements a row): a whole
 * number of the dataset's chunks along the first dimension when that fits
 * BLOCK_ELEMS, so each chunk is decompressed once. */
static hsize_t block_rows(hid_t dset, size_t row_elems)
{
    hsize_t rows = BLOCK_ELEMS / row_elems ? BLOCK_ELEMS / row_elems : 1;
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
        hsize_t chunk[H5S_MAX_RANK];
        if (H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk) >= 1 && chunk[0] >= 1 && chunk[0] <= rows)
            rows -= rows % chunk[0];
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return rows;
}

/* Opens `name` in group g as a dataset stored in this file: refuses a
 * missing one, a link to another file, something else than a dataset, and
 * raw data kept outside the file (external storage, virtual datasets):
 * the child must read only the file it was given. */
static int open_dataset(hid_t g, const char *name, const char *file, const char *obj, hid_t *out,
                        char *err)
{
    *out = -1;
    htri_t exists = H5Lexists(g, name, H5P_DEFAULT);
    if (exists < 0)
        return h5_fail(err, file, obj, "H5Lexists");
    if (exists == 0)
        return err_set(err, "%s: %s: missing (no such dataset)", file, obj);
    H5L_info_t link;
    if (H5Lget_info(g, name, &link, H5P_DEFAULT) < 0)
        return h5_fail(err, file, obj, "H5Lget_info");
    if (link.type != H5L_TYPE_HARD)
        return err_set(err, "%s: %s: %s link, not a dataset in this file", file, obj,
                       link.type == H5L_TYPE_SOFT ? "a soft" : "an external");
    hid_t id = H5Oopen(g, name, H5P_DEFAULT);
    if (id < 0)
        return h5_fail(err, file, obj, "H5Oopen");
    if (H5Iget_type(id) != H5I_DATASET) {
        H5Oclose(id);
        return err_set(err, "%s: %s: not a dataset (a group or a named type)", file, obj);
    }
    int rc = 0;
    hid_t dcpl = H5Dget_create_plist(id);
    if (dcpl < 0) {
        rc = h5_fail(err, file, obj, "H5Dget_create_plist");
    } else {
        H5D_layout_t layout = H5Pget_layout(dcpl);
        int external = H5Pget_external_count(dcpl);
        if (layout < 0 || external < 0)
            rc = h5_fail(err, file, obj, "H5Pget_layout");
        else if (layout == H5D_VIRTUAL || external > 0)
            rc = err_set(err, "%s: %s: its data is in other files (%s): not read", file, obj,
                         layout == H5D_VIRTUAL ? "a virtual dataset" : "external storage");
        H5Pclose(dcpl);
    }
    if (rc < 0) {
        H5Dclose(id);
        return -1;
    }
    *out = id;
    return 0;
}

/* The shape of dset: a simple dataspace of 1 to 4 dimensions (others are
 * refused by the caller, with its own message). *space is left open. */
static int get_shape(hid_t dset, const char *file, const char *obj, hid_t *space, int *rank,
                     hsize_t dims[4], char *err)
{
    if ((*space = H5Dget_space(dset)) < 0)
        return h5_fail(err, file, obj, "H5Dget_space");
    H5S_class_t cls = H5Sget_simple_extent_type(*space);
    if (cls == H5S_SCALAR)
        return err_set(err, "%s: %s: a scalar, not an array", file, obj);
    if (cls != H5S_SIMPLE)
        return err_set(err, "%s: %s: an empty (null) dataspace, not an array", file, obj);
    int r = H5Sget_simple_extent_ndims(*space);
    if (r < 0)
        return h5_fail(err, file, obj, "H5Sget_simple_extent_ndims");
    *rank = r;
    if (r < 1 || r > 4)
        return 0;
    if (H5Sget_simple_extent_dims(*space, dims, NULL) < 0)
        return h5_fail(err, file, obj, "H5Sget_simple_extent_dims");
    return 0;
}

/* The shape as "6 x 3 x 8 x 8" for messages. */
static void shape_text(int rank, const hsize_t *dims, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < rank && used < cap; d++) {
        int n = snprintf(buf + used, cap - used, "%s%llu", d ? " x " : "",
                         (unsigned long long)dims[d]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Opens attribute `name` of loc if there is one (*present 0 otherwise) and
 * requires one number (integer or float class, one element). */
static int open_number_attr(hid_t loc, const char *name, const char *file, const char *obj,
                            int *present, hid_t *attr, hid_t *type, char *err)
{
    *present = 0;
    *attr = *type = -1;
    htri_t exists = H5Aexists(loc, name);
    if (exists < 0)
        return h5_fail(err, file, obj, "H5Aexists");
    if (exists == 0)
        return 0;
    *present = 1;
    if ((*attr = H5Aopen(loc, name, H5P_DEFAULT)) < 0)
        return h5_fail(err, file, obj, "H5Aopen");
    if ((*type = H5Aget_type(*attr)) < 0)
        return h5_fail(err, file, obj, "H5Aget_type");
    hid_t space = H5Aget_space(*attr);
    if (space < 0)
        return h5_fail(err, file, obj, "H5Aget_space");
    hssize_t points = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    H5T_class_t cls = H5Tget_class(*type);
    char tname[64];
    type_name(*type, tname, sizeof tname);
    if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || points != 1)
        return err_set(err, "%s: %s: attribute '%s' is %s with %lld elements, expected one number",
                       file, obj, name, tname, (long long)points);
    if (H5Tget_size(*type) > 8)
        return err_set(err, "%s: %s: attribute '%s' is %s, wider than 64 bits", file, obj, name,
                       tname);
    return 0;
}

/* The root attribute `classes`: *classes 0 when absent, else an integer in
 * [2, DATASET_MAX_CLASSES]. */
static int read_classes(hid_t fid, const char *file, int *classes, char *err)
{
    hid_t attr, type;
    int present, rc = -1;
    *classes = 0;
    if (open_number_attr(fid, "classes", file, "/", &present, &attr, &type, err) < 0)
        goto done;
    if (!present) {
        rc = 0;
        goto done;
    }
    if (H5Tget_class(type) != H5T_INTEGER) {
        err_set(err, "%s: /: attribute 'classes' is a float, expected an integer from 2 to %d",
                file, DATASET_MAX_CLASSES);
        goto done;
    }
    /* Read in the type's own signedness: 64-bit values convert exactly. */
    int unsigned_type = H5Tget_sign(type) == H5T_SGN_NONE;
    uint64_t u = 0;
    int64_t s = 0;
    if (H5Aread(attr, unsigned_type ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64,
                unsigned_type ? (void *)&u : (void *)&s) < 0) {
        h5_fail(err, file, "/: attribute 'classes'", "H5Aread");
        goto done;
    }
    if (unsigned_type ? u < 2 || u > DATASET_MAX_CLASSES : s < 2 || s > DATASET_MAX_CLASSES) {
        char value[32];
        if (unsigned_type)
            snprintf(value, sizeof value, "%" PRIu64, u);
        else
            snprintf(value, sizeof value, "%" PRId64, s);
        err_set(err, "%s: /: attribute 'classes' is %s, expected an integer from 2 to %d", file,
                value, DATASET_MAX_CLASSES);
        goto done;
    }
    *classes = (int)(unsigned_type ? (int64_t)u : s);
    rc = 0;
done:
    if (type >= 0)
        H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

/* The `scale` attribute of x: *scale 0 when absent, else a positive finite
 * number (read as a double, whatever its type). */
static int read_scale(hid_t dset, const char *file, const char *obj, double *scale, char *err)
{
    hid_t attr, type;
    int present, rc = -1;
    *scale = 0;
    if (open_number_attr(dset, "scale", file, obj, &present, &attr, &type, err) < 0)
        goto done;
    if (present) {
        double v = 0;
        if (H5Aread(attr, H5T_NATIVE_DOUBLE, &v) < 0) {
            h5_fail(err, file, obj, "H5Aread of attribute 'scale'");
            goto done;
        }
        if (!(v > 0) || !isfinite(v)) {
            err_set(err, "%s: %s: attribute 'scale' is %g, expected a positive finite number",
                    file, obj, v);
            goto done;
        }
        *scale = v;
    }
    rc = 0;
done:
    if (type >= 0)
        H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

/* The data a dataset's header claims must all be in the file, checked
 * before anything is allocated or read: a compact or contiguous dataset
 * stores exactly its shape's bytes (HDF5 1.10.8 trusts a compact dataset's
 * size and reads past it), a contiguous one lies within the file, and a
 * chunked one has every chunk written (else it would read fill values). */
static int check_storage(hid_t dset, const char *file, const char *obj, uint64_t points,
                         size_t elem, uint64_t file_size, char *err)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return h5_fail(err, file, obj, "H5Dget_create_plist");
    H5D_layout_t layout = H5Pget_layout(dcpl);
    H5Pclose(dcpl);
    uint64_t want = points * elem; /* points * 8 fits: the caller bounded points */
    if (layout == H5D_COMPACT || layout == H5D_CONTIGUOUS) {
        uint64_t stored = H5Dget_storage_size(dset);
        if (stored == 0 && layout == H5D_CONTIGUOUS)
            return err_set(err, "%s: %s: never written (no data stored)", file, obj);
        if (stored != want)
            return err_set(err, "%s: %s: stores %" PRIu64 " bytes where its shape needs %" PRIu64
                           ": the file is damaged", file, obj, stored, want);
        if (layout == H5D_CONTIGUOUS) {
            haddr_t at = H5Dget_offset(dset);
            if (at == HADDR_UNDEF || at > file_size || want > file_size - at)
                return err_set(err, "%s: %s: its %" PRIu64 " bytes at offset %" PRIu64 " are past "
                               "the end of the file (%" PRIu64 " bytes): the file is truncated or "
                               "damaged", file, obj, want, (uint64_t)at, file_size);
        }
        return 0;
    }
    if (layout != H5D_CHUNKED)
        return err_set(err, "%s: %s: storage layout %d is none of compact, contiguous and "
                       "chunked", file, obj, (int)layout);
    /* Chunks written against chunks the shape needs (H5Dget_space_status
     * says "partly allocated" of any compressed dataset in HDF5 1.10). */
    hid_t space = H5Dget_space(dset);
    dcpl = H5Dget_create_plist(dset);
    hsize_t dims[H5S_MAX_RANK], chunk[H5S_MAX_RANK], written = 0;
    int rank = space >= 0 ? H5Sget_simple_extent_dims(space, dims, NULL) : -1;
    int crank = dcpl >= 0 ? H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk) : -1;
    herr_t counted = space >= 0 ? H5Dget_num_chunks(dset, space, &written) : -1;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    if (rank < 1 || crank != rank || counted < 0)
        return h5_fail(err, file, obj, "H5Dget_num_chunks");
    uint64_t needed = 1;
    for (int d = 0; d < rank; d++) {
        if (chunk[d] == 0)
            return err_set(err, "%s: %s: a chunk dimension is 0: the file is damaged", file, obj);
        needed *= dims[d] / chunk[d] + (dims[d] % chunk[d] != 0); /* <= points: no overflow */
    }
    if (written != needed)
        return err_set(err, "%s: %s: %" PRIu64 " of its %" PRIu64 " chunks written: %s", file, obj,
                       (uint64_t)written, needed,
                       written < needed ? "part of it was never written" : "the file is damaged");
    return 0;
}

/* ---- reading x and y ---------------------------------------------------- */

/* What x's header says, checked: element type, shape, size. */
typedef struct {
    int is_uint8;
    size_t count, dim;
    int channels, rows, cols;
    int rank;
    hsize_t dims[4];
} x_shape;

static int check_x(hid_t dset, const char *file, const char *obj, x_shape *xs, char *err)
{
    hid_t type = H5Dget_type(dset), space = -1;
    if (type < 0)
        return h5_fail(err, file, obj, "H5Dget_type");
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_ERROR;
    char tname[64];
    type_name(type, tname, sizeof tname);
    H5Tclose(type);
    if (cls == H5T_FLOAT && size == 4)
        xs->is_uint8 = 0;
    else if (cls == H5T_INTEGER && size == 1 && sign == H5T_SGN_NONE)
        xs->is_uint8 = 1;
    else
        return err_set(err, "%s: %s: elements are %s, expected float32 or uint8", file, obj, tname);

    int rc = get_shape(dset, file, obj, &space, &xs->rank, xs->dims, err);
    if (space >= 0)
        H5Sclose(space);
    if (rc < 0)
        return -1;
    char shape[96];
    if (xs->rank < 2 || xs->rank > 4) {
        if (xs->rank >= 1 && xs->rank <= 4)
            shape_text(xs->rank, xs->dims, shape, sizeof shape);
        else
            snprintf(shape, sizeof shape, "%d dimensions", xs->rank);
        return err_set(err, "%s: %s: shape %s, expected N x D, N x H x W or N x C x H x W", file,
                       obj, shape);
    }
    shape_text(xs->rank, xs->dims, shape, sizeof shape);
    if (xs->dims[0] == 0)
        return err_set(err, "%s: %s: no examples (shape %s)", file, obj, shape);
    for (int d = 1; d < xs->rank; d++)
        if (xs->dims[d] == 0)
            return err_set(err, "%s: %s: shape %s has a zero dimension", file, obj, shape);
    for (int d = 1; d < xs->rank; d++)
        if (xs->dims[d] > INT_MAX)
            return err_set(err, "%s: %s: shape %s: dimension %d is over %d", file, obj, shape, d,
                           INT_MAX);
    xs->channels = xs->rank == 4 ? (int)xs->dims[1] : 1;
    xs->rows = xs->rank == 2 ? 1 : (int)xs->dims[xs->rank - 2];
    xs->cols = (int)xs->dims[xs->rank - 1];
    /* The bound, without overflow: the examples as floats plus their labels
     * as bytes must fit H5DATA_MAX_BYTES. */
    uint64_t dim = 1;
    for (int d = 1; d < xs->rank; d++) {
        if (xs->dims[d] > (H5DATA_MAX_BYTES / 4) / dim)
            goto too_big;
        dim *= xs->dims[d];
    }
    uint64_t per_example = dim * 4 + 1;
    if (xs->dims[0] > H5DATA_MAX_BYTES / per_example)
        goto too_big;
    xs->dim = (size_t)dim;
    xs->count = (size_t)xs->dims[0];
    return 0;
too_big:
    return err_set(err, "%s: %s: shape %s is over the %zu GiB limit of a set in memory (x as "
                   "float32, y as bytes)", file, obj, shape, H5DATA_MAX_BYTES >> 30);
}

/* Reads x into out->x (count x dim floats): float32 as stored times scale
 * (if any); uint8 as b / 255 (the IDX reader's rounding) or b times scale.
 * Refuses a NaN or infinite value. */
static int read_x(hid_t dset, const char *file, const char *obj, const x_shape *xs, double scale,
                  float *x, char *err)
{
    hid_t space = -1, mem = -1;
    uint8_t *bytes = NULL;
    int rc = -1;
    if ((space = H5Dget_space(dset)) < 0) {
        h5_fail(err, file, obj, "H5Dget_space");
        goto done;
    }
    hsize_t rows = block_rows(dset, xs->dim);
    if (xs->is_uint8 && !(bytes = err_calloc((size_t)rows, xs->dim))) {
        err_set(err, "%s: %s: out of memory", file, obj);
        goto done;
    }
    for (hsize_t first = 0; first < xs->count; first += rows) {
        hsize_t n = xs->count - first < rows ? xs->count - first : rows;
        float *dst = x + (size_t)first * xs->dim;
        size_t elems = (size_t)n * xs->dim;
        if (select_rows(space, xs->rank, xs->dims, first, n, &mem) < 0) {
            h5_fail(err, file, obj, "H5Sselect_hyperslab");
            goto done;
        }
        if (H5Dread(dset, xs->is_uint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, mem, space,
                    H5P_DEFAULT, xs->is_uint8 ? (void *)bytes : (void *)dst) < 0) {
            h5_fail(err, file, obj, "H5Dread");
            goto done;
        }
        H5Sclose(mem);
        mem = -1;
        for (size_t i = 0; i < elems; i++) {
            float v;
            if (xs->is_uint8)
                v = scale > 0 ? (float)(bytes[i] * scale) : (float)bytes[i] / 255.0f;
            else
                v = scale > 0 ? (float)(dst[i] * scale) : dst[i];
            if (!isfinite(v)) {
                size_t k = (size_t)first * xs->dim + i;
                err_set(err, "%s: %s: example %zu, element %zu is %g%s, not a finite number", file,
                        obj, k / xs->dim, k % xs->dim, (double)v,
                        scale > 0 ? " after scaling" : "");
                goto done;
            }
            dst[i] = v;
        }
    }
    rc = 0;
done:
    free(bytes);
    if (mem >= 0)
        H5Sclose(mem);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* y's header: integer labels of 8 to 64 bits, a vector of count, all
 * stored. *space is left open (closed by the caller). */
static int check_y(hid_t dset, const char *file, const char *obj, size_t count,
                   uint64_t file_size, char *err)
{
    hid_t type = H5Dget_type(dset), space = -1;
    if (type < 0)
        return h5_fail(err, file, obj, "H5Dget_type");
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    char tname[64];
    type_name(type, tname, sizeof tname);
    H5Tclose(type);
    if (cls != H5T_INTEGER || size > 8)
        return err_set(err, "%s: %s: elements are %s, expected integer labels (8 to 64 bits)",
                       file, obj, tname);
    int rank = 0, rc = -1;
    hsize_t dims[4] = {0};
    if (get_shape(dset, file, obj, &space, &rank, dims, err) < 0)
        goto done;
    if (rank != 1) {
        char shape[96];
        if (rank <= 4)
            shape_text(rank, dims, shape, sizeof shape);
        else
            snprintf(shape, sizeof shape, "%d dimensions", rank);
        err_set(err, "%s: %s: shape %s, expected a vector of %zu labels%s", file, obj, shape,
                count, rank == 2 && dims[1] == 1 ? " (reshape it to (N,))" : "");
        goto done;
    }
    if (dims[0] != count) {
        err_set(err, "%s: %s: %llu labels for %zu examples in x", file, obj,
                (unsigned long long)dims[0], count);
        goto done;
    }
    rc = check_storage(dset, file, obj, count, size, file_size, err);
done:
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* Reads y (checked by check_y) through HDF5's conversion to int64 (an
 * unsigned value above INT64_MAX saturates, and is refused as too large)
 * into y; each label must be in [0, classes) when classes is given, else
 * in [0, DATASET_MAX_CLASSES). *largest gets the largest label. */
static int read_y(hid_t dset, const char *file, const char *obj, size_t count, int classes,
                  uint8_t *y, int *largest, char *err)
{
    hid_t space = -1, mem = -1;
    int64_t *block = NULL;
    int rc = -1;
    hsize_t dims[1] = {count};
    if ((space = H5Dget_space(dset)) < 0) {
        h5_fail(err, file, obj, "H5Dget_space");
        goto done;
    }
    hsize_t rows = block_rows(dset, 1);
    if (!(block = err_calloc((size_t)rows, sizeof *block))) {
        err_set(err, "%s: %s: out of memory", file, obj);
        goto done;
    }
    int64_t limit = classes ? classes : DATASET_MAX_CLASSES, top = 0;
    for (hsize_t first = 0; first < count; first += rows) {
        hsize_t n = count - first < rows ? count - first : rows;
        if (select_rows(space, 1, dims, first, n, &mem) < 0) {
            h5_fail(err, file, obj, "H5Sselect_hyperslab");
            goto done;
        }
        if (H5Dread(dset, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, block) < 0) {
            h5_fail(err, file, obj, "H5Dread");
            goto done;
        }
        H5Sclose(mem);
        mem = -1;
        for (size_t i = 0; i < (size_t)n; i++) {
            int64_t v = block[i];
            if (v < 0 || v >= limit) {
                size_t k = (size_t)first + i;
                if (v < 0)
                    err_set(err, "%s: %s: label %zu is %" PRId64 ", below 0", file, obj, k, v);
                else if (classes)
                    err_set(err, "%s: %s: label %zu is %" PRId64 ", not below classes = %d (the "
                            "root attribute 'classes')", file, obj, k, v, classes);
                else
                    err_set(err, "%s: %s: label %zu is %" PRId64 ", over %d (labels are bytes: "
                            "at most %d classes)", file, obj, k, v, DATASET_MAX_CLASSES - 1,
                            DATASET_MAX_CLASSES);
                goto done;
            }
            if (v > top)
                top = v;
            y[first + i] = (uint8_t)v;
        }
    }
    *largest = (int)top;
    rc = 0;
done:
    free(block);
    if (mem >= 0)
        H5Sclose(mem);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

static int check_group_name(const char *path, const char *group, char *err)
{
    if (!path || !*path)
        return err_set(err, "data file: empty file name");
    if (!group || (strcmp(group, "train") != 0 && strcmp(group, "test") != 0))
        return err_set(err, "%s: group '%s': expected train or test", path, group ? group : "");
    return 0;
}

/* The group's x and y in the open file fid. */
static int load_group(hid_t fid, const char *path, const char *group, uint64_t file_size,
                      dataset_t *out, char *err)
{
    char gname[16], xname[16], yname[16];
    snprintf(gname, sizeof gname, "/%s", group);
    snprintf(xname, sizeof xname, "/%s/x", group);
    snprintf(yname, sizeof yname, "/%s/y", group);
    hid_t g = -1, xd = -1, yd = -1;
    int rc = -1, classes = 0;
    if (read_classes(fid, path, &classes, err) < 0)
        goto done;
    htri_t exists = H5Lexists(fid, gname, H5P_DEFAULT);
    if (exists < 0) {
        h5_fail(err, path, gname, "H5Lexists");
        goto done;
    }
    if (exists == 0) {
        err_set(err, "%s: %s: missing (no such group)", path, gname);
        goto done;
    }
    H5L_info_t link;
    if (H5Lget_info(fid, gname, &link, H5P_DEFAULT) < 0) {
        h5_fail(err, path, gname, "H5Lget_info");
        goto done;
    }
    if (link.type != H5L_TYPE_HARD) {
        err_set(err, "%s: %s: %s link, not a group in this file", path, gname,
                link.type == H5L_TYPE_SOFT ? "a soft" : "an external");
        goto done;
    }
    if ((g = H5Oopen(fid, gname, H5P_DEFAULT)) < 0) {
        h5_fail(err, path, gname, "H5Oopen");
        goto done;
    }
    if (H5Iget_type(g) != H5I_GROUP) {
        err_set(err, "%s: %s: not a group", path, gname);
        goto done;
    }
    if (open_dataset(g, "x", path, xname, &xd, err) < 0 ||
        open_dataset(g, "y", path, yname, &yd, err) < 0)
        goto done;
    /* Every header checked before anything is allocated or read. */
    x_shape xs;
    double scale = 0;
    if (check_x(xd, path, xname, &xs, err) < 0 || read_scale(xd, path, xname, &scale, err) < 0 ||
        check_storage(xd, path, xname, (uint64_t)xs.count * xs.dim, xs.is_uint8 ? 1 : 4,
                      file_size, err) < 0 ||
        check_y(yd, path, yname, xs.count, file_size, err) < 0)
        goto done;
    out->count = xs.count;
    out->channels = xs.channels;
    out->rows = xs.rows;
    out->cols = xs.cols;
    out->dim = xs.dim;
    out->x = err_calloc(xs.count, xs.dim * sizeof *out->x);
    out->y = err_calloc(xs.count, sizeof *out->y);
    if (!out->x || !out->y) {
        err_set(err, "%s: %s: out of memory for %zu examples of %zu values", path, xname, xs.count,
                xs.dim);
        goto done;
    }
    int largest = 0;
    if (read_y(yd, path, yname, xs.count, classes, out->y, &largest, err) < 0 ||
        read_x(xd, path, xname, &xs, scale, out->x, err) < 0)
        goto done;
    out->classes = classes ? classes : largest + 1;
    if (out->classes < 2) {
        err_set(err, "%s: %s: every label is 0, and there is no root attribute 'classes': fewer "
                "than 2 classes", path, yname);
        goto done;
    }
    rc = 0;
done:
    h5_close(&yd, H5Dclose, path, yname, &rc, err);
    h5_close(&xd, H5Dclose, path, xname, &rc, err);
    if (g >= 0 && H5Oclose(g) < 0 && rc == 0)
        rc = h5_fail(err, path, gname, "H5Oclose");
    return rc;
}

int h5data_load_unguarded(const char *path, const char *group, dataset_t *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (check_group_name(path, group, err) < 0)
        return -1;
    /* HDF5's own messages for these are obscure: say it plainly first.
     * O_NONBLOCK: a FIFO at path must not hang the open. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int stat_rc = fstat(fd, &st), stat_errno = errno;
    close(fd);
    if (stat_rc != 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(stat_errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, "%s: cannot open: not a regular file", path);

    quiet_t quiet;
    quiet_begin(&quiet);
    hid_t fid = -1;
    int rc = -1;
    if (H5Fis_hdf5(path) <= 0) {
        err_set(err, "%s: not an HDF5 file", path);
        goto done;
    }
    if ((fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        h5_fail(err, path, "a damaged HDF5 file", "H5Fopen");
        goto done;
    }
    rc = load_group(fid, path, group, (uint64_t)st.st_size, out, err);
done:
    h5_close(&fid, H5Fclose, path, "/", &rc, err);
    quiet_end(&quiet);
    if (rc != 0)
        dataset_free(out);
    return rc;
}

/* ---- the guarded load ---------------------------------------------------- */

/* The summary the child sends before x and y. */
typedef struct {
    uint64_t count, dim;
    int32_t channels, rows, cols, classes;
} load_meta;

typedef struct {
    const char *path, *group;
    dataset_t *out; /* the parent's; the child fills its own copy */
    dataset_t child_set;
} load_ctx;

static int load_parse(void *vctx, const char *path, void *vmeta, guard_part parts[GUARD_PARTS_MAX],
                      int *nparts, char *err)
{
    load_ctx *ctx = vctx;
    dataset_t *d = &ctx->child_set;
    if (h5data_load_unguarded(path, ctx->group, d, err) < 0)
        return -1;
    load_meta *m = vmeta;
    m->count = d->count;
    m->dim = d->dim;
    m->channels = d->channels;
    m->rows = d->rows;
    m->cols = d->cols;
    m->classes = d->classes;
    parts[0] = (guard_part){d->x, d->count * d->dim * sizeof *d->x};
    parts[1] = (guard_part){d->y, d->count * sizeof *d->y};
    *nparts = 2;
    return 0;
}

static int load_accept(void *vctx, const void *vmeta, guard_part parts[GUARD_PARTS_MAX],
                       int *nparts, char *err)
{
    load_ctx *ctx = vctx;
    const load_meta *m = vmeta;
    /* What h5data_load_unguarded promises of a set it accepted. */
    if (m->count < 1 || m->dim < 1 || m->channels < 1 || m->rows < 1 || m->cols < 1 ||
        m->classes < 2 || m->classes > DATASET_MAX_CLASSES ||
        (uint64_t)m->channels * (uint64_t)m->rows * (uint64_t)m->cols != m->dim ||
        m->dim > H5DATA_MAX_BYTES / 4 || m->count > H5DATA_MAX_BYTES / (m->dim * 4 + 1))
        return GUARD_MALFORMED;
    dataset_t *d = ctx->out;
    d->count = (size_t)m->count;
    d->dim = (size_t)m->dim;
    d->channels = m->channels;
    d->rows = m->rows;
    d->cols = m->cols;
    d->classes = m->classes;
    d->x = err_calloc(d->count, d->dim * sizeof *d->x);
    d->y = err_calloc(d->count, sizeof *d->y);
    if (!d->x || !d->y) {
        dataset_free(d);
        return err_set(err, "%s: out of memory for %zu examples of %zu values", ctx->path,
                       (size_t)m->count, (size_t)m->dim);
    }
    parts[0] = (guard_part){d->x, d->count * d->dim * sizeof *d->x};
    parts[1] = (guard_part){d->y, d->count * sizeof *d->y};
    *nparts = 2;
    return 0;
}

static void load_discard(void *vctx)
{
    load_ctx *ctx = vctx;
    dataset_free(ctx->out);
}

int h5data_load(const char *path, const char *group, dataset_t *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (check_group_name(path, group, err) < 0)
        return -1;
    /* HDF5 sets itself up on its first call, and a parallel build registers
     * with MPI then: let that happen here, never in the child. */
    if (H5open() < 0)
        return err_set(err, "%s: not loaded: H5open failed", path);
    load_ctx ctx = {.path = path, .group = group, .out = out};
    guard_job job = {.path = path,
                     .env = H5DATA_ENV,
                     .reader = "HDF5",
                     .meta_bytes = sizeof(load_meta),
                     .ctx = &ctx,
                     .parse = load_parse,
                     .accept = load_accept,
                     .discard = load_discard};
    if (guard_run(&job, err) < 0) {
        dataset_free(out);
        return -1;
    }
    /* The values crossed from a process that ran HDF5 on hostile bytes:
     * check again what the contract promises. */
    for (size_t i = 0; i < out->count; i++)
        if (out->y[i] >= out->classes) {
            dataset_free(out);
            return err_set(err, "%s: the process reading it with HDF5 sent label %zu out of "
                           "range: the file is damaged or hostile; not loaded", path, i);
        }
    for (size_t i = 0; i < out->count * out->dim; i++)
        if (!isfinite(out->x[i])) {
            dataset_free(out);
            return err_set(err, "%s: the process reading it with HDF5 sent a value that is not "
                           "finite: the file is damaged or hostile; not loaded", path);
        }
    return 0;
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
    size_t rows = BLOCK_ELEMS / row ? BLOCK_ELEMS / row : 1;
    if (rows > d->count)
        rows = d->count;
    if (!(buf = err_calloc(rows * row, elem_bytes))) {
        err_set(err, "%s: %s: out of memory", path, obj);
        goto done;
    }
    if ((space = H5Screate_simple(rank, dims, NULL)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 ||
        (elem_bytes > 1 && H5Pset_shuffle(dcpl) < 0) || H5Pset_deflate(dcpl, 4) < 0) {
        h5_fail(err, path, obj, "setting up the dataset");
        goto done;
    }
    if ((dset = H5Dcreate2(g, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        h5_fail(err, path, obj, "H5Dcreate2");
        goto done;
    }
    for (size_t first = 0; first < d->count; first += rows) {
        size_t n = d->count - first < rows ? d->count - first : rows;
        fill(d, first, n, buf);
        if (select_rows(space, rank, dims, first, n, &mem) < 0) {
            h5_fail(err, path, obj, "H5Sselect_hyperslab");
            goto done;
        }
        if (H5Dwrite(dset, mem_type, mem, space, H5P_DEFAULT, buf) < 0) {
            h5_fail(err, path, obj, "H5Dwrite");
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
    h5_close(&dset, H5Dclose, path, obj, &rc, err);
    h5_close(&dcpl, H5Pclose, path, obj, &rc, err);
    h5_close(&space, H5Sclose, path, obj, &rc, err);
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
        return h5_fail(err, path, gname, "H5Gcreate2");
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
    h5_close(&g, H5Gclose, path, gname, &rc, err);
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
        h5_fail(err, path, "/", "H5Pset_libver_bounds");
        goto done;
    }
    if ((fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5_fail(err, path, tmp, "H5Fcreate");
        goto done;
    }
    if ((space = H5Screate(H5S_SCALAR)) < 0 ||
        (attr = H5Acreate2(fid, "classes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, H5T_NATIVE_INT, &classes) < 0) {
        h5_fail(err, path, "/: attribute 'classes'", "H5Awrite");
        goto done;
    }
    if ((train && write_group(fid, "train", train, as_uint8, path, err) < 0) ||
        (test && write_group(fid, "test", test, as_uint8, path, err) < 0))
        goto done;
    if (H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0) {
        h5_fail(err, path, tmp, "H5Fflush");
        goto done;
    }
    rc = 0;
done:
    h5_close(&attr, H5Aclose, path, "/: attribute 'classes'", &rc, err);
    h5_close(&space, H5Sclose, path, "/", &rc, err);
    h5_close(&fid, H5Fclose, path, tmp, &rc, err);
    h5_close(&fapl, H5Pclose, path, "/", &rc, err);
    return rc;
}

/* fsync of a file or directory: HDF5's flush reaches only the OS. */
static int fsync_path(const char *name, int directory, const char *path, char *err)
{
    int fd = open(name, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return err_set(err, "%s: cannot open %s for fsync: %s", path, name, strerror(errno));
    int rc = 0;
    /* Some file systems cannot fsync a directory (EINVAL): nothing more to do. */
    if (fsync(fd) != 0 && !(directory && errno == EINVAL))
        rc = err_set(err, "%s: fsync of %s failed: %s", path, name, strerror(errno));
    close(fd);
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

    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp)
        return err_set(err, "%s: out of memory", path);
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    quiet_t quiet;
    quiet_begin(&quiet);
    int rc = write_file(tmp, path, train, test, classes, as_uint8, err);
    quiet_end(&quiet);
    if (rc == 0)
        rc = fsync_path(tmp, 0, path, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = err_set(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc != 0) {
        /* Ours only: a directory at that name is what made the create fail. */
        struct stat st;
        if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode))
            unlink(tmp);
    }
    if (rc == 0) {
        /* The rename is durable once the directory entry is on disk. */
        const char *slash = strrchr(path, '/');
        char *dir = slash == path ? strdup("/")
                    : slash       ? strndup(path, (size_t)(slash - path))
                                  : strdup(".");
        rc = dir ? fsync_path(dir, 1, path, err) : err_set(err, "%s: out of memory", path);
        free(dir);
    }
    free(tmp);
    return rc;
}

/* ---- digests --------------------------------------------------------------- */

int h5data_digest_file(const char *path, h5data_digest *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path)
        return err_set(err, "data file: empty file name");
    /* O_NONBLOCK: a FIFO must not hang the open; only regular files hash. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int stat_rc = fstat(fd, &st), stat_errno = errno;
    if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: cannot read: %s", path,
                       stat_rc != 0 ? strerror(stat_errno) : "not a regular file");
    }
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
