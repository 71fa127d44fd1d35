/* checkpoint_read: reads a checkpoint in this process and checks every field
 * (ckpt_load_unguarded): format and version first, then each dataset's
 * presence, type, shape, checksum and completeness, then the values. HDF5
 * parses the untrusted file here, so only ckpt_load's child (checkpoint_guard.c)
 * and the fuzzer call it. Also ckpt_inspect. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

/* ---- attributes -------------------------------------------------------- */

static const char *kind_name(ckpt_elem k)
{
    return k == CKPT_F32 ? "float32" : k == CKPT_F64 ? "float64" : "uint64";
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
        ckpt_h5_fail(err, file, "H5Aexists", name);
        goto done;
    }
    if (exists == 0) {
        err_set(err, "%s: missing attribute '%s'", file, name);
        goto done;
    }
    if ((*attr = H5Aopen(loc, name, H5P_DEFAULT)) < 0) {
        ckpt_h5_fail(err, file, "H5Aopen", name);
        goto done;
    }
    if ((*type = H5Aget_type(*attr)) < 0) {
        ckpt_h5_fail(err, file, "H5Aget_type", name);
        goto done;
    }
    if ((space = H5Aget_space(*attr)) < 0) {
        ckpt_h5_fail(err, file, "H5Aget_space", name);
        goto done;
    }
    hssize_t points = H5Sget_simple_extent_npoints(space);
    if (points < 0) {
        ckpt_h5_fail(err, file, "H5Sget_simple_extent_npoints", name);
        goto done;
    }
    H5T_class_t found = H5Tget_class(*type);
    if (found < 0) {
        ckpt_h5_fail(err, file, "H5Tget_class", name);
        goto done;
    }
    char tname[48];
    h5util_type_name(*type, tname, sizeof tname);
    if (found != cls || points != 1) {
        err_set(err, "%s: attribute '%s' is %s with %lld elements, expected one %s", file, name,
                tname, (long long)points, cls == H5T_STRING ? "string" : "integer");
        goto done;
    }
    rc = 0;
done:
    ckpt_h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
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
        ckpt_h5_fail(err, file, "H5Tget_size", name);
        goto done;
    }
    if ((mem = H5Tcopy(H5T_C_S1)) < 0) {
        ckpt_h5_fail(err, file, "H5Tcopy", name);
        goto done;
    }
    /* Same character set: HDF5 does not convert between ASCII and UTF-8. */
    if (H5Tset_cset(mem, cset) < 0) {
        ckpt_h5_fail(err, file, "H5Tset_cset", name);
        goto done;
    }
    if (variable) {
        if (H5Tset_size(mem, H5T_VARIABLE) < 0) {
            ckpt_h5_fail(err, file, "H5Tset_size", name);
            goto done;
        }
        if (H5Aread(attr, mem, &vlen) < 0) {
            ckpt_h5_fail(err, file, "H5Aread", name);
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
            ckpt_h5_fail(err, file, "H5Tset_size", name);
            goto done;
        }
        if (!(*out = calloc(size + 1, 1))) {
            err_set(err, "%s: out of memory for attribute '%s'", file, name);
            goto done;
        }
        if (H5Aread(attr, mem, *out) < 0) {
            ckpt_h5_fail(err, file, "H5Aread", name);
            goto done;
        }
        (*out)[size] = '\0';
    }
    rc = 0;
done:
    /* Allocated by the library on read: handed back to it. */
    if (vlen && H5free_memory(vlen) < 0 && rc == 0)
        rc = ckpt_h5_fail(err, file, "H5free_memory", name);
    ckpt_h5_close(&mem, H5Tclose, "H5Tclose", file, &rc, err);
    ckpt_h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    ckpt_h5_close(&attr, H5Aclose, "H5Aclose", file, &rc, err);
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
        ckpt_h5_fail(err, file, "H5Tget_sign", name);
        goto done;
    }
    if (sign == H5T_SGN_NONE) {
        if (H5Aread(attr, H5T_NATIVE_UINT64, value) < 0) {
            ckpt_h5_fail(err, file, "H5Aread", name);
            goto done;
        }
    } else {
        int64_t v;
        if (H5Aread(attr, H5T_NATIVE_INT64, &v) < 0) {
            ckpt_h5_fail(err, file, "H5Aread", name);
            goto done;
        }
        *negative = v < 0;
        *value = (uint64_t)v;
    }
    rc = 0;
