/* err: error message helpers shared by all modules. */
#include "err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int err_set(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int err_prefix(char *err, const char *fmt, ...)
{
    if (err) {
        char old[ERR_LEN];
        memcpy(old, err, ERR_LEN);
        old[ERR_LEN - 1] = '\0';
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(err, ERR_LEN, fmt, ap);
        va_end(ap);
        if (len >= 0 && len < ERR_LEN)
            snprintf(err + len, ERR_LEN - (size_t)len, ": %.*s", ERR_LEN - len - 3, old);
    }
    return -1;
}

void *err_calloc(size_t count, size_t size)
{
    if (count == 0 || size == 0 || count > SIZE_MAX / size)
        return NULL;
    return calloc(count, size);
}

int err_ambiguous_option(const char *name, const char *const *names, int n, char *err)
{
    size_t len = strcspn(name, "=");
    char list[ERR_LEN / 2] = "";
    int matches = 0;
    for (int i = 0; i <= n; i++) {
        const char *full = i < n ? names[i] : "help";
        if (len == 0 || strncmp(full, name, len) != 0)
            continue;
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s--%s", matches ? ", " : "", full);
        matches++;
    }
    if (matches > 1)
        return err_set(err, "ambiguous option '--%.*s' (could be %s)", (int)(len < 64 ? len : 64),
                       name, list);
    return 0;
}
