/* checkpoint: save and load the whole state of a run as one HDF5 file, written
 * atomically (temp name, fsync, rename, fsync dir) and checked field by field on load. */
/* pipe2, madvise, prctl (Linux, like every target of dssgd). */
#define _GNU_SOURCE
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "err.h"

/* Bounds that make a hostile file fail cleanly instead of exhausting memory. */
#define CKPT_MAX_N UINT64_C(4294967295)
#define CKPT_MAX_PARTICIPANTS 1000000u
#define CKPT_MAX_STRING ((size_t)1 << 20)
/* Elements per chunk: keeps every chunk (and its Fletcher32 pass) under 8 MiB. */
#define CKPT_CHUNK ((hsize_t)1 << 20)

/* ---- the dataset table: one list drives both save and load ------------- */

typedef enum { ELEM_F32, ELEM_F64, ELEM_U64 } elem_kind;
typedef enum { DIM_N, DIM_PARTS, DIM_RNG, DIM_TWO } dim_kind;

typedef struct {
    const char *path;
    elem_kind kind;
    int rank;
    dim_kind dim[2];
} dset_spec;

enum {
    DS_SERVER_PARAMS, DS_SERVER_STAT, DS_SERVER_RNG, DS_COUNTERS,
    DS_PART_PARAMS, DS_RESIDUAL, DS_PART_RNG, DS_EPSILON, DS_COUNT
};

static const dset_spec specs[DS_COUNT] = {
    [DS_SERVER_PARAMS] = {"/server/params", ELEM_F32, 1, {DIM_N, DIM_N}},
    [DS_SERVER_STAT] = {"/server/stat", ELEM_F64, 1, {DIM_N, DIM_N}},
    [DS_SERVER_RNG] = {"/server/rng", ELEM_U64, 2, {DIM_TWO, DIM_RNG}},
    [DS_COUNTERS] = {"/server/counters", ELEM_U64, 1, {DIM_TWO, DIM_TWO}},
    [DS_PART_PARAMS] = {"/participants/params", ELEM_F32, 2, {DIM_PARTS, DIM_N}},
    [DS_RESIDUAL] = {"/participants/residual", ELEM_F32, 2, {DIM_PARTS, DIM_N}},
    [DS_PART_RNG] = {"/participants/rng", ELEM_U64, 2, {DIM_PARTS, DIM_RNG}},
    [DS_EPSILON] = {"/participants/epsilon", ELEM_F64, 1, {DIM_PARTS, DIM_PARTS}},
};

static void *spec_data(const ckpt_state *s, int which)
{
    switch (which) {
    case DS_SERVER_PARAMS: return s->server_params;
    case DS_SERVER_STAT: return s->server_stat;
    case DS_SERVER_RNG: return (void *)s->server_rng;
    case DS_COUNTERS: return (void *)s->counters;
    case DS_PART_PARAMS: return s->part_params;
    case DS_RESIDUAL: return s->part_residual;
    case DS_PART_RNG: return s->part_rng;
    default: return s->part_epsilon;
    }
}

static hsize_t dim_value(dim_kind d, uint64_t n, uint32_t parts)
{
    switch (d) {
    case DIM_N: return n;
    case DIM_PARTS: return parts;
    case DIM_RNG: return RNG_STATE_WORDS;
    default: return 2;
    }
}

static hid_t file_type_of(elem_kind k)
{
    return k == ELEM_F32 ? H5T_IEEE_F32LE : k == ELEM_F64 ? H5T_IEEE_F64LE : H5T_STD_U64LE;
}

static hid_t mem_type_of(elem_kind k)
{
    return k == ELEM_F32 ? H5T_NATIVE_FLOAT : k == ELEM_F64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_UINT64;
}

static const char *kind_name(elem_kind k)
{
    return k == ELEM_F32 ? "float32" : k == ELEM_F64 ? "float64" : "uint64";
}

/* ---- HDF5 error reporting ---------------------------------------------- */

typedef struct {
    char desc[160]; /* the innermost HDF5 message: says what really went wrong */
    int pipeline;   /* a filter failed: for reads, the Fletcher32 checksum */
} h5_failure;

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_failure *f = data;
    if (n == 0 && e->desc) {
        snprintf(f->desc, sizeof f->desc, "%s", e->desc);
        for (char *p = f->desc; *p; p++) /* HDF5 embeds newlines: keep one line */
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    if (e->maj_num == H5E_PLINE)
        f->pipeline = 1;
    return 0;
}

/* Must run right after the failed call: the next API call clears the stack. */
static h5_failure h5_last_failure(void)
{
    h5_failure f = {.desc = "", .pipeline = 0};
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, &f) < 0)
        snprintf(f.desc, sizeof f.desc, "no HDF5 detail");
    return f;
}

/* "<file>: <call> failed on <what> (<HDF5's reason>)"; returns -1. A failed
 * metadata checksum is said plainly: the file is damaged, not misused. */
static int h5_fail(char *err, const char *file, const char *call, const char *what)
{
    h5_failure f = h5_last_failure();
    const char *on = what ? " on " : "";
    if (strstr(f.desc, "checksum"))
        return err_set(err, "%s: the file is corrupt (metadata checksum): %s failed%s%s", file,
                       call, on, what ? what : "");
    return err_set(err, "%s: %s failed%s%s%s%s%s", file, call, on, what ? what : "",
                   f.desc[0] ? " (" : "", f.desc, f.desc[0] ? ")" : "");
}

/* Closes *id with fn if open; a close failure is reported only when nothing
 * failed before it, so the first error's message survives. */
static void h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *call, const char *file,
                     int *rc, char *err)
{
    if (*id < 0)
        return;
    if (fn(*id) < 0 && *rc == 0)
        *rc = h5_fail(err, file, call, NULL);
    *id = -1;
}

/* Silences HDF5's automatic stack printing so a bad file gives only our message. */
typedef struct {
    H5E_auto2_t func;
    void *data;
    int saved;
} h5_quiet;

