/* idx: reader for IDX files (the MNIST format), gzipped or plain.
 * Validates magic, element type, dimensions and exact size before trusting
 * any of it; a hostile header cannot cause a large allocation by itself. */
#ifndef DSSGD_IDX_H
#define DSSGD_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_MAX_DIMS 4
/* Largest payload accepted: far above any image set we train on. */
#define IDX_MAX_BYTES ((size_t)1 << 31)

typedef struct {
    int ndims;                    /* 1 for labels, 3 for images */
    uint32_t dims[IDX_MAX_DIMS];  /* dims[0] is the item count */
    size_t size;                  /* product of dims = bytes in data */
    uint8_t *data;                /* (dims[0], dims[1], ...) row-major, unsigned bytes */
} idx_array;

/* Reads an unsigned-byte IDX file (type 0x08) with `expect_dims` dimensions
 * (0 = any). Plain or gzip, detected from the content. The file must end
 * exactly after the payload. On error returns -1 with a message naming the
 * file; `out` is then empty. Free with idx_free. */
int idx_read(const char *path, int expect_dims, idx_array *out, char *err);

/* Reads only the header of such a file: ndims, dims and size, data NULL
 * (the payload is neither read nor checked). */
int idx_read_header(const char *path, int expect_dims, idx_array *out, char *err);

/* Writes an unsigned-byte IDX file; gzip when `gzip` is nonzero (for tests
 * and tools). */
int idx_write(const char *path, const idx_array *array, int gzip, char *err);

/* Frees data and zeroes the struct; accepts NULL and empty arrays. */
void idx_free(idx_array *array);

#endif
