/* fuzz_checkpoint: libFuzzer target for ckpt_load_unguarded, the reader of HDF5
 * checkpoints (--resume, dssgd inspect) in process, so that HDF5's own crashes
 * show; an accepted file must round-trip and load the same through the guard. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hdf5.h>

#include "../../src/checkpoint_internal.h" /* ckpt_load_unguarded */
#include "checkpoint.h"
#include "err.h"
#include "fuzz_common.h"
#include "rng.h"

static const char *in_path, *out_path;
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* HDF5's error stack printing is global; ckpt_load silences it per call,
     * this keeps anything outside it quiet too. */
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    in_path = fuzz_scratch_new("ckpt.h5");
    out_path = fuzz_scratch_new("ckpt-out.h5");
    devnull = fopen("/dev/null", "w");
    FUZZ_CHECK(devnull != NULL, "cannot open /dev/null");
    return 0;
}

/* What ckpt_load promises of an accepted state. */
static void check_state(const ckpt_state *s)
{
    FUZZ_CHECK(s->n >= 1 && s->participants >= 1, "n %llu N %u", (unsigned long long)s->n,
               s->participants);
    FUZZ_CHECK(s->config && s->model, "missing strings");
    FUZZ_CHECK(s->server_params && s->server_stat && s->part_params && s->part_rng &&
                   s->part_epsilon && (!s->has_residual || s->part_residual) &&
                   (s->has_residual || !s->part_residual),
               "missing arrays");
    size_t n = (size_t)s->n, rows = n * s->participants;
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(isfinite(s->server_params[i]) && isfinite(s->server_stat[i]),
                   "non-finite server value %zu", i);
    for (size_t i = 0; i < rows; i++)
        FUZZ_CHECK(isfinite(s->part_params[i]) &&
                       (!s->has_residual || isfinite(s->part_residual[i])),
                   "non-finite participant value %zu", i);
    rng_t probe;
    for (int i = 0; i < 2; i++)
        FUZZ_CHECK(rng_restore(&probe, s->server_rng[i]) == 0, "server rng %d", i);
    for (size_t p = 0; p < s->participants; p++) {
        FUZZ_CHECK(rng_restore(&probe, s->part_rng + p * RNG_STATE_WORDS) == 0, "rng %zu", p);
        FUZZ_CHECK(!isnan(s->part_epsilon[p]) && s->part_epsilon[p] >= 0, "epsilon %zu", p);
    }
}

static int same_state(const ckpt_state *a, const ckpt_state *b)
{
    size_t n = (size_t)a->n, rows = n * a->participants;
    return a->epoch == b->epoch && a->seed == b->seed && a->n == b->n &&
           a->participants == b->participants && a->has_residual == b->has_residual &&
           strcmp(a->config, b->config) == 0 && strcmp(a->model, b->model) == 0 &&
           memcmp(a->server_params, b->server_params, n * sizeof *a->server_params) == 0 &&
           memcmp(a->server_stat, b->server_stat, n * sizeof *a->server_stat) == 0 &&
           memcmp(a->server_rng, b->server_rng, sizeof a->server_rng) == 0 &&
           memcmp(a->counters, b->counters, sizeof a->counters) == 0 &&
           memcmp(a->part_params, b->part_params, rows * sizeof *a->part_params) == 0 &&
           (!a->has_residual ||
            memcmp(a->part_residual, b->part_residual, rows * sizeof *a->part_residual) == 0) &&
           memcmp(a->part_rng, b->part_rng,
                  a->participants * RNG_STATE_WORDS * sizeof *a->part_rng) == 0 &&
           memcmp(a->part_epsilon, b->part_epsilon, a->participants * sizeof *a->part_epsilon) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(in_path, data, size);
    ckpt_state s;
    char err[ERR_LEN] = "";
    memset(&s, 0xA5, sizeof s);
    /* In process: ckpt_load would run HDF5 in a child and turn its crashes
     * into refusals, and the fuzzer would find nothing in HDF5. */
    int rc = ckpt_load_unguarded(in_path, &s, err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1, "rc %d", rc);
        FUZZ_CHECK(err[0] != '\0' && strstr(err, in_path) != NULL,
                   "message '%s' does not name the file", err);
        static const ckpt_state zero;
        FUZZ_CHECK(memcmp(&s, &zero, sizeof s) == 0, "state not zeroed on error");
        ckpt_state_free(&s);
        return 0;
    }
    check_state(&s);
    /* The guarded load (a child process, the state sent back through a pipe)
     * gives the same state; inspect goes through it too. Only accepted files
     * pay for the fork. */
    ckpt_state guarded;
    FUZZ_CHECK(ckpt_load(in_path, &guarded, err) == 0, "in process accepts, guarded refuses: %s",
               err);
    FUZZ_CHECK(same_state(&s, &guarded), "the guarded load gave another state");
    ckpt_state_free(&guarded);
    FUZZ_CHECK(ckpt_inspect(in_path, devnull, err) == 0, "load accepts, inspect refuses: %s", err);

    /* Whatever load accepts, save writes and load reads back bit for bit. */
    FUZZ_CHECK(ckpt_save(out_path, &s, err) == 0, "save refuses a loaded state: %s", err);
    ckpt_state back;
    FUZZ_CHECK(ckpt_load_unguarded(out_path, &back, err) == 0, "cannot reload a saved state: %s",
               err);
    FUZZ_CHECK(same_state(&s, &back), "the state changed through save and load");
    ckpt_state_free(&back);
    ckpt_state_free(&s);
    return 0;
}
