/* run_data: the data of a `dssgd train` run. The IDX sets, or an HDF5 data
 * file (include/h5data.h) whose /train is split into shards as the IDX
 * training set is, or one training file per participant, read only on the
 * rank that hosts the participant (rank 0 alone in mode centralized, the
 * pooled baseline). Also the manifest of the HDF5 files read, which a
 * checkpoint keeps so that a resume refuses a file that changed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "h5data.h"
#include "run_internal.h"

/* Shards are indices into one uint32-indexed training set. */
#define RUN_DATA_MAX_EXAMPLES ((size_t)UINT32_MAX)

static int max_int(int a, int b) { return a > b ? a : b; }

/* Whether this rank reads participant p's file. */
static int reads_site(const run_state *st, int p)
{
    if (st->cfg->mode == MODE_CENTRALIZED)
        return st->tr.rank == 0;
    return run_rank_of(st->tr.size, p) == st->tr.rank;
}

/* Appends src's examples to dst (dst empty: takes src's shape). */
static int append(dataset_t *dst, dataset_t *src, const char *file, char *err)
{
    if (dst->count + src->count > RUN_DATA_MAX_EXAMPLES)
        return err_set(err, "%s: more than %zu training examples on one rank", file,
                       RUN_DATA_MAX_EXAMPLES);
    size_t total = dst->count + src->count;
    float *x = realloc(dst->x, total * src->dim * sizeof *x);
    if (x)
        dst->x = x;
    uint8_t *y = realloc(dst->y, total);
    if (y)
        dst->y = y;
    if (!x || !y)
        return err_set(err, "%s: out of memory for %zu training examples", file, total);
    memcpy(dst->x + dst->count * src->dim, src->x, src->count * src->dim * sizeof *x);
    memcpy(dst->y + dst->count, src->y, src->count);
    dst->channels = src->channels;
    dst->rows = src->rows;
    dst->cols = src->cols;
    dst->dim = src->dim;
    dst->classes = max_int(dst->classes, src->classes);
    dst->count = total;
    return 0;
}

/* Reads the training files of the participants this rank hosts into
 * st->train, one after another in participant order, and fills their
 * records in st->sites. */
static int load_sites(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    for (int p = 0; p < c->participants; p++) {
        if (!reads_site(st, p))
            continue;
        char path[CONFIG_PATH_LEN + 16];
        if (config_participant_file(c, p, path, sizeof path))
            return err_set(err, "--participant-data: participant %d's file name is too long",
                           p);
        run_site *s = &st->sites[p];
        h5data_digest digest;
        dataset_t site;
        if (h5data_digest_file(path, &digest, err) || h5data_load(path, "train", &site, err))
            return err_prefix(err, "participant %d", p);
        if (dataset_check_compatible(&site, &st->test, err)) {
            dataset_free(&site);
            return err_prefix(err, "participant %d's %s against the test set of %s", p, path,
                              c->data_file);
        }
        s->count = site.count;
        s->classes = site.classes;
        s->size = digest.size;
        memcpy(s->sha256, digest.sha256, sizeof s->sha256);
        int rc = append(&st->train, &site, path, err);
        dataset_free(&site);
        if (rc)
            return -1;
    }
    return 0;
}

/* Whether this rank reads the IDX training labels first and the pixels,
 * if any, only once the shards are drawn (run_data_load_hosted_pixels):
 * every rank of a distributed run without an audit holdout to carve from
 * the whole set. Rank 0 then trains nothing and reads no pixels (the
 * slowest part of start-up, 188 MB as floats); a worker reads those of its
 * own participants' shards. */
static int labels_first(const run_state *st)
{
    const config_t *c = st->cfg;
    return !config_is_h5(c) && st->tr.size > 1 && c->mode != MODE_CENTRALIZED &&
           config_audit_holdout(c) == 0;
}

int run_data_load_hosted_pixels(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    int N = c->participants, size = st->tr.size, rank = st->tr.rank;
    if (!labels_first(st) || rank == 0 || run_hosted_by(size, N, rank) == 0)
        return 0;
    uint8_t *keep = calloc(st->train.count ? st->train.count : 1, 1);
    if (!keep)
        return err_set(err, "out of memory");
    for (int p = 0; p < N; p++)
        if (run_rank_of(size, p) == rank)
            for (size_t i = 0; i < st->shards.sizes[p]; i++)
                keep[st->shards.indices[p][i]] = 1;
    int rc = dataset_load_pixels(config_data_dir(c), 1, &st->train, keep, err);
    free(keep);
    return rc;
}

