/* test_checkpoint: HDF5 checkpoints round-trip bit for bit, replace atomically,
 * refuse every kind of bad file with its own message, survive files that crash
 * or hang HDF5 itself, and read in h5dump/h5py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "../src/checkpoint_internal.h" /* ckpt_load_unguarded */
#include "checkpoint.h"
#include "err.h"
#include "guard.h" /* guard_test_child_hook: ckpt_load's child */
#include "rng.h"
#include "test_util.h"

/* ---- fixture: one fresh directory per test ------------------------------ */

typedef struct {
    char dir[TU_TMPDIR_CAP];
    char path[128]; /* dir/ck.h5: the checkpoint most tests use */
} fixture;

static H5E_auto2_t initial_auto_func;
static void *initial_auto_data;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    if (tu_make_tmpdir(fx->dir, "test_ckpt") != 0) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof fx->path, "%s/ck.h5", fx->dir);
    *state = fx;
    return 0;
}

/* Also proves, after every test, that the module left no HDF5 file object
 * open, restored HDF5's automatic error printing, and reaped every child
 * process that ckpt_load started. */
static int teardown(void **state)
{
    fixture *fx = *state;
    unsetenv("DSSGD_CKPT_PARSE_TIMEOUT");
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

/* ---- states with deterministic contents ------------------------------- */

static char *dup_string(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    assert_non_null(d);
    strcpy(d, s);
    return d;
}

/* Pseudo-random state keyed by tag: every array distinct, rng states real
 * (saved from generators after p % 6 draws, so `used` takes every value). */
static void make_state(ckpt_state *s, uint64_t n, uint32_t parts, int residual, uint64_t tag)
{
    assert_int_equal(ckpt_state_alloc(s, n, parts, residual), 0);
    rng_t r;
    rng_init(&r, tag, 77);
    s->epoch = 10 + tag;
    s->seed = 1000003u * tag + 1;
    for (uint64_t i = 0; i < n; i++) {
        s->server_params[i] = (float)(rng_uniform(&r) * 2 - 1);
        s->server_stat[i] = rng_uniform(&r) * 100;
    }
    for (uint64_t k = 0; k < n * parts; k++) {
        s->part_params[k] = (float)(rng_uniform(&r) - 0.5);
        if (residual)
            s->part_residual[k] = (float)(rng_uniform(&r) * 1e-3);
    }
    for (int i = 0; i < 2; i++) {
        rng_t g;
        rng_init(&g, tag, RNG_STREAM_SERVER + (uint64_t)i);
        for (int d = 0; d < 3 + i; d++)
            rng_u32(&g);
        rng_save(&g, s->server_rng[i]);
    }
    s->counters[0] = 40 + tag;
    s->counters[1] = 3;
    for (uint32_t p = 0; p < parts; p++) {
        rng_t g;
        rng_init(&g, tag, rng_participant_stream(p));
        for (uint32_t d = 0; d < p % 6; d++)
            rng_u32(&g);
        rng_save(&g, s->part_rng + (size_t)p * RNG_STATE_WORDS);
        s->part_epsilon[p] = 0.25 * p + rng_uniform(&r);
    }
    char config[128];
    snprintf(config, sizeof config, "participants = %u\nn = %llu\nlr = 0.01\ntag = %llu\n", parts,
             (unsigned long long)n, (unsigned long long)tag);
    s->config = dup_string(config);
    s->model = dup_string("mlp:784-128-10");
}

/* Gives s a server momentum (FedAvgM's velocity) with values keyed by tag. */
static void add_momentum(ckpt_state *s, uint64_t tag)
{
    assert_int_equal(ckpt_state_alloc_momentum(s), 0);
    assert_int_equal(s->has_momentum, 1);
    rng_t r;
    rng_init(&r, tag, 78);
    for (uint64_t i = 0; i < s->n; i++)
        s->server_momentum[i] = (float)(rng_uniform(&r) * 0.2 - 0.1);
}

static void assert_state_equal(const ckpt_state *a, const ckpt_state *b)
{
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->seed, b->seed);
    assert_string_equal(a->config, b->config);
    assert_string_equal(a->model, b->model);
    if (a->data)
        assert_string_equal(a->data, b->data);
    else
        assert_null(b->data);
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->participants, b->participants);
    assert_int_equal(a->has_residual, b->has_residual);
    assert_int_equal(a->has_momentum, b->has_momentum);
    size_t n = (size_t)a->n, rows = n * a->participants;
    assert_memory_equal(a->server_params, b->server_params, n * sizeof(float));
    if (a->has_momentum)
        assert_memory_equal(a->server_momentum, b->server_momentum, n * sizeof(float));
    else
        assert_null(b->server_momentum);
    assert_memory_equal(a->server_stat, b->server_stat, n * sizeof(double));
    assert_memory_equal(a->server_rng, b->server_rng, sizeof a->server_rng);
    assert_memory_equal(a->counters, b->counters, sizeof a->counters);
    assert_memory_equal(a->part_params, b->part_params, rows * sizeof(float));
    if (a->has_residual)
        assert_memory_equal(a->part_residual, b->part_residual, rows * sizeof(float));
    else
        assert_null(b->part_residual);
    assert_memory_equal(a->part_rng, b->part_rng, a->participants * RNG_STATE_WORDS * sizeof(uint64_t));
    assert_memory_equal(a->part_epsilon, b->part_epsilon, a->participants * sizeof(double));
}

static void assert_zeroed(const ckpt_state *s)
{
    static const ckpt_state zero;
    assert_memory_equal(s, &zero, sizeof zero);
}

/* Saves a standard state (n 3000, N 7, residual) to path; kept in *s. */
static void save_standard(const char *path, ckpt_state *s, uint64_t tag)
{
    char err[ERR_LEN] = "";
    make_state(s, 3000, 7, 1, tag);
    if (ckpt_save(path, s, err) != 0)
        fail_msg("save failed: %s", err);
}

static void assert_loads_as(const char *path, const ckpt_state *want)
{
    char err[ERR_LEN] = "";
    ckpt_state got;
    if (ckpt_load(path, &got, err) != 0)
        fail_msg("load failed: %s", err);
    assert_state_equal(want, &got);
    ckpt_state_free(&got);
}

/* The load is refused, *s is zeroed, and the message names the file and
 * contains phrase. */
