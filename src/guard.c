/* guard: a parser of an untrusted file run in a forked, time-limited child
 * process, its result sent back through a pipe (include/guard.h).
 *
 * On the pipe: a header (the verdict, parse's message, the arrays' count
 * and lengths), then when parse accepted, the summary and the arrays in
 * order. The copy through the pipe costs about what a second parse would,
 * and the child gives back each block's pages once sent, so the peak memory
 * stays about one copy of the result. */
/* pipe2, madvise, prctl (Linux, like every target of dssgd). */
#define _GNU_SOURCE
#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

void (*guard_test_child_hook)(void);

/* Bytes per write by the child; it gives back each block's pages once sent. */
#define GUARD_BLOCK ((size_t)8 << 20)

/* What the child writes first. Both ends are this same binary, so the
 * struct crosses the pipe as it is. */
typedef struct {
    int32_t rc;     /* 0: the summary and the arrays follow; -1: refused, err says why */
    int32_t nparts; /* arrays that follow */
    uint64_t bytes[GUARD_PARTS_MAX];
    char err[ERR_LEN];
} guard_header;

/* The summary's buffer, aligned for any struct a caller puts in it. */
typedef union {
    max_align_t align;
    unsigned char bytes[GUARD_META_MAX];
} guard_meta;

/* Copies s into buf (cap bytes) for a message: printable ASCII, others as
 * '?', cut short with "..." when it does not fit. */
static void quote(const char *s, char *buf, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < cap; i++)
        buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[0] && j + 4 >= cap && j >= 3)
        memcpy(buf + j - 3, "...", 3);
    buf[j] = '\0';
}

int guard_limit(const char *path, const char *env, long *seconds, char *err)
{
    const char *v = getenv(env);
    if (v) {
        long value = 0;
        size_t i = 0;
        for (; v[i] >= '0' && v[i] <= '9' && value <= GUARD_MAX_LIMIT; i++)
            value = value * 10 + (v[i] - '0');
        if (i == 0 || v[i] != '\0' || value < 1 || value > GUARD_MAX_LIMIT) {
            char found[64];
            quote(v, found, sizeof found);
            return err_set(err, "%s: not loaded: %s is '%s', expected whole seconds from 1 to %ld",
                           path, env, found, GUARD_MAX_LIMIT);
        }
        *seconds = value;
        return 0;
    }
    struct stat st;
    long long size = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : 0;
    *seconds = 60 + (long)(size / 10000000);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Writes all of len bytes. With release, the pages sent are given back as it
 * goes: the child never reads them again, and the parent's copy of a
 * multi-GB result then does not sit beside a whole second one. Only pages
 * wholly inside buf are released, so malloc's own data is never touched. */
static int write_all(int fd, const void *buf, size_t len, int release)
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
_Noreturn static void child(int fd, const guard_job *job, pid_t parent, long limit)
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
    if (guard_test_child_hook)
        guard_test_child_hook();

    /* Static: the header and summary are small, but the child's stack may
     * be deep in a parser that recursed. */
    static guard_header head;
    static guard_meta meta;
    static guard_part parts[GUARD_PARTS_MAX];
    memset(&head, 0, sizeof head);
    memset(&meta, 0, sizeof meta);
    int nparts = 0;
    head.rc = job->parse(job->ctx, job->path, meta.bytes, parts, &nparts, head.err) == 0 ? 0 : -1;
    if (head.rc == 0 && (nparts < 0 || nparts > GUARD_PARTS_MAX)) {
        err_set(head.err, "%s: not loaded: the reader named %d arrays (at most %d)", job->path,
                nparts, GUARD_PARTS_MAX);
        head.rc = -1;
    }
    if (head.rc == 0) {
        head.nparts = nparts;
        for (int i = 0; i < nparts; i++)
            head.bytes[i] = parts[i].bytes;
    }
    head.err[ERR_LEN - 1] = '\0';
    if (write_all(fd, &head, sizeof head, 0) < 0)
        _exit(1);
    if (head.rc == 0) {
        if (write_all(fd, meta.bytes, job->meta_bytes, 0) < 0)
            _exit(1);
        for (int i = 0; i < nparts; i++)
            if (write_all(fd, parts[i].data, parts[i].bytes, 1) < 0)
                _exit(1);
    }
    /* _exit: no atexit handlers (HDF5's shutdown, MPI's, LeakSanitizer's) and
     * no flush of stdio buffers copied from the caller. What parse allocated
     * is not freed: the process ends here. */
    _exit(0);
}

enum { READ_DONE, READ_EOF, READ_LATE, READ_FAILED };

/* Reads exactly len bytes from fd by deadline (ms, CLOCK_MONOTONIC). */
static int read_all(int fd, void *buf, size_t len, int64_t deadline)
{
    char *p = buf;
    while (len > 0) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return READ_LATE;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (ready < 0 && errno != EINTR)
            return READ_FAILED;
        if (ready <= 0)
            continue;
        ssize_t got = read(fd, p, len < ((size_t)1 << 30) ? len : (size_t)1 << 30);
        if (got < 0 && errno != EINTR)
            return READ_FAILED;
        if (got == 0)
            return READ_EOF;
        if (got > 0) {
            p += got;
            len -= (size_t)got;
        }
    }
    return READ_DONE;
}

