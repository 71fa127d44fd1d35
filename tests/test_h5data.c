/* test_h5data: HDF5 data files. SHA-256 against the FIPS 180-4 / NIST
 * vectors and the file digest against sha256sum; h5data_write then
 * h5data_load gives back every bit; files written here with the HDF5 C API
 * (as h5py would write them) load with the promised shapes, scales and
 * label types; every refusal of include/h5data.h has its malformed file,
 * and its message names the file and the dataset, word for word the same
 * through the guarded (forked) load; a reader that crashes or hangs is
 * refused and reaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "dataset.h"
#include "err.h"
#include "guard.h"
#include "h5data.h"
#include "sha256.h"
#include "test_util.h"

/* ---- fixture: one fresh directory per test ------------------------------ */

typedef struct {
    char dir[TU_TMPDIR_CAP];
    char path[128]; /* dir/data.h5: the file most tests use */
} fixture;

static H5E_auto2_t initial_auto_func;
static void *initial_auto_data;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    if (tu_make_tmpdir(fx->dir, "test_h5data") != 0) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof fx->path, "%s/data.h5", fx->dir);
    *state = fx;
    return 0;
}

/* Also proves, after every test, that the module left no HDF5 object open,
 * restored HDF5's automatic error printing, and reaped every child. */
static int teardown(void **state)
{
    fixture *fx = *state;
    unsetenv("DSSGD_DATA_PARSE_TIMEOUT");
    guard_test_child_hook = NULL;
    tu_remove_tree(fx->dir);
    free(fx);
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
    H5E_auto2_t func;
    void *data;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &func, &data) >= 0);
    assert_true(func == initial_auto_func && data == initial_auto_data);
    return 0;
}

/* ---- SHA-256 --------------------------------------------------------------- */

static void hex_of(const uint8_t d[32], char hex[65])
{
    h5data_digest g;
    memcpy(g.sha256, d, 32);
    h5data_digest_hex(&g, hex);
}

/* FIPS 180-4's examples (NIST CSRC "SHA256.pdf", "SHA2_Additional"): "abc",
 * the 448-bit two-block message, one million 'a', and the empty string. */
static void test_sha256_nist_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    };
    uint8_t d[32];
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha256(v[i].msg, strlen(v[i].msg), d);
        hex_of(d, hex);
        assert_string_equal(hex, v[i].hex);
    }
    char *million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    sha256(million, 1000000, d);
    hex_of(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* The same in pieces that straddle the 64-byte blocks. */
    static const size_t pieces[] = {1, 7, 63, 64, 65, 1000};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        sha256_ctx c;
        sha256_init(&c);
        for (size_t at = 0; at < 1000000; at += pieces[k])
            sha256_update(&c, million + at, 1000000 - at < pieces[k] ? 1000000 - at : pieces[k]);
        sha256_final(&c, d);
        hex_of(d, hex);
        assert_string_equal(hex,
                            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
    free(million);
    /* Messages of 0 to 200 bytes, split in two at every point, hash as a
     * whole: every fill level of the block buffer and both padding cases. */
    uint8_t msg[200], whole[32];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 91 + 5);
    for (size_t len = 0; len <= sizeof msg; len++) {
        sha256(msg, len, whole);
        for (size_t cut = 0; cut <= len; cut++) {
            sha256_ctx c;
            sha256_init(&c);
            sha256_update(&c, msg, cut);
            sha256_update(&c, msg + cut, len - cut);
            sha256_final(&c, d);
            assert_memory_equal(d, whole, 32);
        }
    }
}

/* Messages of 0 to 200 bytes (every padding case) against sha256sum, an
 * independent implementation, through h5data_digest_file. */
static void test_digest_file_matches_sha256sum(void **state)
{
    fixture *fx = *state;
    char file[160], cmd[256], expect[80];
    snprintf(file, sizeof file, "%s/bytes", fx->dir);
    uint8_t bytes[200];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof bytes; len += len < 70 ? 1 : 13) {
        tu_write_file(file, bytes, len);
        snprintf(cmd, sizeof cmd, "sha256sum '%s'", file);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(expect, sizeof expect, p));
        assert_int_equal(pclose(p), 0);
        expect[64] = '\0';
        h5data_digest g;
        char err[ERR_LEN] = "", hex[65];
        assert_int_equal(h5data_digest_file(file, &g, err), 0);
        assert_int_equal(g.size, len);
        h5data_digest_hex(&g, hex);
        assert_string_equal(hex, expect);
    }
}

static void test_digest_file_refuses_missing_file_and_directory(void **state)
{
    fixture *fx = *state;
    h5data_digest g;
    char err[ERR_LEN] = "";
    assert_int_equal(h5data_digest_file(fx->path, &g, err), -1);
    assert_non_null(strstr(err, fx->path));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(h5data_digest_file(fx->dir, &g, err), -1);
    assert_non_null(strstr(err, fx->dir));
    assert_non_null(strstr(err, "not a regular file"));
}

/* ---- sets in memory -------------------------------------------------------- */

/* count examples of c x r x w with deterministic pixels in [0, 1] (bytes /
 * 255 when bytes is set, so a uint8 file holds them exactly) and labels
 * cycling through classes. */
static dataset_t make_set(size_t count, int c, int r, int w, int classes, int bytes,
                          unsigned seed)
{
    dataset_t d = {.count = count, .channels = c, .rows = r, .cols = w,
                   .dim = (size_t)c * (size_t)r * (size_t)w, .classes = classes};
    d.x = calloc(count * d.dim, sizeof *d.x);
    d.y = calloc(count, 1);
    assert_true(d.x && d.y);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < count * d.dim; i++) {
        s = s * 1664525u + 1013904223u;
        d.x[i] = bytes ? (float)(s >> 24) / 255.0f : (float)(s >> 8) / 16777216.0f;
    }
    for (size_t i = 0; i < count; i++)
        d.y[i] = (uint8_t)((i * 7 + seed) % (size_t)classes);
    return d;
}

