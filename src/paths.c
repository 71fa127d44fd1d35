/* paths: output and input checks made before training, the same-file check,
 * and the advisory locks on outputs (contracts in include/paths.h). */
/* realpath (X/Open). */
#define _XOPEN_SOURCE 700
#include "paths.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

/* ---- messages ------------------------------------------------------------ */

/* Room for a path as a message shows it. */
typedef struct {
    char s[PATHS_SHOWN + 1];
} shown_t;

/* path itself when short enough, else its first 40 characters, "..." and
 * its end (which holds the file name). */
static const char *shorten(const char *path, shown_t *buf)
{
    size_t len = strlen(path);
    if (len <= PATHS_SHOWN)
        return path;
    size_t head = 40, tail = PATHS_SHOWN - head - 3;
    snprintf(buf->s, sizeof buf->s, "%.*s...%s", (int)head, path, path + len - tail);
    return buf->s;
}

/* "<what> <path>: <cause>" into err; returns -1. */
static int fail(char *err, const char *what, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, const char *what, const char *path, const char *fmt, ...)
{
    char cause[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    shown_t b;
    return err_set(err, "%s%s%s: %s", what ? what : "", what ? " " : "", shorten(path, &b),
                   cause);
}

/* The kind of a file that is not a regular one, for messages. */
static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    return "a special file";
}

/* ---- path pieces --------------------------------------------------------- */

/* The directory part of path (".", "/" or everything before the last '/'),
 * malloc'd; *base points at the last component (empty after a trailing '/'). */
static char *dir_of(const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (dir) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

/* PATH<suffix>, malloc'd. */
static char *with_suffix(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", path, suffix);
    return s;
}

/* ---- outputs --------------------------------------------------------------- */

/* The existing file at path, if any, may be replaced by a rename. */
static int check_existing(const char *path, const char *what, char *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        /* missing: fine; a missing or odd directory, or a name too long,
         * is reported next */
        if (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG)
            return 0;
        return fail(err, what, path, "cannot check it: %s", strerror(errno));
    }
    if (S_ISREG(st.st_mode))
        return 0;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        shown_t b;
        return fail(err, what, path, "is a symbolic link (to %s); dssgd renames a new file over "
                    "its output, which would replace the link and leave its target as it was: "
                    "give the target's own path", shorten(target, &b));
    }
    return fail(err, what, path, "exists and is %s, not a regular file: the first save would "
                "replace it (or writing to it could hang); give a file's path", kind_of(st.st_mode));
}