/* Unchecked on purpose: a failure here changes only what HDF5 prints. */
static void h5_quiet_begin(h5_quiet *q)
{
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) >= 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void h5_quiet_end(const h5_quiet *q)
{
    if (q->saved)
        H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
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

void ckpt_state_free(ckpt_state *s)
{
    if (!s)
        return;
    free(s->config);
    free(s->model);
    free(s->server_params);
    free(s->server_stat);
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

static int check_values(const ckpt_state *s, char *err)
{
    size_t n = (size_t)s->n, parts = s->participants;
    if (check_finite_f32(s->server_params, n, 0, "/server/params", err) < 0 ||
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
        !s->part_epsilon || (s->has_residual && !s->part_residual))
        return err_set(err, "the state has a missing array");
    if (!s->config || !s->model)
        return err_set(err, "the state has no %s string", s->config ? "model" : "config");
    if (strlen(s->config) > CKPT_MAX_STRING || strlen(s->model) > CKPT_MAX_STRING)
        return err_set(err, "the config or model string is over %zu bytes", CKPT_MAX_STRING);
    return check_values(s, err);
}

/* ---- writing ----------------------------------------------------------- */

/* Fixed-length, NUL-terminated C string of exactly strlen + 1 bytes: h5dump
 * shows it and h5py reads it as bytes without a length of its own to trust. */
static int write_scalar_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                             const void *value, const char *file, char *err)
{
    hid_t space = -1, attr = -1;
    int rc = -1;
    if ((space = H5Screate(H5S_SCALAR)) < 0) {
        h5_fail(err, file, "H5Screate", name);
        goto done;
    }
    if ((attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        h5_fail(err, file, "H5Acreate2", name);
        goto done;
    }
    if (H5Awrite(attr, mem_type, value) < 0) {
        h5_fail(err, file, "H5Awrite", name);
        goto done;
    }
    rc = 0;
done:
    h5_close(&attr, H5Aclose, "H5Aclose", file, &rc, err);
    h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    return rc;
}

/* A fixed-length, NUL-terminated string of exactly its own size. */
static int write_string_attr(hid_t loc, const char *name, const char *value, const char *file,
                             char *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (type < 0)
        return h5_fail(err, file, "H5Tcopy", name);
    if (H5Tset_size(type, strlen(value) + 1) < 0 || H5Tset_strpad(type, H5T_STR_NULLTERM) < 0)
        h5_fail(err, file, "H5Tset_size", name);
    else
        rc = write_scalar_attr(loc, name, type, type, value, file, err);
    h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    return rc;
}

/* Chunked with Fletcher32, so a flipped byte in the data fails the read
 * instead of loading silently. Matrices get one chunk per row (participant). */
static int write_dataset(hid_t fid, const ckpt_state *s, int which, const char *file, char *err)
{
    const dset_spec *sp = &specs[which];
    hsize_t dims[2], chunk[2];
    hid_t space = -1, dcpl = -1, dset = -1;
    int rc = -1;
    for (int d = 0; d < sp->rank; d++)
        dims[d] = dim_value(sp->dim[d], s->n, s->participants);
    if (sp->rank == 1) {
        chunk[0] = dims[0] < CKPT_CHUNK ? dims[0] : CKPT_CHUNK;
    } else {
        chunk[1] = dims[1] < CKPT_CHUNK ? dims[1] : CKPT_CHUNK;
        hsize_t rows = CKPT_CHUNK / chunk[1];
        chunk[0] = sp->dim[1] == DIM_N ? 1 : dims[0] < rows ? dims[0] : rows;
    }
    if ((space = H5Screate_simple(sp->rank, dims, NULL)) < 0) {
        h5_fail(err, file, "H5Screate_simple", sp->path);
        goto done;
    }
    if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) {
        h5_fail(err, file, "H5Pcreate", sp->path);
        goto done;
    }
    if (H5Pset_chunk(dcpl, sp->rank, chunk) < 0) {
        h5_fail(err, file, "H5Pset_chunk", sp->path);
        goto done;
    }
    if (H5Pset_fletcher32(dcpl) < 0) {
        h5_fail(err, file, "H5Pset_fletcher32", sp->path);
        goto done;
    }
    if ((dset = H5Dcreate2(fid, sp->path, file_type_of(sp->kind), space, H5P_DEFAULT, dcpl,
                           H5P_DEFAULT)) < 0) {
        h5_fail(err, file, "H5Dcreate2", sp->path);
        goto done;
    }
    if (H5Dwrite(dset, mem_type_of(sp->kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, spec_data(s, which)) < 0) {
        h5_fail(err, file, "H5Dwrite", sp->path);
        goto done;
    }
    rc = 0;
done:
    h5_close(&dset, H5Dclose, "H5Dclose", file, &rc, err);
    h5_close(&dcpl, H5Pclose, "H5Pclose", file, &rc, err);
    h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    return rc;
}

/* Writes the whole HDF5 file at tmp and closes it; messages name path. */
static int write_file(const char *tmp, const char *path, const ckpt_state *s, char *err)
{
    hid_t fapl = -1, fid = -1, group = -1;
    int rc = -1;
    int version = CKPT_VERSION;
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0) {
        h5_fail(err, path, "H5Pcreate", "file access list");
        goto done;
    }
    /* The 1.10 format (read by HDF5 1.10 and later, h5py included) checksums
     * all metadata, the chunk index too, so no flipped byte loads silently;
     * it also allows attributes over 64 KiB (a long config). */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0) {
        h5_fail(err, path, "H5Pset_libver_bounds", NULL);
        goto done;
    }
    if ((fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5_fail(err, path, "H5Fcreate", tmp);
        goto done;
    }
    if (write_string_attr(fid, "format", CKPT_FORMAT, path, err) < 0 ||
        write_scalar_attr(fid, "version", H5T_STD_I32LE, H5T_NATIVE_INT, &version, path, err) < 0 ||
        write_scalar_attr(fid, "epoch", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->epoch, path, err) < 0 ||
        write_scalar_attr(fid, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->seed, path, err) < 0 ||
        write_string_attr(fid, "config", s->config, path, err) < 0 ||
        write_string_attr(fid, "model", s->model, path, err) < 0)
        goto done;
    static const char *const groups[] = {"/server", "/participants"};
    for (int g = 0; g < 2; g++) {
        if ((group = H5Gcreate2(fid, groups[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            h5_fail(err, path, "H5Gcreate2", groups[g]);
            goto done;
        }
        if (H5Gclose(group) < 0) {
            group = -1;
            h5_fail(err, path, "H5Gclose", groups[g]);
            goto done;
        }
        group = -1;
    }
    for (int which = 0; which < DS_COUNT; which++) {
        if (which == DS_RESIDUAL && !s->has_residual)
            continue;
        if (write_dataset(fid, s, which, path, err) < 0)
            goto done;
    }
    if (H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0) {
        h5_fail(err, path, "H5Fflush", tmp);
        goto done;
    }
    rc = 0;
done:
    h5_close(&group, H5Gclose, "H5Gclose", path, &rc, err);
    h5_close(&fid, H5Fclose, "H5Fclose", path, &rc, err);
    h5_close(&fapl, H5Pclose, "H5Pclose", path, &rc, err);
    return rc;
}

/* HDF5's flush only reaches the OS; fsync reaches the disk before the rename
 * makes the file the checkpoint. */
static int fsync_path(const char *name, int directory, const char *path, char *err)
{
    int fd = open(name, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return err_set(err, "%s: cannot open %s for fsync: %s", path, name, strerror(errno));
    int rc = 0;
    /* Some file systems cannot fsync a directory (EINVAL): nothing more to do. */
    if (fsync(fd) != 0 && !(directory && errno == EINVAL))
        rc = err_set(err, "%s: fsync of %s failed: %s", path, name, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = err_set(err, "%s: close of %s failed: %s", path, name, strerror(errno));
    return rc;
}

/* The rename is durable only once the directory entry is on disk. */
static int fsync_parent(const char *path, char *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return fsync_path(".", 1, path, err);
    if (slash == path)
        return fsync_path("/", 1, path, err);
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return err_set(err, "%s: out of memory", path);
    int rc = fsync_path(dir, 1, path, err);
    free(dir);
    return rc;
}

/* Removes our temporary file, but never something else that holds its name
 * (a directory there is what made the create fail). */
static void remove_temp(const char *tmp)
{
    struct stat st;
    if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode))
        unlink(tmp);
}

int ckpt_save(const char *path, const ckpt_state *s, char *err)
{
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    if (!s)
        return err_set(err, "%s: no state to save", path);
    if (check_state(s, err) < 0)
        return err_prefix(err, "%s: refusing to save", path);

    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp)
        return err_set(err, "%s: out of memory", path);
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());

    h5_quiet quiet;
    h5_quiet_begin(&quiet);
    int rc = write_file(tmp, path, s, err);
    h5_quiet_end(&quiet);
    if (rc == 0)
        rc = fsync_path(tmp, 0, path, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = err_set(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc != 0)
        remove_temp(tmp);
    else
        rc = fsync_parent(path, err);
    free(tmp);
    return rc;
}

/* ---- reading ----------------------------------------------------------- */

static void type_name(hid_t type, char *buf, size_t cap)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT)
        snprintf(buf, cap, "float%zu", size * 8);
    else if (cls == H5T_INTEGER)
        snprintf(buf, cap, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8);
    else if (cls == H5T_STRING)
        snprintf(buf, cap, "string");
    else
        snprintf(buf, cap, "HDF5 type class %d", (int)cls);
}

/* Opens attribute name on loc, requires one element of class cls; the
 * caller closes *attr and *type. */
static int open_attr(hid_t loc, const char *name, H5T_class_t cls, hid_t *attr, hid_t *type,
                     const char *file, char *err)
{
    hid_t space = -1;
    int rc = -1;
    htri_t exists = H5Aexists(loc, name);
    if (exists < 0) {
        h5_fail(err, file, "H5Aexists", name);
        goto done;
    }
    if (exists == 0) {
        err_set(err, "%s: missing attribute '%s'", file, name);
        goto done;
    }
    if ((*attr = H5Aopen(loc, name, H5P_DEFAULT)) < 0) {
        h5_fail(err, file, "H5Aopen", name);
        goto done;
    }
    if ((*type = H5Aget_type(*attr)) < 0) {
        h5_fail(err, file, "H5Aget_type", name);
        goto done;
    }
    if ((space = H5Aget_space(*attr)) < 0) {
        h5_fail(err, file, "H5Aget_space", name);
        goto done;
    }
    hssize_t points = H5Sget_simple_extent_npoints(space);
    if (points < 0) {
        h5_fail(err, file, "H5Sget_simple_extent_npoints", name);
        goto done;
    }
    H5T_class_t found = H5Tget_class(*type);
    if (found < 0) {
        h5_fail(err, file, "H5Tget_class", name);
        goto done;
    }
    char tname[48];
    type_name(*type, tname, sizeof tname);
    if (found != cls || points != 1) {
        err_set(err, "%s: attribute '%s' is %s with %lld elements, expected one %s", file, name,
                tname, (long long)points, cls == H5T_STRING ? "string" : "integer");
        goto done;
    }
    rc = 0;
done:
    h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    return rc;
}

/* Reads a string attribute (fixed or variable length, at most CKPT_MAX_STRING
 * bytes) into a malloc'd C string. */
static int read_string_attr(hid_t loc, const char *name, char **out, const char *file, char *err)
{
    hid_t attr = -1, type = -1, mem = -1;
    char *vlen = NULL;
    int rc = -1;
    *out = NULL;
    if (open_attr(loc, name, H5T_STRING, &attr, &type, file, err) < 0)
        goto done;
    htri_t variable = H5Tis_variable_str(type);
    H5T_cset_t cset = H5Tget_cset(type);
    size_t size = H5Tget_size(type);
    if (variable < 0 || cset < 0 || size == 0) {
        h5_fail(err, file, "H5Tget_size", name);
        goto done;
    }
    if ((mem = H5Tcopy(H5T_C_S1)) < 0) {
        h5_fail(err, file, "H5Tcopy", name);
        goto done;
    }
    /* Same character set: HDF5 does not convert between ASCII and UTF-8. */
    if (H5Tset_cset(mem, cset) < 0) {
        h5_fail(err, file, "H5Tset_cset", name);
        goto done;
    }
    if (variable) {
        if (H5Tset_size(mem, H5T_VARIABLE) < 0) {
            h5_fail(err, file, "H5Tset_size", name);
            goto done;
        }
        if (H5Aread(attr, mem, &vlen) < 0) {
            h5_fail(err, file, "H5Aread", name);
            goto done;
        }
        size = vlen ? strlen(vlen) : 0;
        if (size > CKPT_MAX_STRING) {
            err_set(err, "%s: attribute '%s' is %zu bytes, over the %zu limit", file, name, size,
                    CKPT_MAX_STRING);
            goto done;
        }
        if (!(*out = strndup(vlen ? vlen : "", size))) {
            err_set(err, "%s: out of memory for attribute '%s'", file, name);
            goto done;
        }
    } else {
        if (size > CKPT_MAX_STRING + 1) {
            err_set(err, "%s: attribute '%s' is %zu bytes, over the %zu limit", file, name, size,
                    CKPT_MAX_STRING);
            goto done;
        }
        /* One byte more than stored, NUL-terminated: a NULLPAD string that
         * fills its size still comes back whole and terminated. */
        if (H5Tset_size(mem, size + 1) < 0 || H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0) {
            h5_fail(err, file, "H5Tset_size", name);
            goto done;
        }
        if (!(*out = calloc(size + 1, 1))) {
            err_set(err, "%s: out of memory for attribute '%s'", file, name);
            goto done;
        }
        if (H5Aread(attr, mem, *out) < 0) {
            h5_fail(err, file, "H5Aread", name);
            goto done;
        }
        (*out)[size] = '\0';
    }
    rc = 0;
done:
    /* Allocated by the library on read: handed back to it. */
    if (vlen && H5free_memory(vlen) < 0 && rc == 0)
        rc = h5_fail(err, file, "H5free_memory", name);
    h5_close(&mem, H5Tclose, "H5Tclose", file, &rc, err);
    h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    h5_close(&attr, H5Aclose, "H5Aclose", file, &rc, err);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Reads an integer attribute; signed ones come back in *value as two's
 * complement with *negative set when below zero. */
static int read_int_attr(hid_t loc, const char *name, uint64_t *value, int *negative,
                         const char *file, char *err)
{
    hid_t attr = -1, type = -1;
    int rc = -1;
    *value = 0;
    *negative = 0;
    if (open_attr(loc, name, H5T_INTEGER, &attr, &type, file, err) < 0)
        goto done;
    H5T_sign_t sign = H5Tget_sign(type);
    if (sign < 0) {
        h5_fail(err, file, "H5Tget_sign", name);
        goto done;
    }
    if (sign == H5T_SGN_NONE) {
        if (H5Aread(attr, H5T_NATIVE_UINT64, value) < 0) {
            h5_fail(err, file, "H5Aread", name);
            goto done;
        }
    } else {
        int64_t v;
        if (H5Aread(attr, H5T_NATIVE_INT64, &v) < 0) {
            h5_fail(err, file, "H5Aread", name);
            goto done;
        }
        *negative = v < 0;
        *value = (uint64_t)v;
    }
    rc = 0;
done:
    h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    h5_close(&attr, H5Aclose, "H5Aclose", file, &rc, err);
    return rc;
}

static int read_u64_attr(hid_t loc, const char *name, uint64_t *value, const char *file, char *err)
{
    int negative;
    if (read_int_attr(loc, name, value, &negative, file, err) < 0)
        return -1;
    if (negative)
        return err_set(err, "%s: attribute '%s' is %" PRId64 ", expected a non-negative integer",
                       file, name, (int64_t)*value);
    return 0;
}

/* A found string quoted safely into a message: printable ASCII, cut short. */
static void quote_found(const char *s, char *buf, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < cap; i++)
        buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[0] && j + 4 >= cap && j >= 3)
        memcpy(buf + j - 3, "...", 3);
    buf[j] = '\0';
}

