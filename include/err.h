/* err: error messages passed back from library code.
 * Library functions return 0 on success and -1 on error, writing a message
 * into a caller-owned buffer of ERR_LEN bytes; only the driver prints. */
#ifndef DSSGD_ERR_H
#define DSSGD_ERR_H

#include <stddef.h>

#define ERR_LEN 512

/* Formats a message into err (may be NULL); always returns -1 so callers can
 * write `return err_set(err, "...")`. */
int err_set(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message: "<prefix>: <old message>". Returns -1. */
int err_prefix(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* malloc/calloc that return NULL for a zero or overflowing size request. */
void *err_calloc(size_t count, size_t size);

#endif
