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