static void assert_load_refused(const char *path, const char *phrase)
{
    char err[ERR_LEN] = "";
    ckpt_state s;
    memset(&s, 0xA5, sizeof s);
    assert_int_equal(ckpt_load(path, &s, err), -1);
    assert_zeroed(&s);
    if (!strstr(err, path) || !strstr(err, phrase))
        fail_msg("message '%s' lacks the file name or '%s'", err, phrase);
}

/* ---- raw file helpers ------------------------------------------------- */

/* Entries of dir other than . and ..; the first one's name in first. */
static int count_entries(const char *dir, char *first, size_t cap)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (count++ == 0)
            snprintf(first, cap, "%s", e->d_name);
    }
    closedir(d);
    return count;
}

/* ---- HDF5 patch helpers (to build files our writer never makes) -------- */

static hid_t open_rw(const char *path)
{
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(fid >= 0);
    return fid;
}

static void set_int_attr(const char *path, const char *name, int value)
{
    hid_t fid = open_rw(path);
    hid_t attr = H5Aopen(fid, name, H5P_DEFAULT);
    assert_true(attr >= 0);
    assert_true(H5Awrite(attr, H5T_NATIVE_INT, &value) >= 0);
    assert_true(H5Aclose(attr) >= 0);
    assert_true(H5Fclose(fid) >= 0);
}

