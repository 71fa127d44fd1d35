/* checkpoint: the layout of a checkpoint file and what its writer and reader
 * share (the dataset table, the state, the value checks, HDF5 error
 * messages), and the writer: ckpt_save, atomic (temporary name, flush,
 * fsync, rename, fsync of the directory), with a test-only hook that kills
 * the process at a named step of it. The reader is in checkpoint_read.c,
 * the guarded load in checkpoint_guard.c (src/checkpoint_internal.h); the
 * HDF5 helpers shared with the data-file module in h5util.c. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

/* Elements per chunk: keeps every chunk (and its Fletcher32 pass) under 8 MiB. */
#define CKPT_CHUNK ((hsize_t)1 << 20)

/* ---- the dataset table: one list drives both save and load ------------- */

const ckpt_dset ckpt_dsets[CKPT_DS_COUNT] = {
    [CKPT_DS_SERVER_PARAMS] = {"/server/params", CKPT_F32, 1, {CKPT_DIM_N, CKPT_DIM_N}},
    [CKPT_DS_SERVER_STAT] = {"/server/stat", CKPT_F64, 1, {CKPT_DIM_N, CKPT_DIM_N}},
    [CKPT_DS_SERVER_RNG] = {"/server/rng", CKPT_U64, 2, {CKPT_DIM_TWO, CKPT_DIM_RNG}},
    [CKPT_DS_COUNTERS] = {"/server/counters", CKPT_U64, 1, {CKPT_DIM_TWO, CKPT_DIM_TWO}},
    [CKPT_DS_MOMENTUM] = {"/server/momentum", CKPT_F32, 1, {CKPT_DIM_N, CKPT_DIM_N}},
    [CKPT_DS_PART_PARAMS] = {"/participants/params", CKPT_F32, 2, {CKPT_DIM_PARTS, CKPT_DIM_N}},
    [CKPT_DS_RESIDUAL] = {"/participants/residual", CKPT_F32, 2, {CKPT_DIM_PARTS, CKPT_DIM_N}},
    [CKPT_DS_PART_RNG] = {"/participants/rng", CKPT_U64, 2, {CKPT_DIM_PARTS, CKPT_DIM_RNG}},
    [CKPT_DS_EPSILON] = {"/participants/epsilon", CKPT_F64, 1, {CKPT_DIM_PARTS, CKPT_DIM_PARTS}},
};

void *ckpt_dset_data(const ckpt_state *s, int which)
{
    switch (which) {
    case CKPT_DS_SERVER_PARAMS: return s->server_params;
    case CKPT_DS_SERVER_STAT: return s->server_stat;
    case CKPT_DS_SERVER_RNG: return (void *)s->server_rng;
    case CKPT_DS_COUNTERS: return (void *)s->counters;
    case CKPT_DS_MOMENTUM: return s->server_momentum;
    case CKPT_DS_PART_PARAMS: return s->part_params;
    case CKPT_DS_RESIDUAL: return s->part_residual;
    case CKPT_DS_PART_RNG: return s->part_rng;
    default: return s->part_epsilon;
    }
}

int ckpt_dset_optional(int which)
{
    return which == CKPT_DS_RESIDUAL || which == CKPT_DS_MOMENTUM;
}

int ckpt_dset_in_state(const ckpt_state *s, int which)
{
    if (which == CKPT_DS_RESIDUAL)
        return s->has_residual != 0;
    if (which == CKPT_DS_MOMENTUM)
        return s->has_momentum != 0;
    return 1;
}

hsize_t ckpt_dim_value(ckpt_dim d, uint64_t n, uint32_t parts)
{
    switch (d) {
    case CKPT_DIM_N: return n;
    case CKPT_DIM_PARTS: return parts;
    case CKPT_DIM_RNG: return RNG_STATE_WORDS;
    default: return 2;
    }
}

static hid_t file_type_of(ckpt_elem k)
{
    return k == CKPT_F32 ? H5T_IEEE_F32LE : k == CKPT_F64 ? H5T_IEEE_F64LE : H5T_STD_U64LE;
}