/* A header that the child's own code could have written. */
static int header_valid(const guard_header *h)
{
    if (memchr(h->err, '\0', sizeof h->err) == NULL)
        return 0;
    if (h->rc == -1)
        return 1;
    return h->rc == 0 && h->nparts >= 0 && h->nparts <= GUARD_PARTS_MAX;
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

enum { OUTCOME_WHOLE, OUTCOME_REFUSED_BY_ACCEPT, OUTCOME_MALFORMED, OUTCOME_CUT };

/* The parent: reads the header, the summary and the arrays by deadline,
 * then reaps the child and says how it ended. */
static int receive(int fd, pid_t pid, int64_t deadline, long limit, const guard_job *job,
                   char *err)
{
    const char *path = job->path, *reader = job->reader;
    guard_header head;
    guard_meta meta;
    int got = read_all(fd, &head, sizeof head, deadline), read_errno = errno;
    int outcome = OUTCOME_CUT, accepted = 0;
    char accept_err[ERR_LEN] = "";
    if (got == READ_DONE && !header_valid(&head)) {
        outcome = OUTCOME_MALFORMED;
    } else if (got == READ_DONE && head.rc == -1) {
        outcome = OUTCOME_WHOLE;
    } else if (got == READ_DONE) {
        got = read_all(fd, meta.bytes, job->meta_bytes, deadline);
        read_errno = errno;
        if (got == READ_DONE) {
            guard_part parts[GUARD_PARTS_MAX];
            int nparts = 0;
            memset(parts, 0, sizeof parts);
            int rc = job->accept(job->ctx, meta.bytes, parts, &nparts, accept_err);
            accepted = rc == 0;
            if (rc == -1) {
                outcome = OUTCOME_REFUSED_BY_ACCEPT;
            } else if (rc != 0 || nparts != head.nparts) {
                outcome = OUTCOME_MALFORMED;
            } else {
                for (int i = 0; i < nparts; i++)
                    if (parts[i].bytes != head.bytes[i])
                        outcome = OUTCOME_MALFORMED;
                for (int i = 0; i < nparts && got == READ_DONE && outcome != OUTCOME_MALFORMED;
                     i++) {
                    got = read_all(fd, parts[i].data, parts[i].bytes, deadline);
                    read_errno = errno;
                }
                if (got == READ_DONE && outcome != OUTCOME_MALFORMED)
                    outcome = OUTCOME_WHOLE;
            }
        }
    }
    /* After a whole result the child's next step is _exit; at end of file it
     * is gone. Else it may be looping, or blocked writing what we no longer
     * read: stop it. */
    if (outcome != OUTCOME_WHOLE && got != READ_EOF)
        kill(pid, SIGKILL);
    int status = 0;
    pid_t reaped;
    while ((reaped = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    /* The child's exit status is not asked for once its result is whole:
     * valgrind may rewrite it. */
    if (outcome == OUTCOME_WHOLE && head.rc == 0)
        return 0;
    if (accepted && job->discard)
        job->discard(job->ctx);
    if (outcome == OUTCOME_WHOLE)
        return err_set(err, "%s", head.err);
    if (outcome == OUTCOME_REFUSED_BY_ACCEPT)
        return err_set(err, "%s", accept_err);
    if (outcome == OUTCOME_MALFORMED)
        return err_set(err, "%s: the process reading it with %s sent a malformed result (%s may "
                       "have corrupted its memory): the file is damaged or hostile; not loaded",
                       path, reader, reader);
    if (got == READ_LATE)
        return err_set(err, "%s: %s did not finish reading it within %ld s: the file is damaged "
                       "or hostile (if it is trusted and this slow to read, raise %s); not loaded",
                       path, reader, limit, job->env);
    if (got == READ_FAILED)
        return err_set(err, "%s: not loaded: cannot read the result of the process reading it: %s",
                       path, strerror(read_errno));
    if (reaped == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return err_set(err, "%s: the process reading it with %s was killed (SIGKILL, perhaps for "
                       "lack of memory): the file may be damaged or hostile; not loaded", path,
                       reader);
    if (reaped == pid && WIFSIGNALED(status)) {
        char buf[32];
        return err_set(err, "%s: the %s library crashed (%s) while reading it: the file is "
                       "damaged or hostile; not loaded", path, reader,
                       signal_name(WTERMSIG(status), buf, sizeof buf));
    }
    if (reaped == pid && WIFEXITED(status))
        return err_set(err, "%s: the process reading it with %s ended (exit status %d) without a "
                       "result: the file may be damaged or hostile; not loaded", path, reader,
                       WEXITSTATUS(status));
    return err_set(err, "%s: the process reading it with %s ended without a result: the file "
                   "may be damaged or hostile; not loaded", path, reader);
}

int guard_run(const guard_job *job, char *err)
{
    if (job->meta_bytes > GUARD_META_MAX)
        return err_set(err, "%s: not loaded: a summary of %zu bytes (at most %d)", job->path,
                       job->meta_bytes, GUARD_META_MAX);
    long limit = 0;
    if (guard_limit(job->path, job->env, &limit, err) < 0)
        return -1;
    /* O_CLOEXEC: a program another thread starts must not hold the write end
     * open, or the end of file that says the child is gone never comes. */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return err_set(err, "%s: not loaded: cannot make a pipe to the process that would read "
                       "it: %s", job->path, strerror(errno));
    pid_t parent = getpid();
    int64_t deadline = now_ms() + (int64_t)limit * 1000;
    pid_t pid = fork();
    if (pid < 0) {
        int fork_errno = errno;
        close(fds[0]);
        close(fds[1]);
        return err_set(err, "%s: not loaded: cannot start the process that would read it (fork: "
                       "%s)", job->path, strerror(fork_errno));
    }
    if (pid == 0) {
        close(fds[0]);
        child(fds[1], job, parent, limit);
    }
    close(fds[1]);
    int rc = receive(fds[0], pid, deadline, limit, job, err);
    close(fds[0]);
    return rc;
}
