/* gen_seeds: writes the seed corpora of the fuzz targets (small valid files
 * made by the project's own writers, and one file per kind of malformation).
 * Usage: gen_seeds CORPUS_DIR REGRESSIONS_DIR   (run by tests/fuzz/gen-seeds.sh) */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <hdf5.h>

#include "checkpoint.h"
#include "err.h"
#include "idx.h"
#include "rng.h"
#include "wire.h"

static const char *root, *regressions;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "gen_seeds: %s: %s\n", what, err);
    exit(1);
}

static void path_of(char *buf, size_t len, const char *target, const char *name)
{
    snprintf(buf, len, "%s/%s/%s", root, target, name);
}

static void put_file(const char *target, const char *name, const void *buf, size_t len)
{
    char path[4096];
    path_of(path, sizeof path, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0)
        die(path, strerror(errno));
}

static unsigned char *get_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, strerror(errno));
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *buf = malloc(*len ? *len : 1);
    if (!buf || fread(buf, 1, *len, f) != *len)
        die(path, "read failed");
    fclose(f);
    return buf;
}

/* ---- idx ---------------------------------------------------------------- */

static void idx_seed(const char *name, int ndims, const uint32_t *dims, int gzip)
{
    idx_array a = {.ndims = ndims, .size = 1};
    for (int i = 0; i < ndims; i++) {
        a.dims[i] = dims[i];
        a.size *= dims[i];
    }
    a.data = malloc(a.size);
    for (size_t i = 0; i < a.size; i++)
        a.data[i] = (uint8_t)(ndims == 1 ? i % 10 : (i * 37) & 0xff);
    char path[4096], err[ERR_LEN];
    path_of(path, sizeof path, "idx", name);
    if (idx_write(path, &a, gzip, err) != 0)
        die(path, err);
    free(a.data);
}

/* A file of the given header bytes followed by `payload` bytes, plain or gzip. */
static void idx_raw(const char *name, const unsigned char *header, size_t hlen, size_t payload,
                    int gzip)
{
    size_t len = hlen + payload;
    unsigned char *buf = calloc(len ? len : 1, 1);
    memcpy(buf, header, hlen);
    for (size_t i = 0; i < payload && i < 256; i++)
        buf[hlen + i] = (unsigned char)i;
    if (!gzip) {
        put_file("idx", name, buf, len);
    } else {
        char path[4096];
        path_of(path, sizeof path, "idx", name);
        gzFile gz = gzopen(path, "wb");
        if (!gz || (len && gzwrite(gz, buf, (unsigned)len) != (int)len) || gzclose(gz) != Z_OK)
            die(path, "gzip write failed");
    }
    free(buf);
}

/* A copy of an existing seed cut to `keep` bytes. */
static void truncated_copy(const char *target, const char *from, const char *name, size_t keep)
{
    char path[4096];
    path_of(path, sizeof path, target, from);
    size_t len;
    unsigned char *buf = get_file(path, &len);
    put_file(target, name, buf, keep < len ? keep : len);
    free(buf);
}

