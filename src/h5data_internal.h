/* h5data_internal: what the two files of the h5data module share:
 *   src/h5data.c        HDF5 error messages and row selection, the writer
 *                       (h5data_write) and the file digest;
 *   src/h5data_read.c   the reader with every check (h5data_load_unguarded)
 *                       and the same reader in a forked, time-limited child
 *                       (h5data_load, through guard.c).
 * The HDF5 helpers it shares with the checkpoint module are in src/h5util.h.
 * Other modules use include/h5data.h only. */
#ifndef DSSGD_H5DATA_INTERNAL_H
#define DSSGD_H5DATA_INTERNAL_H

#include <hdf5.h>

#include "h5data.h"
#include "h5util.h"

/* Elements per block when x or y is read or written a slab of rows at a
 * time: bounds the conversion buffers whatever the set's size. */
#define H5DATA_BLOCK_ELEMS ((size_t)1 << 22)

/* Sets err to "<file>: <obj>: <call> failed (<HDF5's innermost reason>)"
 * and returns -1. Call right after the failed call: the next one clears
 * HDF5's error stack. */
int h5data_h5_fail(char *err, const char *file, const char *obj, const char *call);

/* Closes *id with fn if open and sets it to -1; a failure sets *rc and err
 * only when *rc is 0, so the first error's message survives. */
void h5data_h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *file, const char *obj, int *rc,
                     char *err);

/* Rows [first, first + n) of a dataset of rank dimensions dims (rank <= 4)
 * whose space is file_space: selects them there and makes *mem, the memory
 * space of those rows (the caller closes it). -1 on an HDF5 failure. */
int h5data_select_rows(hid_t file_space, int rank, const hsize_t *dims, hsize_t first, hsize_t n,
                       hid_t *mem);

#endif