static void assert_same_set(const dataset_t *a, const dataset_t *b)
{
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->classes, b->classes);
    assert_memory_equal(a->x, b->x, a->count * a->dim * sizeof *a->x);
    assert_memory_equal(a->y, b->y, a->count);
}

/* Loads group of path both ways; both must accept and agree bit for bit. */
static dataset_t load_ok(const char *path, const char *group)
{
    dataset_t in, guarded;
    char err[ERR_LEN] = "";
    if (h5data_load_unguarded(path, group, &in, err) != 0)
        fail_msg("unguarded load of %s: %s", group, err);
    if (h5data_load(path, group, &guarded, err) != 0)
        fail_msg("guarded load of %s: %s", group, err);
    assert_same_set(&in, &guarded);
    dataset_free(&guarded);
    return in;
}

/* Both loads refuse with the same message, which names the file, holds
 * `dataset` (when not NULL) and `want`, and leave the set zeroed. */
static void assert_refused(const char *path, const char *group, const char *dataset,
                           const char *want)
{
    static const dataset_t zero;
    dataset_t d;
    char err[ERR_LEN] = "", gerr[ERR_LEN] = "";
    memset(&d, 0xA5, sizeof d);
    assert_int_equal(h5data_load_unguarded(path, group, &d, err), -1);
    assert_memory_equal(&d, &zero, sizeof d);
    memset(&d, 0xA5, sizeof d);
    assert_int_equal(h5data_load(path, group, &d, gerr), -1);
    assert_memory_equal(&d, &zero, sizeof d);
    if (strcmp(err, gerr) != 0)
        fail_msg("guarded and in-process refusals differ:\n  %s\n  %s", err, gerr);
    if (strncmp(err, path, strlen(path)) != 0 || err[strlen(path)] != ':')
        fail_msg("message does not start with the file name: %s", err);
    if (dataset && !strstr(err, dataset))
        fail_msg("message does not name %s: %s", dataset, err);
    if (!strstr(err, want))
        fail_msg("message lacks '%s': %s", want, err);
}

/* ---- writer round trips ---------------------------------------------------- */

static void test_write_then_load_gives_every_bit_back(void **state)
{
    fixture *fx = *state;
    char err[ERR_LEN] = "";
    /* 3 x 8 x 8 images, 3 classes; a grey image set; vectors. */
    static const int shapes[][3] = {{3, 8, 8}, {1, 28, 28}, {1, 1, 17}, {2, 1, 5}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        for (int as_uint8 = 0; as_uint8 < 2; as_uint8++) {
            dataset_t train = make_set(50, shapes[k][0], shapes[k][1], shapes[k][2], 3, as_uint8, 1);
            dataset_t test = make_set(20, shapes[k][0], shapes[k][1], shapes[k][2], 3, as_uint8, 2);
            if (h5data_write(fx->path, &train, &test, as_uint8, err) != 0)
                fail_msg("write: %s", err);
            dataset_t a = load_ok(fx->path, "train"), b = load_ok(fx->path, "test");
            assert_same_set(&a, &train);
            assert_same_set(&b, &test);
            dataset_free(&a);
            dataset_free(&b);
            dataset_free(&train);
            dataset_free(&test);
        }
    }
}

/* Every byte value b survives as b / 255 (the IDX reader's pixels) through a
 * uint8 file, and 256 classes (labels up to 255) fit. */
static void test_uint8_file_keeps_idx_pixels_exactly(void **state)
{
    fixture *fx = *state;
    char err[ERR_LEN] = "";
    dataset_t d = make_set(256, 1, 1, 3, 256, 1, 3);
    for (size_t i = 0; i < 256; i++) {
        d.x[i * 3] = (float)i / 255.0f;
        d.y[i] = (uint8_t)i;
    }
    assert_int_equal(h5data_write(fx->path, &d, NULL, 1, err), 0);
    dataset_t back = load_ok(fx->path, "train");
    assert_same_set(&back, &d);
    assert_true(back.x[255 * 3] == 1.0f && back.x[0] == 0.0f);
    dataset_free(&back);
    /* The file holds only /train. */
    assert_refused(fx->path, "test", "/test", "missing (no such group)");
    dataset_free(&d);
}

/* What the file looks like, read with the HDF5 API here: the layout of
 * include/h5data.h, chunked and deflated. */