/* format, then version: another kind of file is named before anything else. */
static int check_identity(hid_t fid, const char *file, char *err)
{
    htri_t exists = H5Aexists(fid, "format");
    if (exists < 0)
        return h5_fail(err, file, "H5Aexists", "format");
    if (exists == 0)
        return err_set(err, "%s: not a dssgd checkpoint (no 'format' attribute, expected '%s')",
                       file, CKPT_FORMAT);
    char *format = NULL, inner[ERR_LEN] = "";
    if (read_string_attr(fid, "format", &format, file, inner) < 0)
        return err_set(err, "%s: not a dssgd checkpoint ('format' attribute unreadable, expected "
                       "'%s'; %s)", file, CKPT_FORMAT, inner);
    if (strcmp(format, CKPT_FORMAT) != 0) {
        char found[64];
        quote_found(format, found, sizeof found);
        free(format);
        return err_set(err, "%s: not a dssgd checkpoint (format '%s', expected '%s')", file, found,
                       CKPT_FORMAT);
    }
    free(format);
    uint64_t version;
    int negative;
    if (read_int_attr(fid, "version", &version, &negative, file, err) < 0)
        return -1;
    if (negative || version != CKPT_VERSION) {
        if (negative)
            return err_set(err, "%s: checkpoint version %" PRId64 ", this dssgd reads version %d",
                           file, (int64_t)version, CKPT_VERSION);
        return err_set(err, "%s: checkpoint version %" PRIu64 ", this dssgd reads version %d",
                       file, version, CKPT_VERSION);
    }
    return 0;
}

