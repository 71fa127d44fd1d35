/* gen_seeds_h5data: writes the hand-made seeds of tests/fuzz/corpus/h5data/:
 * small valid data files from h5data_write (the 1.10 format, checksummed
 * metadata), the same layouts in the oldest HDF5 format (what h5py writes
 * by default: no metadata checksums, so mutations reach HDF5's parsers),
 * and well-formed files that each break one rule of include/h5data.h, so
 * that the fuzzer starts at every refusal. Run by tests/fuzz/gen-seeds.sh.
 * Usage: gen_seeds_h5data DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "dataset.h"
#include "err.h"
#include "h5data.h"

static const char *dir;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "gen_seeds_h5data: %s: %s\n", what, why);
    exit(1);
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* ---- through h5data_write ------------------------------------------------ */

static dataset_t make_set(size_t count, int c, int r, int w, int classes)
{
    dataset_t d = {.count = count, .channels = c, .rows = r, .cols = w,
                   .dim = (size_t)c * (size_t)r * (size_t)w, .classes = classes};
    d.x = calloc(count * d.dim, sizeof *d.x);
    d.y = calloc(count, 1);
    if (!d.x || !d.y)
        die("make_set", "out of memory");
    for (size_t i = 0; i < count * d.dim; i++)
        d.x[i] = (float)((i * 37) % 256) / 255.0f;
    for (size_t i = 0; i < count; i++)
        d.y[i] = (uint8_t)(i % (size_t)classes);
    return d;
}

static void written(const char *name, int as_uint8, int with_test, int c, int r, int w)
{
    char path[512], err[ERR_LEN];
    path_of(path, sizeof path, name);
    dataset_t train = make_set(4, c, r, w, 3), test = make_set(2, c, r, w, 3);
    if (h5data_write(path, &train, with_test ? &test : NULL, as_uint8, err) != 0)
        die(name, err);
    dataset_free(&train);
    dataset_free(&test);
}

/* ---- by hand, in the oldest format ---------------------------------------- */

typedef struct {
    hid_t xtype;
    int xrank;
    hsize_t xdims[4];
    hid_t ytype;
    int yrank;
    hsize_t ydims[2];
    int64_t bad_label; /* written as y[1] when not 0 */
    int nan_pixel;
    int chunked;
    hid_t classes_type; /* -1: no attribute */
    int classes;
    int scale;          /* a float64 `scale` of 0.5 on x */
} spec;

static spec base(void)
{
    spec s = {.xtype = H5T_IEEE_F32LE, .xrank = 2, .xdims = {3, 4}, .ytype = H5T_STD_I64LE,
              .yrank = 1, .ydims = {3}, .classes_type = -1};
    return s;
}

static void dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                    int chunked, hid_t mem, const void *data)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (chunked) {
        hsize_t chunk[4];
        for (int d = 0; d < rank; d++)
            chunk[d] = dims[d];
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_deflate(dcpl, 1);
    }
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        die(name, "cannot write a dataset");
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
}

static void scalar_attr(hid_t f, const char *obj, const char *name, hid_t type, hid_t mem,
                        const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mem, value) < 0)
        die(name, "cannot write an attribute");
    H5Aclose(a);
    H5Sclose(space);
}

static void by_hand(const char *name, spec s)
{
    char path[512];
    path_of(path, sizeof path, name);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST);
    /* The smallest B-tree nodes: seeds of a few KB, mutations land in
     * structure rather than padding. */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_sym_k(fcpl, 1, 1);
    H5Pset_istore_k(fcpl, 1);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0)
        die(name, "cannot create");
    double x[256];
    int64_t y[16];
    hsize_t nx = 1, ny = 1;
    for (int d = 0; d < s.xrank; d++)
        nx *= s.xdims[d];
    for (int d = 0; d < s.yrank; d++)
        ny *= s.ydims[d];
    if (nx > 256 || ny > 16)
        die(name, "seed too large");
    for (hsize_t i = 0; i < nx; i++)
        x[i] = H5Tget_class(s.xtype) == H5T_FLOAT ? (double)(i % 5) / 4.0 : (double)(i * 29 % 256);
    if (s.nan_pixel)
        x[nx / 2] = NAN;
    for (hsize_t i = 0; i < ny; i++)
        y[i] = (int64_t)(i % 3);
    if (s.bad_label)
        y[1] = s.bad_label;
    dataset(f, "/train/x", s.xtype, s.xrank, s.xdims, s.chunked, H5T_NATIVE_DOUBLE, x);
    dataset(f, "/train/y", s.ytype, s.yrank, s.ydims, s.chunked, H5T_NATIVE_INT64, y);
    if (s.classes_type >= 0)
        scalar_attr(f, "/", "classes", s.classes_type, H5T_NATIVE_INT, &s.classes);
    if (s.scale) {
        double half = 0.5;
        scalar_attr(f, "/train/x", "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &half);
    }
    H5Fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage", "gen_seeds_h5data DIR");
    dir = argv[1];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    written("write-f32-3x4x4-train-test.h5", 0, 1, 3, 4, 4);
    written("write-u8-1x1x5-train.h5", 1, 0, 1, 1, 5);
    written("write-u8-1x6x6-train-test.h5", 1, 1, 1, 6, 6);

    spec s = base();
    s.classes_type = H5T_STD_I64LE;
    s.classes = 3;
    by_hand("old-f32-NxD-classes.h5", s);
    s = base();
    s.xtype = H5T_STD_U8LE;
    s.xrank = 3;
    s.xdims[1] = 2, s.xdims[2] = 3;
    s.scale = 1;
    by_hand("old-u8-NxHxW-scale.h5", s);
    s = base();
    s.xrank = 4;
    s.xdims[1] = 2, s.xdims[2] = 2, s.xdims[3] = 2;
    s.ytype = H5T_STD_I16BE;
    s.chunked = 1;
    by_hand("old-f32-NxCxHxW-i16be-chunked.h5", s);

    /* One broken rule each. */
    s = base();
    s.xtype = H5T_IEEE_F64LE;
    by_hand("bad-x-float64.h5", s);
    s = base();
    s.xrank = 1;
    by_hand("bad-x-rank1.h5", s);
    s = base();
    s.yrank = 2;
    s.ydims[1] = 1;
    by_hand("bad-y-Nx1.h5", s);
    s = base();
    s.ydims[0] = 2;
    by_hand("bad-y-length.h5", s);
    s = base();
    s.bad_label = -1;
    by_hand("bad-label-negative.h5", s);
    s = base();
    s.classes_type = H5T_STD_U8LE;
    s.classes = 2;
    s.bad_label = 2;
    by_hand("bad-label-over-classes.h5", s);
    s = base();
    s.classes_type = H5T_STD_I32LE;
    s.classes = 300;
    by_hand("bad-classes-300.h5", s);
    s = base();
    s.nan_pixel = 1;
    by_hand("bad-x-nan.h5", s);
    s = base();
    s.ytype = H5T_IEEE_F32LE;
    by_hand("bad-y-float.h5", s);
    return 0;
}