static void test_written_layout(void **state)
{
    fixture *fx = *state;
    char err[ERR_LEN] = "";
    dataset_t img = make_set(9, 3, 4, 5, 4, 1, 4), vec = make_set(7, 1, 1, 6, 4, 0, 5);
    assert_int_equal(h5data_write(fx->path, &img, &vec, 0, err), 0);
    hid_t f = H5Fopen(fx->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    int classes = 0;
    hid_t a = H5Aopen(f, "classes", H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Aread(a, H5T_NATIVE_INT, &classes) >= 0);
    H5Aclose(a);
    assert_int_equal(classes, 4);
    static const struct {
        const char *name;
        int rank;
        hsize_t dims[4];
        H5T_class_t cls;
        size_t size;
    } want[] = {{"/train/x", 4, {9, 3, 4, 5}, H5T_FLOAT, 4},
                {"/train/y", 1, {9}, H5T_INTEGER, 1},
                {"/test/x", 2, {7, 6}, H5T_FLOAT, 4},
                {"/test/y", 1, {7}, H5T_INTEGER, 1}};
    for (size_t i = 0; i < 4; i++) {
        hid_t d = H5Dopen2(f, want[i].name, H5P_DEFAULT);
        assert_true(d >= 0);
        hid_t s = H5Dget_space(d), t = H5Dget_type(d), p = H5Dget_create_plist(d);
        hsize_t dims[4] = {0};
        assert_int_equal(H5Sget_simple_extent_ndims(s), want[i].rank);
        H5Sget_simple_extent_dims(s, dims, NULL);
        assert_memory_equal(dims, want[i].dims, (size_t)want[i].rank * sizeof *dims);
        assert_int_equal(H5Tget_class(t), want[i].cls);
        assert_int_equal(H5Tget_size(t), want[i].size);
        assert_int_equal(H5Pget_layout(p), H5D_CHUNKED);
        int deflate = 0;
        for (int k = 0; k < H5Pget_nfilters(p); k++) {
            unsigned flags;
            size_t nelem = 0;
            if (H5Pget_filter2(p, (unsigned)k, &flags, &nelem, NULL, 0, NULL, NULL) ==
                H5Z_FILTER_DEFLATE)
                deflate = 1;
        }
        assert_true(deflate);
        H5Pclose(p);
        H5Tclose(t);
        H5Sclose(s);
        H5Dclose(d);
    }
    H5Fclose(f);
    dataset_free(&img);
    dataset_free(&vec);
}

static void test_write_refuses_what_load_would_refuse(void **state)
{
    fixture *fx = *state;
    char err[ERR_LEN] = "";
    dataset_t d = make_set(4, 1, 2, 2, 3, 1, 6), t = make_set(4, 1, 2, 2, 3, 1, 7);
    assert_int_equal(h5data_write(fx->path, NULL, NULL, 0, err), -1);
    assert_non_null(strstr(err, "neither a train nor a test set"));
    d.x[5] = 1.5f;
    assert_int_equal(h5data_write(fx->path, &d, NULL, 1, err), -1);
    assert_non_null(strstr(err, "example 1, element 1 is 1.5, outside [0, 1]"));
    assert_int_equal(h5data_write(fx->path, &d, NULL, 0, err), 0); /* float32: fine */
    d.x[5] = NAN;
    assert_int_equal(h5data_write(fx->path, &d, NULL, 0, err), -1);
    assert_non_null(strstr(err, "not finite"));
    d.x[5] = 0.5f;
    d.y[2] = 3;
    assert_int_equal(h5data_write(fx->path, &d, NULL, 0, err), -1);
    assert_non_null(strstr(err, "the train set's label 2 is 3, not below its 3 classes"));
    d.y[2] = 0;
    t.classes = 4;
    assert_int_equal(h5data_write(fx->path, &d, &t, 0, err), -1);
    assert_non_null(strstr(err, "the train set has 3 classes, the test set 4"));
    t.classes = 3;
    t.dim = 5;
    assert_int_equal(h5data_write(fx->path, &d, &t, 0, err), -1);
    assert_non_null(strstr(err, "the test set's shape 1 x 2 x 2 does not make its dim 5"));
    t.dim = 4;
    t.count = 0;
    assert_int_equal(h5data_write(fx->path, &d, &t, 0, err), -1);
    assert_non_null(strstr(err, "the test set has no examples"));
    t.count = 4;
    d.classes = 1;
    assert_int_equal(h5data_write(fx->path, &d, NULL, 0, err), -1);
    assert_non_null(strstr(err, "1 classes, expected 2 to 256"));
    d.classes = 3;
    /* Every refusal named the file and left the earlier file as it was. */
    assert_non_null(strstr(err, fx->path));
    dataset_t back = load_ok(fx->path, "train");
    assert_int_equal(back.count, 4);
    dataset_free(&back);
    dataset_free(&d);
    dataset_free(&t);
}

/* Written under a temporary name and renamed: nothing else is left in the
 * directory, and a write that fails leaves the old file. */
static void test_write_is_atomic(void **state)
{
    fixture *fx = *state;
    char err[ERR_LEN] = "";
    dataset_t d = make_set(5, 1, 1, 4, 2, 0, 8);
    assert_int_equal(h5data_write(fx->path, &d, NULL, 0, err), 0);
    assert_int_equal(h5data_write(fx->path, &d, NULL, 0, err), 0); /* replaces */
    DIR *dir = opendir(fx->dir);
    assert_non_null(dir);
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            assert_string_equal(e->d_name, "data.h5");
            entries++;
        }
    closedir(dir);
    assert_int_equal(entries, 1);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/no-such-dir/data.h5", fx->dir);
    assert_int_equal(h5data_write(missing, &d, NULL, 0, err), -1);
    assert_non_null(strstr(err, missing));
    assert_int_equal(access(missing, F_OK), -1);
    dataset_free(&d);
}

/* ---- files written here with the HDF5 API ---------------------------------- */

/* One group's x and y as a careless or hostile writer may make them. Values
 * are given as doubles (x) and int64 (y) and HDF5 converts them to the file
 * types. Without data, a dataset is chunked and left unwritten (so huge
 * shapes cost nothing). */
typedef struct {
    const char *group;
    hid_t xtype;
    int xrank;
    hsize_t xdims[5];
    const double *x; /* NULL: pattern (i % 11) / 10 for floats, i % 256 for ints */
    int x_unwritten;
    hid_t ytype;
    int yrank;
    hsize_t ydims[2];
    const int64_t *y; /* NULL: i % 3 */
    int omit_x, omit_y;
} xy_spec;

static xy_spec spec_default(void)
{
    xy_spec s = {.group = "train", .xtype = H5T_IEEE_F32LE, .xrank = 4, .xdims = {6, 3, 4, 5},
                 .ytype = H5T_STD_I64LE, .yrank = 1, .ydims = {6}};
    return s;
}

static hsize_t elems(int rank, const hsize_t *dims)
{
    hsize_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= dims[d];
    return n;
}

