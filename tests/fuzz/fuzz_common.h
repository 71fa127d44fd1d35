/* fuzz_common: helpers shared by the libFuzzer targets: a scratch file per
 * process (for parsers that take a path) and a loud invariant check. */
#ifndef DSSGD_FUZZ_COMMON_H
#define DSSGD_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An invariant of the parser's contract was broken: print where and abort,
 * which libFuzzer reports as a crash and saves the input for. */
#define FUZZ_CHECK(cond, ...)                                                    \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                      \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* Scratch files live in /dev/shm when it exists (no disk I/O per input);
 * they are made once per process, rewritten for every input and removed at
 * exit. Up to FUZZ_MAX_SCRATCH per process. */
#define FUZZ_MAX_SCRATCH 4
static char fuzz_scratch_paths[FUZZ_MAX_SCRATCH][128];
static int fuzz_scratch_count;

static inline void fuzz_scratch_cleanup(void)
{
    for (int i = 0; i < fuzz_scratch_count; i++)
        unlink(fuzz_scratch_paths[i]);
}

/* Returns a fresh scratch path (the file exists, empty); aborts on failure. */
static inline const char *fuzz_scratch_new(const char *tag)
{
    if (fuzz_scratch_count == FUZZ_MAX_SCRATCH)
        abort();
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
    if (!dir)
        dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = fuzz_scratch_paths[fuzz_scratch_count];
    snprintf(p, sizeof fuzz_scratch_paths[0], "%s/dssgd-fuzz-%s-XXXXXX", dir, tag);
    int fd = mkstemp(p);
    if (fd < 0) {
        perror("fuzz: mkstemp");
        abort();
    }
    close(fd);
    if (fuzz_scratch_count++ == 0)
        atexit(fuzz_scratch_cleanup);
    return p;
}

/* Replaces the contents of path with buf[0..len); aborts on failure (that is
 * the harness failing, not the parser). */
static inline void fuzz_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
