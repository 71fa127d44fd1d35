/* guard: runs the parser of an untrusted file in a forked, time-limited
 * child process and brings its result back through a pipe.
 *
 * HDF5 1.10.8 crashes (SIGSEGV, SIGFPE, stack overflow) or loops forever on
 * some hostile files, in code dssgd cannot fix (tests/fuzz/known-crashes.txt).
 * So the caller's parse function runs in a child: it fills a fixed-size
 * summary (`meta`) and names up to GUARD_PARTS_MAX arrays (`parts`); the
 * child writes its verdict, the summary and the arrays to a pipe and ends
 * with _exit. The parent reads them by a deadline, has the caller check the
 * summary and allocate where the arrays go (`accept`), then reads the
 * arrays into place. HDF5 never parses the file in the caller, and the file
 * is read once: it cannot be swapped between a check and a load.
 *
 * What the guard does not bound is memory: a file that makes the parser
 * allocate without limit ends with the kernel's OOM killer (reported as
 * SIGKILL), if it picks the child.
 *
 * Users: h5data_load (data files) and ckpt_load (checkpoints,
 * src/checkpoint_guard.c). */
#ifndef DSSGD_GUARD_H
#define DSSGD_GUARD_H

#include <stddef.h>

/* The largest time limit the environment may set: a week, in seconds. */
#define GUARD_MAX_LIMIT 604800L
/* Arrays a parse may send back, and the size of its summary in bytes. */
#define GUARD_PARTS_MAX 16
#define GUARD_META_MAX 4096

/* An array crossing the pipe: in the child, what is sent; in the parent,
 * where it goes. */
typedef struct {
    void *data;
    size_t bytes;
} guard_part;

/* accept's answer for a summary that the child's own parse could not have
 * written (its memory was corrupted, say): the guard refuses with its own
 * message. */
#define GUARD_MALFORMED (-2)

typedef struct {
    /* The file: parse is given it, every message names it, and its size
     * sets the default time limit. */
    const char *path;
    /* The environment variable that overrides the time limit (whole seconds
     * 1 to GUARD_MAX_LIMIT), e.g. "DSSGD_DATA_PARSE_TIMEOUT". */
    const char *env;
    /* The library that parses, for messages: "HDF5". */
    const char *reader;
    /* The summary's size in bytes, 0 to GUARD_META_MAX. Both ends are the
     * same binary, so a struct crosses the pipe as it is. */
    size_t meta_bytes;
    /* Given to the three functions. */
    void *ctx;
    /* In the child: parses path. Returns -1 with a message in err (ERR_LEN
     * bytes), which the caller gets word for word; or 0 with meta (zeroed
     * beforehand) filled and parts[0 .. *nparts) naming the arrays to send.
     * Its memory is never freed (the child ends with _exit). It must not
     * call MPI. */
    int (*parse)(void *ctx, const char *path, void *meta, guard_part parts[GUARD_PARTS_MAX],
                 int *nparts, char *err);
    /* In the parent, once the summary has come: checks that parse could
     * have written it, allocates, and sets parts[0 .. *nparts) to where each
     * array goes, with the lengths parse gave (the guard compares them).
     * Returns 0; GUARD_MALFORMED; or -1 with err set (out of memory, say). */
    int (*accept)(void *ctx, const void *meta, guard_part parts[GUARD_PARTS_MAX], int *nparts,
                  char *err);
    /* In the parent: frees what accept allocated, when the arrays then do
     * not all come. May be NULL. */
    void (*discard)(void *ctx);
} guard_job;

/* The time limit for parsing path, in seconds: the variable env when set
 * (whole seconds 1 to GUARD_MAX_LIMIT, other values refused with a message
 * naming path and the variable), else 60 s plus 10 s per 100 MB of file
 * (10 MB/s: generous even for a multi-GB file on a slow disk). */
int guard_limit(const char *path, const char *env, long *seconds, char *err);

/* Runs job->parse in a child process under guard_limit's time limit.
 * Returns 0 when the summary and every array have arrived (accept was
 * called, and the arrays are in place); -1 with a message naming the file:
 * parse's own refusal word for word, accept's, or the guard's for a child
 * that crashed (named by its signal), was killed, exited without a result,
 * ran out of time (it is killed), or sent a malformed result. Every child
 * is reaped before it returns. A caller whose library must set itself up
 * in the parent (H5open: a parallel HDF5 registers with MPI) does so before
 * calling. The child dies with the caller (PR_SET_PDEATHSIG) and, orphaned
 * or not, with SIGALRM 10 s after the limit. */
int guard_run(const guard_job *job, char *err);

/* Tests only: when set, the child calls it before parse (to crash or hang
 * on purpose). NULL otherwise. */
extern void (*guard_test_child_hook)(void);

#endif