int run_data_load(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    if (!config_is_h5(c)) {
        const char *dir = config_data_dir(c);
        int pixels = !labels_first(st);
        if ((pixels ? dataset_load(dir, 1, &st->train, err)
                    : dataset_load_labels(dir, 1, &st->train, err)) ||
            dataset_load(dir, 0, &st->test, err))
            return -1;
        if (dataset_check_compatible(&st->train, &st->test, err))
            return err_prefix(err, "%s", dir);
        st->classes = st->train.classes;
    } else if (h5data_load(c->data_file, "test", &st->test, err)) {
        return -1;
    } else if (c->participant_data[0]) {
        st->sites = calloc((size_t)c->participants, sizeof *st->sites);
        if (!st->sites)
            return err_set(err, "out of memory");
        return load_sites(st, err); /* st->classes: once all ranks' are known */
    } else {
        if (h5data_load(c->data_file, "train", &st->train, err))
            return -1;
        if (dataset_check_compatible(&st->train, &st->test, err))
            return err_prefix(err, "%s", c->data_file);
        /* the `classes` attribute, which both carry, or the larger set's */
        st->classes = max_int(st->train.classes, st->test.classes);
    }
    /* The audit's non-members leave the training set before any shard is
     * drawn, so no partition can hand them out (docs/DESIGN.md, Privacy
     * audit). Without a holdout nothing moves: the same shards as ever. */
    if (config_audit_holdout(c) > 0 &&
        audit_carve_holdout(&st->train, config_audit_holdout(c), c->seed, &st->holdout, err))
        return -1;
    return 0;
}

int run_data_path(const config_t *c, int k, char *buf, size_t len)
{
    if (!config_is_h5(c)) {
        char idx[4][DATASET_PATH_LEN];
        if (k >= dataset_files(config_data_dir(c), idx))
            return 0;
        snprintf(buf, len, "%s", idx[k]);
        return 1;
    }
    if (k == 0) {
        snprintf(buf, len, "%s", c->data_file);
        return 1;
    }
    if (!c->participant_data[0] || k > c->participants)
        return 0;
    return config_participant_file(c, k - 1, buf, len) == 0;
}

/* "data-file - SIZE SHA256 PATH" or "site P SIZE SHA256 PATH": the first
 * four fields identify the content, the path is where it was read. */
static int manifest_line(char *buf, size_t len, const char *role, int p, uint64_t size,
                         const uint8_t sha256[32], const char *path)
{
    h5data_digest d = {.size = size};
    memcpy(d.sha256, sha256, sizeof d.sha256);
    char hex[65], id[16] = "-";
    h5data_digest_hex(&d, hex);
    if (p >= 0)
        snprintf(id, sizeof id, "%d", p);
    return snprintf(buf, len, "%s %s %" PRIu64 " %s %s\n", role, id, size, hex, path);
}

/* Rank 0: the manifest of the HDF5 files the run reads (NULL for IDX). */
static int build_manifest(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    if (!config_is_h5(c))
        return 0;
    h5data_digest d;
    if (h5data_digest_file(c->data_file, &d, err))
        return -1;
    int lines = 1 + (c->participant_data[0] ? c->participants : 0);
    size_t cap = (size_t)lines * (CONFIG_PATH_LEN + 128), used = 0;
    if (!(st->data_manifest = malloc(cap)))
        return err_set(err, "out of memory");
    used += (size_t)manifest_line(st->data_manifest, cap, "data-file", -1, d.size, d.sha256,
                                  c->data_file);
    for (int p = 0; c->participant_data[0] && p < c->participants; p++) {
        char path[CONFIG_PATH_LEN + 16];
        config_participant_file(c, p, path, sizeof path);
        used += (size_t)manifest_line(st->data_manifest + used, cap - used, "site", p,
                                      st->sites[p].size, st->sites[p].sha256, path);
    }
    return 0;
}

/* Shards of the site files: participant p's are its own examples, which
 * only the ranks that read its file index (positions in st->train). */
static int site_shards(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    dataset_shards *s = &st->shards;
    s->count = c->participants;
    s->sizes = calloc((size_t)c->participants, sizeof *s->sizes);
    s->indices = calloc((size_t)c->participants, sizeof *s->indices);
    if (!s->sizes || !s->indices)
        return err_set(err, "out of memory");
    size_t offset = 0;
    for (int p = 0; p < c->participants; p++) {
        s->sizes[p] = (size_t)st->sites[p].count;
        if (!reads_site(st, p))
            continue;
        if (!(s->indices[p] = err_calloc(s->sizes[p], sizeof(uint32_t))))
            return err_set(err, "out of memory for participant %d's shard", p);
        for (size_t i = 0; i < s->sizes[p]; i++)
            s->indices[p][i] = (uint32_t)(offset + i);
        offset += s->sizes[p];
    }
    return 0;
}

