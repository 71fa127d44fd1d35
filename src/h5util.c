/* h5util: HDF5 helpers shared by the checkpoint and data-file modules
 * (src/h5util.h). */
#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

/* ---- HDF5 errors --------------------------------------------------------- */

static herr_t walk(unsigned n, const H5E_error2_t *e, void *data)
{
    h5util_failure *f = data;
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

h5util_failure h5util_last_failure(void)
{
    h5util_failure f = {.desc = "", .pipeline = 0};
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &f) < 0)
        snprintf(f.desc, sizeof f.desc, "no HDF5 detail");
    return f;
}

int h5util_close(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id < 0)
        return 0;
    herr_t rc = fn(*id);
    *id = -1;
    return rc < 0 ? -1 : 0;
}

/* Unchecked on purpose: a failure here changes only what HDF5 prints. */
void h5util_quiet_begin(h5util_quiet *q)
{
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) >= 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5util_quiet_end(const h5util_quiet *q)
{
    if (q->saved)
        H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

void h5util_type_name(hid_t type, char *buf, size_t cap)
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

/* ---- the file before HDF5 reads it ------------------------------------------ */

int h5util_open_regular(const char *path, struct stat *st, char *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, "%s: cannot open: %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return err_set(err, "%s: cannot open: not a regular file", path);
    }
    return fd;
}

/* ---- atomic, durable writes ------------------------------------------------- */

char *h5util_temp_name(const char *path, char *err)
{
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) {
        err_set(err, "%s: out of memory", path);
        return NULL;
    }
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    return tmp;
}

int h5util_fsync(const char *name, int directory, const char *path, char *err)
{
    int fd = open(name, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return err_set(err, "%s: cannot open %s for fsync: %s", path, name, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && !(directory && errno == EINVAL))
        rc = err_set(err, "%s: fsync of %s failed: %s", path, name, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = err_set(err, "%s: close of %s failed: %s", path, name, strerror(errno));
    return rc;
}

int h5util_fsync_parent(const char *path, char *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return h5util_fsync(".", 1, path, err);
    if (slash == path)
        return h5util_fsync("/", 1, path, err);
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return err_set(err, "%s: out of memory", path);
    int rc = h5util_fsync(dir, 1, path, err);
    free(dir);
    return rc;
}

void h5util_remove_temp(const char *tmp)
{
    struct stat st;
    if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode))
        unlink(tmp);
}