static void idx_seeds(void)
{
    const uint32_t labels[] = {10}, images[] = {2, 4, 4}, matrix[] = {3, 5},
                   four[] = {2, 2, 2, 2};
    idx_seed("labels-10", 1, labels, 0);
    idx_seed("labels-10.gz", 1, labels, 1);
    idx_seed("images-2x4x4", 3, images, 0);
    idx_seed("images-2x4x4.gz", 3, images, 1);
    idx_seed("matrix-3x5", 2, matrix, 0);
    idx_seed("four-dims-2x2x2x2.gz", 4, four, 1);
    truncated_copy("idx", "images-2x4x4", "trunc-payload", 16 + 20);
    truncated_copy("idx", "images-2x4x4", "trunc-header", 10);
    truncated_copy("idx", "images-2x4x4.gz", "trunc-gzip-trailer", 30);
    {
        char path[4096];
        path_of(path, sizeof path, "idx", "images-2x4x4.gz");
        size_t len;
        unsigned char *buf = get_file(path, &len);
        put_file("idx", "trunc-gzip-crc", buf, len - 4);
        buf[len / 2] ^= 0x10; /* a flipped bit in the deflate data */
        put_file("idx", "corrupt-gzip", buf, len);
        free(buf);
    }
    const unsigned char trailing[] = {0, 0, 8, 1, 0, 0, 0, 4};
    idx_raw("trailing-data", trailing, sizeof trailing, 5, 0);
    const unsigned char bad_magic[] = {0, 1, 8, 1, 0, 0, 0, 2};
    idx_raw("bad-magic", bad_magic, sizeof bad_magic, 2, 0);
    const unsigned char float_type[] = {0, 0, 0x0d, 1, 0, 0, 0, 1};
    idx_raw("float-type", float_type, sizeof float_type, 4, 0);
    const unsigned char five_dims[] = {0, 0, 8, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
                                       0, 0, 0, 1, 0, 0, 0, 1};
    idx_raw("five-dims", five_dims, sizeof five_dims, 1, 0);
    const unsigned char zero_dim[] = {0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 0};
    idx_raw("zero-dim", zero_dim, sizeof zero_dim, 0, 0);
    const unsigned char huge[] = {0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28};
    idx_raw("huge-claim.gz", huge, sizeof huge, 10, 1);
    const unsigned char overflow[] = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    idx_raw("overflow-dims", overflow, sizeof overflow, 4, 0);
    idx_raw("empty", NULL, 0, 0, 0);
    /* Just past the reader's first 1 MiB buffer, which then grows once:
     * only gzip keeps such a seed small. (Each costs milliseconds to read,
     * so the corpus has one; the larger case is a regression input.) */
    const unsigned char big[] = {0, 0, 8, 1, 0, 0x10, 0x10, 0};       /* 1 MiB + 4 KiB */
    idx_raw("big-1MiB-4KiB.gz", big, sizeof big, ((size_t)1 << 20) + 4096, 1);
    const unsigned char bigger[] = {0, 0, 8, 2, 0, 0, 0, 3, 0, 0x10, 0, 0}; /* 3 MiB */
    const char *corpus = root;
    root = regressions;
    idx_raw("big-claim-3MiB-holds-1.5MiB.gz", bigger, sizeof bigger, (size_t)3 << 19, 1);
    root = corpus;
}

/* ---- wire --------------------------------------------------------------- */

/* Matches the harness's fixed expectation: upload from participant 3 in
 * epoch 7 of a 100-parameter model, at most 4 entries, gamma 1. */
static wire_header wire_h(uint32_t count)
{
    return (wire_header){.magic = WIRE_MAGIC, .version = WIRE_VERSION, .type = WIRE_UPLOAD,
                         .participant = 3, .epoch = 7, .n = 100, .count = count};
}

/* enc 0: the encoding wire_pack chooses. */
static void wire_seed_as(const char *name, wire_header h, const uint32_t *idx, const float *val,
                         long adjust, wire_encoding enc)
{
    uint8_t buf[1024];
    size_t len = enc ? wire_pack_as(buf, sizeof buf, &h, idx, val, enc)
                     : wire_pack(buf, sizeof buf, &h, idx, val);
    if (!len)
        die(name, "wire_pack");
    put_file("wire", name, buf, (size_t)((long)len + adjust));
}

static void wire_seed(const char *name, wire_header h, const uint32_t *idx, const float *val,
                      long adjust)
{
    wire_seed_as(name, h, idx, val, adjust, 0);
}

/* A message wire_pack would not write: wire_h's header with this n, count
 * and encoding byte, the index section as given, and count values of 0.5. */
static void wire_raw(const char *name, uint32_t n, uint32_t count, uint8_t enc,
                     const uint8_t *section, size_t section_len)
{
    uint8_t buf[1024];
    wire_header h = wire_h(0);
    h.n = n;
    if (wire_pack(buf, sizeof buf, &h, NULL, NULL) != WIRE_HEADER_BYTES ||
        WIRE_HEADER_BYTES + section_len + 4 * (size_t)count > sizeof buf)
        die(name, "wire_pack");
    buf[20] = (uint8_t)count; buf[21] = (uint8_t)(count >> 8);
    buf[22] = (uint8_t)(count >> 16); buf[23] = (uint8_t)(count >> 24);
    buf[24] = enc;
    memcpy(buf + WIRE_HEADER_BYTES, section, section_len);
    uint8_t *v = buf + WIRE_HEADER_BYTES + section_len;
    for (uint32_t i = 0; i < count; i++, v += 4) { /* 0.5f = 0x3F000000 */
        v[0] = v[1] = v[2] = 0;
        v[3] = 0x3F;
    }
    put_file("wire", name, buf, WIRE_HEADER_BYTES + section_len + 4 * (size_t)count);
}

