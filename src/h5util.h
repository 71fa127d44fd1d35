/* h5util: what the two modules that read and write HDF5 files share, the
 * checkpoint (src/checkpoint*.c) and the data file (src/h5data*.c): HDF5's
 * reason for a failure, its automatic error printing turned off, closing
 * with a check, a type's name for messages, the plain-file check before
 * HDF5 parses a file, and the steps that make a write atomic and durable.
 * Each module keeps its own message formats; these helpers give the parts. */
#ifndef DSSGD_H5UTIL_H
#define DSSGD_H5UTIL_H

#include <stddef.h>
#include <sys/stat.h>

#include <hdf5.h>

/* ---- HDF5 errors --------------------------------------------------------- */

typedef struct {
    /* The innermost message on HDF5's error stack, on one line: it says
     * what really went wrong. "" when the stack is empty; "no HDF5 detail"
     * when it cannot be read. */
    char desc[160];
    int pipeline; /* a filter failed: for reads, the Fletcher32 checksum */
} h5util_failure;

/* What HDF5's error stack says of the last failure. Must run right after the
 * failed call: the next API call clears the stack. */
h5util_failure h5util_last_failure(void);

/* Closes *id with fn if it is open (>= 0) and sets it to -1. Returns -1 when
 * fn failed (HDF5's error stack then holds the reason, for the caller's
 * message), else 0. */
int h5util_close(hid_t *id, herr_t (*fn)(hid_t));

/* Silences HDF5's automatic stack printing between begin and end, so a bad
 * file gives only our message; end restores what begin found. */
typedef struct {
    H5E_auto2_t func;
    void *data;
    int saved;
} h5util_quiet;

void h5util_quiet_begin(h5util_quiet *q);
void h5util_quiet_end(const h5util_quiet *q);

/* A type's name for messages: "float32", "int16", "uint8", "a string", "an
 * enumeration (numpy bool, say)", "a compound type", else "HDF5 type class N". */
void h5util_type_name(hid_t type, char *buf, size_t cap);

/* ---- the file before HDF5 reads it ------------------------------------------ */

/* Opens path read-only and requires a regular file, so that HDF5 never
 * meets a directory or a device and gives its obscure message. O_NONBLOCK:
 * a FIFO cannot hang the open. Returns the descriptor (the caller closes
 * it) with *st filled; or -1 with err "<path>: cannot open: <why>". */
int h5util_open_regular(const char *path, struct stat *st, char *err);

/* ---- atomic, durable writes ------------------------------------------------- */

/* A writer makes "<path>.tmp.<pid>", fsyncs it (HDF5's flush reaches only
 * the OS), renames it over path and fsyncs path's directory (the rename is
 * durable only once the directory entry is on disk). Every message starts
 * with path. */

/* The temporary name for path, malloc'd; NULL with err set when out of memory. */
char *h5util_temp_name(const char *path, char *err);

/* fsync of name, a file or (directory set) a directory. A file system that
 * cannot fsync a directory (EINVAL) is not an error. */
int h5util_fsync(const char *name, int directory, const char *path, char *err);

/* fsync of the directory that holds path. */
int h5util_fsync_parent(const char *path, char *err);

/* Removes the temporary file tmp if it is a regular file: never something
 * else that holds its name (a directory there is what made the create fail). */
void h5util_remove_temp(const char *tmp);

#endif