hid_t ckpt_mem_type(ckpt_elem k)
{
    return k == CKPT_F32 ? H5T_NATIVE_FLOAT : k == CKPT_F64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_UINT64;
}

/* ---- HDF5 error messages ----------------------------------------------- */

int ckpt_h5_fail(char *err, const char *file, const char *call, const char *what)
{
    h5util_failure f = h5util_last_failure();
    const char *on = what ? " on " : "";
    if (strstr(f.desc, "checksum"))
        return err_set(err, "%s: the file is corrupt (metadata checksum): %s failed%s%s", file,
                       call, on, what ? what : "");
    return err_set(err, "%s: %s failed%s%s%s%s%s", file, call, on, what ? what : "",
                   f.desc[0] ? " (" : "", f.desc, f.desc[0] ? ")" : "");
}

void ckpt_h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *call, const char *file, int *rc,
                   char *err)
{
    if (h5util_close(id, fn) < 0 && *rc == 0)
        *rc = ckpt_h5_fail(err, file, call, NULL);
}

/* ---- state ------------------------------------------------------------- */

int ckpt_state_alloc(ckpt_state *s, uint64_t n, uint32_t participants, int has_residual)
{
    memset(s, 0, sizeof *s);
    if (n == 0 || participants == 0 || n > SIZE_MAX / participants)
        return -1;
    size_t rows = (size_t)n * participants;
    s->n = n;
    s->participants = participants;
    s->has_residual = has_residual != 0;
    s->server_params = err_calloc((size_t)n, sizeof *s->server_params);
    s->server_stat = err_calloc((size_t)n, sizeof *s->server_stat);
    s->part_params = err_calloc(rows, sizeof *s->part_params);
    s->part_rng = err_calloc(participants, RNG_STATE_WORDS * sizeof *s->part_rng);
    s->part_epsilon = err_calloc(participants, sizeof *s->part_epsilon);
    if (s->has_residual)
        s->part_residual = err_calloc(rows, sizeof *s->part_residual);
    if (!s->server_params || !s->server_stat || !s->part_params || !s->part_rng ||
        !s->part_epsilon || (s->has_residual && !s->part_residual)) {
        ckpt_state_free(s);
        return -1;
    }
    return 0;
}

int ckpt_state_alloc_momentum(ckpt_state *s)
{
    float *m = s->n ? err_calloc((size_t)s->n, sizeof *m) : NULL;
    if (!m)
        return -1;
    free(s->server_momentum);
    s->server_momentum = m;
    s->has_momentum = 1;
    return 0;
}

void ckpt_state_free(ckpt_state *s)
{
    if (!s)
        return;
    free(s->config);
    free(s->model);
    free(s->data);
    free(s->server_params);
    free(s->server_stat);
    free(s->server_momentum);
    free(s->part_params);
    free(s->part_residual);
    free(s->part_rng);
    free(s->part_epsilon);
    memset(s, 0, sizeof *s);
}

/* ---- value checks shared by save and load ------------------------------ */

/* Messages here name the dataset, not the file: the caller prefixes it. */
static int check_finite_f32(const float *v, size_t count, size_t cols, const char *path, char *err)
{
    for (size_t k = 0; k < count; k++)
        if (!isfinite(v[k])) {
            if (cols)
                return err_set(err, "%s[%zu][%zu] is %g, not a finite number", path, k / cols,
                               k % cols, (double)v[k]);
            return err_set(err, "%s[%zu] is %g, not a finite number", path, k, (double)v[k]);
        }
    return 0;
}