static void wire_seeds(void)
{
    const uint32_t idx[] = {0, 5, 17, 42, 99, 100, 3};
    const float val[] = {0.5f, -0.25f, 1.0f, -1.0f, 0.125f, 0.0f, 0.75f};
    wire_header h;
    /* Valid messages, in the encoding wire_pack picks. */
    wire_seed("upload-count-0", wire_h(0), idx, val, 0);
    wire_seed("upload-count-1", wire_h(1), idx, val, 0);
    h = wire_h(4);
    wire_seed("upload-count-4", h, idx, val, 0);
    h = wire_h(5);
    wire_seed("upload-count-5", h, idx, val, 0);              /* too many for k = 4 */
    h = wire_h(2);
    h.type = WIRE_DOWNLOAD;
    h.participant = WIRE_ANY_PARTICIPANT;
    wire_seed("download-broadcast-2", h, idx, val, 0);
    /* Every encoding, of entries where it is the smallest, and of the same
     * 4 entries in each (the harness's own expectations accept them). */
    uint32_t many[100];
    float many_val[100];
    for (uint32_t i = 0; i < 100; i++) {
        many[i] = i;
        many_val[i] = (float)i / 128 - 0.375f;
    }
    wire_seed("dense-100", wire_h(100), many, many_val, 0);
    uint32_t odd[50], most[97], k = 0;
    for (uint32_t i = 0; i < 50; i++)
        odd[i] = 2 * i + 1;
    for (uint32_t i = 0; i < 100; i++)
        if (i % 33 != 7)
            most[k++] = i;                                    /* 7, 40 and 73 absent */
    wire_seed("bitmap-50", wire_h(50), odd, many_val, 0);
    wire_seed("complement-97", wire_h(97), most, many_val, 0);
    const wire_encoding sparse[] = {WIRE_ENC_DELTA, WIRE_ENC_BITMAP, WIRE_ENC_COMPLEMENT};
    const char *sparse_names[] = {"delta-4", "bitmap-4", "complement-4"};
    for (int e = 0; e < 3; e++)
        wire_seed_as(sparse_names[e], wire_h(4), idx, val, 0, sparse[e]);
    const uint32_t far[] = {200, 200 + 1 + 20000, 200 + 1 + 20000 + 1 + 3000000};
    h = wire_h(3);
    h.n = UINT32_MAX;                                         /* 2-, 3- and 4-byte varints */
    wire_seed("delta-long-varints", h, far, val, 0);
    /* One file per refusal of the header. */
    h = wire_h(2);
    h.magic ^= 1;
    wire_seed("bad-magic", h, idx, val, 0);
    h = wire_h(2);
    h.version = 1;
    wire_seed("bad-version", h, idx, val, 0);
    h = wire_h(2);
    h.type = 7;
    wire_seed("bad-type", h, idx, val, 0);
    h = wire_h(2);
    h.participant = 4;
    wire_seed("bad-sender", h, idx, val, 0);
    h = wire_h(2);
    h.epoch = 6;
    wire_seed("bad-epoch", h, idx, val, 0);
    h = wire_h(2);
    h.n = 101;
    wire_seed("bad-n", h, idx, val, 0);
    wire_seed("truncated-entries", wire_h(3), idx, val, -5);
    wire_seed("bad-length", wire_h(3), idx, val, +3);
    wire_seed("truncated-header", wire_h(0), idx, val, -10);
    wire_seed_as("bitmap-truncated", wire_h(3), idx, val, -1, WIRE_ENC_BITMAP);
    wire_seed_as("complement-bad-length", wire_h(3), idx, val, +2, WIRE_ENC_COMPLEMENT);
    /* And of the index section and the values. */
    const uint8_t out_of_range[] = {5, 94};                  /* 5, then 5 + 1 + 94 = 100 */
    wire_raw("bad-index", 100, 2, WIRE_ENC_DELTA, out_of_range, sizeof out_of_range);
    const uint8_t repeated[] = {5, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}; /* gap - 1 = 2^32 - 1 */
    wire_raw("repeated-index", 100, 2, WIRE_ENC_DELTA, repeated, sizeof repeated);
    const uint8_t decreasing[] = {9, 0xFA, 0xFF, 0xFF, 0xFF, 0x0F}; /* 4 - 9 - 1 */
    wire_raw("decreasing-index", 100, 2, WIRE_ENC_DELTA, decreasing, sizeof decreasing);
    const uint8_t non_minimal[] = {5, 0x81, 0x00};
    wire_raw("varint-not-minimal", 100, 2, WIRE_ENC_DELTA, non_minimal, sizeof non_minimal);
    const uint8_t six_bytes[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    wire_raw("varint-six-bytes", 100, 1, WIRE_ENC_DELTA, six_bytes, sizeof six_bytes);
    const uint8_t beyond_32[] = {0x80, 0x80, 0x80, 0x80, 0x10};
    wire_raw("varint-too-big", 100, 1, WIRE_ENC_DELTA, beyond_32, sizeof beyond_32);
    const uint8_t unfinished[] = {5, 0x80};
    wire_raw("varint-unfinished", 100, 2, WIRE_ENC_DELTA, unfinished, sizeof unfinished);
    const uint8_t none[1] = {0};
    wire_raw("unknown-encoding", 100, 0, 0, none, 0);
    wire_raw("encoding-5", 100, 1, 5, none, 1);
    uint8_t bitmap[13] = {0x21};                              /* 0 and 5 */
    bitmap[12] = 0x10;                                        /* bit 100: beyond n */
    wire_raw("bitmap-bit-beyond-n", 100, 3, WIRE_ENC_BITMAP, bitmap, sizeof bitmap);
    bitmap[12] = 0;
    wire_raw("bitmap-popcount", 100, 3, WIRE_ENC_BITMAP, bitmap, sizeof bitmap);
    wire_raw("dense-count-not-n", 100, 4, WIRE_ENC_DENSE, none, 0);
    uint8_t absent[96] = {0};                                 /* 0..95 absent: 96..99 present */
    absent[95] = 5;                                           /* ... but the last one is 100 */
    wire_raw("complement-bad-index", 100, 4, WIRE_ENC_COMPLEMENT, absent, sizeof absent);
    absent[95] = 0xFF;
    wire_raw("complement-unfinished", 100, 4, WIRE_ENC_COMPLEMENT, absent, sizeof absent);
    const float nan_val[] = {0.5f, NAN}, inf_val[] = {-INFINITY, 0.5f}, big[] = {0.5f, 1.5f};
    wire_seed("nan-value", wire_h(2), idx, nan_val, 0);
    wire_seed("inf-value", wire_h(2), idx, inf_val, 0);
    wire_seed("beyond-gamma", wire_h(2), idx, big, 0);
    wire_seed_as("bitmap-nan-value", wire_h(2), idx, nan_val, 0, WIRE_ENC_BITMAP);
    /* A count whose size overflows 32 bits: written by hand (wire_pack
     * would need the entries). */
    uint8_t huge[WIRE_HEADER_BYTES + 8];
    h = wire_h(1);
    wire_pack(huge, sizeof huge, &h, idx, val);
    memset(huge + 20, 0xff, 4);
    put_file("wire", "huge-count", huge, sizeof huge);
}

/* ---- checkpoint ----------------------------------------------------------- */

static void ckpt_seed(const char *name, uint64_t n, uint32_t parts, int residual)
{
    ckpt_state s;
    if (ckpt_state_alloc(&s, n, parts, residual) != 0)
        die(name, "ckpt_state_alloc");
    s.epoch = 2;
    s.seed = 1;
    s.config = strdup("model = mlp\nlr = 0.05\n");
    s.model = strdup("d4,d2");
    for (size_t i = 0; i < n; i++) {
        s.server_params[i] = 0.01f * (float)i;
        s.server_stat[i] = (double)(i % 3);
    }
    for (size_t i = 0; i < n * parts; i++) {
        s.part_params[i] = -0.02f * (float)i;
        if (residual)
            s.part_residual[i] = 0.001f * (float)i;
    }
    rng_t g;
    for (int i = 0; i < 2; i++) {
        rng_init(&g, 1, RNG_STREAM_SERVER + (uint64_t)i);
        rng_u32(&g);
        rng_save(&g, s.server_rng[i]);
    }
    for (uint32_t p = 0; p < parts; p++) {
        rng_init(&g, 1, rng_participant_stream(p));
        for (uint32_t k = 0; k <= p; k++)
            rng_u32(&g);
        rng_save(&g, s.part_rng + (size_t)p * RNG_STATE_WORDS);
        s.part_epsilon[p] = 0.5 * p;
    }
    s.counters[0] = 6;
    s.counters[1] = 1;
    char path[4096], err[ERR_LEN];
    path_of(path, sizeof path, "checkpoint", name);
    if (ckpt_save(path, &s, err) != 0)
        die(path, err);
    ckpt_state_free(&s);
}

/* A copy of a checkpoint in the oldest HDF5 format (superblock 0, v1 object
 * headers and B-trees): nothing in its metadata is checksummed, so mutations
 * reach HDF5's parsers instead of failing the 1.10 format's checksums. */
static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *dst)
{
    (void)info;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a), sp = H5Aget_space(a);
    size_t bytes = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(sp);
    void *buf = calloc(bytes ? bytes : 1, 1);
    hid_t b = H5Acreate2(*(hid_t *)dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = (a < 0 || b < 0 || H5Aread(a, t, buf) < 0 || H5Awrite(b, t, buf) < 0) ? -1 : 0;
    free(buf);
    H5Aclose(b);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* File creation properties with the smallest B-tree nodes (superblock 1):
 * the default ones make a few-kilobyte seed of a tiny checkpoint 20 KB. */
static hid_t small_btrees(void)
{
    static hid_t fcpl = -1;
    if (fcpl < 0) {
        fcpl = H5Pcreate(H5P_FILE_CREATE);
        if (fcpl < 0 || H5Pset_istore_k(fcpl, 1) < 0 || H5Pset_sym_k(fcpl, 1, 1) < 0)
            die("H5Pcreate", "file creation properties");
    }
    return fcpl;
}

/* Groups without modification times, so regenerated seeds are identical. */
static void make_group(hid_t f, const char *path)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0)
        die(path, "H5Gcreate2");
    H5Gclose(g);
    H5Pclose(gcpl);
}

