/* test_idx: the IDX reader and writer: round trips, plain and gzip, and every
 * way a file can be malformed, each rejected with a message naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "err.h"
#include "idx.h"
#include "test_util.h"

/* One directory per run, made by the group setup and removed by its teardown. */
static char tmpdir[TU_TMPDIR_CAP];

static void path_in_tmp(char *buf, size_t len, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < len);
}

/* gzip bytes as they are: lets a test compress a hostile header. */
static void write_gzip(const char *path, const void *buf, size_t len)
{
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (len > 0)
        assert_int_equal(gzwrite(gz, buf, (unsigned)len), (int)len);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* An array with the given dims and a payload that differs from byte to byte
 * (so a misplaced byte shows), yet compresses (so gzip uses real blocks). */
static idx_array make_array(int ndims, const uint32_t *dims)
{
    idx_array a = { .ndims = ndims, .size = 1 };
    for (int i = 0; i < ndims; i++) {
        a.dims[i] = dims[i];
        a.size *= dims[i];
    }
    a.data = malloc(a.size);
    assert_non_null(a.data);
    for (size_t i = 0; i < a.size; i++)
        a.data[i] = (uint8_t)((i * 7 + i / 256) % 251);
    return a;
}

/* Header bytes: 00 00 type ndims, then big-endian dims. Returns the length. */
static size_t make_header(unsigned char *h, int type, int ndims, const uint32_t *dims)
{
    h[0] = 0;
    h[1] = 0;
    h[2] = (unsigned char)type;
    h[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++) {
        h[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        h[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        h[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        h[7 + 4 * i] = (unsigned char)dims[i];
    }
    return 4 + 4 * (size_t)ndims;
}

/* The read fails, the message names the file and contains `phrase`, and
 * `out` (filled with junk beforehand) comes back empty. */
static void assert_read_fails(const char *path, int expect_dims, const char *phrase)
{
    idx_array out;
    memset(&out, 0xAB, sizeof out);
    char err[ERR_LEN] = "";
    assert_int_equal(idx_read(path, expect_dims, &out, err), -1);
    if (!strstr(err, path) || !strstr(err, phrase))
        fail_msg("message \"%s\" should name \"%s\" and contain \"%s\"", err, path, phrase);
    if (strstr(err, "<fd:"))
        fail_msg("message \"%s\" names zlib's descriptor, not the file", err);
    assert_null(out.data);
    assert_int_equal(out.ndims, 0);
    assert_int_equal(out.size, 0);
}

static void assert_round_trip(const char *name, int ndims, const uint32_t *dims, int gzip)
{
    char path[256];
    path_in_tmp(path, sizeof path, name);
    idx_array a = make_array(ndims, dims);
    char err[ERR_LEN] = "";
    assert_int_equal(idx_write(path, &a, gzip, err), 0);

    idx_array b;
    if (idx_read(path, ndims, &b, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(b.ndims, ndims);
    for (int i = 0; i < ndims; i++)
        assert_int_equal(b.dims[i], dims[i]);
    assert_int_equal(b.size, a.size);
    assert_memory_equal(b.data, a.data, a.size);

    /* The on-disk form is what was asked for: gzip magic or the IDX magic. */
    size_t len;
    unsigned char *raw = tu_read_file(path, &len);
    if (gzip)
        assert_true(raw[0] == 0x1f && raw[1] == 0x8b);
    else
        assert_int_equal(len, 4 + 4 * (size_t)ndims + a.size);
    free(raw);
    idx_free(&a);
    idx_free(&b);
}

static const uint32_t label_dims[1] = { 1000 };
static const uint32_t image_dims[3] = { 100, 28, 28 };

static void test_round_trip_labels_plain(void **state)
{
    (void)state;
    assert_round_trip("labels", 1, label_dims, 0);
}

static void test_round_trip_labels_gzip(void **state)
{
    (void)state;
    assert_round_trip("labels.gz", 1, label_dims, 1);
}

static void test_round_trip_images_plain(void **state)
{
    (void)state;
    assert_round_trip("images", 3, image_dims, 0);
}

static void test_round_trip_images_gzip(void **state)
{
    (void)state;
    assert_round_trip("images.gz", 3, image_dims, 1);
}

/* Larger than the reader's first 1 MiB buffer: exercises its growth. */
static void test_round_trip_beyond_first_buffer_gzip(void **state)
{
    (void)state;
    const uint32_t dims[3] = { 3000, 28, 28 };
    assert_round_trip("big.gz", 3, dims, 1);
}

/* The plain writer's bytes are the published layout, checked by hand rather
 * than by our own reader: 00 00 08 ndims, big-endian dims, payload. */
static void test_plain_write_is_standard_idx_layout(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "layout");
    idx_array a = { .ndims = 2, .dims = { 3, 0x0102 }, .size = 3 * 0x0102 };
    a.data = calloc(a.size, 1);
    assert_non_null(a.data);
    a.data[0] = 0x5A;
    assert_int_equal(idx_write(path, &a, 0, NULL), 0);
    size_t len;
    unsigned char *raw = tu_read_file(path, &len);
    const unsigned char expect[13] = { 0, 0, 0x08, 2, 0, 0, 0, 3, 0, 0, 0x01, 0x02, 0x5A };
    assert_int_equal(len, 12 + a.size);
    assert_memory_equal(raw, expect, sizeof expect);
    free(raw);
    idx_free(&a);
}

static void test_expect_dims_zero_accepts_any(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "any");
    idx_array a = make_array(3, image_dims), b;
    assert_int_equal(idx_write(path, &a, 0, NULL), 0);
    assert_int_equal(idx_read(path, 0, &b, NULL), 0);
    assert_int_equal(b.ndims, 3);
    idx_free(&a);
    idx_free(&b);
}

/* Writes header + `payload` bytes of zeros, plain or gzip, under `name`. */
static void write_crafted(char *path, size_t pathlen, const char *name, int type, int ndims,
                          const uint32_t *dims, size_t payload, int gzip)
{
    path_in_tmp(path, pathlen, name);
    unsigned char h[4 + 4 * 8];
    size_t hlen = make_header(h, type, ndims, dims);
    unsigned char *buf = calloc(hlen + payload + 1, 1);
    assert_non_null(buf);
    memcpy(buf, h, hlen);
    if (gzip)
        write_gzip(path, buf, hlen + payload);
    else
        tu_write_file(path, buf, hlen + payload);
    free(buf);
}

static void test_rejects_bad_magic(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "magic");
    const unsigned char bytes[9] = { 0x01, 0x00, 0x08, 0x01, 0, 0, 0, 1, 7 };
    tu_write_file(path, bytes, sizeof bytes);
    assert_read_fails(path, 0, "bad magic (expected 00 00 08 xx, found 01 00 08 01)");
}

static void test_rejects_float_element_type(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "float", 0x0D, 1, label_dims, 4 * label_dims[0], 0);
    assert_read_fails(path, 1, "unsupported element type 0x0d");
}

static void test_rejects_zero_ndims(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "ndims0", 0x08, 0, NULL, 1, 0);
    assert_read_fails(path, 0, "dimensions 0");
}

static void test_rejects_five_ndims(void **state)
{
    (void)state;
    char path[256];
    const uint32_t dims[5] = { 1, 1, 1, 1, 1 };
    write_crafted(path, sizeof path, "ndims5", 0x08, 5, dims, 1, 0);
    assert_read_fails(path, 0, "dimensions 5");
}

static void test_rejects_unexpected_ndims(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "labels-as-images", 0x08, 1, label_dims, label_dims[0], 0);
    assert_read_fails(path, 3, "expected 3 dimensions, found 1");
}