static void put_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                        hid_t mem, const void *data)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(H5Pset_create_intermediate_group(lcpl, 1) >= 0);
    hsize_t chunk[5], unlimited[5];
    for (int d = 0; d < rank; d++) {
        chunk[d] = 1;
        unlimited[d] = H5S_UNLIMITED;
    }
    /* Unlimited: a chunk may then be larger than a zero dimension. */
    if (!data)
        assert_true(H5Pset_chunk(dcpl, rank, chunk) >= 0);
    hid_t space = H5Screate_simple(rank, dims, data ? NULL : unlimited);
    assert_true(space >= 0);
    hid_t d = H5Dcreate2(f, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    if (data)
        assert_true(H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
}

static void put_xy(hid_t f, const xy_spec *s)
{
    char name[64];
    if (!s->omit_x) {
        snprintf(name, sizeof name, "/%s/x", s->group);
        hsize_t n = elems(s->xrank, s->xdims);
        double *x = NULL;
        if (!s->x_unwritten) {
            x = calloc(n ? n : 1, sizeof *x);
            assert_non_null(x);
            for (hsize_t i = 0; i < n; i++)
                x[i] = s->x ? s->x[i]
                       : H5Tget_class(s->xtype) == H5T_FLOAT ? (double)(i % 11) / 10.0
                                                             : (double)(i % 256);
        }
        put_dataset(f, name, s->xtype, s->xrank, s->xdims, H5T_NATIVE_DOUBLE, x);
        free(x);
    }
    if (!s->omit_y) {
        snprintf(name, sizeof name, "/%s/y", s->group);
        hsize_t n = elems(s->yrank, s->ydims);
        int64_t *y = calloc(n ? n : 1, sizeof *y);
        assert_non_null(y);
        for (hsize_t i = 0; i < n; i++)
            y[i] = s->y ? s->y[i] : (int64_t)(i % 3);
        put_dataset(f, name, s->ytype, s->yrank, s->ydims, H5T_NATIVE_INT64, y);
        free(y);
    }
}

/* A scalar attribute `name` on object obj ("/" or a dataset path). */
static void put_attr(hid_t f, const char *obj, const char *name, hid_t type, hid_t mem,
                     const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, mem, value) >= 0);
    H5Aclose(a);
    H5Sclose(space);
}

static hid_t create(const char *path)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* The file of one spec (train), plus a root `classes` when classes > 0. */
static void write_spec(const char *path, const xy_spec *s, int classes)
{
    hid_t f = create(path);
    put_xy(f, s);
    if (classes > 0)
        put_attr(f, "/", "classes", H5T_STD_I64LE, H5T_NATIVE_INT, &classes);
    H5Fclose(f);
}

/* ---- loading files written here -------------------------------------------- */

/* N x H x W uint8 without `classes` (as h5py writes a numpy uint8 array):
 * channels 1, pixels b / 255 exactly as the IDX reader makes them, classes
 * the largest label + 1. */
static void test_loads_grey_uint8_without_classes(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    s.xtype = H5T_STD_U8LE;
    s.xrank = 3;
    s.xdims[0] = 6, s.xdims[1] = 7, s.xdims[2] = 9;
    static const int64_t y[6] = {0, 4, 1, 1, 2, 0};
    s.y = y;
    write_spec(fx->path, &s, 0);
    dataset_t d = load_ok(fx->path, "train");
    assert_int_equal(d.count, 6);
    assert_int_equal(d.channels, 1);
    assert_int_equal(d.rows, 7);
    assert_int_equal(d.cols, 9);
    assert_int_equal(d.dim, 63);
    assert_int_equal(d.classes, 5);
    for (size_t i = 0; i < d.count * d.dim; i++)
        assert_true(d.x[i] == (float)(uint8_t)(i % 256) / 255.0f);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(d.y[i], y[i]);
    dataset_free(&d);
}

/* N x D loads as 1 x 1 x D; N x C x H x W as C x H x W, float32 big-endian
 * too (HDF5 converts the byte order). */
static void test_loads_vectors_and_channels(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    s.xrank = 2;
    s.xdims[1] = 13;
    write_spec(fx->path, &s, 3);
    dataset_t d = load_ok(fx->path, "train");
    assert_true(d.channels == 1 && d.rows == 1 && d.cols == 13 && d.dim == 13 && d.classes == 3);
    for (size_t i = 0; i < d.count * d.dim; i++)
        assert_true(d.x[i] == (float)((double)(i % 11) / 10.0));
    dataset_free(&d);

    s = spec_default();
    s.xtype = H5T_IEEE_F32BE;
    write_spec(fx->path, &s, 0);
    d = load_ok(fx->path, "train");
    assert_true(d.channels == 3 && d.rows == 4 && d.cols == 5 && d.dim == 60 && d.classes == 3);
    for (size_t i = 0; i < d.count * d.dim; i++)
        assert_true(d.x[i] == (float)((double)(i % 11) / 10.0));
    dataset_free(&d);
}

/* `scale` multiplies uint8 and float32 pixels alike, whatever its numeric
 * type: x = (float)(stored * scale), computed in double. */
static void test_scale_attribute(void **state)
{
    fixture *fx = *state;
    const struct {
        hid_t xtype, atype, amem;
        double avalue;
    } c[] = {
        {H5T_STD_U8LE, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0.5},
        {H5T_STD_U8LE, H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE, 1.0 / 128},
        {H5T_STD_U8LE, H5T_STD_I32LE, H5T_NATIVE_DOUBLE, 2},
        {H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3.0},
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        xy_spec s = spec_default();
        s.xtype = c[k].xtype;
        hid_t f = create(fx->path);
        put_xy(f, &s);
        put_attr(f, "/train/x", "scale", c[k].atype, c[k].amem, &c[k].avalue);
        H5Fclose(f);
        dataset_t d = load_ok(fx->path, "train");
        /* The stored scale: a float32 attribute holds 1/128 exactly. */
        for (size_t i = 0; i < d.count * d.dim; i++) {
            double stored = c[k].xtype == H5T_STD_U8LE ? (double)(i % 256)
                                                       : (double)(float)((double)(i % 11) / 10.0);
            assert_true(d.x[i] == (float)(stored * c[k].avalue));
        }
        dataset_free(&d);
    }
}