done:
    ckpt_h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
    ckpt_h5_close(&attr, H5Aclose, "H5Aclose", file, &rc, err);
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

/* ---- the file --------------------------------------------------------- */

/* format, then version: another kind of file is named before anything else. */
static int check_identity(hid_t fid, const char *file, char *err)
{
    htri_t exists = H5Aexists(fid, "format");
    if (exists < 0)
        return ckpt_h5_fail(err, file, "H5Aexists", "format");
    if (exists == 0)
        return err_set(err, "%s: not a dssgd checkpoint (no 'format' attribute, expected '%s')",
                       file, CKPT_FORMAT);
    char *format = NULL, inner[ERR_LEN] = "";
    if (read_string_attr(fid, "format", &format, file, inner) < 0)
        return err_set(err, "%s: not a dssgd checkpoint ('format' attribute unreadable, expected "
                       "'%s'; %s)", file, CKPT_FORMAT, inner);
    if (strcmp(format, CKPT_FORMAT) != 0) {
        char found[64];
        ckpt_quote_found(format, found, sizeof found);
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

/* ---- datasets --------------------------------------------------------- */

/* Opens one dataset and checks its element type and rank; dims gets its shape. */
static int open_dataset(hid_t fid, int which, hid_t *dset, hsize_t dims[2], const char *file,
                        char *err)
{
    const ckpt_dset *sp = &ckpt_dsets[which];
    hid_t type = -1, space = -1;
    int rc = -1;
    if ((*dset = H5Dopen2(fid, sp->path, H5P_DEFAULT)) < 0) {
        ckpt_h5_fail(err, file, "H5Dopen2", sp->path);
        goto done;
    }
    if ((type = H5Dget_type(*dset)) < 0) {
        ckpt_h5_fail(err, file, "H5Dget_type", sp->path);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_NONE;
    if (cls < 0 || size == 0 || sign < 0) {
        ckpt_h5_fail(err, file, "H5Tget_class", sp->path);
        goto done;
    }
    int ok = sp->kind == CKPT_U64 ? cls == H5T_INTEGER && size == 8 && sign == H5T_SGN_NONE
                                  : cls == H5T_FLOAT && size == (sp->kind == CKPT_F32 ? 4u : 8u);
    if (!ok) {
        char tname[48];
        h5util_type_name(type, tname, sizeof tname);
        err_set(err, "%s: dataset %s is %s, expected %s", file, sp->path, tname, kind_name(sp->kind));
        goto done;
    }
    if ((space = H5Dget_space(*dset)) < 0) {
        ckpt_h5_fail(err, file, "H5Dget_space", sp->path);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0) {
        ckpt_h5_fail(err, file, "H5Sget_simple_extent_ndims", sp->path);
        goto done;
    }
    if (rank != sp->rank) {
        err_set(err, "%s: dataset %s has %d dimensions, expected %d", file, sp->path, rank, sp->rank);
        goto done;
    }
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        ckpt_h5_fail(err, file, "H5Sget_simple_extent_dims", sp->path);
        goto done;
    }
    rc = 0;
done:
    ckpt_h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    ckpt_h5_close(&type, H5Tclose, "H5Tclose", file, &rc, err);
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
        ckpt_h5_fail(err, file, "H5Dget_create_plist", path);
        goto done;
    }
    int filters = H5Pget_nfilters(dcpl);
    if (filters < 0) {
        ckpt_h5_fail(err, file, "H5Pget_nfilters", path);
        goto done;
    }
    for (int i = 0; i < filters && !found; i++) {
        unsigned flags, config;
        size_t nvalues = 0;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, 0, NULL, &config);
        if (id < 0) {
            ckpt_h5_fail(err, file, "H5Pget_filter2", path);
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
        ckpt_h5_fail(err, file, "H5Pget_chunk", path);
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
        ckpt_h5_fail(err, file, "H5Dget_space", path);
        goto done;
    }
    if (H5Dget_num_chunks(dset, space, &have) < 0) {
        ckpt_h5_fail(err, file, "H5Dget_num_chunks", path);
        goto done;
    }
    if (have != want) {
        err_set(err, "%s: dataset %s is incomplete (%llu of %llu chunks written)", file, path,
                (unsigned long long)have, (unsigned long long)want);
        goto done;
    }
    rc = 0;
done:
    ckpt_h5_close(&space, H5Sclose, "H5Sclose", file, &rc, err);
    ckpt_h5_close(&dcpl, H5Pclose, "H5Pclose", file, &rc, err);
    return rc;
}

static void format_dims(const hsize_t *dims, int rank, char *buf, size_t cap)
{
    if (rank == 1)
        snprintf(buf, cap, "[%llu]", (unsigned long long)dims[0]);
    else
        snprintf(buf, cap, "[%llu][%llu]", (unsigned long long)dims[0], (unsigned long long)dims[1]);
}

/* The body of ckpt_load_unguarded with the file open; s is zeroed on entry. */
static int load_file(hid_t fid, const char *file, ckpt_state *s, char *err)
{
    hid_t dsets[CKPT_DS_COUNT];
    hsize_t dims[CKPT_DS_COUNT][2] = {{0}};
    char *config = NULL, *model = NULL, *data = NULL;
    uint64_t epoch = 0, seed = 0;
    int rc = -1;
    for (int i = 0; i < CKPT_DS_COUNT; i++)
        dsets[i] = -1;

    if (check_identity(fid, file, err) < 0 || read_u64_attr(fid, "epoch", &epoch, file, err) < 0 ||
        read_u64_attr(fid, "seed", &seed, file, err) < 0 ||
        read_string_attr(fid, "config", &config, file, err) < 0 ||
        read_string_attr(fid, "model", &model, file, err) < 0)
        goto done;
    htri_t has_data = H5Aexists(fid, "data");
    if (has_data < 0) {
        ckpt_h5_fail(err, file, "H5Aexists", "data");
        goto done;
    }
    if (has_data > 0 && read_string_attr(fid, "data", &data, file, err) < 0)
        goto done;

    for (int i = 0; i < CKPT_DS_COUNT; i++) {
        if (ckpt_dset_optional(i)) {
            /* Its group exists: a required dataset of the same group
             * (/server/params, /participants/params) was opened before it. */
            htri_t exists = H5Lexists(fid, ckpt_dsets[i].path, H5P_DEFAULT);
            if (exists < 0) {
                ckpt_h5_fail(err, file, "H5Lexists", ckpt_dsets[i].path);
                goto done;
            }
            if (exists == 0)
                continue;
        }
        if (open_dataset(fid, i, &dsets[i], dims[i], file, err) < 0)
            goto done;
    }

    /* n and N come from the shapes; every other dataset must agree. */
    uint64_t n = dims[CKPT_DS_SERVER_PARAMS][0], parts = dims[CKPT_DS_EPSILON][0];
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
    for (int i = 0; i < CKPT_DS_COUNT; i++) {
        if (dsets[i] < 0)
            continue;
        hsize_t want[2] = {0, 0};
        for (int d = 0; d < ckpt_dsets[i].rank; d++)
            want[d] = ckpt_dim_value(ckpt_dsets[i].dim[d], n, (uint32_t)parts);
        if (want[0] != dims[i][0] || want[1] != dims[i][1]) {
            char got_s[64], want_s[64];
            format_dims(dims[i], ckpt_dsets[i].rank, got_s, sizeof got_s);
            format_dims(want, ckpt_dsets[i].rank, want_s, sizeof want_s);
            err_set(err, "%s: dataset %s has shape %s, expected %s (n = %" PRIu64 " from "
                    "/server/params, N = %" PRIu64 " from /participants/epsilon)",
                    file, ckpt_dsets[i].path, got_s, want_s, n, parts);
            goto done;
        }
        if (check_storage(dsets[i], ckpt_dsets[i].rank, dims[i], ckpt_dsets[i].path, file, err) < 0)
            goto done;
    }

    if (ckpt_state_alloc(s, n, (uint32_t)parts, dsets[CKPT_DS_RESIDUAL] >= 0) < 0 ||
        (dsets[CKPT_DS_MOMENTUM] >= 0 && ckpt_state_alloc_momentum(s) < 0)) {
        err_set(err, "%s: out of memory for n = %" PRIu64 ", N = %" PRIu64, file, n, parts);
        goto done;
    }
    s->epoch = epoch;
    s->seed = seed;
    s->config = config;
    s->model = model;
    s->data = data;
    config = model = data = NULL;
    for (int i = 0; i < CKPT_DS_COUNT; i++) {
        if (dsets[i] < 0)
            continue;
        if (H5Dread(dsets[i], ckpt_mem_type(ckpt_dsets[i].kind), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    ckpt_dset_data(s, i)) < 0) {
            h5util_failure f = h5util_last_failure();
            if (f.pipeline)
                err_set(err, "%s: dataset %s is corrupt (checksum)", file, ckpt_dsets[i].path);
            else
                err_set(err, "%s: H5Dread failed on %s (%s)", file, ckpt_dsets[i].path, f.desc);
            goto done;
        }
    }
    if (ckpt_check_values(s, err) < 0) {
        err_prefix(err, "%s", file);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < CKPT_DS_COUNT; i++)
        ckpt_h5_close(&dsets[i], H5Dclose, "H5Dclose", file, &rc, err);
    free(config);
    free(model);
    free(data);
    if (rc != 0)
        ckpt_state_free(s);
    return rc;
}

int ckpt_load_unguarded(const char *path, ckpt_state *s, char *err)
{
    memset(s, 0, sizeof *s);
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    struct stat st;
    int fd = h5util_open_regular(path, &st, err);
    if (fd < 0)
        return -1;
    /* dssgd writes the HDF5 signature at offset 0 and superblock version 3
     * (checksummed metadata). Older superblocks reach parsers of HDF5 1.10.8
     * that crash on hostile input (tests/fuzz/known-crashes.txt): refuse
     * them before HDF5 reads anything. */
    unsigned char head[9] = {0};
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (got < (ssize_t)sizeof head || memcmp(head, signature, sizeof signature) != 0)
        return err_set(err, "%s: not an HDF5 file (no HDF5 signature at its start)", path);
    if (head[8] < 2)
        return err_set(err, "%s: HDF5 superblock version %u: not written by dssgd (its checkpoints "
                       "use version 2 or later, whose metadata is checksummed)", path, head[8]);

    h5util_quiet quiet;
    h5util_quiet_begin(&quiet);
    hid_t fid = -1;
    int rc = -1;
    htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 <= 0) {
        err_set(err, "%s: not an HDF5 file", path);
        goto done;
    }
    if ((fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        h5util_failure f = h5util_last_failure();
        err_set(err, "%s: not an HDF5 file, or a damaged one (H5Fopen failed: %s)", path, f.desc);
        goto done;
    }
    /* Note: HDF5 1.10.8 leaks a few internal identifiers when an object
     * header fails its checksum; H5close then reports "infinite loop closing
     * library". Harmless here: a refused checkpoint ends the run, and under
     * ckpt_load the leak stays in the child, which never calls H5close. */
    rc = load_file(fid, path, s, err);
done:
    ckpt_h5_close(&fid, H5Fclose, "H5Fclose", path, &rc, err);
    h5util_quiet_end(&quiet);
    if (rc != 0)
        ckpt_state_free(s);
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
    fprintf(out, "momentum  %s\n", s.has_momentum ? "yes" : "no");
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
    if (s.data) {
        fprintf(out, "data\n");
        for (const char *line = s.data; *line;) {
            const char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line) : strlen(line);
            fprintf(out, "    %.*s\n", (int)len, line);
            line += len + (end ? 1 : 0);
        }
    }
    ckpt_state_free(&s);
    if (fflush(out) != 0 || ferror(out))
        return err_set(err, "%s: cannot write the listing: %s", path, strerror(errno));
    return 0;
}