/* Opens one dataset and checks its element type and rank; dims gets its shape. */
static int open_dataset(hid_t fid, int which, hid_t *dset, hsize_t dims[2], const char *file,
                        char *err)
{
    const dset_spec *sp = &specs[which];
    hid_t type = -1, space = -1;
    int rc = -1;
    if ((*dset = H5Dopen2(fid, sp->path, H5P_DEFAULT)) < 0) {
        h5_fail(err, file, "H5Dopen2", sp->path);
        goto done;
    }
    if ((type = H5Dget_type(*dset)) < 0) {
        h5_fail(err, file, "H5Dget_type", sp->path);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_NONE;
    if (cls < 0 || size == 0 || sign < 0) {
        h5_fail(err, file, "H5Tget_class", sp->path);
        goto done;
    }
    int ok = sp->kind == ELEM_U64 ? cls == H5T_INTEGER && size == 8 && sign == H5T_SGN_NONE
                                  : cls == H5T_FLOAT && size == (sp->kind == ELEM_F32 ? 4u : 8u);
    if (!ok) {
        char tname[48];
        type_name(type, tname, sizeof tname);
        err_set(err, "%s: dataset %s is %s, expected %s", file, sp->path, tname, kind_name(sp->kind));
        goto done;
    }
    if ((space = H5Dget_space(*dset)) < 0) {
        h5_fail(err, file, "H5Dget_space", sp->path);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0) {
        h5_fail(err, file, "H5Sget_simple_extent_ndims", sp->path);
        goto done;
    }
    if (rank != sp->rank) {
        err_set(err, "%s: dataset %s has %d dimensions, expected %d", file, sp->path, rank, sp->rank);
        goto done;
    }
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        h5_fail(err, file, "H5Sget_simple_extent_dims", sp->path);
        goto done;
    }
    rc = 0;
done:
    h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    return rc;
}