static void legacy_copy(const char *from, const char *name)
{
    static const char *const dsets[] = {
        "/server/params", "/server/stat", "/server/rng", "/server/counters",
        "/participants/params", "/participants/residual", "/participants/rng",
        "/participants/epsilon"};
    char src[4096], dst[4096];
    path_of(src, sizeof src, "checkpoint", from);
    path_of(dst, sizeof dst, "checkpoint", name);
    hid_t in = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t out = H5Fcreate(dst, H5F_ACC_TRUNC, small_btrees(), H5P_DEFAULT); /* earliest format */
    if (in < 0 || out < 0)
        die(dst, "H5Fopen/H5Fcreate");
    hid_t root_in = H5Gopen2(in, "/", H5P_DEFAULT), root_out = H5Gopen2(out, "/", H5P_DEFAULT);
    if (H5Aiterate2(root_in, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, copy_attr, &root_out) < 0)
        die(dst, "copying the attributes");
    H5Gclose(root_in);
    H5Gclose(root_out);
    make_group(out, "/server");
    make_group(out, "/participants");
    for (size_t i = 0; i < sizeof dsets / sizeof dsets[0]; i++) {
        if (H5Lexists(in, dsets[i], H5P_DEFAULT) <= 0)
            continue;
        hid_t d = H5Dopen2(in, dsets[i], H5P_DEFAULT), t = H5Dget_type(d),
              sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
        size_t bytes = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(sp);
        void *buf = malloc(bytes);
        H5Pset_obj_track_times(dcpl, 0);
        hid_t e = H5Dcreate2(out, dsets[i], t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0 || e < 0 || H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ||
            H5Dwrite(e, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            die(dst, dsets[i]);
        free(buf);
        H5Dclose(e);
        H5Pclose(dcpl);
        H5Sclose(sp);
        H5Tclose(t);
        H5Dclose(d);
    }
    H5Fclose(in);
    if (H5Fclose(out) < 0)
        die(dst, "H5Fclose");
}

/* Well-formed HDF5 files, each with one thing a checkpoint must not have,
 * built from a valid state in the oldest format. Byte mutations of a valid
 * 1.10-format file mostly fail its metadata checksums; these start the
 * fuzzer at each refusal of ckpt_load instead. */
typedef enum {
    BAD_NONE, BAD_NO_FORMAT, BAD_FORMAT_TEXT, BAD_FORMAT_INT, BAD_FORMAT_VLEN, BAD_VERSION,
    BAD_VERSION_NEGATIVE, BAD_EPOCH_NEGATIVE, BAD_CONFIG_ARRAY, BAD_MODEL_VLEN,
    BAD_NO_STAT, BAD_PARAMS_F64, BAD_RNG_SIGNED, BAD_EPSILON_RANK2, BAD_STAT_SHAPE,
    BAD_NO_FLETCHER, BAD_CONTIGUOUS, BAD_MISSING_CHUNK, BAD_NAN, BAD_RNG_STATE,
    BAD_EPSILON_NEGATIVE, BAD_N_ZERO, BAD_KINDS
} bad_kind;

static const char *const bad_names[BAD_KINDS] = {
    "legacy-variant-ok", "no-format-attr", "format-other", "format-integer",
    "format-vlen-ok", "version-2", "version-negative", "epoch-negative", "config-2-elements",
    "model-vlen-ok", "no-server-stat", "params-float64", "rng-int64", "epsilon-rank-2",
    "stat-wrong-length", "no-fletcher32", "contiguous", "missing-chunk", "nan-param",
    "rng-used-7", "epsilon-negative", "n-zero"};

static void put_attr(hid_t loc, const char *name, hid_t type, hsize_t count, const void *v)
{
    hid_t sp = count ? H5Screate_simple(1, &count, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, v) < 0)
        die(name, "attribute");
    H5Aclose(a);
    H5Sclose(sp);
}

static void put_string_attr(hid_t loc, const char *name, const char *v, int vlen)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, vlen ? H5T_VARIABLE : strlen(v) + 1);
    put_attr(loc, name, t, 0, vlen ? (const void *)&v : v);
    H5Tclose(t);
}

