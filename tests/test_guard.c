/* test_guard: the forked, time-limited parse of guard.c on its own, with
 * parse functions written here (no HDF5): the summary and every array come
 * back bit for bit, whatever their sizes (empty, and larger than a pipe's
 * buffer and the child's write block); parse's and accept's refusals pass
 * through word for word; a summary or array lengths the parse could not
 * have sent are refused as malformed, and what accept allocated is
 * discarded; every child is reaped. The ways a child can end without a
 * result are tested through h5data_load (test_h5data). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "guard.h"

/* What a parse sends: a summary giving the arrays' lengths, and arrays of
 * deterministic bytes. */
typedef struct {
    uint64_t lengths[3];
    uint32_t tag;
} meta_t;

typedef struct {
    /* What the child's parse does. */
    int refuse;        /* parse returns -1 with a message */
    uint64_t lengths[3];
    int nparts;
    /* What the parent's accept does. */
    int accept_rc;     /* 0, -1 (refuses) or GUARD_MALFORMED */
    int lie_count;     /* accept names one array more than the child sent */
    int lie_length;    /* accept gives array 0 one byte more */
    /* What the parent ends with. */
    unsigned char *got[3];
    meta_t meta;
    int discarded;
} job_ctx;

static unsigned char byte_at(int part, uint64_t i)
{
    return (unsigned char)(i * 131 + (uint64_t)part * 17 + (i >> 9));
}

static int parse(void *vctx, const char *path, void *vmeta, guard_part parts[GUARD_PARTS_MAX],
                 int *nparts, char *err)
{
    job_ctx *ctx = vctx;
    if (ctx->refuse)
        return err_set(err, "%s: refused by the parse, as asked", path);
    meta_t *m = vmeta;
    m->tag = 0xC0FFEE;
    for (int p = 0; p < ctx->nparts; p++) {
        m->lengths[p] = ctx->lengths[p];
        unsigned char *a = malloc(ctx->lengths[p] ? ctx->lengths[p] : 1);
        if (!a)
            return err_set(err, "%s: out of memory in the child", path);
        for (uint64_t i = 0; i < ctx->lengths[p]; i++)
            a[i] = byte_at(p, i);
        parts[p] = (guard_part){a, ctx->lengths[p]};
    }
    *nparts = ctx->nparts;
    return 0; /* the arrays are never freed: the child ends with _exit */
}

static int accept_meta(void *vctx, const void *vmeta, guard_part parts[GUARD_PARTS_MAX],
                       int *nparts, char *err)
{
    job_ctx *ctx = vctx;
    memcpy(&ctx->meta, vmeta, sizeof ctx->meta);
    if (ctx->accept_rc == -1)
        return err_set(err, "refused by accept, as asked");
    if (ctx->accept_rc == GUARD_MALFORMED || ctx->meta.tag != 0xC0FFEE)
        return GUARD_MALFORMED;
    int n = ctx->nparts + (ctx->lie_count ? 1 : 0);
    for (int p = 0; p < n; p++) {
        uint64_t len = p < ctx->nparts ? ctx->meta.lengths[p] : 8;
        if (p == 0 && ctx->lie_length)
            len++;
        ctx->got[p] = malloc(len ? len : 1);
        assert_non_null(ctx->got[p]);
        parts[p] = (guard_part){ctx->got[p], len};
    }
    *nparts = n;
    return 0;
}

static void discard(void *vctx)
{
    job_ctx *ctx = vctx;
    for (int p = 0; p < 3; p++) {
        free(ctx->got[p]);
        ctx->got[p] = NULL;
    }
    ctx->discarded = 1;
}

static int run(job_ctx *ctx, char *err)
{
    guard_job job = {.path = "some-file",
                     .env = "DSSGD_TEST_GUARD_TIMEOUT",
                     .reader = "TESTLIB",
                     .meta_bytes = sizeof(meta_t),
                     .ctx = ctx,
                     .parse = parse,
                     .accept = accept_meta,
                     .discard = discard};
    int rc = guard_run(&job, err);
    /* Every child reaped. */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    return rc;
}

/* Arrays of 0 bytes, a few bytes, and 9 MB (over the pipe's buffer and
 * the child's 8 MiB write block, whose pages it gives back as it goes)
 * arrive bit for bit. */