int run_data_share(run_state *st, char *err)
{
    const config_t *c = st->cfg;
    if (config_is_h5(c) && c->participant_data[0]) {
        if (st->tr.size > 1) {
            size_t len = (size_t)c->participants * sizeof *st->sites;
            run_site *all = malloc((size_t)st->tr.size * len);
            if (!all)
                transport_fatal(&st->tr, "out of memory for the table of data files");
            transport_allgather(&st->tr, st->sites, len, all,
                                "the sizes and digests of its participants' data files");
            for (int p = 0; p < c->participants; p++) {
                int owner = c->mode == MODE_CENTRALIZED ? 0 : run_rank_of(st->tr.size, p);
                st->sites[p] = all[(size_t)owner * (size_t)c->participants + (size_t)p];
            }
            free(all);
        }
        /* The classes: the data file's `classes` attribute, which every
         * file then carries, or the largest label seen in any of them. */
        st->classes = st->test.classes;
        for (int p = 0; p < c->participants; p++)
            st->classes = max_int(st->classes, st->sites[p].classes);
        if (site_shards(st, err))
            return -1;
    }
    return st->tr.rank == 0 ? build_manifest(st, err) : 0;
}

/* The manifest line of `key` ("data-file -" or "site P") in text, or NULL. */
static const char *find_line(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return line;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return NULL;
}

/* The n-th space-separated field of a manifest line (0-based) as a
 * printable string; the path (field 4) runs to the end of the line. */
static void field(const char *line, int n, char *out, size_t len)
{
    for (int i = 0; i < n && line; i++) {
        line = strchr(line, ' ');
        line = line ? line + 1 : NULL;
    }
    size_t end = line ? strcspn(line, n == 4 ? "\n" : " \n") : 0;
    snprintf(out, len, "%.*s", (int)(end < len ? end : len - 1), line ? line : "");
}

int run_data_check_resume(const run_state *st, const char *saved, const char *ckpt, char *err)
{
    const char *mine = st->data_manifest;
    if (!mine && !saved)
        return 0;
    if (!mine || !saved)
        return err_set(err, "%s: the checkpoint's run %s, this run %s", ckpt,
                       saved ? "read HDF5 data files" : "recorded no data files",
                       mine ? "reads HDF5 data files" : "reads IDX files");
    /* Every file this run reads must be the checkpoint's, byte for byte
     * (size and SHA-256), wherever it lies now; and the other way round. */
    for (int pass = 0; pass < 2; pass++) {
        const char *from = pass ? saved : mine, *other = pass ? mine : saved;
        for (const char *line = from; *line;) {
            char role[32], id[16], key[64], size[32], hash[80], path[CONFIG_PATH_LEN + 16];
            field(line, 0, role, sizeof role);
            field(line, 1, id, sizeof id);
            snprintf(key, sizeof key, "%s %s", role, id);
            const char *match = find_line(other, key);
            char what[64] = "the data file";
            if (strcmp(role, "site") == 0)
                snprintf(what, sizeof what, "participant %s's training file", id);
            if (!match) {
                field(line, 4, path, sizeof path);
                return err_set(err, "%s: the checkpoint's run %s %s (%s), this run %s", ckpt,
                               pass ? "read" : "did not read", what, path,
                               pass ? "does not: resume with the same files" :
                               "does (one file per participant, or one training set, must "
                               "stay as it was)");
            }
            if (pass == 0) {
                char size2[32], hash2[80], path2[CONFIG_PATH_LEN + 16];
                field(line, 2, size, sizeof size);
                field(line, 3, hash, sizeof hash);
                field(line, 4, path, sizeof path);
                field(match, 2, size2, sizeof size2);
                field(match, 3, hash2, sizeof hash2);
                field(match, 4, path2, sizeof path2);
                if (strcmp(size, size2) != 0 || strcmp(hash, hash2) != 0)
                    return err_set(err, "%s: %s changed since the checkpoint: %s is %s "
                                   "bytes, sha256 %s; the checkpoint's run read %s, %s bytes, "
                                   "sha256 %s", ckpt, what, path, size, hash, path2, size2,
                                   hash2);
            }
            line = strchr(line, '\n');
            line = line ? line + 1 : "";
        }
    }
    return 0;
}