/* Labels of every HDF5 integer type, 8 to 64 bits, signed and unsigned,
 * either byte order, load through HDF5's conversion; 255 is the largest
 * label (256 classes). */
static void test_labels_of_every_integer_type(void **state)
{
    fixture *fx = *state;
    const hid_t types[] = {H5T_STD_I8LE,  H5T_STD_U8LE,  H5T_STD_I16LE, H5T_STD_U16LE,
                           H5T_STD_I32LE, H5T_STD_U32LE, H5T_STD_I64LE, H5T_STD_U64LE,
                           H5T_STD_I16BE, H5T_STD_U32BE, H5T_STD_I64BE, H5T_STD_U64BE};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int is_i8 = H5Tequal(types[k], H5T_STD_I8LE) > 0;
        int64_t y[6] = {0, 5, is_i8 ? 127 : 255, 1, 2, 3};
        xy_spec s = spec_default();
        s.ytype = types[k];
        s.y = y;
        write_spec(fx->path, &s, 0);
        dataset_t d = load_ok(fx->path, "train");
        assert_int_equal(d.classes, is_i8 ? 128 : 256);
        for (int i = 0; i < 6; i++)
            assert_int_equal(d.y[i], y[i]);
        dataset_free(&d);
    }
}

/* The `classes` attribute of any integer type sets classes even when the
 * labels use fewer. */
static void test_classes_attribute_of_any_integer_type(void **state)
{
    fixture *fx = *state;
    const hid_t types[] = {H5T_STD_U8LE, H5T_STD_I16BE, H5T_STD_U64LE, H5T_STD_I64LE};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        xy_spec s = spec_default();
        hid_t f = create(fx->path);
        put_xy(f, &s);
        int value = 200;
        put_attr(f, "/", "classes", types[k], H5T_NATIVE_INT, &value);
        H5Fclose(f);
        dataset_t d = load_ok(fx->path, "train");
        assert_int_equal(d.classes, 200);
        dataset_free(&d);
    }
}

/* More examples than one block of the reader (4 Mi elements), with chunks
 * that do not divide the block: every row read once, in order. */
static void test_loads_a_set_larger_than_one_block(void **state)
{
    fixture *fx = *state;
    const hsize_t n = ((hsize_t)1 << 22) + 3;
    hid_t f = create(fx->path);
    uint8_t *bytes = malloc((size_t)n);
    assert_non_null(bytes);
    for (hsize_t i = 0; i < n; i++)
        bytes[i] = (uint8_t)(i * 7 + i / 256);
    for (int k = 0; k < 2; k++) {
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = H5Pcreate(H5P_LINK_CREATE);
        hsize_t dims[2] = {n, 1}, chunk[2] = {1000, 1};
        assert_true(H5Pset_chunk(dcpl, k ? 1 : 2, chunk) >= 0);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t space = H5Screate_simple(k ? 1 : 2, dims, NULL);
        hid_t d = H5Dcreate2(f, k ? "/train/y" : "/train/x", H5T_STD_U8LE, space, lcpl, dcpl,
                             H5P_DEFAULT);
        assert_true(d >= 0);
        if (k)
            for (hsize_t i = 0; i < n; i++)
                bytes[i] = (uint8_t)(i % 10);
        assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes) >= 0);
        H5Dclose(d);
        H5Sclose(space);
        H5Pclose(dcpl);
        H5Pclose(lcpl);
    }
    H5Fclose(f);
    free(bytes);
    dataset_t d = load_ok(fx->path, "train");
    assert_int_equal(d.count, n);
    assert_int_equal(d.classes, 10);
    for (hsize_t i = 0; i < n; i++) {
        if (d.x[i] != (float)(uint8_t)(i * 7 + i / 256) / 255.0f || d.y[i] != i % 10)
            fail_msg("example %llu", (unsigned long long)i);
    }
    dataset_free(&d);
}

/* ---- refusals ---------------------------------------------------------------- */

static void test_refuses_files_that_are_not_data_files(void **state)
{
    fixture *fx = *state;
    assert_refused(fx->path, "train", NULL, "cannot open: No such file or directory");
    assert_refused(fx->dir, "train", NULL, "cannot open: not a regular file");
    tu_write_file(fx->path, "not hdf5\n", 9);
    assert_refused(fx->path, "train", NULL, "not an HDF5 file");
    /* A good file asked for a group that is not train or test. */
    xy_spec s = spec_default();
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "valid", "group 'valid'", "expected train or test");
    /* A group named like it that is not a group. */
    hid_t f = create(fx->path);
    int64_t y[2] = {0, 1};
    hsize_t dims[1] = {2};
    put_dataset(f, "/train", H5T_STD_I64LE, 1, dims, H5T_NATIVE_INT64, y);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train", "not a group");
}

static void test_refuses_missing_datasets(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    s.omit_x = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "missing (no such dataset)");
    s = spec_default();
    s.omit_y = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y", "missing (no such dataset)");
    s = spec_default();
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "test", "/test", "missing (no such group)");
    /* /train/x a group. */
    hid_t f = create(fx->path);
    s.omit_x = 1;
    put_xy(f, &s);
    hid_t g = H5Gcreate2(f, "/train/x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "not a dataset");
}

/* x or y through a link to elsewhere, or with raw data in another file:
 * the reader touches only the file it was given. */
