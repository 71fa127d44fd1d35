/* idx: reading and writing IDX files (the MNIST format), gzipped or plain.
 * Nothing in a header is trusted: the buffer grows only as data arrives. */
#include "idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "err.h"
#include "paths.h"

#define IDX_TYPE_UBYTE 0x08
#define IDX_HEADER_MAX (4 + 4 * IDX_MAX_DIMS)
/* First payload buffer; doubled as data arrives (the header is not trusted). */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)
/* gzread/gzwrite take an unsigned length and return an int: stay below INT_MAX. */
#define IDX_IO_MAX ((size_t)1 << 30)

/* The message for the last zlib error on gz; Z_ERRNO means the OS failed. */
static const char *gz_message(gzFile gz, int *errnum)
{
    const char *msg = gzerror(gz, errnum);
    if (*errnum == Z_ERRNO)
        return strerror(errno);
    /* zlib prefixes the name it was opened with: "<fd:3>" after gzdopen. */
    const char *sep = strstr(msg, ": ");
    return strncmp(msg, "<fd:", 4) == 0 && sep ? sep + 2 : msg;
}

/* Reads up to len bytes into buf, looping over short reads. *got is the count
 * read; it is short of len only at the end of the data. Returns -1 with a
 * message on a read or decompression error. A gzip stream that stops early
 * (Z_BUF_ERROR) counts as the end of the data: the caller reports truncation. */
static int read_full(gzFile gz, const char *path, void *buf, size_t len, size_t *got,
                     char *err)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got < IDX_IO_MAX ? len - *got : IDX_IO_MAX;
        int n = gzread(gz, (unsigned char *)buf + *got, (unsigned)want);
        if (n <= 0)
            break;
        *got += (size_t)n;
    }
    int errnum;
    const char *msg = gz_message(gz, &errnum);
    if (errnum == Z_OK || errnum == Z_BUF_ERROR)
        return 0;
    if (errnum == Z_ERRNO)
        return err_set(err, "%s: read error: %s", path, msg);
    return err_set(err, "%s: corrupt gzip data: %s", path, msg);
}

/* True when the last read ended because a gzip stream stopped early. */
static int gz_cut_short(gzFile gz)
{
    int errnum;
    gzerror(gz, &errnum);
    return errnum == Z_BUF_ERROR;
}

static uint32_t load_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Parses and checks the header; on success fills ndims, dims and size of a. */
static int read_header(gzFile gz, const char *path, int expect_dims, idx_array *a,
                       size_t *header_len, char *err)
{
    unsigned char h[IDX_HEADER_MAX];
    size_t got;
    if (read_full(gz, path, h, 4, &got, err) != 0)
        return -1;
    if (got == 0)
        return err_set(err, "%s: empty file", path);
    if (got < 4)
        return err_set(err, "%s: truncated header: expected 4 bytes, found %zu", path, got);
    if (h[0] != 0 || h[1] != 0)
        return err_set(err, "%s: bad magic (expected 00 00 08 xx, found %02x %02x %02x %02x);"
                       " not an IDX file?", path, h[0], h[1], h[2], h[3]);
    if (h[2] != IDX_TYPE_UBYTE)
        return err_set(err, "%s: unsupported element type 0x%02x (only 0x08, unsigned byte)",
                       path, h[2]);
    int ndims = h[3];
    if (ndims < 1 || ndims > IDX_MAX_DIMS)
        return err_set(err, "%s: unsupported number of dimensions %d (expected 1..%d)", path,
                       ndims, IDX_MAX_DIMS);
    if (expect_dims > 0 && ndims != expect_dims)
        return err_set(err, "%s: expected %d dimensions, found %d", path, expect_dims, ndims);

    size_t len = 4 + 4 * (size_t)ndims;
    if (read_full(gz, path, h + 4, len - 4, &got, err) != 0)
        return -1;
    if (got < len - 4)
        return err_set(err, "%s: truncated header: expected %zu bytes, found %zu", path, len,
                       4 + got);

    size_t size = 1;
    for (int i = 0; i < ndims; i++) {
        uint32_t d = load_be32(h + 4 + 4 * i);
        if (d == 0)
            return err_set(err, "%s: dimension %d is zero", path, i);
        /* Division keeps the check itself from overflowing. */
        if (d > IDX_MAX_BYTES / size)
            return err_set(err, "%s: too large: dimension %d (%u) takes the payload past "
                           "the limit of %zu bytes", path, i, d, IDX_MAX_BYTES);
        size *= d;
        a->dims[i] = d;
    }
    a->ndims = ndims;
    a->size = size;
    *header_len = len;
    return 0;
}

