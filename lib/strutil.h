/* Small string helpers shared by every module. */
#pragma once

#include <stdbool.h>

#include "macro.h"

static inline bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The value of one hex digit, or -EINVAL. */
static inline int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

/* Writes all of data to fd, retrying short writes and EINTR. 0 or -errno. */
int write_all(int fd, const void *data, size_t len);

/* The convention of every decoder with a `char **ret_error`: on failure, a malloc'd message
 * (left NULL when out of memory) in *ret_error if ret_error is not NULL. Returns r. */
int error_setf(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
