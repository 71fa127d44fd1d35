/* h5data: data sets in HDF5 files (the layout h5py and any Python pipeline
 * can write), read as untrusted input, and written by the data tools.
 *
 * Layout of a file:
 *   /train/x   N x D, N x H x W (grey) or N x C x H x W; float32 or uint8.
 *              A pixel is the stored value v as is (float32) or v / 255.0f
 *              (uint8: the IDX reader's pixels, bit for bit); when x has a
 *              `scale` attribute (one number of any numeric type, positive
 *              and finite), it is (float)(v * scale) in double instead, for
 *              float32 and uint8 alike.
 *   /train/y   N integer labels (any HDF5 integer type, 8 to 64 bits,
 *              either sign and byte order), a vector: not N x 1
 *   /test/x, /test/y   the same for the test set
 *   attribute `classes` on the root group (an integer, 2 to
 *              DATASET_MAX_CLASSES): the number of classes; without it,
 *              the largest label + 1 of the group read.
 * An N x D set loads as channels 1, rows 1, cols D; N x H x W as channels 1.
 * A file may hold only one of the groups (a site's file has only /train).
 * Any HDF5 format version loads (h5py writes the oldest by default);
 * compact, contiguous or chunked storage with any filter HDF5 has. */
#ifndef DSSGD_H5DATA_H
#define DSSGD_H5DATA_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* The largest set in memory: N x (D x 4 + 1) bytes (x as floats, y as
 * bytes), 16 GiB. */
#define H5DATA_MAX_BYTES ((size_t)16 << 30)

/* Loads group `group` ("train" or "test") of the file at path into out:
 * channels, rows, cols, dim, count, x, y, and classes (the `classes`
 * attribute, else the largest label + 1). Refuses, with a message that names
 * the file and the dataset (e.g. "site-3.h5: /train/x: ..."): a missing
 * group or dataset; x of another type than float32 or uint8, of rank other
 * than 2, 3 or 4, or with a zero dimension; y not an integer type, not of
 * rank 1, or of another length than x; no examples; a label below 0, or at
 * or above `classes` (or above DATASET_MAX_CLASSES - 1); a `classes`
 * attribute that is not an integer in [2, DATASET_MAX_CLASSES]; fewer than
 * 2 classes in all; a `scale` that is not a positive finite number; NaN or
 * infinite pixels (after scaling); a set larger than H5DATA_MAX_BYTES. And,
 * so that the reader touches only this file and never allocates for data
 * the file does not hold: x or y reached through a soft or external link,
 * with raw data in other files (external storage, virtual datasets), never
 * written or with unwritten chunks, or storing another number of bytes than
 * its shape needs (a damaged file). Sizes are checked from the headers
 * alone, before anything is allocated.
 *
 * The file is untrusted: HDF5 parses it only in a forked child process, with
 * a time limit (60 s plus 10 s per 100 MB of file, or the environment
 * variable DSSGD_DATA_PARSE_TIMEOUT, whole seconds 1 to 604800), as
 * ckpt_load does; a child that crashes or runs out of time gives a refusal
 * that says so. Safe on an MPI rank (the child never calls MPI). On error
 * *out is zeroed. */
int h5data_load(const char *path, const char *group, dataset_t *out, char *err);

/* Writes a data file: /train from train and /test from test (either may be
 * NULL, not both), the root attribute `classes` (train's, else test's: they
 * must agree when both are given). x is written as N x C x H x W, or as
 * N x D when channels and rows are 1. With as_uint8, x is stored as bytes
 * round(x * 255) (exact for sets read from IDX or uint8 files; refused if a
 * pixel is outside [0, 1]); otherwise as float32. Datasets are chunked and
 * deflate-compressed, in the HDF5 1.10 format (checksummed metadata; HDF5
 * 1.10 or later and h5py read it); no `scale` is written. Refused, naming
 * the file and the set: what h5data_load would refuse (no examples, a shape
 * that does not make dim, classes outside [2, DATASET_MAX_CLASSES], a label
 * at or above classes, a pixel that is not finite, a set over
 * H5DATA_MAX_BYTES). Written to "<path>.tmp.<pid>", fsynced and renamed
 * over path (then the directory fsynced), so a crash never leaves a partial
 * file under path; a failed write removes the temporary file and leaves
 * path as it was. */
int h5data_write(const char *path, const dataset_t *train, const dataset_t *test,
                 int as_uint8, char *err);

/* What a run records of each data file it read: its size and the SHA-256
 * of its bytes, so that a resume can refuse a file that changed. */
typedef struct {
    uint64_t size;
    uint8_t sha256[32];
} h5data_digest;

/* Reads the whole file at path (plain reads, no HDF5) into *out. -1 with a
 * message naming the file if it cannot be read. */
int h5data_digest_file(const char *path, h5data_digest *out, char *err);

/* The digest as 64 lowercase hex digits and a NUL. */
void h5data_digest_hex(const h5data_digest *d, char hex[65]);

/* For tests and the fuzzer: h5data_load's reading, checks and messages in
 * this process, so a file that crashes HDF5 crashes the caller (the fuzzer
 * must see HDF5's crashes; h5data_load's child calls it). Tests make the
 * child crash or hang through guard_test_child_hook (guard.h). */
int h5data_load_unguarded(const char *path, const char *group, dataset_t *out, char *err);

#endif
