/* fuzz_idx: libFuzzer target for idx_read, the reader of (possibly gzipped)
 * IDX files, fed the input as a file, as a gzip of it and as a cut gzip. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "err.h"
#include "fuzz_common.h"
#include "idx.h"

static const char *plain_path, *gzip_path;
static uint8_t *gz_buf;
static size_t gz_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    plain_path = fuzz_scratch_new("idx");
    gzip_path = fuzz_scratch_new("idx-gz");
    return 0;
}

/* gzip (not zlib) framing in memory, so the reader sees a real .gz file. */
static size_t gzip_bytes(const uint8_t *data, size_t size)
{
    size_t need = size + size / 1000 + 64;
    if (need > gz_cap) {
        free(gz_buf);
        gz_cap = need * 2;
        gz_buf = malloc(gz_cap);
        FUZZ_CHECK(gz_buf != NULL, "out of memory");
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    FUZZ_CHECK(deflateInit2(&z, 6, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) == Z_OK,
               "deflateInit2");
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = gz_buf;
    z.avail_out = (uInt)gz_cap;
    FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
    size_t out = z.total_out;
    deflateEnd(&z);
    return out;
}

/* One read, with the contract checked whatever the outcome. `payload` is the
 * decompressed content when the harness knows it (else NULL). */
static void read_and_check(const char *path, int expect_dims, const uint8_t *payload,
                           size_t payload_len)
{
    idx_array a;
    char err[ERR_LEN] = "";
    memset(&a, 0xA5, sizeof a);
    int rc = idx_read(path, expect_dims, &a, err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1, "rc %d", rc);
        FUZZ_CHECK(a.data == NULL && a.size == 0 && a.ndims == 0, "out not emptied on error");
        FUZZ_CHECK(err[0] != '\0' && strstr(err, path) != NULL, "message '%s' does not name the file",
                   err);
        return;
    }
    FUZZ_CHECK(a.ndims >= 1 && a.ndims <= IDX_MAX_DIMS, "ndims %d", a.ndims);
    FUZZ_CHECK(expect_dims == 0 || a.ndims == expect_dims, "ndims %d, expected %d", a.ndims,
               expect_dims);
    FUZZ_CHECK(a.data != NULL, "no data");
    size_t product = 1;
    for (int i = 0; i < a.ndims; i++) {
        FUZZ_CHECK(a.dims[i] != 0, "dimension %d is zero", i);
        product *= a.dims[i];
    }
    FUZZ_CHECK(product == a.size && a.size <= IDX_MAX_BYTES, "size %zu, product %zu", a.size,
               product);
    if (payload) {
        /* The file must be exactly header + payload: the data is its tail. */
        size_t header = 4 + 4 * (size_t)a.ndims;
        FUZZ_CHECK(payload_len == header + a.size, "accepted %zu bytes for header %zu + %zu",
                   payload_len, header, a.size);
        FUZZ_CHECK(memcmp(a.data, payload + header, a.size) == 0, "data differs from the file");
    }
    /* Touch every byte: ASan catches a short allocation. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < a.size; i++)
        sink ^= a.data[i];
    (void)sink;
    idx_free(&a);
    FUZZ_CHECK(a.data == NULL && a.size == 0, "idx_free left data");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int expects[] = {0, 1, 3};
    /* The bytes as a file: plain, or gzip when they start with its magic. */
    int is_gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    fuzz_write_file(plain_path, data, size);
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
        read_and_check(plain_path, expects[i], is_gzip ? NULL : data, size);

    /* The bytes gzipped: the same parser behind zlib. A decompressed stream
     * that itself starts with the gzip magic is not re-decoded, so the
     * payload is known exactly. */
    size_t gz_len = gzip_bytes(data, size);
    fuzz_write_file(gzip_path, gz_buf, gz_len);
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
        read_and_check(gzip_path, expects[i], data, size);

    /* The gzip cut short by 1..16 bytes (the trailer or the last block):
     * never accepted as a whole file. */
    if (size > 0) {
        size_t cut = 1 + data[size - 1] % 16;
        if (cut < gz_len) {
            fuzz_write_file(gzip_path, gz_buf, gz_len - cut);
            idx_array a;
            char err[ERR_LEN] = "";
            int rc = idx_read(gzip_path, 0, &a, err);
            FUZZ_CHECK(rc == -1, "a gzip file cut by %zu bytes was accepted", cut);
        }
    }
    return 0;
}
