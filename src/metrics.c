/* metrics: the per-epoch CSV (fixed columns, see METRICS_HEADER) and the
 * progress line. Missing figures (no global model, no participants) are
 * written as empty fields. */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

FILE *metrics_open(const char *path, char *err)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        err_set(err, "%s: cannot open for writing: %s", path, strerror(errno));
        return NULL;
    }
    if (fprintf(f, "%s\n", METRICS_HEADER) < 0 || fflush(f) != 0) {
        err_set(err, "%s: write failed: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    return f;
}

FILE *metrics_open_resume(const char *path, int upto, char *err)
{
    FILE *in = fopen(path, "r");
    if (!in) {
        if (errno == ENOENT)
            return metrics_open(path, err);
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        fclose(in);
        return NULL;
    }
    char line[1024];
    int ok = fgets(line, sizeof line, in) && strncmp(line, METRICS_HEADER, strlen(METRICS_HEADER)) == 0;
    if (!ok) {
        err_set(err, "%s: not a dssgd metrics file (header differs); move it away to resume", path);
        fclose(in); fclose(out); remove(tmp);
        return NULL;
    }
    fputs(line, out);
    while (fgets(line, sizeof line, in)) {
        /* Keep whole rows only: a row torn by a crash (no newline, or not
         * the 12 columns) is dropped and its epoch runs again. */
        int commas = 0;
        for (const char *p = line; *p; p++)
            commas += *p == ',';
        size_t len = strlen(line);
        int epoch = atoi(line);
        if (epoch >= 1 && epoch <= upto && commas == 11 && len > 0 && line[len - 1] == '\n')
            fputs(line, out);
    }
    fclose(in);
    if (fflush(out) != 0 || fclose(out) != 0 || rename(tmp, path) != 0) {
        err_set(err, "%s: rewrite failed: %s", path, strerror(errno));
        remove(tmp);
        return NULL;
    }
    FILE *f = fopen(path, "a");
    if (!f)
        err_set(err, "%s: cannot append: %s", path, strerror(errno));
    return f;
}

int metrics_write(FILE *f, const metrics_row *r, char *err)
{
    char global[64] = ",", part[96] = ",,";
    if (r->has_global)
        snprintf(global, sizeof global, "%.6f,%.6f", r->global_acc, r->global_loss);
    if (r->has_part)
        snprintf(part, sizeof part, "%.6f,%.6f,%.6f", r->part_acc_mean, r->part_acc_min,
                 r->part_acc_max);
    int rc = fprintf(f, "%d,%.3f,%s,%s,%llu,%llu,%llu,%llu,%.6g\n", r->epoch, r->seconds,
                     global, part, (unsigned long long)r->bytes_up,
                     (unsigned long long)r->bytes_down, (unsigned long long)r->uploads_accepted,
                     (unsigned long long)r->uploads_rejected, r->epsilon);
    if (rc < 0 || fflush(f) != 0)
        return err_set(err, "metrics: write failed: %s", strerror(errno));
    return 0;
}

void metrics_progress(FILE *out, const metrics_row *r, int epochs)
{
    char global[64] = "", part[96] = "", traffic[96] = "";
    if (r->has_global)
        snprintf(global, sizeof global, "  global acc %.4f loss %.4f", r->global_acc,
                 r->global_loss);
    if (r->has_part)
        snprintf(part, sizeof part, "  local acc %.4f [%.4f, %.4f]", r->part_acc_mean,
                 r->part_acc_min, r->part_acc_max);
    if (r->bytes_up || r->bytes_down)
        snprintf(traffic, sizeof traffic, "  up %.2f MB down %.2f MB  rejected %llu",
                 (double)r->bytes_up / 1e6, (double)r->bytes_down / 1e6,
                 (unsigned long long)r->uploads_rejected);
    fprintf(out, "epoch %d/%d  %.2fs%s%s%s\n", r->epoch, epochs, r->seconds, global, part,
            traffic);
    fflush(out);
}
