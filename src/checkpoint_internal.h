/* checkpoint_internal: what the three files of the checkpoint module share,
 * and the two entry points that tests and the fuzzer reach past checkpoint.h:
 *   src/checkpoint.c        the dataset table, the state, the value checks,
 *                           HDF5 error messages, and writing (ckpt_save);
 *   src/checkpoint_read.c   reading and checking a file in this process
 *                           (ckpt_load_unguarded), and ckpt_inspect;
 *   src/checkpoint_guard.c  that same read in a forked, time-limited child
 *                           process (ckpt_load, through include/guard.h).
 * The HDF5 helpers it shares with the data-file module are in src/h5util.h.
 * Other modules use include/checkpoint.h only. */
#ifndef DSSGD_CHECKPOINT_INTERNAL_H
#define DSSGD_CHECKPOINT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "checkpoint.h"
#include "h5util.h"

/* Bounds that make a hostile file fail cleanly instead of exhausting memory;
 * ckpt_save refuses a state beyond them, so it never writes what load refuses. */
#define CKPT_MAX_N UINT64_C(4294967295)
#define CKPT_MAX_PARTICIPANTS 1000000u
#define CKPT_MAX_STRING ((size_t)1 << 20)

/* ---- the dataset table: one list drives both save and load ------------- */

typedef enum { CKPT_F32, CKPT_F64, CKPT_U64 } ckpt_elem;
/* A dimension's length: n, N, RNG_STATE_WORDS or 2. */
typedef enum { CKPT_DIM_N, CKPT_DIM_PARTS, CKPT_DIM_RNG, CKPT_DIM_TWO } ckpt_dim;

typedef struct {
    const char *path;
    ckpt_elem kind;
    int rank;
    ckpt_dim dim[2]; /* dim[1] unused when rank is 1 */
} ckpt_dset;

enum {
    CKPT_DS_SERVER_PARAMS, CKPT_DS_SERVER_STAT, CKPT_DS_SERVER_RNG, CKPT_DS_COUNTERS,
    CKPT_DS_MOMENTUM, CKPT_DS_PART_PARAMS, CKPT_DS_RESIDUAL, CKPT_DS_PART_RNG, CKPT_DS_EPSILON,
    CKPT_DS_COUNT
};

/* Every dataset of the layout in checkpoint.h, indexed by CKPT_DS_*: save
 * writes them and load opens them in this order. */
extern const ckpt_dset ckpt_dsets[CKPT_DS_COUNT];

/* The array of s that dataset `which` (CKPT_DS_*) holds; NULL for the
 * residual or the momentum when s has none. */
void *ckpt_dset_data(const ckpt_state *s, int which);
/* Whether dataset `which` may be absent from a file (the residual, the
 * server momentum): its presence is then the state's has_* flag. */
int ckpt_dset_optional(int which);
/* Whether s holds dataset `which`: always for the required ones. */
int ckpt_dset_in_state(const ckpt_state *s, int which);
/* The length of dimension d for n parameters and parts participants. */
hsize_t ckpt_dim_value(ckpt_dim d, uint64_t n, uint32_t parts);
/* The native HDF5 type that holds a k in memory (a library type: not closed). */
hid_t ckpt_mem_type(ckpt_elem k);

/* ---- value checks and messages ----------------------------------------- */

/* The checks of the values, shared by save and load: finite parameters,
 * momentum, residuals and statistics, possible rng states, epsilons >= 0 (+inf
 * allowed). -1 at the first bad value, with a message that names the dataset
 * and element but not the file (the caller prefixes it). */
int ckpt_check_values(const ckpt_state *s, char *err);

/* Copies s into buf (cap bytes) for a message: printable ASCII, others as
 * '?', cut short with "..." when it does not fit. */
void ckpt_quote_found(const char *s, char *buf, size_t cap);

/* ---- HDF5 error reporting (the parts: src/h5util.h) ---------------------- */

/* Sets err to "<file>: <call> failed on <what> (<HDF5's reason>)" (what may
 * be NULL) and returns -1. A failed metadata checksum is said plainly: the
 * file is damaged, not misused. Call right after the failed HDF5 call. */
int ckpt_h5_fail(char *err, const char *file, const char *call, const char *what);

/* Closes *id with fn if open (>= 0) and sets it to -1. A close failure sets
 * *rc and err only when *rc is 0, so the first error's message survives. */
void ckpt_h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *call, const char *file, int *rc,
                   char *err);

/* ---- for tests and the fuzzer ------------------------------------------ */

/* ckpt_load's reading and checks, and its messages, in this process: a file
 * that crashes HDF5 crashes the caller. For the fuzzer, which must see
 * HDF5's crashes, and for ckpt_load's child. On error *s is left zeroed.
 * (Tests make that child crash or hang through guard_test_child_hook.) */
int ckpt_load_unguarded(const char *path, ckpt_state *s, char *err);

#endif