static void set_string_attr(const char *path, const char *name, const char *value)
{
    hid_t fid = open_rw(path);
    assert_true(H5Adelete(fid, name) >= 0);
    hid_t type = H5Tcopy(H5T_C_S1);
    assert_true(type >= 0);
    assert_true(H5Tset_size(type, strlen(value) + 1) >= 0);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(fid, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(attr >= 0);
    assert_true(H5Awrite(attr, type, value) >= 0);
    assert_true(H5Aclose(attr) >= 0);
    assert_true(H5Sclose(space) >= 0);
    assert_true(H5Tclose(type) >= 0);
    assert_true(H5Fclose(fid) >= 0);
}

/* Overwrites a whole existing dataset with buf (its checksums stay valid). */
static void overwrite_dataset(const char *path, const char *name, hid_t mem_type, const void *buf)
{
    hid_t fid = open_rw(path);
    hid_t dset = H5Dopen2(fid, name, H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    assert_true(H5Dclose(dset) >= 0);
    assert_true(H5Fclose(fid) >= 0);
}

/* Replaces a dataset by one of another type or shape, chunked with Fletcher32
 * like ours, so only the property under test differs. */
static void replace_dataset(const char *path, const char *name, hid_t file_type, int rank,
                            const hsize_t *dims, hid_t mem_type, const void *buf)
{
    hid_t fid = open_rw(path);
    assert_true(H5Ldelete(fid, name, H5P_DEFAULT) >= 0);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(space >= 0 && dcpl >= 0);
    assert_true(H5Pset_chunk(dcpl, rank, dims) >= 0);
    assert_true(H5Pset_fletcher32(dcpl) >= 0);
    hid_t dset = H5Dcreate2(fid, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    assert_true(H5Dclose(dset) >= 0);
    assert_true(H5Pclose(dcpl) >= 0);
    assert_true(H5Sclose(space) >= 0);
    assert_true(H5Fclose(fid) >= 0);
}

/* ---- round trips ------------------------------------------------------ */

static void test_round_trip_is_bit_exact_for_every_shape(void **state)
{
    fixture *fx = *state;
    static const uint64_t ns[] = {1, 3000};
    static const uint32_t parts[] = {1, 7};
    uint64_t tag = 1;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int residual = 0; residual < 2; residual++, tag++) {
                ckpt_state s;
                char err[ERR_LEN] = "";
                make_state(&s, ns[a], parts[b], residual, tag);
                if (ckpt_save(fx->path, &s, err) != 0)
                    fail_msg("save n=%llu N=%u residual=%d: %s", (unsigned long long)ns[a],
                             parts[b], residual, err);
                assert_loads_as(fx->path, &s);
                ckpt_state_free(&s);
            }
}

/* -0, subnormals, extremes, +inf epsilon, an empty model and a 200 KiB
 * config (over HDF5's 64 KiB compact-attribute limit) all come back whole. */
static void test_round_trip_keeps_edge_values(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    make_state(&s, 5, 2, 0, 42);
    s.server_params[0] = -0.0f;
    s.server_params[1] = FLT_TRUE_MIN;
    s.server_params[2] = -FLT_MAX;
    s.server_stat[3] = DBL_MAX;
    s.server_stat[4] = DBL_TRUE_MIN;
    s.seed = UINT64_MAX;
    s.epoch = UINT64_MAX - 1;
    s.counters[0] = UINT64_MAX;
    s.part_epsilon[1] = INFINITY;
    free(s.model);
    s.model = dup_string("");
    free(s.config);
    size_t big = 200 * 1024;
    s.config = malloc(big + 1);
    assert_non_null(s.config);
    for (size_t i = 0; i < big; i++)
        s.config[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
    s.config[big] = '\0';
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    assert_loads_as(fx->path, &s);
    ckpt_state_free(&s);
}

/* ---- the optional server momentum ------------------------------------- */

/* With a server momentum, both loads give it back bit for bit (-0 and a
 * subnormal too), with and without residuals, for n = 1 and n = 3000. */
static void test_round_trip_with_momentum_is_bit_exact(void **state)
{
    fixture *fx = *state;
    static const uint64_t ns[] = {1, 3000};
    uint64_t tag = 50;
    for (int a = 0; a < 2; a++)
        for (int residual = 0; residual < 2; residual++, tag++) {
            ckpt_state s, got;
            char err[ERR_LEN] = "";
            make_state(&s, ns[a], 7, residual, tag);
            add_momentum(&s, tag);
            s.server_momentum[0] = -0.0f;
            if (ns[a] > 1)
                s.server_momentum[1] = FLT_TRUE_MIN;
            if (ckpt_save(fx->path, &s, err) != 0)
                fail_msg("save n=%llu residual=%d: %s", (unsigned long long)ns[a], residual, err);
            assert_loads_as(fx->path, &s);
            if (ckpt_load_unguarded(fx->path, &got, err) != 0)
                fail_msg("unguarded load: %s", err);
            assert_int_equal(got.has_momentum, 1);
            assert_state_equal(&s, &got);
            ckpt_state_free(&got);
            ckpt_state_free(&s);
        }
}

/* A file without the dataset (every file from before it existed) loads with
 * has_momentum = 0 and no array, through both loads; the writer adds
 * nothing to a state without it. */
static void test_file_without_momentum_loads_without_it(void **state)
{
    fixture *fx = *state;
    ckpt_state s, got;
    char err[ERR_LEN] = "";
    save_standard(fx->path, &s, 51);
    hid_t fid = H5Fopen(fx->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(fid >= 0);
    assert_int_equal(H5Lexists(fid, "/server/momentum", H5P_DEFAULT), 0);
    assert_true(H5Fclose(fid) >= 0);
    for (int guarded = 0; guarded < 2; guarded++) {
        memset(&got, 0xA5, sizeof got);
        int rc = guarded ? ckpt_load(fx->path, &got, err)
                         : ckpt_load_unguarded(fx->path, &got, err);
        if (rc != 0)
            fail_msg("load: %s", err);
        assert_int_equal(got.has_momentum, 0);
        assert_null(got.server_momentum);
        assert_state_equal(&s, &got);
        ckpt_state_free(&got);
    }
    ckpt_state_free(&s);
}

/* The data manifest (the files a run read, a line each) survives both loads
 * as written; a file without it (every IDX run's) loads with data = NULL,
 * as test_file_without_momentum_loads_without_it checks through
 * assert_state_equal. inspect lists it. */
static void test_round_trip_keeps_data_manifest(void **state)
{
    fixture *fx = *state;
    ckpt_state s, got;
    char err[ERR_LEN] = "";
    make_state(&s, 40, 3, 0, 52);
    s.data = dup_string("data-file 1234 00ff sets/all.h5\nsite 0 99 abcd sites/site-0.h5\n");
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    for (int guarded = 0; guarded < 2; guarded++) {
        int rc = guarded ? ckpt_load(fx->path, &got, err)
                         : ckpt_load_unguarded(fx->path, &got, err);
        if (rc != 0)
            fail_msg("load: %s", err);
        assert_state_equal(&s, &got);
        ckpt_state_free(&got);
    }
    char *listing = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&listing, &len);
    assert_int_equal(ckpt_inspect(fx->path, out, err), 0);
    fclose(out);
    assert_non_null(strstr(listing, "data\n    data-file 1234 00ff sets/all.h5\n"
                                    "    site 0 99 abcd sites/site-0.h5\n"));
    free(listing);
    ckpt_state_free(&s);
}

/* ckpt_state_alloc_momentum: zeroed, a second call zeroes again, freed by
 * ckpt_state_free; refused (s unchanged) for a state with no parameters. */
static void test_alloc_momentum(void **state)
{
    (void)state;
    ckpt_state s;
    make_state(&s, 10, 2, 0, 52);
    assert_int_equal(s.has_momentum, 0);
    assert_null(s.server_momentum);
    add_momentum(&s, 52);
    assert_int_equal(ckpt_state_alloc_momentum(&s), 0);
    for (int i = 0; i < 10; i++)
        assert_true(s.server_momentum[i] == 0.0f && !signbit(s.server_momentum[i]));
    ckpt_state_free(&s);
    assert_zeroed(&s);
    ckpt_state empty;
    memset(&empty, 0, sizeof empty);
    assert_int_equal(ckpt_state_alloc_momentum(&empty), -1);
    assert_zeroed(&empty);
}

/* A non-finite momentum, or a flag without its array, is never written. */
static void test_save_refuses_bad_momentum(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "", name[256];
    make_state(&s, 10, 2, 1, 53);
    add_momentum(&s, 53);
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        s.server_momentum[7] = bad[i];
        assert_int_equal(ckpt_save(fx->path, &s, err), -1);
        if (!strstr(err, fx->path) || !strstr(err, "refusing to save") ||
            !strstr(err, "/server/momentum[7]") || !strstr(err, "not a finite number"))
            fail_msg("message '%s'", err);
    }
    s.server_momentum[7] = 0;
    float *m = s.server_momentum;
    s.server_momentum = NULL;
    assert_int_equal(ckpt_save(fx->path, &s, err), -1);
    assert_non_null(strstr(err, "the state has a missing array"));
    s.server_momentum = m;
    assert_int_equal(count_entries(fx->dir, name, sizeof name), 0);
    ckpt_state_free(&s);
}

/* ---- atomic replacement ---------------------------------------------- */

static void test_save_replaces_old_checkpoint_and_leaves_no_temp_file(void **state)
{
    fixture *fx = *state;
    ckpt_state a, b;
    save_standard(fx->path, &a, 1);
    save_standard(fx->path, &b, 2);
    assert_loads_as(fx->path, &b);
    char name[256] = "";
    assert_int_equal(count_entries(fx->dir, name, sizeof name), 1);
    assert_string_equal(name, "ck.h5");
    ckpt_state_free(&a);
    ckpt_state_free(&b);
}

/* The temporary name is taken by a directory: the create fails, the old
 * checkpoint still loads as it was, and that directory is not removed. */
static void test_failed_save_leaves_old_checkpoint_intact(void **state)
{
    fixture *fx = *state;
    ckpt_state a, b;
    char err[ERR_LEN] = "", tmp[256];
    save_standard(fx->path, &a, 1);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", fx->path, (long)getpid());
    assert_int_equal(mkdir(tmp, 0700), 0);
    make_state(&b, 3000, 7, 1, 2);
    assert_int_equal(ckpt_save(fx->path, &b, err), -1);
    if (!strstr(err, fx->path) || !strstr(err, "H5Fcreate"))
        fail_msg("message '%s' lacks the file or the failing call", err);
    assert_loads_as(fx->path, &a);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    char name[256];
    assert_int_equal(count_entries(fx->dir, name, sizeof name), 2);
    ckpt_state_free(&a);
    ckpt_state_free(&b);
}

static void test_save_into_missing_directory_fails_naming_file(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "", path[256];
    snprintf(path, sizeof path, "%s/no-such-dir/ck.h5", fx->dir);
    make_state(&s, 10, 2, 0, 3);
    assert_int_equal(ckpt_save(path, &s, err), -1);
    if (!strstr(err, path))
        fail_msg("message '%s' does not name %s", err, path);
    char name[256];
    assert_int_equal(count_entries(fx->dir, name, sizeof name), 0);
    ckpt_state_free(&s);
}

static void test_save_refuses_empty_path(void **state)
{
    (void)state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    make_state(&s, 10, 2, 0, 4);
    assert_int_equal(ckpt_save("", &s, err), -1);
    assert_non_null(strstr(err, "empty file name"));
    ckpt_state_free(&s);
}

/* A state its own loader would refuse is never written. */
static void test_save_refuses_state_that_load_would_refuse(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "", name[256];
    make_state(&s, 10, 2, 0, 5);
    s.server_params[4] = NAN;
    assert_int_equal(ckpt_save(fx->path, &s, err), -1);
    if (!strstr(err, fx->path) || !strstr(err, "/server/params[4]"))
        fail_msg("message '%s'", err);
    s.server_params[4] = 0;
    s.part_rng[RNG_STATE_WORDS + 3] = 7;
    assert_int_equal(ckpt_save(fx->path, &s, err), -1);
    assert_non_null(strstr(err, "/participants/rng[1]"));
    assert_int_equal(count_entries(fx->dir, name, sizeof name), 0);
    ckpt_state_free(&s);
}

/* ---- refusals ---------------------------------------------------------- */

static void test_load_refuses_missing_file(void **state)
{
    fixture *fx = *state;
    assert_load_refused(fx->path, "cannot open");
}

static void test_load_refuses_directory(void **state)
{
    fixture *fx = *state;
    assert_load_refused(fx->dir, "not a regular file");
}

static void test_load_refuses_empty_file(void **state)
{
    fixture *fx = *state;
    tu_write_file(fx->path, "", 0);
    assert_load_refused(fx->path, "not an HDF5 file");
}

static void test_load_refuses_text_file(void **state)
{
    fixture *fx = *state;
    const char *text = "epochs = 3\nthis is not a checkpoint\n";
    tu_write_file(fx->path, text, strlen(text));
    assert_load_refused(fx->path, "not an HDF5 file");
}

/* Cut at the listed offsets and at 64 evenly spaced ones: always refused,
 * never a crash (the n 3000, N 7 file is about 180 KB). In process, so that
 * a crash in HDF5 shows instead of becoming a refusal (and 69 processes are
 * not started, which under valgrind costs 25 s). */
static void test_load_refuses_truncated_file(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 6);
    size_t len;
    unsigned char *whole = tu_read_file(fx->path, &len);
    size_t cuts[64 + 5] = {0, 100, 1000, len / 2, len - 1};
    for (int i = 0; i < 64; i++)
        cuts[5 + i] = len * (size_t)i / 64 + 7;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tu_write_file(fx->path, whole, cuts[i]);
        char err[ERR_LEN] = "";
        ckpt_state got;
        if (ckpt_load_unguarded(fx->path, &got, err) != -1)
            fail_msg("file cut at %zu of %zu was accepted", cuts[i], len);
        assert_zeroed(&got);
        assert_non_null(strstr(err, fx->path));
    }
    free(whole);
    ckpt_state_free(&s);
}