int ckpt_check_values(const ckpt_state *s, char *err)
{
    size_t n = (size_t)s->n, parts = s->participants;
    if (check_finite_f32(s->server_params, n, 0, "/server/params", err) < 0 ||
        (s->has_momentum &&
         check_finite_f32(s->server_momentum, n, 0, "/server/momentum", err) < 0) ||
        check_finite_f32(s->part_params, n * parts, n, "/participants/params", err) < 0 ||
        (s->has_residual &&
         check_finite_f32(s->part_residual, n * parts, n, "/participants/residual", err) < 0))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s->server_stat[i]))
            return err_set(err, "/server/stat[%zu] is %g, not a finite number", i, s->server_stat[i]);
    rng_t probe;
    for (int i = 0; i < 2; i++)
        if (rng_restore(&probe, s->server_rng[i]) < 0)
            return err_set(err, "/server/rng[%d] is not a possible generator state (counter %" PRIu64
                           ", used %" PRIu64 ")", i, s->server_rng[i][2], s->server_rng[i][3]);
    for (size_t p = 0; p < parts; p++) {
        const uint64_t *w = s->part_rng + p * RNG_STATE_WORDS;
        if (rng_restore(&probe, w) < 0)
            return err_set(err, "/participants/rng[%zu] is not a possible generator state (counter %"
                           PRIu64 ", used %" PRIu64 ")", p, w[2], w[3]);
        /* +inf is allowed: a run without noise has spent an unbounded budget. */
        if (isnan(s->part_epsilon[p]) || s->part_epsilon[p] < 0)
            return err_set(err, "/participants/epsilon[%zu] is %g, not a non-negative number", p,
                           s->part_epsilon[p]);
    }
    return 0;
}

void ckpt_quote_found(const char *s, char *buf, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < cap; i++)
        buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[0] && j + 4 >= cap && j >= 3)
        memcpy(buf + j - 3, "...", 3);
    buf[j] = '\0';
}

/* Everything a reader will check, checked before writing, so a save never
 * produces a file that its own loader refuses. */
static int check_state(const ckpt_state *s, char *err)
{
    if (s->n == 0 || s->n > CKPT_MAX_N)
        return err_set(err, "n = %" PRIu64 " is out of range 1..%" PRIu64, s->n, CKPT_MAX_N);
    if (s->participants == 0 || s->participants > CKPT_MAX_PARTICIPANTS)
        return err_set(err, "N = %" PRIu32 " is out of range 1..%u", s->participants,
                       CKPT_MAX_PARTICIPANTS);
    if (!s->server_params || !s->server_stat || !s->part_params || !s->part_rng ||
        !s->part_epsilon || (s->has_residual && !s->part_residual) ||
        (s->has_momentum && !s->server_momentum))
        return err_set(err, "the state has a missing array");
    if (!s->config || !s->model)
        return err_set(err, "the state has no %s string", s->config ? "model" : "config");
    if (strlen(s->config) > CKPT_MAX_STRING || strlen(s->model) > CKPT_MAX_STRING ||
        (s->data && strlen(s->data) > CKPT_MAX_STRING))
        return err_set(err, "the config, model or data string is over %zu bytes",
                       CKPT_MAX_STRING);
    return ckpt_check_values(s, err);
}

/* ---- writing ----------------------------------------------------------- */

/* Writes attribute `name` on loc holding one value: *value, read as mem_type
 * and stored as file_type. */
