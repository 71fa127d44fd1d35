/* test_metrics: the per-epoch CSV has exactly the documented 12 columns, rows
 * of 12 fields (missing figures empty), clear open failures, a one-line progress. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