static size_t find_unique(const unsigned char *hay, size_t len, const void *needle, size_t nlen)
{
    size_t found = SIZE_MAX;
    for (size_t i = 0; i + nlen <= len; i++)
        if (memcmp(hay + i, needle, nlen) == 0) {
            assert_int_equal(found, SIZE_MAX); /* the pattern must be unique */
            found = i;
        }
    assert_true(found != SIZE_MAX);
    return found;
}

/* One bit flipped in the stored /server/params data: HDF5 alone would read
 * it; the Fletcher32 checksum makes the load fail. */
static void test_load_detects_flipped_byte_in_server_params(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 7);
    size_t len;
    unsigned char *bytes = tu_read_file(fx->path, &len);
    /* The first 16 bytes of the params array, little-endian as stored. */
    size_t at = find_unique(bytes, len, s.server_params, 16);
    bytes[at + 9] ^= 0x10;
    tu_write_file(fx->path, bytes, len);
    assert_load_refused(fx->path, "dataset /server/params is corrupt (checksum)");
    free(bytes);
    ckpt_state_free(&s);
}

static int states_equal(const ckpt_state *a, const ckpt_state *b)
{
    size_t n = (size_t)a->n, rows = n * a->participants;
    return a->epoch == b->epoch && a->seed == b->seed && !strcmp(a->config, b->config) &&
           !strcmp(a->model, b->model) && a->n == b->n && a->participants == b->participants &&
           a->has_residual == b->has_residual && a->has_momentum == b->has_momentum &&
           !memcmp(a->server_params, b->server_params, n * sizeof(float)) &&
           (!a->has_momentum ||
            !memcmp(a->server_momentum, b->server_momentum, n * sizeof(float))) &&
           !memcmp(a->server_stat, b->server_stat, n * sizeof(double)) &&
           !memcmp(a->server_rng, b->server_rng, sizeof a->server_rng) &&
           !memcmp(a->counters, b->counters, sizeof a->counters) &&
           !memcmp(a->part_params, b->part_params, rows * sizeof(float)) &&
           (!a->has_residual || !memcmp(a->part_residual, b->part_residual, rows * sizeof(float))) &&
           !memcmp(a->part_rng, b->part_rng, a->participants * RNG_STATE_WORDS * sizeof(uint64_t)) &&
           !memcmp(a->part_epsilon, b->part_epsilon, a->participants * sizeof(double));
}

/* Verdicts of one flipped-bit load. */
enum { FLIP_REFUSED, FLIP_SAME, FLIP_ALTERED, FLIP_UNNAMED };

/* Flips bit (at % 8) of every stride-th byte of bytes in turn, writes the
 * result to path and loads it in process (ckpt_load_unguarded: the guard
 * would turn a crash into a refusal and hide it), all in one child process: a
 * crash inside HDF5 then fails this test rather than the suite, and HDF5
 * 1.10.8's own leak on a corrupt object header stays in the child. Verdicts come back through a pipe
 * (valgrind may rewrite a child's exit status); returns how many arrived. */
static size_t sweep_in_child(const char *path, unsigned char *bytes, size_t len, size_t stride,
                             const ckpt_state *want, unsigned char *verdicts)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (size_t at = 0; at < len; at += stride) {
            unsigned char bit = (unsigned char)(1u << (at % 8)), code;
            bytes[at] ^= bit;
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0)
                _exit(1);
            bytes[at] ^= bit;
            char err[ERR_LEN] = "";
            ckpt_state got;
            if (ckpt_load_unguarded(path, &got, err) == 0) {
                code = states_equal(want, &got) ? FLIP_SAME : FLIP_ALTERED;
                ckpt_state_free(&got);
            } else {
                code = strstr(err, path) && got.server_params == NULL && got.n == 0 ? FLIP_REFUSED
                                                                                    : FLIP_UNNAMED;
            }
            if (write(fds[1], &code, 1) != 1)
                _exit(1);
        }
        _exit(0); /* _exit skips atexit: no HDF5 shutdown in the child */
    }
    close(fds[1]);
    size_t count = 0;
    ssize_t got;
    while ((got = read(fds[0], verdicts + count, (len + stride - 1) / stride - count)) > 0)
        count += (size_t)got;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("load crashed (signal %d) with bit %zu of byte %zu flipped", WTERMSIG(status),
                 count * stride % 8, count * stride);
    return count;
}