static int write_scalar_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                             const void *value, const char *file, char *err)
{
    hid_t space = -1, attr = -1;
    int rc = -1;
    if ((space = H5Screate(H5S_SCALAR)) < 0) {
        ckpt_h5_fail(err, file, "H5Screate", name);
        goto done;
    }
    if ((attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        ckpt_h5_fail(err, file, "H5Acreate2", name);
        goto done;
    }
    if (H5Awrite(attr, mem_type, value) < 0) {
        ckpt_h5_fail(err, file, "H5Awrite", name);
        goto done;
    }
    rc = 0;
done:
    ckpt_h5_close(&attr, H5Aclose, "H5Aclose", file, &rc, err);
    ckpt_h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    return rc;
}

/* A fixed-length, NUL-terminated C string of exactly strlen + 1 bytes: h5dump
 * shows it and h5py reads it as bytes without a length of its own to trust. */
static int write_string_attr(hid_t loc, const char *name, const char *value, const char *file,
                             char *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (type < 0)
        return ckpt_h5_fail(err, file, "H5Tcopy", name);
    if (H5Tset_size(type, strlen(value) + 1) < 0 || H5Tset_strpad(type, H5T_STR_NULLTERM) < 0)
        ckpt_h5_fail(err, file, "H5Tset_size", name);
    else
        rc = write_scalar_attr(loc, name, type, type, value, file, err);
    ckpt_h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    return rc;
}

/* Chunked with Fletcher32, so a flipped byte in the data fails the read
 * instead of loading silently. Matrices get one chunk per row (participant). */
static int write_dataset(hid_t fid, const ckpt_state *s, int which, const char *file, char *err)
{
    const ckpt_dset *sp = &ckpt_dsets[which];
    hsize_t dims[2], chunk[2];
    hid_t space = -1, dcpl = -1, dset = -1;
    int rc = -1;
    for (int d = 0; d < sp->rank; d++)
        dims[d] = ckpt_dim_value(sp->dim[d], s->n, s->participants);
    if (sp->rank == 1) {
        chunk[0] = dims[0] < CKPT_CHUNK ? dims[0] : CKPT_CHUNK;
    } else {
        chunk[1] = dims[1] < CKPT_CHUNK ? dims[1] : CKPT_CHUNK;
        hsize_t rows = CKPT_CHUNK / chunk[1];
        chunk[0] = sp->dim[1] == CKPT_DIM_N ? 1 : dims[0] < rows ? dims[0] : rows;
    }
    if ((space = H5Screate_simple(sp->rank, dims, NULL)) < 0) {
        ckpt_h5_fail(err, file, "H5Screate_simple", sp->path);
        goto done;
    }
    if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) {
        ckpt_h5_fail(err, file, "H5Pcreate", sp->path);
        goto done;
    }
    if (H5Pset_chunk(dcpl, sp->rank, chunk) < 0) {
        ckpt_h5_fail(err, file, "H5Pset_chunk", sp->path);
        goto done;
    }
    if (H5Pset_fletcher32(dcpl) < 0) {
        ckpt_h5_fail(err, file, "H5Pset_fletcher32", sp->path);
        goto done;
    }
    if ((dset = H5Dcreate2(fid, sp->path, file_type_of(sp->kind), space, H5P_DEFAULT, dcpl,
                           H5P_DEFAULT)) < 0) {
        ckpt_h5_fail(err, file, "H5Dcreate2", sp->path);
        goto done;
    }
    if (H5Dwrite(dset, ckpt_mem_type(sp->kind), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                 ckpt_dset_data(s, which)) < 0) {
        ckpt_h5_fail(err, file, "H5Dwrite", sp->path);
        goto done;
    }
    rc = 0;
done:
    ckpt_h5_close(&dset, H5Dclose, "H5Dclose", file, &rc, err);
    ckpt_h5_close(&dcpl, H5Pclose, "H5Pclose", file, &rc, err);
    ckpt_h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    return rc;
}

/* ---- TEST ONLY: a signal at a named step of the save -------------------
 * DSSGD_TEST_KILL_AT=POINT[:NTH[:KILL|TERM]] makes this process's NTH save
 * (counted from 1; default 1) raise SIGKILL (or SIGTERM) on itself at POINT,
 * so tests/test_crash.sh stops a save exactly where it means to instead of
 * hoping that a random kill lands there. Unset, it costs one getenv at the
 * first save and an int compare at each point. A value that does not parse
 * fails every save, never ignored: a typo cannot make the test prove
 * nothing, and a stray variable cannot go unnoticed. See docs/DESIGN.md,
 * Failure handling. */
enum { KILL_START, KILL_MID_WRITE, KILL_BEFORE_RENAME, KILL_BEFORE_DIR_FSYNC, KILL_POINTS };

static const char *const kill_point_names[KILL_POINTS] = {
    [KILL_START] = "start",                       /* name published, nothing created */
    [KILL_MID_WRITE] = "mid-write",               /* the server's datasets, no participant's */
    [KILL_BEFORE_RENAME] = "before-rename",       /* temporary file whole and fsynced */
    [KILL_BEFORE_DIR_FSYNC] = "before-dir-fsync", /* renamed, directory not fsynced */
};