static void test_refuses_data_outside_the_file(void **state)
{
    fixture *fx = *state;
    char other[160];
    snprintf(other, sizeof other, "%s/other.h5", fx->dir);
    xy_spec s = spec_default();
    write_spec(other, &s, 0);

    hid_t f = create(fx->path);
    s.omit_x = 1;
    put_xy(f, &s);
    assert_true(H5Lcreate_external(other, "/train/x", f, "/train/x", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "an external link, not a dataset in this file");

    f = create(fx->path);
    put_xy(f, &s);
    assert_true(H5Lcreate_soft("/train/y", f, "/train/x", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "a soft link, not a dataset in this file");

    /* Raw data in an external file (H5Pset_external). */
    char raw[160];
    snprintf(raw, sizeof raw, "%s/raw.bin", fx->dir);
    float pixels[6 * 2] = {0};
    tu_write_file(raw, pixels, sizeof pixels);
    f = create(fx->path);
    put_xy(f, &s);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(H5Pset_external(dcpl, raw, 0, sizeof pixels) >= 0);
    hsize_t dims[2] = {6, 2};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/train/x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "its data is in other files (external storage)");
}

static void test_refuses_x_of_other_types(void **state)
{
    fixture *fx = *state;
    const struct {
        hid_t type;
        const char *name;
    } bad[] = {{H5T_IEEE_F64LE, "float64"}, {H5T_STD_I8LE, "int8"},   {H5T_STD_U16LE, "uint16"},
               {H5T_STD_I32LE, "int32"},    {H5T_STD_U64LE, "uint64"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        xy_spec s = spec_default();
        s.xtype = bad[k].type;
        write_spec(fx->path, &s, 0);
        char want[96];
        snprintf(want, sizeof want, "elements are %s, expected float32 or uint8", bad[k].name);
        assert_refused(fx->path, "train", "/train/x", want);
    }
    /* A string x. */
    hid_t f = create(fx->path);
    xy_spec s = spec_default();
    s.omit_x = 1;
    put_xy(f, &s);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 4);
    hsize_t dims[2] = {6, 2};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/train/x", str, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
    H5Tclose(str);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "elements are a string, expected float32 or uint8");
}

static void test_refuses_x_of_other_shapes(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    s.xrank = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x",
                   "shape 6, expected N x D, N x H x W or N x C x H x W");
    s = spec_default();
    s.xrank = 5;
    s.xdims[4] = 2;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "shape 5 dimensions, expected N x D");
    s = spec_default();
    s.xdims[2] = 0;
    s.x_unwritten = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "shape 6 x 3 x 0 x 5 has a zero dimension");
    s = spec_default();
    s.xdims[0] = 0;
    s.ydims[0] = 0;
    s.x_unwritten = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "no examples (shape 0 x 3 x 4 x 5)");
    /* A scalar x. */
    hid_t f = create(fx->path);
    s = spec_default();
    s.omit_x = 1;
    put_xy(f, &s);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(f, "/train/x", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "a scalar, not an array");
}

/* Shapes whose size overflows size_t, or passes H5DATA_MAX_BYTES, are
 * refused from the header alone, before any allocation (the datasets are
 * never written: a read would find fill values). */
static void test_refuses_sets_over_the_size_limit(void **state)
{
    fixture *fx = *state;
    static const hsize_t shapes[][4] = {
        {(hsize_t)1 << 40, 1, 1, 1},                /* 4 TiB of floats */
        {1, 1, (hsize_t)1 << 30, 8},                /* one example of 32 GiB */
        {(hsize_t)1 << 32, 1, 1, 1},                /* 4 Gi examples of 5 bytes: 20 GiB */
        {1, INT32_MAX, INT32_MAX, INT32_MAX},       /* an example of 2^93 values */
        {(hsize_t)1 << 62, 1, 1, 1},                /* 2^62 examples: count x 5 overflows */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        xy_spec s = spec_default();
        memcpy(s.xdims, shapes[k], sizeof shapes[k]);
        s.x_unwritten = 1;
        s.ydims[0] = 2;
        write_spec(fx->path, &s, 0);
        assert_refused(fx->path, "train", "/train/x", "GiB limit of a set in memory");
    }
    /* Just under the limit by shape, but a dimension over INT_MAX. */
    xy_spec s = spec_default();
    s.xrank = 2;
    s.xdims[0] = 1;
    s.xdims[1] = (hsize_t)INT32_MAX + 1;
    s.x_unwritten = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "dimension 1 is over 2147483647");
}

static void test_refuses_bad_labels(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    s.ytype = H5T_IEEE_F32LE;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y",
                   "elements are float32, expected integer labels (8 to 64 bits)");
    s = spec_default();
    s.yrank = 2;
    s.ydims[1] = 1;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y",
                   "shape 6 x 1, expected a vector of 6 labels (reshape it to (N,))");
    s = spec_default();
    s.ydims[0] = 5;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y", "5 labels for 6 examples in x");
    s = spec_default();
    static const int64_t negative[6] = {0, 1, 2, -1, 0, 1};
    s.y = negative;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y", "label 3 is -1, below 0");
    static const int64_t big[6] = {0, 1, 256, 1, 0, 1};
    s.y = big;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y",
                   "label 2 is 256, over 255 (labels are bytes: at most 256 classes)");
    static const int64_t over_classes[6] = {0, 1, 2, 3, 4, 1};
    s.y = over_classes;
    write_spec(fx->path, &s, 4);
    assert_refused(fx->path, "train", "/train/y",
                   "label 4 is 4, not below classes = 4 (the root attribute 'classes')");
    /* uint64 above INT64_MAX saturates in the conversion and is refused. */
    s = spec_default();
    s.ytype = H5T_STD_U64LE;
    write_spec(fx->path, &s, 0);
    hid_t f = H5Fopen(fx->path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/train/y", H5P_DEFAULT);
    uint64_t huge[6] = {0, 1, UINT64_MAX, 1, 0, 1};
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, huge) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/y", "label 2 is 9223372036854775807, over 255");
    /* Every label 0 and no attribute: one class. */
    static const int64_t zeros[6] = {0};
    s = spec_default();
    s.y = zeros;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/y", "fewer than 2 classes");
}

