/* checkpoint: the whole state of a run in one HDF5 file, written atomically
 * (temporary name, flush, fsync, rename, fsync of the directory), and read
 * back with every field checked. Pure I/O: run.c gathers and scatters. */
#ifndef DSSGD_CHECKPOINT_H
#define DSSGD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rng.h"

#define CKPT_FORMAT "dssgd-checkpoint"
#define CKPT_VERSION 1

/* Layout (docs/DESIGN.md, section 'Checkpoint layout'):
 *   /                      attrs: format (string), version (int), epoch, seed (u64),
 *                                 config (string: the resolved configuration),
 *                                 model (string: normalised model spec),
 *                                 data (string, optional: the data files read,
 *                                 a line each, see run.c's data manifest)
 *   /server/params         float32[n]
 *   /server/stat           float64[n]
 *   /server/rng            uint64[2][RNG_STATE_WORDS]  (download rng, schedule rng)
 *   /server/counters       uint64[2]                   (uploads accepted, rejected)
 *   /server/momentum       float32[n]                  (only with a server momentum)
 *   /participants/params   float32[N][n]
 *   /participants/residual float32[N][n]               (only when has_residual)
 *   /participants/rng      uint64[N][RNG_STATE_WORDS]
 *   /participants/epsilon  float64[N]                  (cumulative epsilon spent)
 * /server/momentum and the `data` attribute came later within version 1:
 * readers of version 1 files accept them absent (a file from before loads
 * with has_momentum = 0 and data = NULL), so the version did not change. */
typedef struct {
    uint64_t epoch;                 /* epochs completed */
    uint64_t seed;
    char *config;                   /* owned, NUL-terminated */
    char *model;                    /* owned, NUL-terminated */
    char *data;                     /* owned, NUL-terminated; NULL = not recorded */
    uint64_t n;                     /* parameters */
    uint32_t participants;          /* N */
    float *server_params;           /* (n) */
    double *server_stat;            /* (n) */
    uint64_t server_rng[2][RNG_STATE_WORDS];
    uint64_t counters[2];
    int has_momentum;
    float *server_momentum;         /* (n) when has_momentum, else NULL */
    float *part_params;             /* (N, n) */
    int has_residual;
    float *part_residual;           /* (N, n) when has_residual, else NULL */
    uint64_t *part_rng;             /* (N, RNG_STATE_WORDS) */
    double *part_epsilon;           /* (N) */
} ckpt_state;

/* Allocates the arrays of s for n parameters and N participants (zeroed);
 * config/model are left NULL. -1 if n or N is 0 or out of memory. */
int ckpt_state_alloc(ckpt_state *s, uint64_t n, uint32_t participants, int has_residual);
/* Adds the server momentum to an allocated s: n zeroed floats, has_momentum
 * = 1 (a second call replaces it with zeros). -1 if out of memory or s has
 * no n, with s unchanged. */
int ckpt_state_alloc_momentum(ckpt_state *s);
/* Frees every array (the momentum too) and string; accepts a zeroed struct. */
void ckpt_state_free(ckpt_state *s);

/* Writes s to path atomically: the file at path is always either the
 * previous whole checkpoint or the new whole one. Refuses a state that
 * ckpt_load would refuse (non-finite values, impossible rng states). Files
 * use the HDF5 1.10 format (readers need HDF5 >= 1.10): with older formats
 * a flipped bit in the chunk index could load zeros silently. Every dataset
 * is chunked with a Fletcher-32 checksum. Not collective (rank 0). */
int ckpt_save(const char *path, const ckpt_state *s, char *err);

/* Reads and validates a checkpoint: format name, version (int32), every
 * dataset's presence (the optional ones may be absent), checksum, type and
 * shape (n from /server/params, N from /participants/epsilon), finite
 * parameters and momentum, valid rng states. Refuses with a message saying
 * why (naming the file and what differs). On error *s is left zeroed.
 *
 * The file is untrusted, and HDF5 1.10.8 itself crashes or loops forever on
 * some hostile files (tests/fuzz/known-crashes.txt). So HDF5 parses it only in
 * a forked child process, which runs the in-process reader (ckpt_load_unguarded,
 * src/checkpoint_internal.h) and sends back the state or the refusal through a
 * pipe; this process never parses the file.
 * A child that dies (HDF5 crashed) or outlives the time limit (killed) gives
 * a refusal that says so. The limit is 60 s plus 10 s per 100 MB of file, or
 * the environment variable DSSGD_CKPT_PARSE_TIMEOUT (whole seconds, 1 to
 * 604800; another value is refused). Not collective; safe on an MPI rank:
 * the child never calls MPI and leaves with _exit. Uses fork, so a caller
 * with other threads must not hold locks the child needs (glibc's malloc and
 * stdio are fork-safe; HDF5 is used only by the calling thread). */
int ckpt_load(const char *path, ckpt_state *s, char *err);

/* Removes the temporary file that ckpt_save is writing now, if any.
 * Async-signal-safe: for a SIGINT/SIGTERM handler, so that a run stopped
 * in the middle of a save leaves no partial FILE.tmp.<pid> behind. */
void ckpt_unlink_partial(void);

/* Prints format, version, epoch, seed, n, N, residual, momentum, the model and the
 * configuration of a checkpoint (for `dssgd inspect FILE`). Loads it with
 * ckpt_load: a file that crashes HDF5 is refused, not fatal. */
int ckpt_inspect(const char *path, FILE *out, char *err);

#endif