static void put_dataset(hid_t f, const char *path, hid_t type, int rank, const hsize_t *dims,
                        const void *v, bad_kind bad)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hsize_t chunk[2] = {dims[0] ? dims[0] : 1, rank > 1 && dims[1] ? dims[1] : 1};
    int first = strcmp(path, "/server/params") == 0;
    if (bad == BAD_MISSING_CHUNK && first)
        chunk[0] = dims[0] > 1 ? dims[0] / 2 : 1;
    if (!(bad == BAD_CONTIGUOUS && first)) {
        H5Pset_chunk(dcpl, rank, chunk);
        if (!(bad == BAD_NO_FLETCHER && first))
            H5Pset_fletcher32(dcpl);
    }
    hid_t d = H5Dcreate2(f, path, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0)
        die(path, "H5Dcreate2");
    if (bad == BAD_MISSING_CHUNK && first) {
        /* Only the first chunk is written: the rest would read as zeros. */
        hsize_t start[1] = {0}, count[1] = {chunk[0]};
        hid_t mem = H5Screate_simple(1, count, NULL);
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL);
        if (H5Dwrite(d, type, mem, sp, H5P_DEFAULT, v) < 0)
            die(path, "H5Dwrite (partial)");
        H5Sclose(mem);
    } else if (dims[0] && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        die(path, "H5Dwrite");
    }
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