static void test_refuses_bad_classes_attribute(void **state)
{
    fixture *fx = *state;
    static const int values[] = {1, 0, -3, 257};
    for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
        xy_spec s = spec_default();
        write_spec(fx->path, &s, 0);
        hid_t f = H5Fopen(fx->path, H5F_ACC_RDWR, H5P_DEFAULT);
        put_attr(f, "/", "classes", H5T_STD_I32LE, H5T_NATIVE_INT, &values[k]);
        H5Fclose(f);
        char want[96];
        snprintf(want, sizeof want, "attribute 'classes' is %d, expected an integer from 2 to 256",
                 values[k]);
        assert_refused(fx->path, "train", "/:", want);
    }
    xy_spec s = spec_default();
    hid_t f = create(fx->path);
    put_xy(f, &s);
    double ten = 10;
    put_attr(f, "/", "classes", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &ten);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/:", "attribute 'classes' is a float, expected an integer");
    f = create(fx->path);
    put_xy(f, &s);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 3);
    put_attr(f, "/", "classes", str, str, "10");
    H5Tclose(str);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/:",
                   "attribute 'classes' is a string with 1 elements, expected one number");
    /* Two numbers. */
    f = create(fx->path);
    put_xy(f, &s);
    hsize_t two = 2;
    hid_t space = H5Screate_simple(1, &two, NULL);
    hid_t a = H5Acreate2(f, "classes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int v[2] = {3, 3};
    H5Awrite(a, H5T_NATIVE_INT, v);
    H5Aclose(a);
    H5Sclose(space);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/:", "is int32 with 2 elements, expected one number");
}

static void test_refuses_bad_scale_and_non_finite_pixels(void **state)
{
    fixture *fx = *state;
    static const double scales[] = {0, -1, NAN, INFINITY};
    for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
        xy_spec s = spec_default();
        s.xtype = H5T_STD_U8LE;
        hid_t f = create(fx->path);
        put_xy(f, &s);
        put_attr(f, "/train/x", "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &scales[k]);
        H5Fclose(f);
        assert_refused(fx->path, "train", "/train/x",
                       "attribute 'scale' is");
        assert_refused(fx->path, "train", "/train/x", "expected a positive finite number");
    }
    double x[6 * 2];
    for (int i = 0; i < 12; i++)
        x[i] = i;
    xy_spec s = spec_default();
    s.xrank = 2;
    s.xdims[1] = 2;
    s.x = x;
    x[7] = NAN;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "example 3, element 1 is nan, not a finite number");
    x[7] = -INFINITY;
    write_spec(fx->path, &s, 0);
    assert_refused(fx->path, "train", "/train/x", "example 3, element 1 is -inf, not a finite number");
    /* Finite in the file, infinite once scaled. */
    x[7] = 3e38;
    hid_t f = create(fx->path);
    put_xy(f, &s);
    double ten = 10;
    put_attr(f, "/train/x", "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &ten);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x",
                   "example 3, element 1 is inf after scaling, not a finite number");
}

/* Data the header claims but the file does not hold is refused before
 * anything is allocated: a contiguous dataset never written, chunks never
 * written, a compact dataset whose stored size is not its shape's (HDF5
 * 1.10.8 reads past it: a fuzzer input), a claim of 8 GiB stored in 48
 * bytes (another). */
static void test_refuses_data_the_file_does_not_hold(void **state)
{
    fixture *fx = *state;
    /* Contiguous, never written. */
    hid_t f = create(fx->path);
    xy_spec s = spec_default();
    s.omit_x = 1;
    put_xy(f, &s);
    hsize_t dims[2] = {6, 4};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/train/x", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    assert_true(d >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x", "never written (no data stored)");
    /* Chunked, two of three chunks written. */
    f = create(fx->path);
    put_xy(f, &s);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {2, 4};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 1);
    space = H5Screate_simple(2, dims, NULL);
    d = H5Dcreate2(f, "/train/x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    float rows[4 * 4] = {0};
    hsize_t start[2] = {0, 0}, count[2] = {4, 4};
    hid_t mem = H5Screate_simple(2, count, NULL);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, rows) >= 0);
    H5Sclose(mem);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/x",
                   "2 of its 3 chunks written: part of it was never written");
    /* y never written either. */
    s = spec_default();
    s.omit_y = 1;
    f = create(fx->path);
    put_xy(f, &s);
    hsize_t ny = 6;
    space = H5Screate_simple(1, &ny, NULL);
    d = H5Dcreate2(f, "/train/y", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    assert_refused(fx->path, "train", "/train/y", "never written (no data stored)");
    /* The fuzzer's inputs (tests/fuzz/regressions/h5data/; the suite runs
     * from the repository root). */
    const char *compact = "tests/fuzz/regressions/h5data/hdf5-compact-size-0";
    const char *claims = "tests/fuzz/regressions/h5data/claims-8GiB-stores-48-bytes";
    assert_int_equal(access(compact, R_OK), 0);
    assert_int_equal(access(claims, R_OK), 0);
    assert_refused(compact, "train", "/train/x",
                   "stores 0 bytes where its shape needs 48: the file is damaged");
    assert_refused(claims, "train", "/train/x",
                   "stores 48 bytes where its shape needs 8589934640: the file is damaged");
}

/* ---- the guard ------------------------------------------------------------- */

static void child_aborts(void) { abort(); }
static void child_segfaults(void) { raise(SIGSEGV); }
static void child_is_killed(void) { raise(SIGKILL); }
static void child_exits_3(void) { _exit(3); }
static void child_hangs(void)
{
    for (;;)
        pause();
}