/* Reads exactly a->size payload bytes and checks that nothing follows. */
static int read_payload(gzFile gz, const char *path, idx_array *a, char *err)
{
    size_t cap = a->size < IDX_FIRST_CHUNK ? a->size : IDX_FIRST_CHUNK;
    size_t have = 0;
    uint8_t *data = malloc(cap);
    if (!data)
        return err_set(err, "%s: out of memory (%zu bytes)", path, cap);
    while (have < a->size) {
        if (have == cap) {
            size_t next = cap <= a->size / 2 ? cap * 2 : a->size;
            uint8_t *grown = realloc(data, next);
            if (!grown) {
                free(data);
                return err_set(err, "%s: out of memory (%zu bytes)", path, next);
            }
            data = grown;
            cap = next;
        }
        size_t got;
        if (read_full(gz, path, data + have, cap - have, &got, err) != 0)
            goto fail;
        have += got;
        if (have < cap) {
            err_set(err, "%s: truncated: expected %zu payload bytes, found %zu%s", path,
                    a->size, have, gz_cut_short(gz) ? " (gzip stream ends early)" : "");
            goto fail;
        }
    }

    /* One more byte must hit the end; for gzip this read also makes zlib
     * check the stream's CRC and length trailer. */
    unsigned char extra;
    size_t got;
    if (read_full(gz, path, &extra, 1, &got, err) != 0)
        goto fail;
    if (got != 0) {
        err_set(err, "%s: trailing data after the %zu payload bytes", path, a->size);
        goto fail;
    }
    if (gz_cut_short(gz)) {
        err_set(err, "%s: truncated gzip stream: the payload is complete but the gzip "
                "trailer is missing", path);
        goto fail;
    }
    a->data = data;
    return 0;
fail:
    free(data);
    return -1;
}

/* Opens path for reading as IDX (plain or gzip) and reads its header into
 * a; the caller closes *gz (gzclose_r). */
static int open_idx(const char *path, int expect_dims, gzFile *gz, struct stat *st,
                    idx_array *a, size_t *header_len, char *err)
{
    if (expect_dims < 0 || expect_dims > IDX_MAX_DIMS)
        return err_set(err, "%s: invalid expected dimension count %d", path, expect_dims);

    /* paths_open_input + fstat + gzdopen rather than gzopen: only a regular
     * file is read (a FIFO would block the open forever, a directory opens
     * fine on Linux), and its size lets us reject truncation early. */
    int fd = paths_open_input(path, NULL, err);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, "%s: cannot open: %s", path, strerror(e));
    }
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        close(fd);
        return err_set(err, "%s: cannot open: out of memory", path);
    }
    gzbuffer(*gz, 128 * 1024); /* fewer system calls than the 8 KiB default */
    if (read_header(*gz, path, expect_dims, a, header_len, err) != 0) {
        gzclose_r(*gz);
        return -1;
    }
    return 0;
}