/* A bit flipped anywhere (every 11th byte of a small file, metadata included)
 * is either refused or provably harmless: the load gives the saved state.
 * The file holds every dataset, the optional ones too. */
static void test_load_never_returns_altered_state_after_a_bit_flip(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    make_state(&s, 300, 3, 1, 21);
    add_momentum(&s, 21);
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    size_t len, stride = 11;
    unsigned char *bytes = tu_read_file(fx->path, &len);
    size_t tried = (len + stride - 1) / stride;
    unsigned char *verdicts = malloc(tried);
    assert_non_null(verdicts);
    assert_int_equal(sweep_in_child(fx->path, bytes, len, stride, &s, verdicts), tried);
    size_t refused = 0;
    for (size_t i = 0; i < tried; i++) {
        size_t at = i * stride;
        if (verdicts[i] == FLIP_ALTERED)
            fail_msg("bit %zu of byte %zu flipped: loaded a different state", at % 8, at);
        if (verdicts[i] == FLIP_UNNAMED)
            fail_msg("bit %zu of byte %zu flipped: refused without naming the file", at % 8, at);
        refused += verdicts[i] == FLIP_REFUSED;
    }
    /* Nearly every byte is data or checksummed metadata (measured: 94%). */
    assert_true(refused > tried * 9 / 10);
    free(verdicts);
    free(bytes);
    ckpt_state_free(&s);
}

/* A dataset without Fletcher32 (contiguous, as a careless rewrite would
 * leave it) is refused: its data could not be trusted. */
static void test_load_refuses_dataset_without_checksum(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 22);
    hid_t fid = open_rw(fx->path);
    assert_true(H5Ldelete(fid, "/server/stat", H5P_DEFAULT) >= 0);
    hsize_t dims[1] = {3000};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dset = H5Dcreate2(fid, "/server/stat", H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT);
    assert_true(space >= 0 && dset >= 0);
    assert_true(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.server_stat) >= 0);
    assert_true(H5Dclose(dset) >= 0 && H5Sclose(space) >= 0 && H5Fclose(fid) >= 0);
    assert_load_refused(fx->path, "dataset /server/stat has no checksum");
    ckpt_state_free(&s);
}

/* Rows never written would read back as fill values, silently. */
static void test_load_refuses_dataset_with_unwritten_chunks(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 23);
    hid_t fid = open_rw(fx->path);
    assert_true(H5Ldelete(fid, "/participants/params", H5P_DEFAULT) >= 0);
    hsize_t dims[2] = {7, 3000}, chunk[2] = {1, 3000}, start[2] = {0, 0}, count[2] = {1, 3000};
    hid_t space = H5Screate_simple(2, dims, NULL), mem = H5Screate_simple(2, count, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(space >= 0 && mem >= 0 && dcpl >= 0);
    assert_true(H5Pset_chunk(dcpl, 2, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0);
    hid_t dset = H5Dcreate2(fid, "/participants/params", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl,
                            H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    assert_true(H5Dwrite(dset, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, s.part_params) >= 0);
    assert_true(H5Dclose(dset) >= 0 && H5Pclose(dcpl) >= 0 && H5Sclose(mem) >= 0);
    assert_true(H5Sclose(space) >= 0 && H5Fclose(fid) >= 0);
    assert_load_refused(fx->path, "dataset /participants/params is incomplete (1 of 7 chunks written)");
    ckpt_state_free(&s);
}

static void test_load_refuses_other_version(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 8);
    set_int_attr(fx->path, "version", 2);
    assert_load_refused(fx->path, "checkpoint version 2, this dssgd reads version 1");
    ckpt_state_free(&s);
}

static void test_load_refuses_other_format(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 9);
    set_string_attr(fx->path, "format", "other-format");
    assert_load_refused(fx->path,
                        "not a dssgd checkpoint (format 'other-format', expected 'dssgd-checkpoint')");
    ckpt_state_free(&s);
}

/* An HDF5 file of the default (oldest) format, as most programs write: its
 * superblock version 0 is refused before HDF5 parses it. */