static struct {
    int parsed;          /* the variable has been read and is valid (or unset) */
    int point;           /* KILL_*, or -1 for none */
    unsigned long nth;   /* which save */
    int sig;             /* SIGKILL or SIGTERM */
    unsigned long saves; /* saves begun by this process */
    int armed;           /* point, during save nth only; -1 otherwise */
} kill_hook = {.point = -1, .armed = -1};

/* Reads DSSGD_TEST_KILL_AT at the first save. A value that does not parse
 * is read and refused again at each save, so no save succeeds with it. */
static int kill_hook_parse(char *err)
{
    if (kill_hook.parsed)
        return 0;
    const char *v = getenv("DSSGD_TEST_KILL_AT");
    if (!v) {
        kill_hook.parsed = 1;
        return 0;
    }
    size_t len = strcspn(v, ":");
    int point = -1;
    for (int p = 0; p < KILL_POINTS; p++)
        if (strlen(kill_point_names[p]) == len && strncmp(v, kill_point_names[p], len) == 0)
            point = p;
    unsigned long nth = 1;
    int sig = SIGKILL, ok = point >= 0;
    if (ok && v[len] == ':') {
        const char *num = v + len + 1;
        char *end;
        errno = 0;
        nth = strtoul(num, &end, 10);
        ok = *num >= '0' && *num <= '9' && errno == 0 && nth >= 1;
        if (ok && *end == ':')
            sig = strcmp(end + 1, "KILL") == 0   ? SIGKILL
                  : strcmp(end + 1, "TERM") == 0 ? SIGTERM
                                                 : 0;
        ok = ok && (*end == '\0' || (*end == ':' && sig != 0));
    }
    if (!ok) {
        char shown[64];
        ckpt_quote_found(v, shown, sizeof shown);
        return err_set(err, "DSSGD_TEST_KILL_AT=\"%s\" is not POINT[:NTH[:KILL|TERM]] with "
                       "POINT one of start, mid-write, before-rename, before-dir-fsync and "
                       "NTH >= 1 (a test-only hook that kills this process: unset it)", shown);
    }
    kill_hook.point = point;
    kill_hook.nth = nth;
    kill_hook.sig = sig;
    kill_hook.parsed = 1;
    fprintf(stderr, "dssgd: test hook DSSGD_TEST_KILL_AT: SIG%s at %s of save %lu\n",
            sig == SIGKILL ? "KILL" : "TERM", kill_point_names[point], nth);
    return 0;
}

/* Called at each point: raises the signal if this is the armed one. */
static void kill_hook_at(int point)
{
    if (kill_hook.armed != point)
        return;
    fprintf(stderr, "dssgd: test hook: SIG%s at %s of save %lu\n",
            kill_hook.sig == SIGKILL ? "KILL" : "TERM", kill_point_names[point], kill_hook.nth);
    fflush(stderr);
    raise(kill_hook.sig);
    raise(SIGKILL); /* SIGTERM ignored (nohup): die here all the same */
}

/* The temporary file being written, for ckpt_unlink_partial (a signal
 * handler): the name is complete before partial_valid says so. A name too
 * long for the buffer is not published (the file stays, as before). */
static char partial_name[4096];
static volatile sig_atomic_t partial_valid;

static void partial_publish(const char *tmp)
{
    partial_valid = 0;
    if (strlen(tmp) < sizeof partial_name) {
        strcpy(partial_name, tmp);
        partial_valid = 1;
    }
}

static void partial_withdraw(void) { partial_valid = 0; }

