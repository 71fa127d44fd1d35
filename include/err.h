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

/* A command line's long option that getopt_long refused: when `name`
 * (after "--", up to any '=') abbreviates two or more of names[0..n) and
 * "help", sets err to "ambiguous option '--abbr' (could be --a, --b)" and
 * returns -1; else returns 0 (the caller says "unknown"). */
int err_ambiguous_option(const char *name, const char *const *names, int n, char *err);

/* malloc/calloc that return NULL for a zero or overflowing size request. */
void *err_calloc(size_t count, size_t size);

#endif
