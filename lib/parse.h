/* Pure parsers for the values operators write: durations, sizes, Redis URLs, names.
 * Each returns 0 on success or -EINVAL/-ERANGE, writing ret_* only on success. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "250ms", "30s", "5m", "2h", "1d", combinations "1m30s", "1.5s"; a bare number means seconds.
 * Units: us, ms, s, m (min), h, d, w. Overflow -> -ERANGE; empty/garbage -> -EINVAL. */
int parse_duration(const char *s, uint64_t *ret_usec);

/* "512", "64k", "64K", "64KiB", "1M", "1MiB", "2G", "2GiB"; 1024-based. "KB"/"MB" are also
 * accepted as 1024-based aliases. Overflow -> -ERANGE. */
int parse_size(const char *s, uint64_t *ret_bytes);

/* Strict unsigned integer, decimal only, no sign, no spaces, no trailing bytes. */
int parse_uint64(const char *s, uint64_t *ret);

/* Formats a duration as the shortest exact form ("1m30s", "250ms", "0"). buf >= 32 bytes. */
const char *format_duration(char *buf, size_t size, uint64_t usec);
/* Formats bytes in the largest binary unit that represents them exactly ("64M", "1536K",
 * "100"). buf >= 24 bytes. */
const char *format_size(char *buf, size_t size, uint64_t v);

typedef struct RedisAddress {
        char *host;        /* NULL for unix sockets */
        uint16_t port;     /* default 6379 */
        char *unix_path;   /* NULL for TCP */
        char *user;        /* NULL: default user */
        char *password;    /* NULL: no AUTH */
        unsigned db;       /* SELECT db, default 0 */
} RedisAddress;

/* redis://[user[:password]@]host[:port][/db]  (host may be [v6addr]; user/password %-decoded)
 * unix:///path/to/redis.sock[?db=N][&password=...]
 * Anything else, a port outside 1..65535, a db > 15 bits, or trailing garbage: -EINVAL. */
int redis_address_parse(const char *url, RedisAddress *ret);
void redis_address_done(RedisAddress *a);
int redis_address_copy(const RedisAddress *src, RedisAddress *ret);

/* Queue names: [A-Za-z0-9_-]{1,64} (safe as systemd instance, path component, Redis hash tag). */
bool queue_name_is_valid(const char *s);