/* Writes the whole HDF5 file at tmp and closes it; messages name path. */
static int write_file(const char *tmp, const char *path, const ckpt_state *s, char *err)
{
    hid_t fapl = -1, fid = -1, group = -1;
    int rc = -1;
    int version = CKPT_VERSION;
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0) {
        ckpt_h5_fail(err, path, "H5Pcreate", "file access list");
        goto done;
    }
    /* The 1.10 format (read by HDF5 1.10 and later, h5py included) checksums
     * all metadata, the chunk index too, so no flipped byte loads silently;
     * it also allows attributes over 64 KiB (a long config). */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0) {
        ckpt_h5_fail(err, path, "H5Pset_libver_bounds", NULL);
        goto done;
    }
    if ((fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        ckpt_h5_fail(err, path, "H5Fcreate", tmp);
        goto done;
    }
    if (write_string_attr(fid, "format", CKPT_FORMAT, path, err) < 0 ||
        write_scalar_attr(fid, "version", H5T_STD_I32LE, H5T_NATIVE_INT, &version, path, err) < 0 ||
        write_scalar_attr(fid, "epoch", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->epoch, path, err) < 0 ||
        write_scalar_attr(fid, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->seed, path, err) < 0 ||
        write_string_attr(fid, "config", s->config, path, err) < 0 ||
        write_string_attr(fid, "model", s->model, path, err) < 0 ||
        (s->data && write_string_attr(fid, "data", s->data, path, err) < 0))
        goto done;
    static const char *const groups[] = {"/server", "/participants"};
    for (int g = 0; g < 2; g++) {
        if ((group = H5Gcreate2(fid, groups[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            ckpt_h5_fail(err, path, "H5Gcreate2", groups[g]);
            goto done;
        }
        if (H5Gclose(group) < 0) {
            group = -1;
            ckpt_h5_fail(err, path, "H5Gclose", groups[g]);
            goto done;
        }
        group = -1;
    }
    for (int which = 0; which < CKPT_DS_COUNT; which++) {
        /* Test only: the server's datasets are flushed to the file, no
         * participant's dataset has been written. */
        if (which == CKPT_DS_PART_PARAMS && kill_hook.armed == KILL_MID_WRITE) {
            H5Fflush(fid, H5F_SCOPE_GLOBAL);
            kill_hook_at(KILL_MID_WRITE);
        }
        if (!ckpt_dset_in_state(s, which))
            continue;
        if (write_dataset(fid, s, which, path, err) < 0)
            goto done;
    }
    if (H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0) {
        ckpt_h5_fail(err, path, "H5Fflush", tmp);
        goto done;
    }
    rc = 0;
done:
    ckpt_h5_close(&group, H5Gclose, "H5Gclose", path, &rc, err);
    ckpt_h5_close(&fid, H5Fclose, "H5Fclose", path, &rc, err);
    ckpt_h5_close(&fapl, H5Pclose, "H5Pclose", path, &rc, err);
    return rc;
}

int ckpt_save(const char *path, const ckpt_state *s, char *err)
{
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    if (!s)
        return err_set(err, "%s: no state to save", path);
    if (kill_hook_parse(err) < 0)
        return err_prefix(err, "%s: refusing to save", path);
    kill_hook.saves++;
    kill_hook.armed = kill_hook.saves == kill_hook.nth ? kill_hook.point : -1;
    if (check_state(s, err) < 0)
        return err_prefix(err, "%s: refusing to save", path);

    char *tmp = h5util_temp_name(path, err);
    if (!tmp)
        return -1;
    /* Published before the file exists, withdrawn after it is gone:
     * ckpt_unlink_partial may run between any two of these steps. */
    partial_publish(tmp);
    kill_hook_at(KILL_START);

    h5util_quiet quiet;
    h5util_quiet_begin(&quiet);
    int rc = write_file(tmp, path, s, err);
    h5util_quiet_end(&quiet);
    if (rc == 0)
        rc = h5util_fsync(tmp, 0, path, err);
    if (rc == 0)
        kill_hook_at(KILL_BEFORE_RENAME);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = err_set(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc != 0)
        h5util_remove_temp(tmp);
    partial_withdraw();
    if (rc == 0) {
        kill_hook_at(KILL_BEFORE_DIR_FSYNC);
        rc = h5util_fsync_parent(path, err);
    }
    free(tmp);
    return rc;
}

void ckpt_unlink_partial(void)
{
    if (partial_valid)
        unlink(partial_name);
}