/* Every dataset we write carries Fletcher32 and has all its chunks written;
 * one without either could load unchecked data or silent fill values. */
static int check_storage(hid_t dset, int rank, const hsize_t *dims, const char *path,
                         const char *file, char *err)
{
    hid_t dcpl = -1, space = -1;
    int rc = -1, found = 0;
    if ((dcpl = H5Dget_create_plist(dset)) < 0) {
        h5_fail(err, file, "H5Dget_create_plist", path);
        goto done;
    }
    int filters = H5Pget_nfilters(dcpl);
    if (filters < 0) {
        h5_fail(err, file, "H5Pget_nfilters", path);
        goto done;
    }
    for (int i = 0; i < filters && !found; i++) {
        unsigned flags, config;
        size_t nvalues = 0;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, 0, NULL, &config);
        if (id < 0) {
            h5_fail(err, file, "H5Pget_filter2", path);
            goto done;
        }
        found = id == H5Z_FILTER_FLETCHER32;
    }
    if (!found) {
        err_set(err, "%s: dataset %s has no checksum (Fletcher32 filter)", file, path);
        goto done;
    }
    /* Unwritten chunks would read back as fill values: every chunk must exist. */
    hsize_t chunk[2] = {1, 1}, want = 1, have = 0;
    if (H5Pget_layout(dcpl) != H5D_CHUNKED || H5Pget_chunk(dcpl, rank, chunk) != rank) {
        h5_fail(err, file, "H5Pget_chunk", path);
        goto done;
    }
    for (int d = 0; d < rank; d++) {
        if (chunk[d] == 0) {
            err_set(err, "%s: dataset %s has an empty chunk shape", file, path);
            goto done;
        }
        want *= (dims[d] + chunk[d] - 1) / chunk[d];
    }
    /* HDF5 1.10 rejects H5S_ALL here: pass the dataset's own space. */
    if ((space = H5Dget_space(dset)) < 0) {
        h5_fail(err, file, "H5Dget_space", path);
        goto done;
    }
    if (H5Dget_num_chunks(dset, space, &have) < 0) {
        h5_fail(err, file, "H5Dget_num_chunks", path);
        goto done;
    }
    if (have != want) {
        err_set(err, "%s: dataset %s is incomplete (%llu of %llu chunks written)", file, path,
                (unsigned long long)have, (unsigned long long)want);
        goto done;
    }
    rc = 0;
done:
    h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    h5_close(&dcpl, H5Pclose, "H5Pclose", file, &rc, err);
    return rc;
}

static void format_dims(const hsize_t *dims, int rank, char *buf, size_t cap)
{
    if (rank == 1)
        snprintf(buf, cap, "[%llu]", (unsigned long long)dims[0]);
    else
        snprintf(buf, cap, "[%llu][%llu]", (unsigned long long)dims[0], (unsigned long long)dims[1]);
}

/* The body of ckpt_load with the file open; s is zeroed on entry. */
static int load_file(hid_t fid, const char *file, ckpt_state *s, char *err)
{
    hid_t dsets[DS_COUNT];
    hsize_t dims[DS_COUNT][2] = {{0}};
    char *config = NULL, *model = NULL;
    uint64_t epoch = 0, seed = 0;
    int rc = -1;
    for (int i = 0; i < DS_COUNT; i++)
        dsets[i] = -1;

    if (check_identity(fid, file, err) < 0 || read_u64_attr(fid, "epoch", &epoch, file, err) < 0 ||
        read_u64_attr(fid, "seed", &seed, file, err) < 0 ||
        read_string_attr(fid, "config", &config, file, err) < 0 ||
        read_string_attr(fid, "model", &model, file, err) < 0)
        goto done;

    int has_residual = 0;
    for (int i = 0; i < DS_COUNT; i++) {
        if (i == DS_RESIDUAL) {
            /* /participants exists: /participants/params opened just before. */
            htri_t exists = H5Lexists(fid, specs[i].path, H5P_DEFAULT);
            if (exists < 0) {
                h5_fail(err, file, "H5Lexists", specs[i].path);
                goto done;
            }
            if (!(has_residual = exists > 0))
                continue;
        }
        if (open_dataset(fid, i, &dsets[i], dims[i], file, err) < 0)
            goto done;
    }

    /* n and N come from the shapes; every other dataset must agree. */
    uint64_t n = dims[DS_SERVER_PARAMS][0], parts = dims[DS_EPSILON][0];
    if (n == 0 || n > CKPT_MAX_N) {
        err_set(err, "%s: n = %" PRIu64 " (length of /server/params) is out of range 1..%" PRIu64,
                file, n, CKPT_MAX_N);
        goto done;
    }
    if (parts == 0 || parts > CKPT_MAX_PARTICIPANTS) {
        err_set(err, "%s: N = %" PRIu64 " (length of /participants/epsilon) is out of range 1..%u",
                file, parts, CKPT_MAX_PARTICIPANTS);
        goto done;
    }
    for (int i = 0; i < DS_COUNT; i++) {
        if (dsets[i] < 0)
            continue;
        hsize_t want[2] = {0, 0};
        for (int d = 0; d < specs[i].rank; d++)
            want[d] = dim_value(specs[i].dim[d], n, (uint32_t)parts);
        if (want[0] != dims[i][0] || want[1] != dims[i][1]) {
            char got_s[64], want_s[64];
            format_dims(dims[i], specs[i].rank, got_s, sizeof got_s);
            format_dims(want, specs[i].rank, want_s, sizeof want_s);
            err_set(err, "%s: dataset %s has shape %s, expected %s (n = %" PRIu64 " from "
                    "/server/params, N = %" PRIu64 " from /participants/epsilon)",
                    file, specs[i].path, got_s, want_s, n, parts);
            goto done;
        }
        if (check_storage(dsets[i], specs[i].rank, dims[i], specs[i].path, file, err) < 0)
            goto done;
    }

    if (ckpt_state_alloc(s, n, (uint32_t)parts, has_residual) < 0) {
        err_set(err, "%s: out of memory for n = %" PRIu64 ", N = %" PRIu64, file, n, parts);
        goto done;
    }
    s->epoch = epoch;
    s->seed = seed;
    s->config = config;
    s->model = model;
    config = model = NULL;
    for (int i = 0; i < DS_COUNT; i++) {
        if (dsets[i] < 0)
            continue;
        if (H5Dread(dsets[i], mem_type_of(specs[i].kind), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    spec_data(s, i)) < 0) {
            h5_failure f = h5_last_failure();
            if (f.pipeline)
                err_set(err, "%s: dataset %s is corrupt (checksum)", file, specs[i].path);
            else
                err_set(err, "%s: H5Dread failed on %s (%s)", file, specs[i].path, f.desc);
            goto done;
        }
    }
    if (check_values(s, err) < 0) {
        err_prefix(err, "%s", file);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < DS_COUNT; i++)
        h5_close(&dsets[i], H5Dclose, "H5Dclose", file, &rc, err);
    free(config);
    free(model);
    if (rc != 0)
        ckpt_state_free(s);
    return rc;
}