/* A file named base.tmp.<pid> can be created in dir (then removed). */
static int probe_directory(const char *path, const char *dir, const char *base,
                           const char *what, char *err)
{
    shown_t b;
    char suffix[32];
    snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    size_t tmp_len = strlen(base) + strlen(suffix);
    long name_max = pathconf(dir, _PC_NAME_MAX); /* -1: no limit known */
    if (name_max > 0 && strlen(base) > (size_t)name_max)
        return fail(err, what, path, "file name too long: %zu bytes, more than the %ld that the "
                    "file system of %s allows", strlen(base), name_max, shorten(dir, &b));
    if (name_max > 0 && tmp_len > (size_t)name_max)
        return fail(err, what, path, "file name too long for its temporary file (the name plus "
                    "'%s' is %zu bytes, more than the %ld that the file system of %s allows): "
                    "shorten it by %zu", suffix, tmp_len, name_max, shorten(dir, &b),
                    tmp_len - (size_t)name_max);

    char *tmp = with_suffix(path, suffix);
    if (!tmp)
        return fail(err, what, path, "out of memory");
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        if (unlink(tmp) != 0)
            rc = fail(err, what, path, "cannot remove the test file %s: %s", shorten(tmp, &b),
                      strerror(errno));
    } else if (errno == EEXIST) {
        /* a leftover of an earlier process with this pid: the first save
         * would overwrite it, so it is left for that save */
        struct stat st;
        if (lstat(tmp, &st) != 0)
            rc = fail(err, what, path, "cannot check its temporary file %s: %s",
                      shorten(tmp, &b), strerror(errno));
        else if (!S_ISREG(st.st_mode))
            rc = fail(err, what, path, "its temporary name %s is taken by %s: remove it",
                      shorten(tmp, &b), kind_of(st.st_mode));
        else if ((fd = open(tmp, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
            rc = fail(err, what, path, "cannot write its temporary file %s: %s",
                      shorten(tmp, &b), strerror(errno));
        else
            close(fd);
    } else if (errno == ENAMETOOLONG) {
        rc = fail(err, what, path, "file name too long for its temporary file (the name plus "
                  "'%s'): %s", suffix, strerror(errno));
    } else {
        rc = fail(err, what, path, "cannot create a file in directory %s: %s", shorten(dir, &b),
                  strerror(errno));
    }
    free(tmp);
    return rc;
}

int paths_check_output(const char *path, const char *what, char *err)
{
    if (!path || !*path)
        return err_set(err, "%s: empty path", what ? what : "output");
    const char *base;
    char *dir = dir_of(path, &base);
    if (!dir)
        return fail(err, what, path, "out of memory");
    shown_t b;
    struct stat st;
    int rc = 0;
    if (!*base)
        rc = fail(err, what, path, "ends in '/': give a file's path, not a directory's");
    else if (check_existing(path, what, err) != 0)
        rc = -1;
    else if (stat(dir, &st) != 0)
        rc = errno == ENOENT
                 ? fail(err, what, path, "directory %s does not exist", shorten(dir, &b))
                 : fail(err, what, path, "cannot reach directory %s: %s", shorten(dir, &b),
                        strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = fail(err, what, path, "%s is not a directory", shorten(dir, &b));
    else
        rc = probe_directory(path, dir, base, what, err);
    free(dir);
    return rc;
}

/* ---- inputs ---------------------------------------------------------------- */

int paths_open_input(const char *path, const char *what, char *err)
{
    if (!path || !*path)
        return err_set(err, "%s: empty path", what ? what : "input");
    /* stat first, so that a device is refused before it is opened (opening
     * some has effects); then the same test on the descriptor, which nothing
     * can swap for a FIFO after the open (O_NONBLOCK: nor can the open hang) */
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(err, what, path, "cannot open: %s", strerror(errno));
    int fd = -1;
    if (S_ISREG(st.st_mode)) {
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return fail(err, what, path, "cannot open: %s", strerror(e));
        }
    }
    if (!S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        if (S_ISDIR(st.st_mode))
            return fail(err, what, path, "cannot open: %s", strerror(EISDIR));
        return fail(err, what, path, "cannot open: not a regular file (%s)", kind_of(st.st_mode));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return fail(err, what, path, "cannot open: %s", strerror(e));
    }
    return fd;
}

int paths_check_input(const char *path, const char *what, char *err)
{
    int fd = paths_open_input(path, what, err);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* ---- two names for one file ------------------------------------------------ */

/* The canonical path of path's directory plus its last component, malloc'd;
 * NULL when the directory cannot be resolved. */
static char *canonical(const char *path)
{
    const char *base;
    char *dir = dir_of(path, &base);
    char *real = dir ? realpath(dir, NULL) : NULL;
    char *joined = NULL;
    if (real) {
        size_t n = strlen(real) + strlen(base) + 2;
        if ((joined = malloc(n)) != NULL)
            snprintf(joined, n, "%s/%s", real, base);
    }
    free(dir);
    free(real);
    return joined;
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    int has_a = stat(a, &sa) == 0, has_b = stat(b, &sb) == 0;
    if (has_a && has_b)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (has_a != has_b)
        return 0; /* one name reaches a file, the other none */
    char *ca = canonical(a), *cb = canonical(b);
    int same = ca && cb ? strcmp(ca, cb) == 0 : strcmp(a, b) == 0;
    free(ca);
    free(cb);
    return same;
}

int paths_check_distinct(const char *const *paths, const char *const *whats, int count,
                         char *err)
{
    for (int i = 0; i < count; i++) {
        if (!paths[i] || !*paths[i])
            continue;
        for (int j = i + 1; j < count; j++) {
            if (!paths[j] || !*paths[j] || !same_file(paths[i], paths[j]))
                continue;
            shown_t b1, b2;
            if (strcmp(paths[i], paths[j]) == 0)
                return err_set(err, "%s and %s name the same file (%s): give each its own",
                               whats[i], whats[j], shorten(paths[i], &b1));
            return err_set(err, "%s and %s name the same file (%s and %s): give each its own",
                           whats[i], whats[j], shorten(paths[i], &b1), shorten(paths[j], &b2));
        }
    }
    return 0;
}

/* ---- locks ------------------------------------------------------------------- */

/* "<pid> on <host>" of the process that holds the lock on fd: what it wrote
 * into the lock file, else what the kernel says. */
static void describe_holder(int fd, char *out, size_t cap)
{
    char text[128] = "", host[64] = "";
    long pid = 0;
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    if (sscanf(text, "%ld %63s", &pid, host) >= 1 && pid > 0) {
        if (host[0])
            snprintf(out, cap, "pid %ld on %s", pid, host);
        else
            snprintf(out, cap, "pid %ld", pid);
        return;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0)
        snprintf(out, cap, "pid %ld", (long)fl.l_pid);
    else
        snprintf(out, cap, "pid unknown");
}

/* Locks the open lock file fd. 0 locked, 1 locks unsupported (warning in
 * err), -1 refused or failed. */
static int lock_fd(int fd, const char *path, const char *lock_path, const char *what, char *err)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET}; /* l_len 0: the whole file */
    if (fcntl(fd, F_SETLK, &fl) == 0)
        return 0;
    int e = errno;
    shown_t b;
    if (e == EACCES || e == EAGAIN) {
        char holder[128];
        describe_holder(fd, holder, sizeof holder);
        return fail(err, what, path, "in use by another run (%s, holding the lock on %s): wait "
                    "for it to end or give another path", holder, shorten(lock_path, &b));
    }
    if (e == ENOLCK || e == ENOSYS || e == EOPNOTSUPP || e == EINVAL) {
        fail(err, what, path, "not locked (%s: %s): nothing stops another run from writing "
             "it at the same time", shorten(lock_path, &b), strerror(e));
        return 1;
    }
    return fail(err, what, path, "cannot lock %s: %s", shorten(lock_path, &b), strerror(e));
}

int paths_lock(const char *path, const char *what, paths_lock_t *lock, char *err)
{
    lock->fd = -1;
    lock->path = NULL;
    if (!path || !*path)
        return err_set(err, "%s: empty path", what ? what : "output");
    char *lock_path = with_suffix(path, ".lock");
    if (!lock_path)
        return fail(err, what, path, "out of memory");
    shown_t b;
    /* The holder removes the file before it lets go (paths_unlock): a lock
     * won on a file that is no longer at lock_path is worth nothing, and the
     * open starts again. */
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            if (e == ELOOP)
                fail(err, what, path, "its lock file %s is a symbolic link: remove it",
                     shorten(lock_path, &b));
            else
                fail(err, what, path, "cannot open its lock file %s: %s",
                     shorten(lock_path, &b), strerror(e));
            free(lock_path);
            return -1;
        }
        struct stat st, now;
        int rc = fstat(fd, &st) != 0 ? fail(err, what, path, "cannot check its lock file: %s",
                                            strerror(errno))
                 : !S_ISREG(st.st_mode)
                     ? fail(err, what, path, "its lock file %s is %s: remove it",
                            shorten(lock_path, &b), kind_of(st.st_mode))
                     : lock_fd(fd, path, lock_path, what, err);
        if (rc != 0) {
            close(fd);
            free(lock_path);
            return rc;
        }
        if (stat(lock_path, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
            close(fd);
            continue;
        }
        char text[128], host[64] = "";
        if (gethostname(host, sizeof host) != 0)
            host[0] = '\0';
        host[sizeof host - 1] = '\0';
        int n = snprintf(text, sizeof text, "%ld %s\n", (long)getpid(), host);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
            int e = errno;
            close(fd);
            free(lock_path);
            return fail(err, what, path, "cannot write its lock file: %s", strerror(e));
        }
        lock->fd = fd;
        lock->path = lock_path;
        return 0;
    }
    fail(err, what, path, "its lock file %s keeps being replaced: is another run starting "
         "and stopping?", shorten(lock_path, &b));
    free(lock_path);
    return -1;
}

void paths_unlock(paths_lock_t *lock)
{
    if (!lock || !lock->path)
        return;
    /* remove the file only while it is still ours (someone may have deleted
     * it by hand and another run made a new one) */
    struct stat mine, there;
    if (fstat(lock->fd, &mine) == 0 && lstat(lock->path, &there) == 0 &&
        mine.st_dev == there.st_dev && mine.st_ino == there.st_ino)
        unlink(lock->path);
    close(lock->fd);
    free(lock->path);
    lock->path = NULL;
    lock->fd = -1;
}

int paths_remove_stale_temps(const char *path)
{
    const char *base;
    char *dir = dir_of(path, &base);
    if (!dir || !*base) {
        free(dir);
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return 0;
    }
    size_t blen = strlen(base);
    int removed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *name = e->d_name;
        if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0)
            continue;
        const char *digits = name + blen + 5;
        size_t n = strspn(digits, "0123456789");
        if (n == 0 || digits[n] != '\0')
            continue;
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", dir, name) >= (int)sizeof full)
            continue;
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) && unlink(full) == 0)
            removed++;
    }
    closedir(d);
    free(dir);
    return removed;
}
