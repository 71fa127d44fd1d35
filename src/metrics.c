/* metrics: the per-epoch CSV (fixed columns, see METRICS_HEADER) and the
 * progress line. Missing figures (no global model, no participants) are
 * written as empty fields. */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

/* path opened with flags as a stream in mode, or NULL with "<path>: <doing>:
 * <cause>". Only a regular file is accepted, and nothing blocks: a FIFO
 * (or a device) at path is refused before and after the open, which is
 * non-blocking; the stream then blocks as usual. */
static FILE *open_regular(const char *path, int flags, const char *mode, const char *doing,
                          char *err)
{
    struct stat st;
    int fd = -1;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        goto not_regular;
    fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        err_set(err, "%s: %s: %s", path, doing, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto not_regular;
    int fl = fcntl(fd, F_GETFL);
    FILE *f = fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0 ? fdopen(fd, mode) : NULL;
    if (!f) {
        err_set(err, "%s: %s: %s", path, doing, strerror(errno));
        close(fd);
    }
    return f;
not_regular:
    if (fd >= 0)
        close(fd);
    if (S_ISDIR(st.st_mode))
        err_set(err, "%s: %s: %s", path, doing, strerror(EISDIR));
    else
        err_set(err, "%s: %s: not a regular file", path, doing);
    return NULL;
}

FILE *metrics_open(const char *path, char *err)
{
    FILE *f = open_regular(path, O_WRONLY | O_CREAT | O_TRUNC, "w", "cannot open for writing",
                           err);
    if (!f)
        return NULL;
    if (fprintf(f, "%s\n", METRICS_HEADER) < 0 || fflush(f) != 0) {
        err_set(err, "%s: write failed: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    return f;
}

/* Copies the header of in, then its whole rows of epochs 1..upto, to out.
 * -1 with err if in is not a metrics file or a read or write fails. */
static int copy_rows(FILE *in, FILE *out, const char *path, int upto, char *err)
{
    char line[1024];
    if (!fgets(line, sizeof line, in) || strncmp(line, METRICS_HEADER, strlen(METRICS_HEADER)) != 0) {
        if (ferror(in))
            return err_set(err, "%s: read error: %s", path, strerror(errno));
        return err_set(err, "%s: not a dssgd metrics file (header differs); move it away to resume",
                       path);
    }
    if (fputs(line, out) == EOF)
        return err_set(err, "%s: rewrite failed: %s", path, strerror(errno));
    size_t len = strlen(line);
    int at_start = len > 0 && line[len - 1] == '\n'; /* fgets splits long lines */
    while (fgets(line, sizeof line, in)) {
        /* Keep whole rows only: a row torn by a crash (no newline, or not
         * the 12 columns) is dropped and its epoch runs again; so is a line
         * too long for the buffer, piece by piece. */
        int commas = 0;
        for (const char *p = line; *p; p++)
            commas += *p == ',';
        len = strlen(line);
        int whole = at_start && len > 0 && line[len - 1] == '\n';
        at_start = len > 0 && line[len - 1] == '\n';
        int epoch = atoi(line);
        if (whole && epoch >= 1 && epoch <= upto && commas == 11 && fputs(line, out) == EOF)
            return err_set(err, "%s: rewrite failed: %s", path, strerror(errno));
    }
    if (ferror(in))
        return err_set(err, "%s: read error: %s", path, strerror(errno));
    return 0;
}

FILE *metrics_open_resume(const char *path, int upto, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return metrics_open(path, err);
    FILE *in = open_regular(path, O_RDONLY, "r", "cannot open", err);
    if (!in)
        return NULL;
    size_t len = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(len);
    if (!tmp) {
        err_set(err, "%s: out of memory", path);
        fclose(in);
        return NULL;
    }
    snprintf(tmp, len, "%s.tmp", path);
    /* O_NOFOLLOW: a link planted at the temporary name is not written through */
    FILE *out = open_regular(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, "w", "cannot write",
                             err);
    if (!out) {
        free(tmp);
        fclose(in);
        return NULL;
    }
    /* Any failure leaves the old file as it was: out is closed and removed,
     * never renamed over it. The rows reach the disk before the rename. */
    int rc = copy_rows(in, out, path, upto, err);
    fclose(in);
    if (rc == 0 && (fflush(out) != 0 || fsync(fileno(out)) != 0))
        rc = err_set(err, "%s: rewrite failed: %s", path, strerror(errno));
    if (rc == 0 && ferror(out))
        rc = err_set(err, "%s: rewrite failed: write error", path);
    if (fclose(out) != 0 && rc == 0)
        rc = err_set(err, "%s: rewrite failed: %s", path, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = err_set(err, "%s: rewrite failed: %s", path, strerror(errno));
    if (rc != 0)
        remove(tmp);
    free(tmp);
    return rc == 0 ? open_regular(path, O_WRONLY | O_APPEND, "a", "cannot append", err) : NULL;
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
        snprintf(part, sizeof part, "  local acc%s %.4f [%.4f, %.4f]",
                 r->part_sample ? " (sample)" : "", r->part_acc_mean, r->part_acc_min,
                 r->part_acc_max);
    if (r->bytes_up || r->bytes_down)
        snprintf(traffic, sizeof traffic, "  up %.2f MB down %.2f MB  rejected %llu",
                 (double)r->bytes_up / 1e6, (double)r->bytes_down / 1e6,
                 (unsigned long long)r->uploads_rejected);
    char eps[48] = "";
    if (r->epsilon > 0) /* a privacy mechanism spends: the largest total so far */
        snprintf(eps, sizeof eps, "  epsilon %.4g", r->epsilon);
    fprintf(out, "epoch %d/%d  %.2fs%s%s%s%s\n", r->epoch, epochs, r->seconds, global, part,
            traffic, eps);
    fflush(out);
}