static void test_arrays_come_back_bit_for_bit(void **state)
{
    (void)state;
    static const uint64_t sizes[][3] = {{0, 0, 0}, {1, 7, 4096}, {9000003, 3, 0}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int nparts = 0; nparts <= 3; nparts++) {
            job_ctx ctx = {.nparts = nparts};
            memcpy(ctx.lengths, sizes[k], sizeof ctx.lengths);
            char err[ERR_LEN] = "";
            if (run(&ctx, err) != 0)
                fail_msg("%s", err);
            assert_int_equal(ctx.meta.tag, 0xC0FFEE);
            assert_false(ctx.discarded);
            for (int p = 0; p < nparts; p++) {
                assert_int_equal(ctx.meta.lengths[p], sizes[k][p]);
                for (uint64_t i = 0; i < sizes[k][p]; i++)
                    if (ctx.got[p][i] != byte_at(p, i))
                        fail_msg("array %d, byte %llu", p, (unsigned long long)i);
            }
            discard(&ctx);
        }
    }
}

static void test_refusals_pass_through_word_for_word(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    job_ctx ctx = {.refuse = 1, .nparts = 1, .lengths = {5}};
    assert_int_equal(run(&ctx, err), -1);
    assert_string_equal(err, "some-file: refused by the parse, as asked");
    assert_false(ctx.discarded);
    job_ctx ctx2 = {.accept_rc = -1, .nparts = 2, .lengths = {5, 100000}};
    assert_int_equal(run(&ctx2, err), -1);
    assert_string_equal(err, "refused by accept, as asked");
    assert_false(ctx2.discarded); /* accept allocated nothing */
}

/* What the parse could not have sent is refused with the guard's message;
 * what accept allocated is discarded. */
static void test_malformed_results_are_refused(void **state)
{
    (void)state;
    const char *want = "some-file: the process reading it with TESTLIB sent a malformed result "
                       "(TESTLIB may have corrupted its memory): the file is damaged or hostile; "
                       "not loaded";
    char err[ERR_LEN] = "";
    job_ctx a = {.accept_rc = GUARD_MALFORMED, .nparts = 1, .lengths = {10}};
    assert_int_equal(run(&a, err), -1);
    assert_string_equal(err, want);
    job_ctx b = {.lie_count = 1, .nparts = 2, .lengths = {10, 3000000}};
    assert_int_equal(run(&b, err), -1);
    assert_string_equal(err, want);
    assert_true(b.discarded);
    job_ctx c = {.lie_length = 1, .nparts = 1, .lengths = {10}};
    assert_int_equal(run(&c, err), -1);
    assert_string_equal(err, want);
    assert_true(c.discarded);
}

static void test_time_limit(void **state)
{
    (void)state;
    long limit = 0;
    char err[ERR_LEN] = "";
    unsetenv("DSSGD_TEST_GUARD_TIMEOUT");
    /* No such file: the default for an empty one. */
    assert_int_equal(guard_limit("/nonexistent/file", "DSSGD_TEST_GUARD_TIMEOUT", &limit, err), 0);
    assert_int_equal(limit, 60);
    /* 10 s per 100 MB (a sparse file: no disk used). */
    char path[] = "/tmp/test_guard.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 250000000), 0);
    close(fd);
    assert_int_equal(guard_limit(path, "DSSGD_TEST_GUARD_TIMEOUT", &limit, err), 0);
    assert_int_equal(limit, 60 + 25);
    unlink(path);
    assert_int_equal(setenv("DSSGD_TEST_GUARD_TIMEOUT", "7", 1), 0);
    assert_int_equal(guard_limit(path, "DSSGD_TEST_GUARD_TIMEOUT", &limit, err), 0);
    assert_int_equal(limit, 7);
    assert_int_equal(setenv("DSSGD_TEST_GUARD_TIMEOUT", "1\n2", 1), 0);
    assert_int_equal(guard_limit("f", "DSSGD_TEST_GUARD_TIMEOUT", &limit, err), -1);
    assert_string_equal(err, "f: not loaded: DSSGD_TEST_GUARD_TIMEOUT is '1?2', expected whole "
                             "seconds from 1 to 604800");
    /* A refused variable starts no process. */
    job_ctx ctx = {.nparts = 1, .lengths = {1}};
    assert_int_equal(run(&ctx, err), -1);
    assert_non_null(strstr(err, "DSSGD_TEST_GUARD_TIMEOUT is '1?2'"));
    unsetenv("DSSGD_TEST_GUARD_TIMEOUT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arrays_come_back_bit_for_bit),
        cmocka_unit_test(test_refusals_pass_through_word_for_word),
        cmocka_unit_test(test_malformed_results_are_refused),
        cmocka_unit_test(test_time_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