static void test_rejects_zero_dimension(void **state)
{
    (void)state;
    char path[256];
    const uint32_t dims[3] = { 10, 0, 28 };
    write_crafted(path, sizeof path, "zero-dim", 0x08, 3, dims, 0, 0);
    assert_read_fails(path, 3, "dimension 1 is zero");
}

/* 65535^3 bytes is far above IDX_MAX_BYTES but fits in size_t. */
static void test_rejects_payload_over_limit(void **state)
{
    (void)state;
    char path[256];
    const uint32_t dims[3] = { 65535, 65535, 65535 };
    write_crafted(path, sizeof path, "over-limit", 0x08, 3, dims, 16, 0);
    assert_read_fails(path, 3, "too large");
}

/* 0xFFFFFFFF^2 (and ^4) would wrap a 64-bit (and 32-bit) size_t. */
static void test_rejects_dims_product_overflow(void **state)
{
    (void)state;
    char path[256];
    const uint32_t dims[4] = { 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu };
    write_crafted(path, sizeof path, "overflow2", 0x08, 2, dims, 16, 0);
    assert_read_fails(path, 2, "too large");
    write_crafted(path, sizeof path, "overflow4.gz", 0x08, 4, dims, 16, 1);
    assert_read_fails(path, 4, "too large");
}

/* A gzip file whose header claims IDX_MAX_BYTES (the largest allowed) but
 * holds 10 bytes: reported as truncation, in a child whose address space is
 * capped at 512 MiB above its current size, so allocating the claimed 2 GiB
 * up front would fail with "out of memory" instead. */
