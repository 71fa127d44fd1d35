/* checkpoint_guard: ckpt_load, which has HDF5 read an untrusted file in a
 * forked, time-limited child process (include/guard.h).
 *
 * HDF5 1.10.8 crashes (SIGSEGV, SIGFPE, stack overflow) or loops forever on
 * some hostile files, in code dssgd cannot fix. So the child runs
 * ckpt_load_unguarded and sends the state back through a pipe. Sending the
 * state back, rather than loading the file a second time once the child has
 * said it is safe, means HDF5 never parses the file in the caller: the file
 * cannot be swapped between a check and a load. The copy through the pipe
 * costs about what a second load would (on a 2-core VM: 0.02-0.03 s more for
 * the default 14 MB checkpoint, 1 s more for 800 MB); the peak memory stays
 * one state. */
#include "checkpoint_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "guard.h"

/* The state's scalars, sent before its strings and arrays. */
typedef struct {
    int32_t has_residual;
    int32_t has_momentum;
    uint32_t participants;
    uint64_t epoch, seed, n;
    uint64_t server_rng[2][RNG_STATE_WORDS];
    uint64_t counters[2];
    uint64_t config_len, model_len; /* without the NUL */
    uint64_t data_len;              /* without the NUL; UINT64_MAX = no data string */
} load_meta;

typedef struct {
    const char *path;
    ckpt_state *s; /* the caller's; in the child, the child's own copy */
} load_ctx;

/* The strings and arrays of s in the order they cross the pipe (at most 10). */
static int state_parts(const ckpt_state *s, const load_meta *m, guard_part part[GUARD_PARTS_MAX])
{
    size_t n = (size_t)s->n, parts = s->participants, rows = n * parts;
    int k = 0;
    part[k++] = (guard_part){s->config, (size_t)m->config_len};
    part[k++] = (guard_part){s->model, (size_t)m->model_len};
    if (m->data_len != UINT64_MAX)
        part[k++] = (guard_part){s->data, (size_t)m->data_len};
    part[k++] = (guard_part){s->server_params, n * sizeof *s->server_params};
    part[k++] = (guard_part){s->server_stat, n * sizeof *s->server_stat};
    if (s->has_momentum)
        part[k++] = (guard_part){s->server_momentum, n * sizeof *s->server_momentum};
    part[k++] = (guard_part){s->part_params, rows * sizeof *s->part_params};
    if (s->has_residual)
        part[k++] = (guard_part){s->part_residual, rows * sizeof *s->part_residual};
    part[k++] = (guard_part){s->part_rng, parts * RNG_STATE_WORDS * sizeof *s->part_rng};
    part[k++] = (guard_part){s->part_epsilon, parts * sizeof *s->part_epsilon};
    return k;
}

/* In the child. */
static int load_parse(void *vctx, const char *path, void *vmeta, guard_part parts[GUARD_PARTS_MAX],
                      int *nparts, char *err)
{
    ckpt_state *s = ((load_ctx *)vctx)->s;
    if (ckpt_load_unguarded(path, s, err) < 0)
        return -1;
    load_meta *m = vmeta;
    m->has_residual = s->has_residual;
    m->has_momentum = s->has_momentum;
    m->participants = s->participants;
    m->epoch = s->epoch;
    m->seed = s->seed;
    m->n = s->n;
    memcpy(m->server_rng, s->server_rng, sizeof m->server_rng);
    memcpy(m->counters, s->counters, sizeof m->counters);
    m->config_len = strlen(s->config);
    m->model_len = strlen(s->model);
    m->data_len = s->data ? strlen(s->data) : UINT64_MAX;
    *nparts = state_parts(s, m, parts);
    return 0;
}

/* In the parent: checks the scalars, allocates s and says where its arrays go. */
static int load_accept(void *vctx, const void *vmeta, guard_part parts[GUARD_PARTS_MAX],
                       int *nparts, char *err)
{
    load_ctx *ctx = vctx;
    ckpt_state *s = ctx->s;
    const load_meta *m = vmeta;
    /* What ckpt_load_unguarded promises of a state it accepted. */
    if (m->n < 1 || m->n > CKPT_MAX_N || m->participants < 1 ||
        m->participants > CKPT_MAX_PARTICIPANTS || (m->has_residual != 0 && m->has_residual != 1) ||
        (m->has_momentum != 0 && m->has_momentum != 1) || m->config_len > CKPT_MAX_STRING ||
        m->model_len > CKPT_MAX_STRING ||
        (m->data_len > CKPT_MAX_STRING && m->data_len != UINT64_MAX))
        return GUARD_MALFORMED;
    if (ckpt_state_alloc(s, m->n, m->participants, m->has_residual) < 0 ||
        (m->has_momentum && ckpt_state_alloc_momentum(s) < 0) ||
        !(s->config = malloc((size_t)m->config_len + 1)) ||
        !(s->model = malloc((size_t)m->model_len + 1)) ||
        (m->data_len != UINT64_MAX && !(s->data = malloc((size_t)m->data_len + 1)))) {
        ckpt_state_free(s);
        return err_set(err, "%s: out of memory for n = %" PRIu64 ", N = %" PRIu32, ctx->path,
                       m->n, m->participants);
    }
    s->config[m->config_len] = '\0';
    s->model[m->model_len] = '\0';
    if (s->data)
        s->data[m->data_len] = '\0';
    s->epoch = m->epoch;
    s->seed = m->seed;
    memcpy(s->server_rng, m->server_rng, sizeof s->server_rng);
    memcpy(s->counters, m->counters, sizeof s->counters);
    *nparts = state_parts(s, m, parts);
    return 0;
}

static void load_discard(void *vctx)
{
    ckpt_state_free(((load_ctx *)vctx)->s);
}

int ckpt_load(const char *path, ckpt_state *s, char *err)
{
    memset(s, 0, sizeof *s);
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    /* HDF5 sets itself up on its first call, and a parallel build registers
     * with MPI then: let that happen here, never in the child. */
    if (H5open() < 0)
        return err_set(err, "%s: not loaded: H5open failed", path);
    load_ctx ctx = {.path = path, .s = s};
    guard_job job = {.path = path,
                     .env = "DSSGD_CKPT_PARSE_TIMEOUT",
                     .reader = "HDF5",
                     .meta_bytes = sizeof(load_meta),
                     .ctx = &ctx,
                     .parse = load_parse,
                     .accept = load_accept,
                     .discard = load_discard};
    return guard_run(&job, err);
}
