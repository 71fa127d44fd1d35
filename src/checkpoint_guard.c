/* checkpoint_guard: ckpt_load, which has HDF5 read an untrusted file in a
 * forked, time-limited child process.
 *
 * HDF5 1.10.8 crashes (SIGSEGV, SIGFPE, stack overflow) or loops forever on
 * some hostile files, in code dssgd cannot fix. So ckpt_load forks: the child
 * runs ckpt_load_unguarded and writes a report, then the state, to a pipe,
 * and the parent reads them by a deadline. Sending the state back, rather
 * than loading the file a second time once the child has said it is safe,
 * means HDF5 never parses the file in the caller: the file cannot be swapped
 * between a check and a load. The copy through the pipe costs about what a
 * second load would (on a 2-core VM: 0.02-0.03 s more for the default 14 MB
 * checkpoint, 1 s more for 800 MB); the peak memory stays one state. */
/* pipe2, madvise, prctl (Linux, like every target of dssgd). */
#define _GNU_SOURCE
#include "checkpoint_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

void (*ckpt_test_child_hook)(void);

#define GUARD_ENV "DSSGD_CKPT_PARSE_TIMEOUT"
#define GUARD_MAX_LIMIT 604800L /* seconds: a week */
/* Bytes per write by the child; it gives back each block's pages once sent. */
#define GUARD_BLOCK ((size_t)8 << 20)

/* What the child writes first; the state's arrays follow when rc is 0. Both
 * ends are this same binary, so the struct crosses the pipe as it is. */
typedef struct {
    int32_t rc; /* 0: the state follows; -1: refused, err says why */
    int32_t has_residual;
    int32_t has_momentum;
    uint32_t participants;
    uint64_t epoch, seed, n;
    uint64_t server_rng[2][RNG_STATE_WORDS];
    uint64_t counters[2];
    uint64_t config_len, model_len; /* without the NUL */
    uint64_t data_len;              /* without the NUL; UINT64_MAX = no data string */
    char err[ERR_LEN];
} guard_report;

typedef struct {
    void *data;
    size_t bytes;
} guard_part;

enum { GUARD_PARTS_MAX = 10 };

/* The strings and arrays of s in the order they cross the pipe. */
static int guard_parts(const ckpt_state *s, const guard_report *r,
                       guard_part part[GUARD_PARTS_MAX])
{
    size_t n = (size_t)s->n, parts = s->participants, rows = n * parts;
    int k = 0;
    part[k++] = (guard_part){s->config, (size_t)r->config_len};
    part[k++] = (guard_part){s->model, (size_t)r->model_len};
    if (r->data_len != UINT64_MAX)
        part[k++] = (guard_part){s->data, (size_t)r->data_len};
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

/* Seconds the child may take: DSSGD_CKPT_PARSE_TIMEOUT, else 60 s plus 10 s
 * per 100 MB (10 MB/s: generous even for a multi-GB file on a slow disk). */
static int guard_limit(const char *path, long *limit, char *err)
{
    const char *v = getenv(GUARD_ENV);
    if (v) {
        long value = 0;
        size_t i = 0;
        for (; v[i] >= '0' && v[i] <= '9' && value <= GUARD_MAX_LIMIT; i++)
            value = value * 10 + (v[i] - '0');
        if (i == 0 || v[i] != '\0' || value < 1 || value > GUARD_MAX_LIMIT) {
            char found[64];
            ckpt_quote_found(v, found, sizeof found);
            return err_set(err, "%s: not loaded: %s is '%s', expected whole seconds from 1 to %ld",
                           path, GUARD_ENV, found, GUARD_MAX_LIMIT);
        }
        *limit = value;
        return 0;
    }
    struct stat st;
    long long size = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : 0;
    *limit = 60 + (long)(size / 10000000);
    return 0;
}

static int64_t guard_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Writes all of len bytes. With release, the pages sent are given back as it
 * goes: the child never reads them again, and the parent's copy of a
 * multi-GB state then does not sit beside a whole second one. Only pages
 * wholly inside buf are released, so malloc's own data is never touched. */
static int guard_write(int fd, void *buf, size_t len, int release)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t p = (uintptr_t)buf, end = p + len, released = (p + page - 1) & ~(page - 1);
    while (p < end) {
        size_t block = end - p < GUARD_BLOCK ? end - p : GUARD_BLOCK;
        ssize_t put = write(fd, (const void *)p, block);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        p += (size_t)put;
        uintptr_t upto = p & ~(page - 1);
        if (release && upto > released) {
            (void)madvise((void *)released, upto - released, MADV_DONTNEED); /* a hint */
            released = upto;
        }
    }
    return 0;
}

/* The child: never returns. It must not call MPI, nor run the caller's exit
 * handlers or signal handlers. */
