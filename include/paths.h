/* paths: checks of the files a run reads and writes, made by rank 0 before
 * the first epoch so that a bad path fails in seconds rather than at the
 * first save; and advisory locks that keep two runs from writing the same
 * outputs. Pure file-system code: no MPI, no printing.
 *
 * Messages follow "<what> <path>: <cause>", where what is the option
 * ("--checkpoint") and may be NULL (then "<path>: <cause>"). A path is echoed
 * shortened to at most PATHS_SHOWN characters (its start, "...", its end), so
 * that the cause is never cut off by ERR_LEN. */
#ifndef DSSGD_PATHS_H
#define DSSGD_PATHS_H

/* The longest stretch of a path that a message echoes. */
#define PATHS_SHOWN 128

/* Checks that path can be written as an output file, the way ckpt_save and
 * metrics write it (a temporary file next to it, renamed over it):
 * - not empty, not ending in '/';
 * - if it exists: a regular file. A directory, device, FIFO or socket is
 *   refused (the rename would replace it, or opening it could hang). A
 *   symbolic link is refused too, naming its target: the rename would
 *   replace the link itself with a regular file and leave the target as it
 *   was, which is not what a link at that name asks for; writing through to
 *   the target instead would put the temporary file in another directory,
 *   possibly on another file system where the rename cannot work. Give the
 *   target's own path instead;
 * - its directory exists, is a directory, and a file can be created in it:
 *   the probe creates and removes PATH.tmp.<pid of this process>, the name
 *   ckpt_save uses (the longest temporary name of dssgd's writers), so a
 *   name that the file system cannot hold (NAME_MAX, usually 255 bytes per
 *   component) is refused here, naming the limit. A regular file already at
 *   that name is a leftover of an earlier process that had this pid; the
 *   probe opens it for writing and leaves it there (this process's first
 *   save replaces it anyway).
 * Returns 0, or -1 with err. The directory and the file are not changed. */
int paths_check_output(const char *path, const char *what, char *err);

/* Checks that path is a regular file that can be opened for reading
 * (symbolic links are followed). Refuses a missing file, a directory, a
 * FIFO, a socket or a device with "<what> <path>: cannot open: <cause>".
 * Never blocks, a FIFO included. Returns 0, or -1 with err. */
int paths_check_input(const char *path, const char *what, char *err);

/* Opens path for reading as paths_check_input checks it: a file descriptor
 * (blocking reads, close-on-exec) of a regular file, or -1 with err. The
 * open itself cannot hang on a FIFO, and nothing can swap the file between
 * the check and the open. */
int paths_open_input(const char *path, const char *what, char *err);

/* Refuses two of the count paths that name the same file, with "<what i>
 * and <what j> name the same file: ...". NULL or empty paths are skipped.
 * Existing files are compared by device and inode (so hard links and
 * symbolic links to one file count as the same); a missing file by the
 * canonical path of its directory plus its name. Returns 0, or -1 with err.
 * A pair that may legitimately be one file (--resume and --checkpoint) is
 * simply not passed together. */
int paths_check_distinct(const char *const *paths, const char *const *whats, int count,
                         char *err);

/* An advisory lock on an output, held by this process. Zero-initialise it
 * ({0}); path is NULL while no lock is held. */
typedef struct {
    int fd;       /* the open lock file that carries the lock */
    char *path;   /* PATH.lock, owned; NULL = not held */
} paths_lock_t;

/* Takes a write lock (fcntl F_SETLK, whole file) on PATH.lock, a file next
 * to path holding "<pid> <host name>" of the process that locked it (path
 * itself is replaced by rename at each save, so it cannot carry the lock).
 * While another process holds it, refuses naming that process's pid and
 * host. A PATH.lock left by a process that died holds no lock (the kernel
 * released it) and does not block: it is taken over. A symbolic link or a
 * non-regular file at PATH.lock is refused. The lock lasts until
 * paths_unlock or the process's exit, and is not inherited by fork
 * children. POSIX record locks belong to the process: a process does not
 * conflict with its own lock, and closing any descriptor of the lock file
 * drops it, so do not lock one path twice in a process.
 * Returns 0 when locked; 1 when the file system does not support locks
 * (then nothing is held and err holds a warning to print; the run can go on
 * unprotected); -1 with err on refusal or error. */
int paths_lock(const char *path, const char *what, paths_lock_t *lock, char *err);

/* Removes the temporary files PATH.tmp.<digits> that saves of path left
 * behind when their process was killed mid-write. Only safe while holding
 * paths_lock on path: then no other run is writing one. Returns how many
 * were removed. */
int paths_remove_stale_temps(const char *path);

/* Removes PATH.lock and releases the lock (in that order, so that a process
 * waiting on this lock file sees it is gone and opens a new one). Accepts a
 * lock that is not held. */
void paths_unlock(paths_lock_t *lock);

#endif
