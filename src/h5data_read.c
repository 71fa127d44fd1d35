/* h5data_read: the reader of data files (include/h5data.h). Every header
 * is checked before anything is allocated or read: links, layout and
 * storage, element types, shapes and the size bound, the `classes` and
 * `scale` attributes; then y and x are read a block of rows at a time and
 * their values checked. HDF5 parses the untrusted file here, so only
 * h5data_load's child (through guard.c) and the fuzzer call
 * h5data_load_unguarded; h5data_load is here too. */
#include "h5data_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "guard.h"

#define H5DATA_ENV "DSSGD_DATA_PARSE_TIMEOUT"

/* ---- headers: links, layout, shapes, attributes ------------------------------ */

/* Rows per block for reading dset (row_elems elements a row): a whole
 * number of the dataset's chunks along the first dimension when that fits
 * H5DATA_BLOCK_ELEMS, so each chunk is decompressed once. */
static hsize_t block_rows(hid_t dset, size_t row_elems)
{
    hsize_t rows = H5DATA_BLOCK_ELEMS / row_elems ? H5DATA_BLOCK_ELEMS / row_elems : 1;
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
        return h5data_h5_fail(err, file, obj, "H5Lexists");
    if (exists == 0)
        return err_set(err, "%s: %s: missing (no such dataset)", file, obj);
    H5L_info_t link;
    if (H5Lget_info(g, name, &link, H5P_DEFAULT) < 0)
        return h5data_h5_fail(err, file, obj, "H5Lget_info");
    if (link.type != H5L_TYPE_HARD)
        return err_set(err, "%s: %s: %s link, not a dataset in this file", file, obj,
                       link.type == H5L_TYPE_SOFT ? "a soft" : "an external");
    hid_t id = H5Oopen(g, name, H5P_DEFAULT);
    if (id < 0)
        return h5data_h5_fail(err, file, obj, "H5Oopen");
    if (H5Iget_type(id) != H5I_DATASET) {
        H5Oclose(id);
        return err_set(err, "%s: %s: not a dataset (a group or a named type)", file, obj);
    }
    int rc = 0;
    hid_t dcpl = H5Dget_create_plist(id);
    if (dcpl < 0) {
        rc = h5data_h5_fail(err, file, obj, "H5Dget_create_plist");
    } else {
        H5D_layout_t layout = H5Pget_layout(dcpl);
        int external = H5Pget_external_count(dcpl);
        if (layout < 0 || external < 0)
            rc = h5data_h5_fail(err, file, obj, "H5Pget_layout");
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
        return h5data_h5_fail(err, file, obj, "H5Dget_space");
    H5S_class_t cls = H5Sget_simple_extent_type(*space);
    if (cls == H5S_SCALAR)
        return err_set(err, "%s: %s: a scalar, not an array", file, obj);
    if (cls != H5S_SIMPLE)
        return err_set(err, "%s: %s: an empty (null) dataspace, not an array", file, obj);
    int r = H5Sget_simple_extent_ndims(*space);
    if (r < 0)
        return h5data_h5_fail(err, file, obj, "H5Sget_simple_extent_ndims");
    *rank = r;
    if (r < 1 || r > 4)
        return 0;
    if (H5Sget_simple_extent_dims(*space, dims, NULL) < 0)
        return h5data_h5_fail(err, file, obj, "H5Sget_simple_extent_dims");
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
        return h5data_h5_fail(err, file, obj, "H5Aexists");
    if (exists == 0)
        return 0;
    *present = 1;
    if ((*attr = H5Aopen(loc, name, H5P_DEFAULT)) < 0)
        return h5data_h5_fail(err, file, obj, "H5Aopen");
    if ((*type = H5Aget_type(*attr)) < 0)
        return h5data_h5_fail(err, file, obj, "H5Aget_type");
    hid_t space = H5Aget_space(*attr);
    if (space < 0)
        return h5data_h5_fail(err, file, obj, "H5Aget_space");
    hssize_t points = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    H5T_class_t cls = H5Tget_class(*type);
    char tname[64];
    h5util_type_name(*type, tname, sizeof tname);
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
        h5data_h5_fail(err, file, "/: attribute 'classes'", "H5Aread");
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
            h5data_h5_fail(err, file, obj, "H5Aread of attribute 'scale'");
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
        return h5data_h5_fail(err, file, obj, "H5Dget_create_plist");
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
        return h5data_h5_fail(err, file, obj, "H5Dget_num_chunks");
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
        return h5data_h5_fail(err, file, obj, "H5Dget_type");
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_ERROR;
    char tname[64];
    h5util_type_name(type, tname, sizeof tname);
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
        h5data_h5_fail(err, file, obj, "H5Dget_space");
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
        if (h5data_select_rows(space, xs->rank, xs->dims, first, n, &mem) < 0) {
            h5data_h5_fail(err, file, obj, "H5Sselect_hyperslab");
            goto done;
        }
        if (H5Dread(dset, xs->is_uint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, mem, space,
                    H5P_DEFAULT, xs->is_uint8 ? (void *)bytes : (void *)dst) < 0) {
            h5data_h5_fail(err, file, obj, "H5Dread");
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
        return h5data_h5_fail(err, file, obj, "H5Dget_type");
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    char tname[64];
    h5util_type_name(type, tname, sizeof tname);
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
        h5data_h5_fail(err, file, obj, "H5Dget_space");
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
        if (h5data_select_rows(space, 1, dims, first, n, &mem) < 0) {
            h5data_h5_fail(err, file, obj, "H5Sselect_hyperslab");
            goto done;
        }
        if (H5Dread(dset, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, block) < 0) {
            h5data_h5_fail(err, file, obj, "H5Dread");
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
        h5data_h5_fail(err, path, gname, "H5Lexists");
        goto done;
    }
    if (exists == 0) {
        err_set(err, "%s: %s: missing (no such group)", path, gname);
        goto done;
    }
    H5L_info_t link;
    if (H5Lget_info(fid, gname, &link, H5P_DEFAULT) < 0) {
        h5data_h5_fail(err, path, gname, "H5Lget_info");
        goto done;
    }
    if (link.type != H5L_TYPE_HARD) {
        err_set(err, "%s: %s: %s link, not a group in this file", path, gname,
                link.type == H5L_TYPE_SOFT ? "a soft" : "an external");
        goto done;
    }
    if ((g = H5Oopen(fid, gname, H5P_DEFAULT)) < 0) {
        h5data_h5_fail(err, path, gname, "H5Oopen");
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
    h5data_h5_close(&yd, H5Dclose, path, yname, &rc, err);
    h5data_h5_close(&xd, H5Dclose, path, xname, &rc, err);
    if (g >= 0 && H5Oclose(g) < 0 && rc == 0)
        rc = h5data_h5_fail(err, path, gname, "H5Oclose");
    return rc;
}

int h5data_load_unguarded(const char *path, const char *group, dataset_t *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (check_group_name(path, group, err) < 0)
        return -1;
    struct stat st;
    int fd = h5util_open_regular(path, &st, err);
    if (fd < 0)
        return -1;
    close(fd);

    h5util_quiet quiet;
    h5util_quiet_begin(&quiet);
    hid_t fid = -1;
    int rc = -1;
    if (H5Fis_hdf5(path) <= 0) {
        err_set(err, "%s: not an HDF5 file", path);
        goto done;
    }
    if ((fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        h5data_h5_fail(err, path, "a damaged HDF5 file", "H5Fopen");
        goto done;
    }
    rc = load_group(fid, path, group, (uint64_t)st.st_size, out, err);
done:
    h5data_h5_close(&fid, H5Fclose, path, "/", &rc, err);
    h5util_quiet_end(&quiet);
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