_Noreturn static void guard_child(int fd, const char *path, pid_t parent, long limit)
{
    /* Dies with the caller (mpirun killing the rank), and never outlives its
     * own limit by much even if orphaned. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    /* The caller's handlers are not for this process: Open MPI's prints a
     * backtrace, cmocka's and libFuzzer's would go on running tests here. A
     * crash must end the child with its signal, which the parent names. */
    static const int deadly[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP,
                                 SIGSYS,  SIGALRM, SIGPIPE, SIGXCPU, SIGXFSZ};
    struct sigaction dfl;
    sigset_t set;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof deadly / sizeof deadly[0]; i++) {
        (void)sigaction(deadly[i], &dfl, NULL);
        sigaddset(&set, deadly[i]);
    }
    (void)sigprocmask(SIG_UNBLOCK, &set, NULL);
    alarm((unsigned)limit + 10);
    if (ckpt_test_child_hook)
        ckpt_test_child_hook();

    guard_report rep;
    memset(&rep, 0, sizeof rep);
    ckpt_state s;
    guard_part part[GUARD_PARTS_MAX];
    int parts = 0;
    rep.rc = ckpt_load_unguarded(path, &s, rep.err);
    if (rep.rc == 0) {
        rep.has_residual = s.has_residual;
        rep.has_momentum = s.has_momentum;
        rep.participants = s.participants;
        rep.epoch = s.epoch;
        rep.seed = s.seed;
        rep.n = s.n;
        memcpy(rep.server_rng, s.server_rng, sizeof rep.server_rng);
        memcpy(rep.counters, s.counters, sizeof rep.counters);
        rep.config_len = strlen(s.config);
        rep.model_len = strlen(s.model);
        rep.data_len = s.data ? strlen(s.data) : UINT64_MAX;
        parts = guard_parts(&s, &rep, part);
    }
    if (guard_write(fd, &rep, sizeof rep, 0) < 0)
        _exit(1);
    for (int i = 0; i < parts; i++)
        if (guard_write(fd, part[i].data, part[i].bytes, 1) < 0)
            _exit(1);
    /* _exit: no atexit handlers (HDF5's shutdown, MPI's, LeakSanitizer's) and
     * no flush of stdio buffers copied from the caller. s is not freed: the
     * process ends here. */
    _exit(0);
}

enum { GUARD_DONE, GUARD_EOF, GUARD_LATE, GUARD_FAILED };

/* Reads exactly len bytes from fd by deadline (ms, CLOCK_MONOTONIC). */
static int guard_read(int fd, void *buf, size_t len, int64_t deadline)
{
    char *p = buf;
    while (len > 0) {
        int64_t left = deadline - guard_now_ms();
        if (left <= 0)
            return GUARD_LATE;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (ready < 0 && errno != EINTR)
            return GUARD_FAILED;
        if (ready <= 0)
            continue;
        ssize_t got = read(fd, p, len < ((size_t)1 << 30) ? len : (size_t)1 << 30);
        if (got < 0 && errno != EINTR)
            return GUARD_FAILED;
        if (got == 0)
            return GUARD_EOF;
        if (got > 0) {
            p += got;
            len -= (size_t)got;
        }
    }
    return GUARD_DONE;
}

/* A report that the child's own loader could have written. */
static int guard_report_valid(const guard_report *r)
{
    if (r->rc == -1)
        return memchr(r->err, '\0', sizeof r->err) != NULL;
    return r->rc == 0 && r->n >= 1 && r->n <= CKPT_MAX_N && r->participants >= 1 &&
           r->participants <= CKPT_MAX_PARTICIPANTS &&
           (r->has_residual == 0 || r->has_residual == 1) &&
           (r->has_momentum == 0 || r->has_momentum == 1) && r->config_len <= CKPT_MAX_STRING &&
           r->model_len <= CKPT_MAX_STRING &&
           (r->data_len <= CKPT_MAX_STRING || r->data_len == UINT64_MAX);
}

static int guard_alloc(const guard_report *r, ckpt_state *s)
{
    if (ckpt_state_alloc(s, r->n, r->participants, r->has_residual) < 0)
        return -1;
    if (r->has_momentum && ckpt_state_alloc_momentum(s) < 0) {
        ckpt_state_free(s);
        return -1;
    }
    s->config = malloc((size_t)r->config_len + 1);
    s->model = malloc((size_t)r->model_len + 1);
    if (!s->config || !s->model) {
        ckpt_state_free(s);
        return -1;
    }
    s->config[r->config_len] = '\0';
    s->model[r->model_len] = '\0';
    if (r->data_len != UINT64_MAX) {
        if (!(s->data = malloc((size_t)r->data_len + 1))) {
            ckpt_state_free(s);
            return -1;
        }
        s->data[r->data_len] = '\0';
    }
    s->epoch = r->epoch;
    s->seed = r->seed;
    memcpy(s->server_rng, r->server_rng, sizeof s->server_rng);
    memcpy(s->counters, r->counters, sizeof s->counters);
    return 0;
}