static void test_load_refuses_old_superblock_before_parsing(void **state)
{
    fixture *fx = *state;
    hid_t fid = H5Fcreate(fx->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(fid >= 0);
    assert_true(H5Fclose(fid) >= 0);
    assert_load_refused(fx->path, "HDF5 superblock version 0: not written by dssgd");
}

/* Another program's file in the 1.10 format passes the superblock check
 * and is refused for what it holds. */
static void test_load_refuses_unrelated_hdf5_file(void **state)
{
    fixture *fx = *state;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    assert_true(fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) >= 0);
    hid_t fid = H5Fcreate(fx->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    assert_true(fid >= 0 && H5Pclose(fapl) >= 0);
    hsize_t dims[1] = {10};
    int data[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dset = H5Dcreate2(fid, "/data", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Dwrite(dset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    assert_true(H5Dclose(dset) >= 0 && H5Sclose(space) >= 0 && H5Fclose(fid) >= 0);
    assert_load_refused(fx->path, "not a dssgd checkpoint (no 'format' attribute");
}

/* /participants/params with N + 1 rows disagrees with N from /participants/epsilon. */
static void test_load_refuses_mismatched_shapes(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 10);
    hsize_t dims[2] = {8, 3000};
    float *rows = calloc(8 * 3000, sizeof *rows);
    assert_non_null(rows);
    replace_dataset(fx->path, "/participants/params", H5T_IEEE_F32LE, 2, dims, H5T_NATIVE_FLOAT, rows);
    assert_load_refused(fx->path, "dataset /participants/params has shape [8][3000], expected [7][3000]");
    free(rows);
    ckpt_state_free(&s);
}

static void test_load_refuses_wrong_element_type(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 11);
    hsize_t dims[1] = {3000};
    replace_dataset(fx->path, "/server/stat", H5T_IEEE_F32LE, 1, dims, H5T_NATIVE_FLOAT, s.server_params);
    assert_load_refused(fx->path, "dataset /server/stat is float32, expected float64");
    ckpt_state_free(&s);
}

static void test_load_refuses_nan_in_server_params(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 12);
    s.server_params[5] = NAN;
    overwrite_dataset(fx->path, "/server/params", H5T_NATIVE_FLOAT, s.server_params);
    assert_load_refused(fx->path, "/server/params[5] is nan, not a finite number");
    ckpt_state_free(&s);
}

static void test_load_refuses_nan_in_server_momentum(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    make_state(&s, 3000, 7, 1, 54);
    add_momentum(&s, 54);
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    s.server_momentum[5] = NAN;
    overwrite_dataset(fx->path, "/server/momentum", H5T_NATIVE_FLOAT, s.server_momentum);
    assert_load_refused(fx->path, "/server/momentum[5] is nan, not a finite number");
    ckpt_state_free(&s);
}

/* /server/momentum must be float32[n] like /server/params: a length other
 * than n, a second dimension or another element type is refused. */
static void test_load_refuses_misshapen_server_momentum(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    make_state(&s, 3000, 7, 1, 55);
    add_momentum(&s, 55);
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    float *zeros = calloc(3001, sizeof *zeros);
    assert_non_null(zeros);
    hsize_t one[1] = {3000}, shorter[1] = {2999}, longer[1] = {3001}, matrix[2] = {1, 3000};
    replace_dataset(fx->path, "/server/momentum", H5T_IEEE_F32LE, 1, shorter, H5T_NATIVE_FLOAT,
                    zeros);
    assert_load_refused(fx->path, "dataset /server/momentum has shape [2999], expected [3000]");
    replace_dataset(fx->path, "/server/momentum", H5T_IEEE_F32LE, 1, longer, H5T_NATIVE_FLOAT,
                    zeros);
    assert_load_refused(fx->path, "dataset /server/momentum has shape [3001], expected [3000]");
    replace_dataset(fx->path, "/server/momentum", H5T_IEEE_F32LE, 2, matrix, H5T_NATIVE_FLOAT,
                    zeros);
    assert_load_refused(fx->path, "dataset /server/momentum has 2 dimensions, expected 1");
    replace_dataset(fx->path, "/server/momentum", H5T_IEEE_F64LE, 1, one, H5T_NATIVE_FLOAT, zeros);
    assert_load_refused(fx->path, "dataset /server/momentum is float64, expected float32");
    free(zeros);
    ckpt_state_free(&s);
}

/* used = 7 cannot come from rng_save (a block holds 4 words). */
static void test_load_refuses_impossible_rng_state(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 13);
    s.part_rng[2 * RNG_STATE_WORDS + 3] = 7;
    overwrite_dataset(fx->path, "/participants/rng", H5T_NATIVE_UINT64, s.part_rng);
    assert_load_refused(fx->path, "/participants/rng[2] is not a possible generator state");
    ckpt_state_free(&s);
}

static void test_load_refuses_negative_epsilon(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 14);
    s.part_epsilon[6] = -0.5;
    overwrite_dataset(fx->path, "/participants/epsilon", H5T_NATIVE_DOUBLE, s.part_epsilon);
    assert_load_refused(fx->path, "/participants/epsilon[6] is -0.5");
    ckpt_state_free(&s);
}

/* ---- the guard: HDF5 reads the file in a child process ----------------- */

/* Inputs the fuzzer found that crash or hang HDF5 1.10.8 itself (see
 * tests/fuzz/known-crashes.txt); the suite runs from the repository root. */
#define CRASH_INPUT "tests/fuzz/regressions/checkpoint/hdf5-gheap-memcpy-overlap"
#define LOOP_INPUT "tests/fuzz/regressions/checkpoint/hdf5-gheap-infinite-loop"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The global heap of the variable-length 'format' attribute makes HDF5
 * memcpy from a wild address (SIGSEGV in process): refused, and this
 * process, whose SIGSEGV handler is cmocka's, lives on. */
static void test_load_refuses_file_that_crashes_hdf5(void **state)
{
    (void)state;
    assert_int_equal(access(CRASH_INPUT, R_OK), 0);
#if defined(__SANITIZE_ADDRESS__)
    /* ASan reports the overlapping memcpy itself (in the child: its report
     * lands in this test's log) and exits with status 1. */
    assert_load_refused(CRASH_INPUT, "ended (exit status 1) without a result");
#else
    assert_load_refused(CRASH_INPUT, "the HDF5 library crashed (SIGSEGV) while reading it: the "
                                     "file is damaged or hostile; not loaded");
#endif
}

/* A global heap that HDF5 walks forever: refused once the limit, here
 * DSSGD_CKPT_PARSE_TIMEOUT=1, has passed (the default for this 9 KB file
 * would be 60 s), and the child is killed and reaped (teardown). */
static void test_load_refuses_file_that_hangs_hdf5_after_the_limit(void **state)
{
    (void)state;
    assert_int_equal(access(LOOP_INPUT, R_OK), 0);
    assert_int_equal(setenv("DSSGD_CKPT_PARSE_TIMEOUT", "1", 1), 0);
    double t0 = now_s();
    assert_load_refused(LOOP_INPUT, "HDF5 did not finish reading it within 1 s: the file is "
                                    "damaged or hostile (if it is trusted and this slow to read, "
                                    "raise DSSGD_CKPT_PARSE_TIMEOUT); not loaded");
    double took = now_s() - t0;
    if (took < 0.99 || took > 10)
        fail_msg("refused after %.2f s, expected about 1 s", took);
}

static void child_aborts(void) { abort(); }
static void child_is_killed(void) { raise(SIGKILL); }
static void child_exits_3(void) { _exit(3); }
static void child_hangs(void)
{
    for (;;)
        pause();
}

/* Every way the reading process can end without a result has its message,
 * and a reader that hangs outside HDF5 is stopped the same way. */
static void test_load_says_how_the_reader_ended(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 30);
    guard_test_child_hook = child_aborts;
    assert_load_refused(fx->path, "the HDF5 library crashed (SIGABRT) while reading it");
    guard_test_child_hook = child_is_killed;
    assert_load_refused(fx->path, "was killed (SIGKILL, perhaps for lack of memory)");
    guard_test_child_hook = child_exits_3;
    assert_load_refused(fx->path, "ended (exit status 3) without a result");
    guard_test_child_hook = child_hangs;
    assert_int_equal(setenv("DSSGD_CKPT_PARSE_TIMEOUT", "1", 1), 0);
    assert_load_refused(fx->path, "did not finish reading it within 1 s");
    guard_test_child_hook = NULL;
    assert_loads_as(fx->path, &s);
    ckpt_state_free(&s);
}

