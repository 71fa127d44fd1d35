/* test_util: helpers shared by the cmocka tests (header only, tu_ prefix):
 * whole-file reads and writes, a scratch directory under /tmp and its
 * removal, and raw wire bytes written by hand as a careless or hostile sender
 * would. It includes <cmocka.h> with the headers cmocka needs before it.
 *
 * tu_read_file and tu_write_file fail the running cmocka test on error; the
 * others report errors by their return value and never assert, so they are
 * safe where a failed assertion must not happen (test_mpi's tamper hook, on
 * a worker rank). */
#ifndef DSSGD_TEST_UTIL_H
#define DSSGD_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire.h"

/* Room for a scratch directory's path from tu_make_tmpdir. */
#define TU_TMPDIR_CAP 64

/* ---- files ------------------------------------------------------------- */

/* The whole of a non-empty file, plus a terminating NUL (not counted in
 * *len) so that a text file reads as a string. len may be NULL. The caller
 * frees. Fails the current test if the file cannot be read or is empty. */
static inline unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    buf[size] = '\0';
    if (len)
        *len = (size_t)size;
    return buf;
}

/* Writes len bytes of data to path, replacing any file there (len may be 0).
 * Fails the current test on error. */
static inline void tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Removes path: a file, or a directory with everything below it (links are
 * removed, never followed). Returns 0, or -1 if path was not there or could
 * not be removed. */
static inline int tu_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[512];
            int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            if (n > 0 && (size_t)n < sizeof child) /* else rmdir below fails */
                tu_remove_tree(child);
        }
        closedir(d);
    }
    return rmdir(path);
}

/* A fresh, empty directory /tmp/<name>.XXXXXX (mkdtemp), its path written
 * to dir (TU_TMPDIR_CAP bytes). Returns 0, or -1 with dir unusable: the
 * return value a cmocka setup function gives. Remove it with tu_remove_tree. */
static inline int tu_make_tmpdir(char dir[TU_TMPDIR_CAP], const char *name)
{
    int n = snprintf(dir, TU_TMPDIR_CAP, "/tmp/%s.XXXXXX", name);
    if (n < 0 || n >= TU_TMPDIR_CAP)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

/* ---- raw wire bytes ---------------------------------------------------- */

/* v at p as 4 little-endian bytes (the wire's byte order). */
static inline void tu_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* Rewrites msg from byte 20 on (keeping the magic, version, type, participant,
 * epoch and n already there) as a delta-coded message of these count entries,
 * written by hand as a careless sender would: each gap is idx[i] - idx[i-1] - 1
 * in 32-bit arithmetic, so a repeated or decreasing index becomes a gap that
 * wraps past 2^32, and an index >= n stays one (wire_pack refuses to write
 * either). msg must hold wire_size(count) bytes. Returns the message length. */
static inline size_t tu_put_deltas(uint8_t *msg, uint32_t count, const uint32_t *idx,
                                   const float *val)
{
    tu_put32(msg + 20, count);
    msg[24] = WIRE_ENC_DELTA;
    uint8_t *q = msg + WIRE_HEADER_BYTES;
    uint32_t prev = UINT32_MAX; /* so the first gap is the first index */
    for (uint32_t i = 0; i < count; i++) {
        uint32_t v = idx[i] - prev - 1;
        for (; v >= 0x80; v >>= 7)
            *q++ = (uint8_t)(v | 0x80);
        *q++ = (uint8_t)v;
        prev = idx[i];
    }
    memcpy(q, val, 4 * (size_t)count); /* floats as they lie: x86 is little-endian */
    return (size_t)(q - msg) + 4 * (size_t)count;
}

#endif