int ckpt_load_unguarded(const char *path, ckpt_state *s, char *err)
{
    memset(s, 0, sizeof *s);
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    /* HDF5's own messages for these are obscure: say it plainly first.
     * O_NONBLOCK: a FIFO at path must not hang the open. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int stat_rc = fstat(fd, &st), stat_errno = errno;
    /* dssgd writes the HDF5 signature at offset 0 and superblock version 3
     * (checksummed metadata). Older superblocks reach parsers of HDF5 1.10.8
     * that crash on hostile input (tests/fuzz/known-crashes.txt): refuse
     * them before HDF5 reads anything. */
    unsigned char head[9] = {0};
    ssize_t got = stat_rc == 0 && S_ISREG(st.st_mode) ? read(fd, head, sizeof head) : 0;
    close(fd);
    if (stat_rc != 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(stat_errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, "%s: cannot open: not a regular file", path);
    static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (got < (ssize_t)sizeof head || memcmp(head, signature, sizeof signature) != 0)
        return err_set(err, "%s: not an HDF5 file (no HDF5 signature at its start)", path);
    if (head[8] < 2)
        return err_set(err, "%s: HDF5 superblock version %u: not written by dssgd (its checkpoints "
                       "use version 2 or later, whose metadata is checksummed)", path, head[8]);

    h5_quiet quiet;
    h5_quiet_begin(&quiet);
    hid_t fid = -1;
    int rc = -1;
    htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 <= 0) {
        err_set(err, "%s: not an HDF5 file", path);
        goto done;
    }
    if ((fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        h5_failure f = h5_last_failure();
        err_set(err, "%s: not an HDF5 file, or a damaged one (H5Fopen failed: %s)", path, f.desc);
        goto done;
    }
    /* Note: HDF5 1.10.8 leaks a few internal identifiers when an object
     * header fails its checksum; H5close then reports "infinite loop closing
     * library". Harmless here: a refused checkpoint ends the run, and under
     * ckpt_load the leak stays in the child, which never calls H5close. */
    rc = load_file(fid, path, s, err);
done:
    h5_close(&fid, H5Fclose, "H5Fclose", path, &rc, err);
    h5_quiet_end(&quiet);
    if (rc != 0)
        ckpt_state_free(s);
    return rc;
}

/* ---- the guard: HDF5 reads an untrusted file in a child process -------- */

/* HDF5 1.10.8 crashes (SIGSEGV, SIGFPE, stack overflow) or loops forever on
 * some hostile files, in code dssgd cannot fix. So ckpt_load forks: the child
 * runs ckpt_load_unguarded and writes a report, then the state, to a pipe,
 * and the parent reads them by a deadline. Sending the state back, rather
 * than loading the file a second time once the child has said it is safe,
 * means HDF5 never parses the file in the caller: the file cannot be swapped
 * between a check and a load. The copy through the pipe costs about what a
 * second load would (on a 2-core VM: 0.02-0.03 s more for the default 14 MB
 * checkpoint, 1 s more for 800 MB); the peak memory stays one state. */

void (*ckpt_test_child_hook)(void);

#define GUARD_ENV "DSSGD_CKPT_PARSE_TIMEOUT"
#define GUARD_MAX_LIMIT 604800L /* seconds: a week */
/* Bytes per write by the child; it gives back each block's pages once sent. */
#define GUARD_BLOCK ((size_t)8 << 20)

/* What the child writes first; the state's arrays follow when rc is 0. Both
 * ends are this same binary, so the struct crosses the pipe as it is. */
typedef struct {
    int32_t rc; /* 0: the state follows; -1: refused, err says why */
    int32_t has_residual;
    uint32_t participants;
    uint64_t epoch, seed, n;
    uint64_t server_rng[2][RNG_STATE_WORDS];
    uint64_t counters[2];
    uint64_t config_len, model_len; /* without the NUL */
    char err[ERR_LEN];
} guard_report;

typedef struct {
    void *data;
    size_t bytes;
} guard_part;

enum { GUARD_PARTS_MAX = 8 };

/* The strings and arrays of s in the order they cross the pipe. */
static int guard_parts(const ckpt_state *s, size_t config_len, size_t model_len,
                       guard_part part[GUARD_PARTS_MAX])
{
    size_t n = (size_t)s->n, parts = s->participants, rows = n * parts;
    int k = 0;
    part[k++] = (guard_part){s->config, config_len};
    part[k++] = (guard_part){s->model, model_len};
    part[k++] = (guard_part){s->server_params, n * sizeof *s->server_params};
    part[k++] = (guard_part){s->server_stat, n * sizeof *s->server_stat};
    part[k++] = (guard_part){s->part_params, rows * sizeof *s->part_params};
    if (s->has_residual)
        part[k++] = (guard_part){s->part_residual, rows * sizeof *s->part_residual};
    part[k++] = (guard_part){s->part_rng, parts * RNG_STATE_WORDS * sizeof *s->part_rng};
    part[k++] = (guard_part){s->part_epsilon, parts * sizeof *s->part_epsilon};
    return k;
}

/* Seconds the child may take: DSSGD_CKPT_PARSE_TIMEOUT, else 60 s plus 10 s
 * per 100 MB (10 MB/s: generous even for a multi-GB file on a slow disk). */
static int guard_limit(const char *path, long *limit, char *err)
{
    const char *v = getenv(GUARD_ENV);
    if (v) {
        long value = 0;
        size_t i = 0;
        for (; v[i] >= '0' && v[i] <= '9' && value <= GUARD_MAX_LIMIT; i++)
            value = value * 10 + (v[i] - '0');
        if (i == 0 || v[i] != '\0' || value < 1 || value > GUARD_MAX_LIMIT) {
            char found[64];
            quote_found(v, found, sizeof found);
            return err_set(err, "%s: not loaded: %s is '%s', expected whole seconds from 1 to %ld",
                           path, GUARD_ENV, found, GUARD_MAX_LIMIT);
        }
        *limit = value;
        return 0;
    }
    struct stat st;
    long long size = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : 0;
    *limit = 60 + (long)(size / 10000000);
    return 0;
}

static int64_t guard_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Writes all of len bytes. With release, the pages sent are given back as it
 * goes: the child never reads them again, and the parent's copy of a
 * multi-GB state then does not sit beside a whole second one. Only pages
 * wholly inside buf are released, so malloc's own data is never touched. */
static int guard_write(int fd, void *buf, size_t len, int release)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t p = (uintptr_t)buf, end = p + len, released = (p + page - 1) & ~(page - 1);
    while (p < end) {
        size_t block = end - p < GUARD_BLOCK ? end - p : GUARD_BLOCK;
        ssize_t put = write(fd, (const void *)p, block);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        p += (size_t)put;
        uintptr_t upto = p & ~(page - 1);
        if (release && upto > released) {
            (void)madvise((void *)released, upto - released, MADV_DONTNEED); /* a hint */
            released = upto;
        }
    }
    return 0;
}

