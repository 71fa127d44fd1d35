/* fuzz_config: libFuzzer target for config_parse (the `dssgd train` command
 * line) and what consumes its result: validate, to_text, check_resume. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "fuzz_common.h"

#define MAX_ARGS 64
/* config_to_text's lines: two paths under CONFIG_PATH_LEN bytes, the model
 * spec and short values, well under this. */
#define TEXT_LEN (1 << 16)

static FILE *devnull;
static char defaults_text[TEXT_LEN];
static char text[TEXT_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    FUZZ_CHECK(devnull != NULL, "cannot open /dev/null");
    config_t d;
    config_defaults(&d);
    FUZZ_CHECK(config_to_text(&d, defaults_text, sizeof defaults_text) > 0, "defaults as text");
    return 0;
}

/* The enumerations hold names of their tables (config_to_text indexes them). */
static int enums_valid(const config_t *c)
{
    return (unsigned)c->mode <= MODE_STANDALONE && (unsigned)c->schedule <= SCHEDULE_SYNC &&
           (unsigned)c->select <= SELECT_SVT && (unsigned)c->download <= DOWNLOAD_ALL &&
           (unsigned)c->partition <= PARTITION_DIRICHLET;
}

/* The strings are NUL-terminated within their arrays. */
static int strings_terminated(const config_t *c)
{
    return memchr(c->dataset, 0, sizeof c->dataset) && memchr(c->data_dir, 0, sizeof c->data_dir) &&
           memchr(c->model, 0, sizeof c->model) && memchr(c->checkpoint, 0, sizeof c->checkpoint) &&
           memchr(c->resume, 0, sizeof c->resume) && memchr(c->metrics, 0, sizeof c->metrics);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* argv: "train", then the input split into arguments: on NUL bytes when
     * it has any (so an argument may hold a newline, as a real one can), else
     * on newlines. One trailing separator ends the last argument rather than
     * adding an empty one. */
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, data, size);
    copy[size] = '\0';
    char sep = size && memchr(data, '\0', size) ? '\0' : '\n';
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "train";
    size_t start = 0;
    for (size_t i = 0; i <= size && argc <= MAX_ARGS; i++) {
        if (i < size && copy[i] != sep)
            continue;
        if (i == size && start == size)
            break; /* no input, or it ended with a separator */
        copy[i] = '\0';
        argv[argc++] = copy + start;
        start = i + 1;
    }
    argv[argc] = NULL;

    config_t c;
    config_defaults(&c);
    char err[ERR_LEN] = "";
    int rc = config_parse(&c, argc, argv, devnull, err);
    if (rc == 0) {
        /* getopt keeps state between calls: a second parse of the same
         * (now permuted) argv must give the same configuration. */
        config_t again;
        config_defaults(&again);
        char err2[ERR_LEN] = "";
        FUZZ_CHECK(config_parse(&again, argc, argv, devnull, err2) == 0 &&
                       memcmp(&again, &c, sizeof c) == 0,
                   "a second parse differs: %s", err2);
    }
    FUZZ_CHECK(rc == -1 || rc == 0 || rc == 1, "rc %d", rc);
    FUZZ_CHECK(rc != -1 || err[0] != '\0', "refused without a message");
    FUZZ_CHECK(strings_terminated(&c), "a string field lost its terminator");
    int vrc = config_validate(&c, err);
    FUZZ_CHECK(rc != 0 || vrc == 0, "accepted, then refused by config_validate: %s", err);

    /* A refused command line may leave c half-written; its enumerations are
     * checked before anything indexes a name table with them. */
    if (enums_valid(&c)) {
        int len = config_to_text(&c, text, sizeof text);
        FUZZ_CHECK(len > 0 && (size_t)len == strlen(text), "config_to_text returned %d", len);
        config_check_resume(&c, defaults_text, err);
        if (rc == 0) {
            config_print(&c, devnull);
            /* A run may always resume from its own checkpoint. */
            FUZZ_CHECK(config_check_resume(&c, text, err) == 0,
                       "refuses to resume from its own configuration: %s", err);
        }
    } else {
        FUZZ_CHECK(rc == -1, "accepted with an enumeration out of range");
    }
    free(copy);
    return 0;
}
