/* test_metrics: the per-epoch CSV has exactly the documented 12 columns, rows
 * of 12 fields (missing figures empty), clear open failures, a one-line
 * progress; no open hangs on a FIFO; a resume keeps the rows up to its epoch,
 * and a write error during that rewrite leaves the old file whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "metrics.h"
#include "test_util.h"

static char tmpdir[TU_TMPDIR_CAP];
static char csv_path[128];

static int group_setup(void **state)
{
    (void)state;
    if (tu_make_tmpdir(tmpdir, "test_metrics") != 0)
        return -1;
    snprintf(csv_path, sizeof csv_path, "%s/metrics.csv", tmpdir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_remove_tree(tmpdir);
    return 0;
}

/* The whole file as a string; caller frees. */
static char *slurp(const char *path) { return (char *)tu_read_file(path, NULL); }

/* Splits line (no newline) at commas into at most max fields, in place;
 * returns the number of fields. */
static int split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        assert_true(n < max);
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static metrics_row full_row(void)
{
    metrics_row r = {
        .epoch = 3, .seconds = 1.25, .has_global = 1, .global_acc = 0.8412,
        .global_loss = 0.4413, .has_part = 1, .part_acc_mean = 0.75, .part_acc_min = 0.5,
        .part_acc_max = 0.875, .bytes_up = ((uint64_t)1 << 40) + 1, .bytes_down = 123456789,
        .uploads_accepted = 29, .uploads_rejected = 1, .epsilon = 1.5,
    };
    return r;
}