static const char *signal_name(int sig, char *buf, size_t cap)
{
    static const struct {
        int sig;
        const char *name;
    } names[] = {{SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
                 {SIGILL, "SIGILL"},   {SIGABRT, "SIGABRT"}, {SIGTRAP, "SIGTRAP"},
                 {SIGSYS, "SIGSYS"},   {SIGALRM, "SIGALRM"}, {SIGPIPE, "SIGPIPE"},
                 {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"}, {SIGTERM, "SIGTERM"},
                 {SIGINT, "SIGINT"},   {SIGHUP, "SIGHUP"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig)
            return names[i].name;
    snprintf(buf, cap, "signal %d", sig);
    return buf;
}

/* The parent: reads the child's report and state by deadline, then reaps it. */
static int guard_receive(int fd, pid_t pid, int64_t deadline, long limit, const char *path,
                         ckpt_state *s, char *err)
{
    guard_report rep;
    int got = guard_read(fd, &rep, sizeof rep, deadline), read_errno = errno;
    int malformed = 0, no_memory = 0;
    if (got == GUARD_DONE && !guard_report_valid(&rep)) {
        malformed = 1;
    } else if (got == GUARD_DONE && rep.rc == 0) {
        if (guard_alloc(&rep, s) < 0) {
            no_memory = 1;
        } else {
            guard_part part[GUARD_PARTS_MAX];
            int parts = guard_parts(s, &rep, part);
            for (int i = 0; i < parts && got == GUARD_DONE; i++) {
                got = guard_read(fd, part[i].data, part[i].bytes, deadline);
                read_errno = errno;
            }
        }
    }
    int whole = got == GUARD_DONE && !malformed && !no_memory;
    /* After a whole report the child's next step is _exit; at end of file it
     * is gone. Else it may be looping, or blocked writing what we no longer
     * read: stop it. */
    if (!whole && got != GUARD_EOF)
        kill(pid, SIGKILL);
    int status = 0;
    pid_t reaped;
    while ((reaped = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    /* The child's exit status is not asked for once its report is whole:
     * valgrind may rewrite it. */
    if (whole && rep.rc == 0)
        return 0;
    ckpt_state_free(s);
    if (whole)
        return err_set(err, "%s", rep.err);
    if (no_memory)
        return err_set(err, "%s: out of memory for n = %" PRIu64 ", N = %" PRIu32, path, rep.n,
                       rep.participants);
    if (malformed)
        return err_set(err, "%s: the process reading it with HDF5 sent a malformed result (HDF5 "
                       "may have corrupted its memory): the file is damaged or hostile; not loaded",
                       path);
    if (got == GUARD_LATE)
        return err_set(err, "%s: HDF5 did not finish reading it within %ld s: the file is damaged "
                       "or hostile (if it is trusted and this slow to read, raise %s); not loaded",
                       path, limit, GUARD_ENV);
    if (got == GUARD_FAILED)
        return err_set(err, "%s: not loaded: cannot read the result of the process reading it: %s",
                       path, strerror(read_errno));
    if (reaped == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return err_set(err, "%s: the process reading it with HDF5 was killed (SIGKILL, perhaps for "
                       "lack of memory): the file may be damaged or hostile; not loaded", path);
    if (reaped == pid && WIFSIGNALED(status)) {
        char buf[32];
        return err_set(err, "%s: the HDF5 library crashed (%s) while reading it: the file is "
                       "damaged or hostile; not loaded", path,
                       signal_name(WTERMSIG(status), buf, sizeof buf));
    }
    if (reaped == pid && WIFEXITED(status))
        return err_set(err, "%s: the process reading it with HDF5 ended (exit status %d) without a "
                       "result: the file may be damaged or hostile; not loaded", path,
                       WEXITSTATUS(status));
    return err_set(err, "%s: the process reading it with HDF5 ended without a result: the file "
                   "may be damaged or hostile; not loaded", path);
}

int ckpt_load(const char *path, ckpt_state *s, char *err)
{
    memset(s, 0, sizeof *s);
    if (!path || !*path)
        return err_set(err, "checkpoint: empty file name");
    long limit = 0;
    if (guard_limit(path, &limit, err) < 0)
        return -1;
    /* HDF5 sets itself up on its first call, and a parallel build registers
     * with MPI then: let that happen here, never in the child. */
    if (H5open() < 0)
        return err_set(err, "%s: not loaded: H5open failed", path);
    /* O_CLOEXEC: a program another thread starts must not hold the write end
     * open, or the end of file that says the child is gone never comes. */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return err_set(err, "%s: not loaded: cannot make a pipe to the process that would read "
                       "it: %s", path, strerror(errno));
    pid_t parent = getpid();
    int64_t deadline = guard_now_ms() + (int64_t)limit * 1000;
    pid_t pid = fork();
    if (pid < 0) {
        int fork_errno = errno;
        close(fds[0]);
        close(fds[1]);
        return err_set(err, "%s: not loaded: cannot start the process that would read it (fork: "
                       "%s)", path, strerror(fork_errno));
    }
    if (pid == 0) {
        close(fds[0]);
        guard_child(fds[1], path, parent, limit);
    }
    close(fds[1]);
    int rc = guard_receive(fds[0], pid, deadline, limit, path, s, err);
    close(fds[0]);
    return rc;
}