/* Every way the reading process can end without a result has its message,
 * naming the file; a reader that hangs is killed at the limit (here
 * DSSGD_DATA_PARSE_TIMEOUT=1) and reaped (teardown). */
static void test_load_says_how_the_reader_ended(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    write_spec(fx->path, &s, 0);
    static const struct {
        void (*hook)(void);
        const char *want;
    } c[] = {
        {child_aborts, "the HDF5 library crashed (SIGABRT) while reading it: the file is damaged "
                       "or hostile; not loaded"},
        {child_segfaults, "the HDF5 library crashed (SIGSEGV) while reading it"},
        {child_is_killed, "the process reading it with HDF5 was killed (SIGKILL, perhaps for lack "
                          "of memory)"},
        {child_exits_3, "the process reading it with HDF5 ended (exit status 3) without a result"},
        {child_hangs, "HDF5 did not finish reading it within 1 s: the file is damaged or hostile "
                      "(if it is trusted and this slow to read, raise DSSGD_DATA_PARSE_TIMEOUT); "
                      "not loaded"},
    };
    assert_int_equal(setenv("DSSGD_DATA_PARSE_TIMEOUT", "1", 1), 0);
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        guard_test_child_hook = c[k].hook;
        dataset_t d;
        char err[ERR_LEN] = "";
        memset(&d, 0xA5, sizeof d);
        assert_int_equal(h5data_load(fx->path, "train", &d, err), -1);
        static const dataset_t zero;
        assert_memory_equal(&d, &zero, sizeof d);
        if (strncmp(err, fx->path, strlen(fx->path)) != 0 || !strstr(err, c[k].want))
            fail_msg("case %zu: %s", k, err);
    }
    guard_test_child_hook = NULL;
    dataset_t d = load_ok(fx->path, "train");
    dataset_free(&d);
}

/* A file whose old-format root group makes HDF5 1.10.8 itself memcpy from
 * a wild address (a fuzzer input, in tests/fuzz/known-crashes.txt): the
 * guarded load refuses it, and this process, whose SIGSEGV handler is
 * cmocka's, lives on. */
static void test_load_refuses_file_that_crashes_hdf5(void **state)
{
    (void)state;
    const char *input = "tests/fuzz/regressions/h5data/hdf5-lheap-accum-read-segv";
    assert_int_equal(access(input, R_OK), 0);
    dataset_t d;
    char err[ERR_LEN] = "";
    assert_int_equal(h5data_load(input, "train", &d, err), -1);
    /* Under ASan too: the child's SIGSEGV has its default action, not
     * ASan's report (the wild address is a real fault, not a check). */
    const char *want = "the HDF5 library crashed (SIGSEGV) while reading it: the file is damaged "
                       "or hostile; not loaded";
    if (strncmp(err, input, strlen(input)) != 0 || !strstr(err, want))
        fail_msg("%s", err);
}

/* DSSGD_DATA_PARSE_TIMEOUT is whole seconds from 1 to 604800; anything
 * else is refused before a process is started. */
static void test_load_checks_the_time_limit_variable(void **state)
{
    fixture *fx = *state;
    xy_spec s = spec_default();
    write_spec(fx->path, &s, 0);
    static const char *const bad[] = {"", "0", "-1", "+5", " 5", "5 ", "5s", "1.5", "0x10",
                                      "604801", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(setenv("DSSGD_DATA_PARSE_TIMEOUT", bad[i], 1), 0);
        dataset_t d;
        char err[ERR_LEN] = "", want[ERR_LEN];
        snprintf(want, sizeof want, "%s: not loaded: DSSGD_DATA_PARSE_TIMEOUT is '%s', expected "
                 "whole seconds from 1 to 604800", fx->path, bad[i]);
        assert_int_equal(h5data_load(fx->path, "train", &d, err), -1);
        assert_string_equal(err, want);
    }
    static const char *const good[] = {"1", "30", "604800", "007"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(setenv("DSSGD_DATA_PARSE_TIMEOUT", good[i], 1), 0);
        dataset_t d = load_ok(fx->path, "train");
        dataset_free(&d);
    }
}

int main(void)
{
    if (H5open() < 0)
        return 1;
    H5Eget_auto2(H5E_DEFAULT, &initial_auto_func, &initial_auto_data);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sha256_nist_vectors),
        T(test_digest_file_matches_sha256sum),
        T(test_digest_file_refuses_missing_file_and_directory),
        T(test_write_then_load_gives_every_bit_back),
        T(test_uint8_file_keeps_idx_pixels_exactly),
        T(test_written_layout),
        T(test_write_refuses_what_load_would_refuse),
        T(test_write_is_atomic),
        T(test_loads_grey_uint8_without_classes),
        T(test_loads_vectors_and_channels),
        T(test_scale_attribute),
        T(test_labels_of_every_integer_type),
        T(test_classes_attribute_of_any_integer_type),
        T(test_loads_a_set_larger_than_one_block),
        T(test_refuses_files_that_are_not_data_files),
        T(test_refuses_missing_datasets),
        T(test_refuses_data_outside_the_file),
        T(test_refuses_x_of_other_types),
        T(test_refuses_x_of_other_shapes),
        T(test_refuses_sets_over_the_size_limit),
        T(test_refuses_bad_labels),
        T(test_refuses_bad_classes_attribute),
        T(test_refuses_bad_scale_and_non_finite_pixels),
        T(test_refuses_data_the_file_does_not_hold),
        T(test_load_refuses_file_that_crashes_hdf5),
        T(test_load_says_how_the_reader_ended),
        T(test_load_checks_the_time_limit_variable),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    H5close(); /* frees HDF5's global state so valgrind sees no leak */
    return failed;
}