/* The child: never returns. It must not call MPI, nor run the caller's exit
 * handlers or signal handlers. */
_Noreturn static void guard_child(int fd, const char *path, pid_t parent, long limit)
{
    /* Dies with the caller (mpirun killing the rank), and never outlives its
     * own limit by much even if orphaned. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    /* The caller's handlers are not for this process: Open MPI's prints a
     * backtrace, cmocka's and libFuzzer's would go on running tests here. A
     * crash must end the child with its signal, which the parent names. */
    static const int deadly[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP,
                                 SIGSYS,  SIGALRM, SIGPIPE, SIGXCPU, SIGXFSZ};
    struct sigaction dfl;
    sigset_t set;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof deadly / sizeof deadly[0]; i++) {
        (void)sigaction(deadly[i], &dfl, NULL);
        sigaddset(&set, deadly[i]);
    }
    (void)sigprocmask(SIG_UNBLOCK, &set, NULL);
    alarm((unsigned)limit + 10);
    if (ckpt_test_child_hook)
        ckpt_test_child_hook();

    guard_report rep;
    memset(&rep, 0, sizeof rep);
    ckpt_state s;
    guard_part part[GUARD_PARTS_MAX];
    int parts = 0;
    rep.rc = ckpt_load_unguarded(path, &s, rep.err);
    if (rep.rc == 0) {
        rep.has_residual = s.has_residual;
        rep.participants = s.participants;
        rep.epoch = s.epoch;
        rep.seed = s.seed;
        rep.n = s.n;
        memcpy(rep.server_rng, s.server_rng, sizeof rep.server_rng);
        memcpy(rep.counters, s.counters, sizeof rep.counters);
        rep.config_len = strlen(s.config);
        rep.model_len = strlen(s.model);
        parts = guard_parts(&s, (size_t)rep.config_len, (size_t)rep.model_len, part);
    }
    if (guard_write(fd, &rep, sizeof rep, 0) < 0)
        _exit(1);
    for (int i = 0; i < parts; i++)
        if (guard_write(fd, part[i].data, part[i].bytes, 1) < 0)
            _exit(1);
    /* _exit: no atexit handlers (HDF5's shutdown, MPI's, LeakSanitizer's) and
     * no flush of stdio buffers copied from the caller. s is not freed: the
     * process ends here. */
    _exit(0);
}

enum { GUARD_DONE, GUARD_EOF, GUARD_LATE, GUARD_FAILED };

/* Reads exactly len bytes from fd by deadline (ms, CLOCK_MONOTONIC). */
static int guard_read(int fd, void *buf, size_t len, int64_t deadline)
{
    char *p = buf;
    while (len > 0) {
        int64_t left = deadline - guard_now_ms();
        if (left <= 0)
            return GUARD_LATE;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (ready < 0 && errno != EINTR)
            return GUARD_FAILED;
        if (ready <= 0)
            continue;
        ssize_t got = read(fd, p, len < ((size_t)1 << 30) ? len : (size_t)1 << 30);
        if (got < 0 && errno != EINTR)
            return GUARD_FAILED;
        if (got == 0)
            return GUARD_EOF;
        if (got > 0) {
            p += got;
            len -= (size_t)got;
        }
    }
    return GUARD_DONE;
}

/* A report that the child's own loader could have written. */
static int guard_report_valid(const guard_report *r)
{
    if (r->rc == -1)
        return memchr(r->err, '\0', sizeof r->err) != NULL;
    return r->rc == 0 && r->n >= 1 && r->n <= CKPT_MAX_N && r->participants >= 1 &&
           r->participants <= CKPT_MAX_PARTICIPANTS &&
           (r->has_residual == 0 || r->has_residual == 1) && r->config_len <= CKPT_MAX_STRING &&
           r->model_len <= CKPT_MAX_STRING;
}

static int guard_alloc(const guard_report *r, ckpt_state *s)
{
    if (ckpt_state_alloc(s, r->n, r->participants, r->has_residual) < 0)
        return -1;
    s->config = malloc((size_t)r->config_len + 1);
    s->model = malloc((size_t)r->model_len + 1);
    if (!s->config || !s->model) {
        ckpt_state_free(s);
        return -1;
    }
    s->config[r->config_len] = '\0';
    s->model[r->model_len] = '\0';
    s->epoch = r->epoch;
    s->seed = r->seed;
    memcpy(s->server_rng, r->server_rng, sizeof s->server_rng);
    memcpy(s->counters, r->counters, sizeof s->counters);
    return 0;
}

