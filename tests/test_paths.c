/* test_paths: the checks made before training on a run's outputs and inputs
 * (each refusal with the option, the path and the cause; each ordinary path
 * accepted, the directory left as it was), the same-file check, the output
 * locks (a second process is refused naming the holder's pid; a lock file
 * left by a dead process does not block), and the IDX reader's use of the
 * input check. Nothing here may hang: FIFOs are among the paths, and an
 * alarm fails the test rather than wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "idx.h"
#include "paths.h"
#include "test_util.h"

static char tmpdir[TU_TMPDIR_CAP];

static int group_setup(void **state)
{
    (void)state;
    alarm(120); /* a hang is a failure */
    return tu_make_tmpdir(tmpdir, "test_paths");
}

static int group_teardown(void **state)
{
    (void)state;
    tu_remove_tree(tmpdir);
    return 0;
}

/* A fresh, empty directory under tmpdir for one test. */
static void fresh_dir(char *dir, size_t cap, const char *name)
{
    int n = snprintf(dir, cap, "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < cap);
    tu_remove_tree(dir);
    assert_int_equal(mkdir(dir, 0755), 0);
}

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

/* Entries in dir, "." and ".." excluded. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("message \"%s\" should contain \"%s\"", text, part);
}

/* ---- outputs ------------------------------------------------------------- */

static void assert_output_ok(const char *path)
{
    char err[ERR_LEN] = "";
    if (paths_check_output(path, "--checkpoint", err) != 0)
        fail_msg("%s refused: %s", path, err);
}

/* Refused, the message starting with the option and path, containing cause. */
static void assert_output_refused(const char *path, const char *cause)
{
    char err[ERR_LEN] = "";
    if (paths_check_output(path, "--checkpoint", err) == 0)
        fail_msg("%s accepted", path);
    char head[ERR_LEN];
    snprintf(head, sizeof head, "--checkpoint %s: ", path);
    if (strlen(path) <= PATHS_SHOWN && strncmp(err, head, strlen(head)) != 0)
        fail_msg("message \"%s\" should start with \"%s\"", err, head);
    assert_contains(err, cause);
}

static void test_output_new_file_in_existing_dir(void **state)
{
    (void)state;
    char dir[256], path[300];
    fresh_dir(dir, sizeof dir, "new");
    join(path, sizeof path, dir, "run.h5");
    assert_output_ok(path);
    assert_int_equal(entries(dir), 0); /* the probe left nothing */
}

static void test_output_existing_regular_file(void **state)
{
    (void)state;
    char dir[256], path[300];
    fresh_dir(dir, sizeof dir, "existing");
    join(path, sizeof path, dir, "run.h5");
    tu_write_file(path, "old", 3);
    assert_output_ok(path);
    unsigned char *text = tu_read_file(path, NULL);
    assert_string_equal((char *)text, "old");
    free(text);
    assert_int_equal(entries(dir), 1);
}

static void test_output_relative_paths(void **state)
{
    (void)state;
    char dir[256], sub[300], cwd[512];
    fresh_dir(dir, sizeof dir, "relative");
    join(sub, sizeof sub, dir, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    char err[ERR_LEN] = "";
    int rc1 = paths_check_output("run.h5", "--checkpoint", err);
    int rc2 = paths_check_output("sub/m.csv", "--metrics", err);
    int rc3 = paths_check_output("./sub/../run.h5", "--checkpoint", err);
    int rc4 = paths_check_output("nowhere/run.h5", "--checkpoint", err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc1, 0);
    assert_int_equal(rc2, 0);
    assert_int_equal(rc3, 0);
    assert_int_equal(rc4, -1);
    assert_string_equal(err, "--checkpoint nowhere/run.h5: directory nowhere does not exist");
    assert_int_equal(entries(dir), 1); /* sub only */
}

static void test_output_empty_and_directory_names(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    assert_int_equal(paths_check_output("", "--metrics", err), -1);
    assert_string_equal(err, "--metrics: empty path");
    assert_int_equal(paths_check_output(NULL, "--metrics", err), -1);
    char dir[256], path[300];
    fresh_dir(dir, sizeof dir, "dirnames");
    join(path, sizeof path, dir, "");
    assert_output_refused(path, "ends in '/'");
    assert_output_refused(dir, "exists and is a directory, not a regular file");
}

static void test_output_missing_directory(void **state)
{
    (void)state;
    char dir[256], path[300], cause[400];
    fresh_dir(dir, sizeof dir, "missing");
    join(path, sizeof path, dir, "no/such/run.h5");
    snprintf(cause, sizeof cause, "directory %s/no/such does not exist", dir);
    assert_output_refused(path, cause);
}

static void test_output_directory_is_a_file(void **state)
{
    (void)state;
    char dir[256], file[300], path[400], cause[400];
    fresh_dir(dir, sizeof dir, "notdir");
    join(file, sizeof file, dir, "plain");
    tu_write_file(file, "x", 1);
    join(path, sizeof path, file, "run.h5");
    snprintf(cause, sizeof cause, "%s is not a directory", file);
    assert_output_refused(path, cause);
}

static void test_output_refuses_non_regular_files(void **state)
{
    (void)state;
    char dir[256], fifo[300];
    fresh_dir(dir, sizeof dir, "special");
    join(fifo, sizeof fifo, dir, "fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_output_refused(fifo, "exists and is a FIFO, not a regular file");
    assert_output_refused("/dev/null", "exists and is a character device");
    assert_output_refused("/dev/full", "exists and is a character device");
    assert_int_equal(entries(dir), 1);
}

static void test_output_refuses_a_symlink_naming_its_target(void **state)
{
    (void)state;
    char dir[256], target[300], link[300];
    fresh_dir(dir, sizeof dir, "symlink");
    join(target, sizeof target, dir, "real.h5");
    join(link, sizeof link, dir, "link.h5");
    tu_write_file(target, "x", 1);
    assert_int_equal(symlink("real.h5", link), 0);
    assert_output_refused(link, "is a symbolic link (to real.h5)");
    assert_output_refused("/dev/stdout", "is a symbolic link (to /proc/self/fd/1)");
    /* a dangling link too: the rename would replace it */
    char dangling[300];
    join(dangling, sizeof dangling, dir, "dangling.h5");
    assert_int_equal(symlink("nowhere.h5", dangling), 0);
    assert_output_refused(dangling, "is a symbolic link (to nowhere.h5)");
}

/* NAME_MAX (255 on the file systems tests run on) bounds the temporary
 * name PATH.tmp.<pid>, not only the name itself. */
static void test_output_name_too_long_for_its_temporary(void **state)
{
    (void)state;
    char dir[256];
    fresh_dir(dir, sizeof dir, "long");
    long name_max = pathconf(dir, _PC_NAME_MAX);
    assert_true(name_max > 10 && name_max < 1000);
    char base[1024], path[1400];
    memset(base, 'n', (size_t)name_max - 3); /* fits, but its temporary does not */
    base[name_max - 3] = '\0';
    join(path, sizeof path, dir, base);
    assert_output_refused(path, "file name too long for its temporary file");
    char err[ERR_LEN] = "";
    paths_check_output(path, "--checkpoint", err);
    assert_contains(err, "shorten it by");
    assert_true(strlen(err) < ERR_LEN - 1); /* nothing cut */
    memset(base, 'n', (size_t)name_max + 1); /* the name itself is too long */
    base[name_max + 1] = '\0';
    join(path, sizeof path, dir, base);
    assert_output_refused(path, "file name too long");
    base[name_max - 20] = '\0'; /* room for .tmp.<pid> */
    join(path, sizeof path, dir, base);
    assert_output_ok(path);
    assert_int_equal(entries(dir), 0);
}

/* A path longer than a message: the cause is still there, whole. */
static void test_output_long_path_keeps_the_cause(void **state)
{
    (void)state;
    char path[1200];
    int n = snprintf(path, sizeof path, "%s", tmpdir);
    for (int i = 0; i < 5; i++)
        n += snprintf(path + n, sizeof path - (size_t)n, "/%0200d", i);
    snprintf(path + n, sizeof path - (size_t)n, "/run.h5");
    char err[ERR_LEN] = "";
    assert_int_equal(paths_check_output(path, "--checkpoint", err), -1);
    assert_true(strlen(err) < ERR_LEN - 1);
    assert_contains(err, "does not exist");
    assert_contains(err, "/run.h5: directory ");
    assert_contains(err, "--checkpoint /tmp/test_paths");
}

/* PATH.tmp.<pid> already there: a regular leftover is accepted and kept, a
 * directory is refused by name. */
static void test_output_leftover_temporary(void **state)
{
    (void)state;
    char dir[256], path[300], tmp[400];
    fresh_dir(dir, sizeof dir, "leftover");
    join(path, sizeof path, dir, "run.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    tu_write_file(tmp, "partial", 7);
    assert_output_ok(path);
    assert_int_equal(entries(dir), 1);
    assert_int_equal(unlink(tmp), 0);
    assert_int_equal(mkdir(tmp, 0755), 0);
    char cause[500];
    snprintf(cause, sizeof cause, "its temporary name %s is taken by a directory", tmp);
    assert_output_refused(path, cause);
}

/* ---- inputs -------------------------------------------------------------- */

static void assert_input_refused(const char *path, const char *cause)
{
    char err[ERR_LEN] = "", want[ERR_LEN];
    assert_int_equal(paths_check_input(path, "--resume", err), -1);
    snprintf(want, sizeof want, "--resume %s: cannot open: %s", path, cause);
    assert_string_equal(err, want);
}

static void test_input_regular_file_and_link(void **state)
{
    (void)state;
    char dir[256], path[300], link[300];
    fresh_dir(dir, sizeof dir, "input");
    join(path, sizeof path, dir, "data");
    join(link, sizeof link, dir, "link");
    tu_write_file(path, "abc", 3);
    assert_int_equal(symlink("data", link), 0);
    char err[ERR_LEN] = "";
    assert_int_equal(paths_check_input(path, "--resume", err), 0);
    int fd = paths_open_input(link, NULL, err);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* reads block as usual */
    char buf[4] = "";
    assert_int_equal(read(fd, buf, 3), 3);
    assert_string_equal(buf, "abc");
    close(fd);
}

static void test_input_refusals(void **state)
{
    (void)state;
    char dir[256], fifo[300], missing[300];
    fresh_dir(dir, sizeof dir, "inputs");
    join(fifo, sizeof fifo, dir, "train-images-idx3-ubyte");
    join(missing, sizeof missing, dir, "missing");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_input_refused(fifo, "not a regular file (a FIFO)");
    assert_input_refused(dir, "Is a directory");
    assert_input_refused(missing, "No such file or directory");
    assert_input_refused("/dev/null", "not a regular file (a character device)");
    char err[ERR_LEN] = "";
    assert_int_equal(paths_open_input(fifo, NULL, err), -1);
    char want[ERR_LEN];
    snprintf(want, sizeof want, "%s: cannot open: not a regular file (a FIFO)", fifo);
    assert_string_equal(err, want);
    assert_int_equal(paths_check_input("", "--resume", err), -1);
    assert_string_equal(err, "--resume: empty path");
}

/* The IDX reader opens through paths_open_input: a FIFO named like an IDX
 * file is refused at once (it used to block the open forever). */
static void test_idx_reader_refuses_a_fifo(void **state)
{
    (void)state;
    char dir[256], fifo[300];
    fresh_dir(dir, sizeof dir, "idx");
    join(fifo, sizeof fifo, dir, "train-images-idx3-ubyte");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    idx_array a;
    char err[ERR_LEN] = "", want[ERR_LEN];
    assert_int_equal(idx_read(fifo, 3, &a, err), -1);
    snprintf(want, sizeof want, "%s: cannot open: not a regular file (a FIFO)", fifo);
    assert_string_equal(err, want);
}

/* ---- two names for one file ---------------------------------------------- */

static int distinct(const char *a, const char *b, char *err)
{
    const char *paths[3] = {a, "", b};
    const char *whats[3] = {"--checkpoint", "--resume", "--metrics"};
    return paths_check_distinct(paths, whats, 3, err);
}

static void test_distinct(void **state)
{
    (void)state;
    char dir[256], a[300], b[300], hard[300], soft[300], alias[400];
    fresh_dir(dir, sizeof dir, "distinct");
    join(a, sizeof a, dir, "a");
    join(b, sizeof b, dir, "b");
    join(hard, sizeof hard, dir, "hard");
    join(soft, sizeof soft, dir, "soft");
    char err[ERR_LEN] = "", want[ERR_LEN];

    /* missing files: by their canonical names */
    assert_int_equal(distinct(a, b, err), 0);
    assert_int_equal(distinct(a, a, err), -1);
    snprintf(want, sizeof want, "--checkpoint and --metrics name the same file (%s): give each "
             "its own", a);
    assert_string_equal(err, want);
    snprintf(alias, sizeof alias, "%s/./../distinct/a", dir);
    assert_int_equal(distinct(a, alias, err), -1);
    assert_contains(err, alias);

    /* existing files: by device and inode */
    tu_write_file(a, "x", 1);
    tu_write_file(b, "y", 1);
    assert_int_equal(link(a, hard), 0);
    assert_int_equal(symlink("a", soft), 0);
    assert_int_equal(distinct(a, b, err), 0);
    assert_int_equal(distinct(a, hard, err), -1);
    assert_int_equal(distinct(soft, a, err), -1);
    assert_int_equal(distinct(a, alias, err), -1);

    /* unset options are skipped */
    assert_int_equal(distinct(a, NULL, err), 0);
    assert_int_equal(distinct("", "", err), 0);
}

/* ---- locks --------------------------------------------------------------- */

static void lock_path_of(char *out, size_t cap, const char *path)
{
    int n = snprintf(out, cap, "%s.lock", path);
    assert_true(n > 0 && (size_t)n < cap);
}

static void test_lock_and_unlock(void **state)
{
    (void)state;
    char dir[256], path[300], lock_file[320];
    fresh_dir(dir, sizeof dir, "lock");
    join(path, sizeof path, dir, "run.h5");
    lock_path_of(lock_file, sizeof lock_file, path);
    paths_lock_t lock = {0};
    char err[ERR_LEN] = "";
    if (paths_lock(path, "--checkpoint", &lock, err) != 0)
        fail_msg("%s", err);
    assert_non_null(lock.path);
    char *text = (char *)tu_read_file(lock_file, NULL);
    assert_int_equal(atol(text), (long)getpid());
    free(text);
    paths_unlock(&lock);
    assert_null(lock.path);
    assert_int_equal(access(lock_file, F_OK), -1); /* removed */
    paths_unlock(&lock); /* twice is fine */
    paths_lock_t never = {0};
    paths_unlock(&never);
    assert_int_equal(entries(dir), 0);
}

/* A child holds the lock: the parent is refused with the child's pid; once
 * the child dies without unlocking, its lock file no longer blocks. */
static void test_lock_held_by_another_process(void **state)
{
    (void)state;
    char dir[256], path[300], lock_file[320];
    fresh_dir(dir, sizeof dir, "locked");
    join(path, sizeof path, dir, "m.csv");
    lock_path_of(lock_file, sizeof lock_file, path);
    int locked[2], go[2];
    assert_int_equal(pipe(locked), 0);
    assert_int_equal(pipe(go), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        paths_lock_t lock = {0};
        char cerr[ERR_LEN];
        char ok = paths_lock(path, "--metrics", &lock, cerr) == 0 ? 'y' : 'n';
        if (write(locked[1], &ok, 1) != 1)
            _exit(2);
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(3);
        _exit(0); /* dies holding it: the kernel releases the lock, the file stays */
    }
    char ok = 0;
    assert_int_equal(read(locked[0], &ok, 1), 1);
    assert_int_equal(ok, 'y');

    paths_lock_t lock = {0};
    char err[ERR_LEN] = "", pid[64];
    assert_int_equal(paths_lock(path, "--metrics", &lock, err), -1);
    assert_null(lock.path);
    snprintf(pid, sizeof pid, "pid %ld on ", (long)child);
    assert_contains(err, pid);
    char head[400];
    snprintf(head, sizeof head, "--metrics %s: in use by another run", path);
    assert_contains(err, head);
    assert_contains(err, lock_file);

    assert_int_equal(write(go[1], "x", 1), 1);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(access(lock_file, F_OK), 0); /* stale */
    if (paths_lock(path, "--metrics", &lock, err) != 0)
        fail_msg("a stale lock file blocked: %s", err);
    char *text = (char *)tu_read_file(lock_file, NULL);
    assert_int_equal(atol(text), (long)getpid());
    free(text);
    paths_unlock(&lock);
    for (int i = 0; i < 2; i++) {
        close(locked[i]);
        close(go[i]);
    }
}

static void test_lock_stale_garbage_is_taken_over(void **state)
{
    (void)state;
    char dir[256], path[300], lock_file[320];
    fresh_dir(dir, sizeof dir, "garbage");
    join(path, sizeof path, dir, "run.h5");
    lock_path_of(lock_file, sizeof lock_file, path);
    tu_write_file(lock_file, "not a pid, and a long line of garbage after it\n", 47);
    paths_lock_t lock = {0};
    char err[ERR_LEN] = "";
    if (paths_lock(path, "--checkpoint", &lock, err) != 0)
        fail_msg("%s", err);
    char *text = (char *)tu_read_file(lock_file, NULL);
    assert_int_equal(atol(text), (long)getpid());
    assert_null(strstr(text, "garbage"));
    free(text);
    paths_unlock(&lock);
}

static void test_lock_refuses_odd_lock_files(void **state)
{
    (void)state;
    char dir[256], path[300], lock_file[320], target[300];
    fresh_dir(dir, sizeof dir, "oddlock");
    join(path, sizeof path, dir, "run.h5");
    join(target, sizeof target, dir, "victim");
    lock_path_of(lock_file, sizeof lock_file, path);
    tu_write_file(target, "keep me", 7);
    assert_int_equal(symlink("victim", lock_file), 0);
    paths_lock_t lock = {0};
    char err[ERR_LEN] = "";
    assert_int_equal(paths_lock(path, "--checkpoint", &lock, err), -1);
    assert_contains(err, "is a symbolic link: remove it");
    unsigned char *text = tu_read_file(target, NULL);
    assert_string_equal((char *)text, "keep me");
    free(text);
    assert_int_equal(unlink(lock_file), 0);
    assert_int_equal(mkfifo(lock_file, 0600), 0);
    assert_int_equal(paths_lock(path, "--checkpoint", &lock, err), -1);
    assert_contains(err, "is a FIFO: remove it");
    assert_int_equal(paths_lock("", "--checkpoint", &lock, err), -1);
    assert_string_equal(err, "--checkpoint: empty path");
    assert_null(lock.path);
}

/* Only PATH.tmp.<digits> regular files go: not other names, not directories. */
static void test_remove_stale_temps_takes_only_the_checkpoints_temporaries(void **state)
{
    (void)state;
    char dir[512], path[600], f[700];
    fresh_dir(dir, sizeof dir, "stale");
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    const char *files[] = {"ck.h5.tmp.123", "ck.h5.tmp.9", "ck.h5.tmp.abc", "ck.h5.tmp.",
                           "other.h5.tmp.1", "ck.h5", "ck.h5.lock"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(f, sizeof f, "%s/%s", dir, files[i]);
        tu_write_file(f, "x", 1);
    }
    snprintf(f, sizeof f, "%s/ck.h5.tmp.77", dir);
    assert_int_equal(mkdir(f, 0755), 0);
    assert_int_equal(paths_remove_stale_temps(path), 2);
    struct stat st;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(f, sizeof f, "%s/%s", dir, files[i]);
        assert_int_equal(stat(f, &st) == 0, i >= 2);
    }
    snprintf(f, sizeof f, "%s/ck.h5.tmp.77", dir);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(paths_remove_stale_temps(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remove_stale_temps_takes_only_the_checkpoints_temporaries),
        cmocka_unit_test(test_output_new_file_in_existing_dir),
        cmocka_unit_test(test_output_existing_regular_file),
        cmocka_unit_test(test_output_relative_paths),
        cmocka_unit_test(test_output_empty_and_directory_names),
        cmocka_unit_test(test_output_missing_directory),
        cmocka_unit_test(test_output_directory_is_a_file),
        cmocka_unit_test(test_output_refuses_non_regular_files),
        cmocka_unit_test(test_output_refuses_a_symlink_naming_its_target),
        cmocka_unit_test(test_output_name_too_long_for_its_temporary),
        cmocka_unit_test(test_output_long_path_keeps_the_cause),
        cmocka_unit_test(test_output_leftover_temporary),
        cmocka_unit_test(test_input_regular_file_and_link),
        cmocka_unit_test(test_input_refusals),
        cmocka_unit_test(test_idx_reader_refuses_a_fifo),
        cmocka_unit_test(test_distinct),
        cmocka_unit_test(test_lock_and_unlock),
        cmocka_unit_test(test_lock_held_by_another_process),
        cmocka_unit_test(test_lock_stale_garbage_is_taken_over),
        cmocka_unit_test(test_lock_refuses_odd_lock_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