static void variant_seed(bad_kind bad)
{
    enum { N_PARAMS = 4, PARTS = 2 };
    float params[N_PARAMS] = {0.5f, -0.25f, 1.0f, 0.125f}, pparams[PARTS][N_PARAMS] = {{0}};
    double params64[N_PARAMS] = {0.5, -0.25, 1.0, 0.125};
    double stat[N_PARAMS + 1] = {1, 0, 2, 1, 0}, eps[PARTS] = {0.5, 1.5};
    uint64_t srng[2][RNG_STATE_WORDS], prng[PARTS][RNG_STATE_WORDS], counters[2] = {3, 1};
    rng_t g;
    for (int i = 0; i < 2; i++) {
        rng_init(&g, 1, RNG_STREAM_SERVER + (uint64_t)i);
        rng_u32(&g);
        rng_save(&g, srng[i]);
    }
    for (int p = 0; p < PARTS; p++) {
        rng_init(&g, 1, rng_participant_stream((uint32_t)p));
        rng_u32(&g);
        rng_save(&g, prng[p]);
    }
    if (bad == BAD_NAN)
        params[2] = NAN;
    if (bad == BAD_RNG_STATE)
        prng[1][3] = 7;
    if (bad == BAD_EPSILON_NEGATIVE)
        eps[0] = -1;

    char path[4096];
    path_of(path, sizeof path, "checkpoint", bad_names[bad]);
    /* A variable-length string brings a 4 KiB global heap: those two are
     * written in the 1.10 format, which is smaller, to stay under 10 KB. */
    int vlen = bad == BAD_FORMAT_VLEN || bad == BAD_MODEL_VLEN;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (vlen)
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, vlen ? H5P_DEFAULT : small_btrees(), fapl);
    H5Pclose(fapl);
    if (f < 0)
        die(path, "H5Fcreate");
    int32_t version = bad == BAD_VERSION ? 2 : bad == BAD_VERSION_NEGATIVE ? -1 : CKPT_VERSION;
    int64_t epoch_neg = -5;
    uint64_t epoch = 2, seed = 1;
    if (bad == BAD_FORMAT_INT)
        put_attr(f, "format", H5T_STD_I32LE, 0, &version);
    else if (bad != BAD_NO_FORMAT)
        put_string_attr(f, "format", bad == BAD_FORMAT_TEXT ? "hdf5-something" : CKPT_FORMAT,
                        bad == BAD_FORMAT_VLEN);
    put_attr(f, "version", H5T_STD_I32LE, 0, &version);
    if (bad == BAD_EPOCH_NEGATIVE)
        put_attr(f, "epoch", H5T_STD_I64LE, 0, &epoch_neg);
    else
        put_attr(f, "epoch", H5T_STD_U64LE, 0, &epoch);
    put_attr(f, "seed", H5T_STD_U64LE, 0, &seed);
    if (bad == BAD_CONFIG_ARRAY) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 4);
        put_attr(f, "config", t, 2, "ab\0\0cd\0\0");
        H5Tclose(t);
    } else {
        put_string_attr(f, "config", "lr = 0.05\n", 0);
    }
    put_string_attr(f, "model", "d4", bad == BAD_MODEL_VLEN);

    make_group(f, "/server");
    make_group(f, "/participants");
    hsize_t n = bad == BAD_N_ZERO ? 0 : N_PARAMS, d_n[1] = {n}, d_stat[1] = {n};
    hsize_t d_rng[2] = {2, RNG_STATE_WORDS}, d_two[1] = {2}, d_pn[2] = {PARTS, n};
    hsize_t d_prng[2] = {PARTS, RNG_STATE_WORDS}, d_eps[2] = {PARTS, 1};
    if (bad == BAD_STAT_SHAPE)
        d_stat[0] = n + 1;
    if (bad == BAD_PARAMS_F64)
        put_dataset(f, "/server/params", H5T_IEEE_F64LE, 1, d_n, params64, bad);
    else
        put_dataset(f, "/server/params", H5T_IEEE_F32LE, 1, d_n, params, bad);
    if (bad != BAD_NO_STAT)
        put_dataset(f, "/server/stat", H5T_IEEE_F64LE, 1, d_stat, stat, bad);
    put_dataset(f, "/server/rng", bad == BAD_RNG_SIGNED ? H5T_STD_I64LE : H5T_STD_U64LE, 2, d_rng,
                srng, bad);
    put_dataset(f, "/server/counters", H5T_STD_U64LE, 1, d_two, counters, bad);
    put_dataset(f, "/participants/params", H5T_IEEE_F32LE, 2, d_pn, pparams, bad);
    put_dataset(f, "/participants/rng", H5T_STD_U64LE, 2, d_prng, prng, bad);
    put_dataset(f, "/participants/epsilon", H5T_IEEE_F64LE, bad == BAD_EPSILON_RANK2 ? 2 : 1,
                d_eps, eps, bad);
    if (H5Fclose(f) < 0)
        die(path, "H5Fclose");
}