static void test_huge_claim_in_short_gzip_fails_without_huge_allocation(void **state)
{
    (void)state;
    char path[256];
    const uint32_t dims[1] = { (uint32_t)IDX_MAX_BYTES };
    write_crafted(path, sizeof path, "huge-claim.gz", 0x08, 1, dims, 10, 1);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f && fscanf(f, "%ld", &pages) == 1) {
            rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)512 << 20);
            struct rlimit rl = { cap, cap };
            setrlimit(RLIMIT_AS, &rl);
        }
        if (f)
            fclose(f);
        idx_array out;
        char err[ERR_LEN] = "";
        int rc = idx_read(path, 1, &out, err);
        int ok = rc == -1 && out.data == NULL &&
                 strstr(err, "truncated: expected 2147483648 payload bytes, found 10");
        if (!ok)
            fprintf(stderr, "child: rc %d, message \"%s\"\n", rc, err);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_rejects_header_cut_in_magic(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "header3");
    const unsigned char bytes[3] = { 0, 0, 0x08 };
    tu_write_file(path, bytes, sizeof bytes);
    assert_read_fails(path, 0, "truncated header: expected 4 bytes, found 3");
}

static void test_rejects_header_cut_in_dims(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "header10");
    unsigned char h[16];
    make_header(h, 0x08, 3, image_dims);
    tu_write_file(path, h, 10);
    assert_read_fails(path, 3, "truncated header: expected 16 bytes, found 10");
}

static void test_rejects_truncated_payload_plain(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "short", 0x08, 3, image_dims, 100 * 28 * 28 - 1, 0);
    assert_read_fails(path, 3, "truncated: expected 78400 payload bytes, found 78399");
}

/* A complete, valid gzip stream whose content is one byte short. */
static void test_rejects_truncated_payload_gzip(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "short.gz", 0x08, 3, image_dims, 100 * 28 * 28 - 1, 1);
    assert_read_fails(path, 3, "truncated: expected 78400 payload bytes, found 78399");
}

/* Writes a valid gzip IDX file and returns its compressed bytes. */
static unsigned char *gzip_images(char *path, size_t pathlen, const char *name, size_t *len)
{
    path_in_tmp(path, pathlen, name);
    idx_array a = make_array(3, image_dims);
    assert_int_equal(idx_write(path, &a, 1, NULL), 0);
    idx_free(&a);
    return tu_read_file(path, len);
}

/* A gzip file cut in half, as by an interrupted download. */
static void test_rejects_cut_gzip_stream(void **state)
{
    (void)state;
    char path[256];
    size_t len;
    unsigned char *raw = gzip_images(path, sizeof path, "cut.gz", &len);
    tu_write_file(path, raw, len / 2);
    free(raw);
    assert_read_fails(path, 3, "truncated");
}

/* Only the 8-byte trailer (CRC and length) is missing: the payload decodes
 * in full, but its integrity was never checked. */
static void test_rejects_gzip_without_trailer(void **state)
{
    (void)state;
    char path[256];
    size_t len;
    unsigned char *raw = gzip_images(path, sizeof path, "notrailer.gz", &len);
    tu_write_file(path, raw, len - 8);
    free(raw);
    assert_read_fails(path, 3, "trailer is missing");
}

static void test_rejects_gzip_crc_mismatch(void **state)
{
    (void)state;
    char path[256];
    size_t len;
    unsigned char *raw = gzip_images(path, sizeof path, "crc.gz", &len);
    raw[len - 8] ^= 0xFF; /* first byte of the CRC-32 */
    tu_write_file(path, raw, len);
    free(raw);
    assert_read_fails(path, 3, "incorrect data check");
}

/* Damage in the middle of the compressed data: whatever zlib makes of it
 * (a bad code, a CRC mismatch, a wrong length), the read fails. */
static void test_rejects_corrupt_gzip_stream(void **state)
{
    (void)state;
    char path[256];
    size_t len;
    unsigned char *raw = gzip_images(path, sizeof path, "corrupt.gz", &len);
    for (size_t i = len / 2; i < len / 2 + 8; i++)
        raw[i] ^= 0x5A;
    tu_write_file(path, raw, len);
    free(raw);
    assert_read_fails(path, 3, "");
}

static void test_rejects_trailing_data_plain(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "trailing", 0x08, 1, label_dims, label_dims[0] + 1, 0);
    assert_read_fails(path, 1, "trailing data");
}

static void test_rejects_trailing_data_gzip(void **state)
{
    (void)state;
    char path[256];
    write_crafted(path, sizeof path, "trailing.gz", 0x08, 1, label_dims, label_dims[0] + 1, 1);
    assert_read_fails(path, 1, "trailing data");
}