/* DSSGD_CKPT_PARSE_TIMEOUT is whole seconds from 1 to 604800 (a week);
 * anything else is refused before a process is started. */
static void test_load_checks_the_time_limit_variable(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    save_standard(fx->path, &s, 31);
    static const char *const bad[] = {"", "0", "-1", "+5", " 5", "5 ", "5s", "1.5", "0x10",
                                      "604801", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(setenv("DSSGD_CKPT_PARSE_TIMEOUT", bad[i], 1), 0);
        char want[128];
        snprintf(want, sizeof want, "not loaded: DSSGD_CKPT_PARSE_TIMEOUT is '%s', expected whole "
                 "seconds from 1 to 604800", bad[i]);
        assert_load_refused(fx->path, want);
    }
    static const char *const good[] = {"1", "30", "604800", "007"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(setenv("DSSGD_CKPT_PARSE_TIMEOUT", good[i], 1), 0);
        assert_loads_as(fx->path, &s);
    }
    ckpt_state_free(&s);
}

/* The guarded load returns what the in-process load returns: the same state
 * bit for bit, or the same refusal word for word (not a generic one). */
static void assert_guard_agrees(const char *path)
{
    ckpt_state a, b;
    char err_a[ERR_LEN] = "", err_b[ERR_LEN] = "";
    int rc_a = ckpt_load(path, &a, err_a), rc_b = ckpt_load_unguarded(path, &b, err_b);
    assert_int_equal(rc_a, rc_b);
    if (rc_a == 0)
        assert_state_equal(&b, &a);
    else if (strcmp(err_a, err_b) != 0)
        fail_msg("guarded: '%s'\nin process: '%s'", err_a, err_b);
    ckpt_state_free(&a);
    ckpt_state_free(&b);
}

static void test_guarded_load_agrees_with_in_process_load(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    /* Both kinds of state, and strings of 0 and 200 KiB. */
    for (int residual = 0; residual < 2; residual++) {
        make_state(&s, 3000, 7, residual, 32 + (uint64_t)residual);
        if (residual) {
            free(s.model);
            s.model = dup_string("");
            free(s.config);
            s.config = malloc(200 * 1024 + 1);
            assert_non_null(s.config);
            memset(s.config, 'c', 200 * 1024);
            s.config[200 * 1024] = '\0';
        }
        if (ckpt_save(fx->path, &s, err) != 0)
            fail_msg("save: %s", err);
        assert_guard_agrees(fx->path);
        assert_loads_as(fx->path, &s);
        ckpt_state_free(&s);
    }
    /* Refusals from before HDF5 opens the file, from HDF5, and from our checks. */
    assert_guard_agrees(fx->dir);
    save_standard(fx->path, &s, 34);
    size_t len;
    unsigned char *bytes = tu_read_file(fx->path, &len);
    set_int_attr(fx->path, "version", 2);
    assert_guard_agrees(fx->path);
    tu_write_file(fx->path, bytes, len / 2);
    assert_guard_agrees(fx->path);
    bytes[find_unique(bytes, len, s.server_params, 16) + 9] ^= 0x10;
    tu_write_file(fx->path, bytes, len);
    assert_guard_agrees(fx->path);
    s.part_epsilon[6] = -0.5;
    overwrite_dataset(fx->path, "/participants/epsilon", H5T_NATIVE_DOUBLE, s.part_epsilon);
    assert_guard_agrees(fx->path);
    assert_int_equal(unlink(fx->path), 0);
    assert_guard_agrees(fx->path);
    free(bytes);
    ckpt_state_free(&s);
}

/* ---- inspect ------------------------------------------------------------ */

static void test_inspect_prints_epoch_n_N_and_config(void **state)
{
    fixture *fx = *state;
    ckpt_state s;
    char err[ERR_LEN] = "";
    save_standard(fx->path, &s, 15);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    if (ckpt_inspect(fx->path, out, err) != 0)
        fail_msg("inspect: %s", err);
    assert_int_equal(fclose(out), 0);
    static const char *const want[] = {
        "format    dssgd-checkpoint\n", "version   1\n", "epoch     25\n", "n         3000\n",
        "N         7\n", "residual  yes\nmomentum  no\n", "model     mlp:784-128-10\n",
        "config\n    participants = 7\n    n = 3000\n    lr = 0.01\n    tag = 15\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(buf, want[i]))
            fail_msg("inspect output lacks '%s':\n%s", want[i], buf);
    free(buf);

    /* A bad file is refused the same way load refuses it. */
    set_int_attr(fx->path, "version", 3);
    out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(ckpt_inspect(fx->path, out, err), -1);
    assert_int_equal(fclose(out), 0);
    assert_non_null(strstr(err, "checkpoint version 3"));
    free(buf);
    ckpt_state_free(&s);

    /* With a server momentum: "momentum  yes", right after the residual. */
    make_state(&s, 20, 2, 0, 56);
    add_momentum(&s, 56);
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    out = open_memstream(&buf, &len);
    assert_non_null(out);
    if (ckpt_inspect(fx->path, out, err) != 0)
        fail_msg("inspect: %s", err);
    assert_int_equal(fclose(out), 0);
    if (!strstr(buf, "residual  no\nmomentum  yes\n"))
        fail_msg("inspect output lacks 'momentum  yes':\n%s", buf);
    free(buf);
    ckpt_state_free(&s);
}

/* ---- the real tools read the layout ----------------------------------- */

/* Runs cmd and returns its whole output (malloc'd) and exit status. */
static char *run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    *status = pclose(p);
    return buf;
}