static void checkpoint_seeds(void)
{
    ckpt_seed("n3-N1.h5", 3, 1, 0);
    ckpt_seed("n7-N2-residual.h5", 7, 2, 1);
    ckpt_seed("n20-N3-residual.h5", 20, 3, 1);
    char path[4096];
    size_t len;
    path_of(path, sizeof path, "checkpoint", "n3-N1.h5");
    free(get_file(path, &len));
    truncated_copy("checkpoint", "n3-N1.h5", "trunc-half", len / 2);
    truncated_copy("checkpoint", "n3-N1.h5", "trunc-superblock", 40);
    path_of(path, sizeof path, "checkpoint", "n7-N2-residual.h5");
    free(get_file(path, &len));
    truncated_copy("checkpoint", "n7-N2-residual.h5", "trunc-last-byte", len - 1);
    legacy_copy("n3-N1.h5", "legacy-n3-N1.h5");
    legacy_copy("n7-N2-residual.h5", "legacy-n7-N2-residual.h5");
    for (int b = 0; b < BAD_KINDS; b++)
        variant_seed((bad_kind)b);
}

/* ---- config ------------------------------------------------------------- */

static void config_seeds(void)
{
    /* One argument per line (the harness also splits on NUL). */
    static const char *const lines[][2] = {
        {"empty", ""},
        {"help", "--help\n"},
        {"defaults-explicit", "--dataset\nfashion-mnist\n--participants\n30\n--theta-u\n0.1\n"
                              "--theta-d\n1\n--lr\n0.05\n--batch\n32\n--epochs\n20\n"},
        {"mnist", "--dataset\nmnist\n--data-dir\n/tmp/mnist\n--eval-size\n1000\n"},
        {"centralized", "--mode\ncentralized\n--participants\n1\n--partition\niid\n"
                        "--shard-size\n0\n"},
        {"standalone-ckpt", "--mode\nstandalone\n--checkpoint\nrun.h5\n--checkpoint-every\n5\n"},
        {"resume", "--epochs\n40\n--resume\nrun.h5\n--checkpoint\nrun.h5\n--metrics\nm.csv\n"},
        {"dirichlet", "--partition\ndirichlet\n--alpha\n0.3\n--schedule\nrandom\n--seed\n7\n"},
        {"svt", "--select\nsvt\n--dp-epsilon\n10000\n--gamma\n0.01\n--tau\n0.0001\n"
                "--theta-u\n0.01\n--dp-max-epsilon\n200000\n"},
        {"protocol", "--select\nrandom\n--tau\n1e-4\n--download\nrandom\n--stat-decay\n0.9\n"
                     "--residual\n--schedule\nsync\n--quiet\n"},
        {"cnn", "--model\ncnn\n--schedule\nasync\n--download\nall\n"},
        {"layers", "--model\npad2,c5x32-tanh-p3,c5x64-tanh-p2,d200-tanh,d10\n"},
        {"equals-form", "--lr=0.2\n--batch=1\n--gamma=inf\n"},
        {"nul-separated", "--lr\0000.1\0--epochs\0003"},
        {"bad-number", "--lr\nabc\n"},
        {"bad-range", "--theta-u\n1.5\n"},
        {"bad-choice", "--schedule\nsometimes\n"},
        {"nan", "--alpha\nnan\n"},
        {"missing-value", "--epochs\n"},
        {"unknown-long", "--frobnicate\n"},
        {"unknown-short", "-x\n"},
        {"ambiguous", "--d\nx\n"},
        {"flag-with-value", "--quiet=1\n"},
        {"stray-argument", "extra\n"},
        {"svt-no-epsilon", "--select\nsvt\n--gamma\n1\n"},
        {"every-without-ckpt", "--checkpoint-every\n3\n"},
        {"centralized-ckpt", "--mode\ncentralized\n--checkpoint\nx.h5\n"},
        {"dp-without-svt", "--dp-epsilon\n1\n"},
        {"seed-overflow", "--seed\n99999999999999999999\n"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        size_t len = strlen(lines[i][1]);
        if (strcmp(lines[i][0], "nul-separated") == 0)
            len = sizeof "--lr\0000.1\0--epochs\0003" - 1;
        put_file("config", lines[i][0], lines[i][1], len);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_seeds CORPUS_DIR REGRESSIONS_DIR\n");
        return 2;
    }
    root = argv[1];
    regressions = argv[2];
    const char *targets[] = {"idx", "wire", "checkpoint", "config"};
    for (int i = 0; i < 8; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", i < 4 ? root : regressions, targets[i % 4]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            die(path, strerror(errno));
    }
    idx_seeds();
    wire_seeds();
    checkpoint_seeds();
    config_seeds();
    return 0;
}