static const char *signal_name(int sig, char *buf, size_t cap)
{
    static const struct {
        int sig;
        const char *name;
    } names[] = {{SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
                 {SIGILL, "SIGILL"},   {SIGABRT, "SIGABRT"}, {SIGTRAP, "SIGTRAP"},
                 {SIGSYS, "SIGSYS"},   {SIGALRM, "SIGALRM"}, {SIGPIPE, "SIGPIPE"},
                 {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"}, {SIGTERM, "SIGTERM"},
                 {SIGINT, "SIGINT"},   {SIGHUP, "SIGHUP"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig)
            return names[i].name;
    snprintf(buf, cap, "signal %d", sig);
    return buf;
}

/* The parent: reads the child's report and state by deadline, then reaps it. */
static int guard_receive(int fd, pid_t pid, int64_t deadline, long limit, const char *path,
                         ckpt_state *s, char *err)
{
    guard_report rep;
    int got = guard_read(fd, &rep, sizeof rep, deadline), read_errno = errno;
    int malformed = 0, no_memory = 0;
    if (got == GUARD_DONE && !guard_report_valid(&rep)) {
        malformed = 1;
    } else if (got == GUARD_DONE && rep.rc == 0) {
        if (guard_alloc(&rep, s) < 0) {
            no_memory = 1;
        } else {
            guard_part part[GUARD_PARTS_MAX];
            int parts = guard_parts(s, (size_t)rep.config_len, (size_t)rep.model_len, part);
            for (int i = 0; i < parts && got == GUARD_DONE; i++) {
                got = guard_read(fd, part[i].data, part[i].bytes, deadline);
                read_errno = errno;
            }
        }
    }
    int whole = got == GUARD_DONE && !malformed && !no_memory;
    /* After a whole report the child's next step is _exit; at end of file it
     * is gone. Else it may be looping, or blocked writing what we no longer
     * read: stop it. */
    if (!whole && got != GUARD_EOF)
        kill(pid, SIGKILL);
    int status = 0;
    pid_t reaped;
    while ((reaped = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    /* The child's exit status is not asked for once its report is whole:
     * valgrind may rewrite it. */
    if (whole && rep.rc == 0)
        return 0;
    ckpt_state_free(s);
    if (whole)
        return err_set(err, "%s", rep.err);
    if (no_memory)
        return err_set(err, "%s: out of memory for n = %" PRIu64 ", N = %" PRIu32, path, rep.n,
                       rep.participants);
    if (malformed)
        return err_set(err, "%s: the process reading it with HDF5 sent a malformed result (HDF5 "
                       "may have corrupted its memory): the file is damaged or hostile; not loaded",
                       path);
    if (got == GUARD_LATE)
        return err_set(err, "%s: HDF5 did not finish reading it within %ld s: the file is damaged "
                       "or hostile (if it is trusted and this slow to read, raise %s); not loaded",
                       path, limit, GUARD_ENV);
    if (got == GUARD_FAILED)
        return err_set(err, "%s: not loaded: cannot read the result of the process reading it: %s",
                       path, strerror(read_errno));
    if (reaped == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return err_set(err, "%s: the process reading it with HDF5 was killed (SIGKILL, perhaps for "
                       "lack of memory): the file may be damaged or hostile; not loaded", path);
    if (reaped == pid && WIFSIGNALED(status)) {
        char buf[32];
        return err_set(err, "%s: the HDF5 library crashed (%s) while reading it: the file is "
                       "damaged or hostile; not loaded", path,
                       signal_name(WTERMSIG(status), buf, sizeof buf));
    }
    if (reaped == pid && WIFEXITED(status))
        return err_set(err, "%s: the process reading it with HDF5 ended (exit status %d) without a "
                       "result: the file may be damaged or hostile; not loaded", path,
                       WEXITSTATUS(status));
    return err_set(err, "%s: the process reading it with HDF5 ended without a result: the file "
                   "may be damaged or hostile; not loaded", path);
}

int ckpt_load(const char *path, ckpt_state *s, char *err)
{
    memset(s, 0, sizeof *s);
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    long limit = 0;
    if (guard_limit(path, &limit, err) < 0)
        return -1;
    /* HDF5 sets itself up on its first call, and a parallel build registers
     * with MPI then: let that happen here, never in the child. */
    if (H5open() < 0)
        return err_set(err, "%s: not loaded: H5open failed", path);
    /* O_CLOEXEC: a program another thread starts must not hold the write end
     * open, or the end of file that says the child is gone never comes. */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return err_set(err, "%s: not loaded: cannot make a pipe to the process that would read "
                       "it: %s", path, strerror(errno));
    pid_t parent = getpid();
    int64_t deadline = guard_now_ms() + (int64_t)limit * 1000;
    pid_t pid = fork();
    if (pid < 0) {
        int fork_errno = errno;
        close(fds[0]);
        close(fds[1]);
        return err_set(err, "%s: not loaded: cannot start the process that would read it (fork: "
                       "%s)", path, strerror(fork_errno));
    }
    if (pid == 0) {
        close(fds[0]);
        guard_child(fds[1], path, parent, limit);
    }
    close(fds[1]);
    int rc = guard_receive(fds[0], pid, deadline, limit, path, s, err);
    close(fds[0]);
    return rc;
}

/* ---- inspect ----------------------------------------------------------- */

int ckpt_inspect(const char *path, FILE *out, char *err)
{
    ckpt_state s;
    if (ckpt_load(path, &s, err) < 0)
        return -1;
    fprintf(out, "format    %s\n", CKPT_FORMAT);
    fprintf(out, "version   %d\n", CKPT_VERSION);
    fprintf(out, "epoch     %" PRIu64 "\n", s.epoch);
    fprintf(out, "seed      %" PRIu64 "\n", s.seed);
    fprintf(out, "n         %" PRIu64 "\n", s.n);
    fprintf(out, "N         %" PRIu32 "\n", s.participants);
    fprintf(out, "residual  %s\n", s.has_residual ? "yes" : "no");
    fprintf(out, "uploads   %" PRIu64 " accepted, %" PRIu64 " rejected\n", s.counters[0],
            s.counters[1]);
    fprintf(out, "model     %s\n", s.model);
    fprintf(out, "config\n");
    /* Indented line by line so the block stands apart from the fields above. */
    for (const char *line = s.config; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        fprintf(out, "    %.*s\n", (int)len, line);
        line += len + (end ? 1 : 0);
    }
    ckpt_state_free(&s);
    if (fflush(out) != 0 || ferror(out))
        return err_set(err, "%s: cannot write the listing: %s", path, strerror(errno));
    return 0;
}