static void test_rejects_empty_file(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "empty");
    tu_write_file(path, "", 0);
    assert_read_fails(path, 0, "empty file");
}

static void test_rejects_empty_gzip(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "empty.gz");
    write_gzip(path, "", 0);
    assert_read_fails(path, 0, "empty file");
}

static void test_rejects_missing_file(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "no-such-file");
    assert_read_fails(path, 0, "cannot open: No such file or directory");
}

static void test_rejects_directory(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "a-directory");
    assert_int_equal(mkdir(path, 0700), 0);
    assert_read_fails(path, 0, "cannot open: Is a directory");
}

/* A NULL error buffer is allowed: the failure still shows in the result. */
static void test_read_error_without_message_buffer(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "no-such-file-either");
    idx_array out;
    memset(&out, 0xAB, sizeof out);
    assert_int_equal(idx_read(path, 0, &out, NULL), -1);
    assert_null(out.data);
}

static void test_write_rejects_size_not_matching_dims(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "inconsistent");
    uint8_t data[10] = { 0 };
    idx_array a = { .ndims = 1, .dims = { 11 }, .size = 10, .data = data };
    char err[ERR_LEN] = "";
    assert_int_equal(idx_write(path, &a, 0, err), -1);
    assert_non_null(strstr(err, path));
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
}

static void test_write_into_missing_directory_names_file(void **state)
{
    (void)state;
    char path[256];
    path_in_tmp(path, sizeof path, "no-such-dir/labels");
    idx_array a = make_array(1, label_dims);
    for (int gzip = 0; gzip <= 1; gzip++) {
        char err[ERR_LEN] = "";
        assert_int_equal(idx_write(path, &a, gzip, err), -1);
        if (!strstr(err, path) || !strstr(err, "cannot open for writing"))
            fail_msg("unexpected message \"%s\"", err);
    }
    idx_free(&a);
}

static void test_free_accepts_null_and_empty(void **state)
{
    (void)state;
    idx_free(NULL);
    idx_array a = { 0 };
    idx_free(&a);
    idx_array b = make_array(1, label_dims);
    idx_free(&b);
    assert_null(b.data);
    assert_int_equal(b.size, 0);
    assert_int_equal(b.ndims, 0);
}

static int group_setup(void **state)
{
    (void)state;
    return tu_make_tmpdir(tmpdir, "test_idx");
}

static int group_teardown(void **state)
{
    (void)state;
    return tu_remove_tree(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_labels_plain),
        cmocka_unit_test(test_round_trip_labels_gzip),
        cmocka_unit_test(test_round_trip_images_plain),
        cmocka_unit_test(test_round_trip_images_gzip),
        cmocka_unit_test(test_round_trip_beyond_first_buffer_gzip),
        cmocka_unit_test(test_plain_write_is_standard_idx_layout),
        cmocka_unit_test(test_expect_dims_zero_accepts_any),
        cmocka_unit_test(test_rejects_bad_magic),
        cmocka_unit_test(test_rejects_float_element_type),
        cmocka_unit_test(test_rejects_zero_ndims),
        cmocka_unit_test(test_rejects_five_ndims),
        cmocka_unit_test(test_rejects_unexpected_ndims),
        cmocka_unit_test(test_rejects_zero_dimension),
        cmocka_unit_test(test_rejects_payload_over_limit),
        cmocka_unit_test(test_rejects_dims_product_overflow),
        cmocka_unit_test(test_huge_claim_in_short_gzip_fails_without_huge_allocation),
        cmocka_unit_test(test_rejects_header_cut_in_magic),
        cmocka_unit_test(test_rejects_header_cut_in_dims),
        cmocka_unit_test(test_rejects_truncated_payload_plain),
        cmocka_unit_test(test_rejects_truncated_payload_gzip),
        cmocka_unit_test(test_rejects_cut_gzip_stream),
        cmocka_unit_test(test_rejects_gzip_without_trailer),
        cmocka_unit_test(test_rejects_gzip_crc_mismatch),
        cmocka_unit_test(test_rejects_corrupt_gzip_stream),
        cmocka_unit_test(test_rejects_trailing_data_plain),
        cmocka_unit_test(test_rejects_trailing_data_gzip),
        cmocka_unit_test(test_rejects_empty_file),
        cmocka_unit_test(test_rejects_empty_gzip),
        cmocka_unit_test(test_rejects_missing_file),
        cmocka_unit_test(test_rejects_directory),
        cmocka_unit_test(test_read_error_without_message_buffer),
        cmocka_unit_test(test_write_rejects_size_not_matching_dims),
        cmocka_unit_test(test_write_into_missing_directory_names_file),
        cmocka_unit_test(test_free_accepts_null_and_empty),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