/* Writes the header and one row, returns the row's fields (in *buf). */
static int write_one_row(const metrics_row *r, char **buf, char **fields)
{
    char err[ERR_LEN] = "";
    FILE *f = metrics_open(csv_path, err);
    if (!f)
        fail_msg("%s", err);
    if (metrics_write(f, r, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(fclose(f), 0);
    *buf = slurp(csv_path);
    char *row = strchr(*buf, '\n');
    assert_non_null(row);
    row++;
    char *end = strchr(row, '\n');
    assert_non_null(end);
    assert_int_equal(end[1], '\0'); /* exactly one row after the header */
    *end = '\0';
    return split(row, fields, 32);
}

static void assert_number(const char *field, double want, double tol)
{
    char *end;
    double v = strtod(field, &end);
    if (end == field || *end != '\0' || fabs(v - want) > tol)
        fail_msg("field \"%s\" should be %g within %g", field, want, tol);
}

static void test_open_writes_exactly_the_header(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    FILE *f = metrics_open(csv_path, err);
    if (!f)
        fail_msg("%s", err);
    assert_int_equal(fclose(f), 0);
    char *text = slurp(csv_path);
    assert_string_equal(text, METRICS_HEADER "\n");
    /* the column names of docs/DESIGN.md ('Metrics'), in order, written out
     * here rather than taken from the macro */
    static const char *const columns[] = {
        "epoch", "seconds", "global_acc", "global_loss", "part_acc_mean", "part_acc_min",
        "part_acc_max", "bytes_up", "bytes_down", "uploads_accepted", "uploads_rejected",
        "epsilon",
    };
    text[strlen(text) - 1] = '\0';
    char *fields[32];
    assert_int_equal(split(text, fields, 32), 12);
    for (int i = 0; i < 12; i++)
        assert_string_equal(fields[i], columns[i]);
    free(text);
}

static void test_open_truncates_an_existing_file(void **state)
{
    (void)state;
    FILE *f = fopen(csv_path, "w");
    assert_non_null(f);
    fputs("old contents\nmore old contents\n", f);
    fclose(f);
    char err[ERR_LEN] = "";
    f = metrics_open(csv_path, err);
    assert_non_null(f);
    fclose(f);
    char *text = slurp(csv_path);
    assert_string_equal(text, METRICS_HEADER "\n");
    free(text);
}

static void test_row_has_twelve_fields_with_the_values(void **state)
{
    (void)state;
    metrics_row r = full_row();
    char *buf, *fields[32];
    assert_int_equal(write_one_row(&r, &buf, fields), 12);
    /* tolerances: half a unit in the last printed digit (%.3f seconds,
     * %.6f accuracies and loss, %.6g epsilon); counters are exact */
    assert_string_equal(fields[0], "3");
    assert_number(fields[1], 1.25, 5e-4);
    assert_number(fields[2], 0.8412, 5e-7);
    assert_number(fields[3], 0.4413, 5e-7);
    assert_number(fields[4], 0.75, 5e-7);
    assert_number(fields[5], 0.5, 5e-7);
    assert_number(fields[6], 0.875, 5e-7);
    assert_string_equal(fields[7], "1099511627777");
    assert_string_equal(fields[8], "123456789");
    assert_string_equal(fields[9], "29");
    assert_string_equal(fields[10], "1");
    assert_number(fields[11], 1.5, 5e-6);
    free(buf);
}

static void test_missing_global_figures_are_empty_fields(void **state)
{
    (void)state;
    metrics_row r = full_row();
    r.has_global = 0;
    char *buf, *fields[32];
    assert_int_equal(write_one_row(&r, &buf, fields), 12);
    assert_string_equal(fields[2], "");
    assert_string_equal(fields[3], "");
    assert_number(fields[4], 0.75, 5e-7);
    assert_string_equal(fields[9], "29");
    free(buf);
}

static void test_missing_participant_figures_are_empty_fields(void **state)
{
    (void)state;
    metrics_row r = full_row();
    r.has_part = 0;
    char *buf, *fields[32];
    assert_int_equal(write_one_row(&r, &buf, fields), 12);
    assert_number(fields[2], 0.8412, 5e-7);
    assert_string_equal(fields[4], "");
    assert_string_equal(fields[5], "");
    assert_string_equal(fields[6], "");
    assert_string_equal(fields[7], "1099511627777");
    free(buf);
}

static void test_both_missing_still_twelve_fields(void **state)
{
    (void)state;
    metrics_row r = {.epoch = 1};
    char *buf, *fields[32];
    assert_int_equal(write_one_row(&r, &buf, fields), 12);
    for (int i = 2; i <= 6; i++)
        assert_string_equal(fields[i], "");
    assert_string_equal(fields[7], "0");
    assert_number(fields[11], 0, 0);
    free(buf);
}

static void test_each_row_is_on_disk_before_close(void **state)
{
    (void)state;
    char err[ERR_LEN] = "";
    FILE *f = metrics_open(csv_path, err);
    assert_non_null(f);
    metrics_row r = full_row();
    for (int e = 1; e <= 3; e++) {
        r.epoch = e;
        assert_int_equal(metrics_write(f, &r, err), 0);
        /* read through another stream while f is still open */
        char *text = slurp(csv_path);
        int lines = 0;
        for (char *p = text; *p; p++)
            lines += *p == '\n';
        assert_int_equal(lines, 1 + e);
        free(text);
    }
    fclose(f);
}

static void assert_open_fails(const char *path)
{
    char err[ERR_LEN] = "";
    FILE *f = metrics_open(path, err);
    if (f) {
        fclose(f);
        fail_msg("metrics_open(\"%s\") succeeded", path);
    }
    if (!strstr(err, path))
        fail_msg("message \"%s\" should name \"%s\"", err, path);
}

static void test_open_refuses_a_directory_naming_it(void **state)
{
    (void)state;
    assert_open_fails(tmpdir);
}

static void test_open_refuses_a_missing_directory_naming_it(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/no-such-dir/metrics.csv", tmpdir);
    assert_open_fails(path);
}

/* Neither open may hang on a FIFO (no reader, no writer) or write to a
 * device: both are refused naming the path. */
static void test_open_refuses_fifos_and_devices(void **state)
{
    (void)state;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo.csv", tmpdir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(30); /* a hang fails the test */
    assert_open_fails(fifo);
    char err[ERR_LEN] = "";
    FILE *f = metrics_open_resume(fifo, 3, err);
    assert_null(f);
    if (!strstr(err, fifo) || !strstr(err, "not a regular file"))
        fail_msg("unclear message: %s", err);
    assert_open_fails("/dev/null");
    alarm(0);
    assert_int_equal(unlink(fifo), 0);
}

/* A full device under an open stream: the row's write fails with the cause. */
static void test_write_error_is_reported(void **state)
{
    (void)state;
    FILE *f = fopen("/dev/full", "w");
    if (!f)
        skip();
    metrics_row r = full_row();
    char err[ERR_LEN] = "";
    assert_int_equal(metrics_write(f, &r, err), -1);
    if (!strstr(err, "metrics: write failed") || !strstr(err, "No space left"))
        fail_msg("unclear message: %s", err);
    fclose(f);
}

/* Writes the header and rows 1..rows. */
static void write_rows(int rows)
{
    char err[ERR_LEN] = "";
    FILE *f = metrics_open(csv_path, err);
    if (!f)
        fail_msg("%s", err);
    metrics_row r = full_row();
    for (int e = 1; e <= rows; e++) {
        r.epoch = e;
        assert_int_equal(metrics_write(f, &r, err), 0);
    }
    assert_int_equal(fclose(f), 0);
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* Rows up to the checkpoint's epoch stay, later and torn ones go, and rows
 * written after it follow them. */
static void test_resume_keeps_rows_up_to_the_epoch(void **state)
{
    (void)state;
    write_rows(5);
    FILE *f = fopen(csv_path, "a");
    assert_non_null(f);
    fputs("6,1.000,0.5,0.5", f); /* torn by a crash */
    fclose(f);
    char err[ERR_LEN] = "";
    f = metrics_open_resume(csv_path, 3, err);
    if (!f)
        fail_msg("%s", err);
    metrics_row r = full_row();
    r.epoch = 4;
    assert_int_equal(metrics_write(f, &r, err), 0);
    assert_int_equal(fclose(f), 0);
    char *text = slurp(csv_path);
    assert_int_equal(count_lines(text), 1 + 4);
    assert_int_equal(strncmp(text, METRICS_HEADER "\n1,", strlen(METRICS_HEADER) + 3), 0);
    assert_non_null(strstr(text, "\n3,"));
    assert_non_null(strstr(text, "\n4,"));
    assert_null(strstr(text, "\n5,"));
    assert_null(strstr(text, "\n6,"));
    free(text);
}

/* A line longer than the reader's buffer is dropped whole: its second piece,
 * which looks like a row, is not kept. */
static void test_resume_drops_an_overlong_line_whole(void **state)
{
    (void)state;
    write_rows(2);
    FILE *f = fopen(csv_path, "a");
    assert_non_null(f);
    for (int i = 0; i < 1023; i++)
        fputc('x', f);
    fputs("2,9.000,,,,,,0,0,0,0,0\n", f);
    fclose(f);
    char err[ERR_LEN] = "";
    f = metrics_open_resume(csv_path, 5, err);
    if (!f)
        fail_msg("%s", err);
    fclose(f);
    char *text = slurp(csv_path);
    assert_int_equal(count_lines(text), 1 + 2);
    assert_null(strstr(text, "9.000"));
    free(text);
}

/* Open descriptors of this process. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* The rewrite fails part way (a file size limit makes the temporary file's
 * writes fail): the call fails naming the file, the old file is left whole,
 * the temporary file is removed and no descriptor is left open. In a child,
 * whose limit dies with it. */
static void test_resume_write_error_leaves_the_old_file(void **state)
{
    (void)state;
    write_rows(200); /* about 20 KB */
    char *before = slurp(csv_path);
    assert_true(strlen(before) > 8192);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        free(before); /* the child's copy: valgrind checks the child's leaks too */
        signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead */
        struct rlimit rl = {.rlim_cur = 4096, .rlim_max = 4096};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(10);
        int fds = open_fds();
        char err[ERR_LEN] = "";
        FILE *f = metrics_open_resume(csv_path, 200, err);
        if (f)
            _exit(11);
        if (!strstr(err, csv_path) || !strstr(err, "rewrite failed"))
            _exit(12);
        _exit(open_fds() == fds ? 0 : 13);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char *after = slurp(csv_path);
    assert_string_equal(after, before);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", csv_path);
    struct stat st;
    assert_int_equal(stat(tmp, &st), -1);
    free(before);
    free(after);
}

static void assert_progress_one_line(const metrics_row *r, int epochs, const char *phrase)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    metrics_progress(out, r, epochs);
    assert_int_equal(fclose(out), 0);
    assert_true(len > 1);
    assert_int_equal(text[len - 1], '\n');
    assert_null(memchr(text, '\n', len - 1));
    if (!strstr(text, phrase))
        fail_msg("progress line \"%s\" should contain \"%s\"", text, phrase);
    free(text);
}

static void test_progress_prints_one_line(void **state)
{
    (void)state;
    metrics_row r = full_row();
    assert_progress_one_line(&r, 20, "epoch 3/20");
    r.has_global = 0;
    assert_progress_one_line(&r, 20, "epoch 3/20");
    r.has_part = 0;
    r.bytes_up = r.bytes_down = 0;
    assert_progress_one_line(&r, 20, "epoch 3/20");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_writes_exactly_the_header),
        cmocka_unit_test(test_open_truncates_an_existing_file),
        cmocka_unit_test(test_row_has_twelve_fields_with_the_values),
        cmocka_unit_test(test_missing_global_figures_are_empty_fields),
        cmocka_unit_test(test_missing_participant_figures_are_empty_fields),
        cmocka_unit_test(test_both_missing_still_twelve_fields),
        cmocka_unit_test(test_each_row_is_on_disk_before_close),
        cmocka_unit_test(test_open_refuses_a_directory_naming_it),
        cmocka_unit_test(test_open_refuses_a_missing_directory_naming_it),
        cmocka_unit_test(test_progress_prints_one_line),
        cmocka_unit_test(test_open_refuses_fifos_and_devices),
        cmocka_unit_test(test_write_error_is_reported),
        cmocka_unit_test(test_resume_keeps_rows_up_to_the_epoch),
        cmocka_unit_test(test_resume_drops_an_overlong_line_whole),
        cmocka_unit_test(test_resume_write_error_leaves_the_old_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