static void test_h5dump_lists_layout(void **state)
{
    fixture *fx = *state;
    if (system("command -v h5dump >/dev/null 2>&1") != 0) {
        print_message("h5dump not found (Debian package hdf5-tools): skipped\n");
        skip();
    }
    ckpt_state s;
    char err[ERR_LEN] = "";
    make_state(&s, 3000, 7, 1, 16); /* save_standard's state, with a server momentum */
    add_momentum(&s, 16);
    if (ckpt_save(fx->path, &s, err) != 0)
        fail_msg("save: %s", err);
    char cmd[512];
    int status;
    snprintf(cmd, sizeof cmd, "h5dump -H -p '%s' 2>&1", fx->path);
    char *out = run_capture(cmd, &status);
    if (status != 0)
        fail_msg("%s failed:\n%s", cmd, out);
    static const char *const header[] = {
        "ATTRIBUTE \"format\"", "ATTRIBUTE \"version\"", "ATTRIBUTE \"epoch\"", "ATTRIBUTE \"seed\"",
        "ATTRIBUTE \"config\"", "ATTRIBUTE \"model\"", "GROUP \"server\"", "GROUP \"participants\"",
        "CHECKSUM FLETCHER32"};
    for (size_t i = 0; i < sizeof header / sizeof header[0]; i++)
        if (!strstr(out, header[i]))
            fail_msg("h5dump -H lacks %s:\n%s", header[i], out);
    free(out);

    /* Each dataset by its full path, with its type and shape. */
    static const char *const dsets[][3] = {
        {"/server/params", "H5T_IEEE_F32LE", "( 3000 )"},
        {"/server/stat", "H5T_IEEE_F64LE", "( 3000 )"},
        {"/server/rng", "H5T_STD_U64LE", "( 2, 4 )"},
        {"/server/counters", "H5T_STD_U64LE", "( 2 )"},
        {"/server/momentum", "H5T_IEEE_F32LE", "( 3000 )"},
        {"/participants/params", "H5T_IEEE_F32LE", "( 7, 3000 )"},
        {"/participants/residual", "H5T_IEEE_F32LE", "( 7, 3000 )"},
        {"/participants/rng", "H5T_STD_U64LE", "( 7, 4 )"},
        {"/participants/epsilon", "H5T_IEEE_F64LE", "( 7 )"}};
    for (size_t i = 0; i < sizeof dsets / sizeof dsets[0]; i++) {
        snprintf(cmd, sizeof cmd, "h5dump -H -d '%s' '%s' 2>&1", dsets[i][0], fx->path);
        out = run_capture(cmd, &status);
        if (status != 0 || !strstr(out, dsets[i][1]) || !strstr(out, dsets[i][2]))
            fail_msg("%s: expected %s %s:\n%s", cmd, dsets[i][1], dsets[i][2], out);
        free(out);
    }

    /* The version attribute's value as h5dump prints it. */
    snprintf(cmd, sizeof cmd, "h5dump -a /version '%s' 2>&1", fx->path);
    out = run_capture(cmd, &status);
    if (status != 0 || !strstr(out, "(0): 1"))
        fail_msg("%s:\n%s", cmd, out);
    free(out);
    ckpt_state_free(&s);
}

/* The first python3 (PATH, then Debian's) that imports h5py, or NULL. */
static const char *python_with_h5py(void)
{
    static const char *const candidates[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "%s -c 'import h5py' >/dev/null 2>&1", candidates[i]);
        if (system(cmd) == 0)
            return candidates[i];
    }
    return NULL;
}

static void test_h5py_reads_layout(void **state)
{
    fixture *fx = *state;
    const char *python = python_with_h5py();
    if (!python) {
        print_message("no python3 with h5py (Debian package python3-h5py): skipped\n");
        skip();
    }
    const char *script = "tests/ckpt_layout.py";
    assert_int_equal(access(script, R_OK), 0); /* the suite runs from the repository root */
    char cmd[512];
    int status;
    /* Without the optional datasets, then with both (residual, momentum). */
    for (int residual = 0; residual < 2; residual++) {
        ckpt_state s;
        char err[ERR_LEN] = "";
        make_state(&s, 3000, 7, residual, 17 + (uint64_t)residual);
        if (residual)
            add_momentum(&s, 18);
        if (ckpt_save(fx->path, &s, err) != 0)
            fail_msg("save: %s", err);
        snprintf(cmd, sizeof cmd, "%s %s '%s' 3000 7 %a 2>&1", python, script, fx->path,
                 (double)s.server_params[0]);
        char *out = run_capture(cmd, &status);
        if (status != 0 || strcmp(out, "OK\n") != 0)
            fail_msg("%s:\n%s", cmd, out);
        free(out);

        /* And it notices a wrong expectation (the check is not vacuous). */
        snprintf(cmd, sizeof cmd, "%s %s '%s' 3000 7 %a 2>&1", python, script, fx->path,
                 (double)s.server_params[0] + 1.0);
        out = run_capture(cmd, &status);
        assert_int_not_equal(status, 0);
        free(out);
        ckpt_state_free(&s);
    }
}

int main(void)
{
    if (H5open() < 0)
        return 1;
    H5Eget_auto2(H5E_DEFAULT, &initial_auto_func, &initial_auto_data);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_trip_is_bit_exact_for_every_shape),
        T(test_round_trip_keeps_edge_values),
        T(test_round_trip_with_momentum_is_bit_exact),
        T(test_file_without_momentum_loads_without_it),
        T(test_round_trip_keeps_data_manifest),
        T(test_alloc_momentum),
        T(test_save_refuses_bad_momentum),
        T(test_save_replaces_old_checkpoint_and_leaves_no_temp_file),
        T(test_failed_save_leaves_old_checkpoint_intact),
        T(test_save_into_missing_directory_fails_naming_file),
        T(test_save_refuses_empty_path),
        T(test_save_refuses_state_that_load_would_refuse),
        T(test_load_refuses_missing_file),
        T(test_load_refuses_directory),
        T(test_load_refuses_empty_file),
        T(test_load_refuses_text_file),
        T(test_load_refuses_truncated_file),
        T(test_load_detects_flipped_byte_in_server_params),
        T(test_load_never_returns_altered_state_after_a_bit_flip),
        T(test_load_refuses_dataset_without_checksum),
        T(test_load_refuses_dataset_with_unwritten_chunks),
        T(test_load_refuses_other_version),
        T(test_load_refuses_other_format),
        T(test_load_refuses_old_superblock_before_parsing),
        T(test_load_refuses_unrelated_hdf5_file),
        T(test_load_refuses_mismatched_shapes),
        T(test_load_refuses_wrong_element_type),
        T(test_load_refuses_nan_in_server_params),
        T(test_load_refuses_nan_in_server_momentum),
        T(test_load_refuses_misshapen_server_momentum),
        T(test_load_refuses_impossible_rng_state),
        T(test_load_refuses_negative_epsilon),
        T(test_load_refuses_file_that_crashes_hdf5),
        T(test_load_refuses_file_that_hangs_hdf5_after_the_limit),
        T(test_load_says_how_the_reader_ended),
        T(test_load_checks_the_time_limit_variable),
        T(test_guarded_load_agrees_with_in_process_load),
        T(test_inspect_prints_epoch_n_N_and_config),
        T(test_h5dump_lists_layout),
        T(test_h5py_reads_layout),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    H5close(); /* frees HDF5's global state so valgrind sees no leak */
    return failed;
}