int idx_read(const char *path, int expect_dims, idx_array *out, char *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return err_set(err, "idx_read: NULL argument");
    gzFile gz;
    struct stat st;
    idx_array a = { 0 };
    size_t header_len = 0;
    if (open_idx(path, expect_dims, &gz, &st, &a, &header_len, err) != 0)
        return -1;
    int rc = -1;
    /* A plain regular file must be exactly header + payload: say so before
     * allocating anything. */
    if (gzdirect(gz) && S_ISREG(st.st_mode)) {
        size_t file_size = (size_t)st.st_size;
        size_t on_disk = file_size > header_len ? file_size - header_len : 0;
        if (on_disk < a.size) {
            err_set(err, "%s: truncated: expected %zu payload bytes, found %zu", path, a.size,
                    on_disk);
            goto done;
        }
        if (on_disk > a.size) {
            err_set(err, "%s: trailing data after the %zu payload bytes (%zu extra on disk)",
                    path, a.size, on_disk - a.size);
            goto done;
        }
    }
    if (read_payload(gz, path, &a, err) != 0)
        goto done;
    *out = a;
    rc = 0;
done:
    gzclose_r(gz);
    return rc;
}

int idx_read_header(const char *path, int expect_dims, idx_array *out, char *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return err_set(err, "idx_read_header: NULL argument");
    gzFile gz;
    struct stat st;
    size_t header_len = 0;
    if (open_idx(path, expect_dims, &gz, &st, out, &header_len, err) != 0)
        return -1;
    gzclose_r(gz);
    return 0;
}

/* Writes len bytes; gzwrite returns 0 on error. */
static int write_all(gzFile gz, const char *path, const void *buf, size_t len, char *err)
{
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < IDX_IO_MAX ? len - done : IDX_IO_MAX;
        if (gzwrite(gz, (const unsigned char *)buf + done, (unsigned)n) != (int)n) {
            int errnum;
            const char *msg = gz_message(gz, &errnum);
            return err_set(err, "%s: write error: %s", path, msg);
        }
        done += n;
    }
    return 0;
}

int idx_write(const char *path, const idx_array *array, int gzip, char *err)
{
    if (!path || !array)
        return err_set(err, "idx_write: NULL argument");
    if (array->ndims < 1 || array->ndims > IDX_MAX_DIMS)
        return err_set(err, "%s: cannot write %d dimensions (expected 1..%d)", path,
                       array->ndims, IDX_MAX_DIMS);
    /* Refuse to write what idx_read would reject. */
    size_t size = 1;
    for (int i = 0; i < array->ndims; i++) {
        if (array->dims[i] == 0)
            return err_set(err, "%s: cannot write: dimension %d is zero", path, i);
        if (array->dims[i] > IDX_MAX_BYTES / size)
            return err_set(err, "%s: cannot write: payload larger than %zu bytes", path,
                           IDX_MAX_BYTES);
        size *= array->dims[i];
    }
    if (size != array->size || !array->data)
        return err_set(err, "%s: cannot write: size %zu and data do not match the dimensions"
                       " (product %zu)", path, array->size, size);

    unsigned char h[IDX_HEADER_MAX] = { 0, 0, IDX_TYPE_UBYTE, (unsigned char)array->ndims };
    for (int i = 0; i < array->ndims; i++)
        store_be32(h + 4 + 4 * i, array->dims[i]);
    size_t header_len = 4 + 4 * (size_t)array->ndims;

    errno = 0;
    /* "T": zlib's transparent mode writes the bytes as they are. */
    gzFile gz = gzopen(path, gzip ? "wb" : "wbT");
    if (!gz)
        return err_set(err, "%s: cannot open for writing: %s", path,
                       errno ? strerror(errno) : "out of memory");
    if (write_all(gz, path, h, header_len, err) != 0 ||
        write_all(gz, path, array->data, array->size, err) != 0) {
        gzclose_w(gz);
        return -1;
    }
    /* Closing flushes the last compressed block: its failure is a write failure. */
    errno = 0;
    int rc = gzclose_w(gz);
    if (rc != Z_OK)
        return err_set(err, "%s: write error on close: %s", path,
                       rc == Z_ERRNO && errno ? strerror(errno) : zError(rc));
    return 0;
}

void idx_free(idx_array *array)
{
    if (!array)
        return;
    free(array->data);
    memset(array, 0, sizeof *array);
}
