/* Pure parsers for operator-written values (see parse.h). No allocation except in the Redis
 * address parser, no locale dependence (digits are '0'..'9', never isdigit()). */
#include "strutil.h"
#include "parse.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <sys/un.h>

#include "macro.h"

/* Redis numbers its databases with a C int; we accept 15 bits, as documented in parse.h. */
#define REDIS_DB_MAX 32767U
#define HOSTNAME_MAX 253U
#define UNIX_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

static bool char_is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Consumes a run of digits at *p. Sets *overflow (never clears it) when the value does not fit.
 * Returns the number of digits consumed. */
static size_t scan_digits(const char **p, uint64_t *ret, bool *overflow) {
        const char *s = *p;
        uint64_t v = 0;

        for (; char_is_digit(*s); s++) {
                unsigned d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        *overflow = true;
                else
                        v = v * 10 + d;
        }
        *ret = v;
        size_t n = (size_t) (s - *p);
        *p = s;
        return n;
}

int parse_uint64(const char *s, uint64_t *ret) {
        bool overflow = false;
        uint64_t v;

        if (!s || scan_digits(&s, &v, &overflow) == 0 || *s != '\0')
                return -EINVAL;
        if (overflow)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* ---- durations ---- */

static const struct {
        const char *suffix;
        uint64_t usec;
} duration_units[] = {
        /* Largest first: format_duration() walks the table in this order, skipping weeks
         * ("365d" reads better than "52w1d"). */
        { "w", 7 * 24 * 3600 * USEC_PER_SEC },
        { "d", 24 * 3600 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "m", 60 * USEC_PER_SEC },
        { "s", USEC_PER_SEC },
        { "ms", USEC_PER_MSEC },
        { "us", 1 },
};

/* Matches the longest unit suffix at *p ("ms", not "m"); 0 (*p untouched) when there is none. */
static uint64_t scan_duration_unit(const char **p) {
        size_t best = ELEMENTSOF(duration_units), best_len = 0;

        for (size_t i = 0; i < ELEMENTSOF(duration_units); i++) {
                size_t n = strlen(duration_units[i].suffix);
                if (n > best_len && strncmp(*p, duration_units[i].suffix, n) == 0) {
                        best = i;
                        best_len = n;
                }
        }
        if (best_len == 0)
                return 0;
        *p += best_len;
        return duration_units[best].usec;
}

/* floor(mult * 0.<digits>) exactly: Horner's scheme from the last digit, since nested floor
 * divisions by 10 compose. Every intermediate value stays below 10 * mult. */
static uint64_t fraction_times(const char *digits, size_t n, uint64_t mult) {
        uint64_t acc = 0;

        while (n > 0) {
                n--;
                acc = ((uint64_t) (digits[n] - '0') * mult + acc) / 10;
        }
        return acc;
}

static bool add_overflows(uint64_t a, uint64_t b, uint64_t *ret) {
        return __builtin_add_overflow(a, b, ret);
}

/* One "<digits>[.<digits>][unit]" component. *ret_has_unit tells whether a unit was given. */
static int scan_duration_component(const char **p, uint64_t *ret_usec, bool *ret_has_unit,
                                   bool *overflow) {
        const char *s = *p, *frac = NULL;
        size_t n_frac = 0;
        uint64_t ipart, mult, v;

        if (scan_digits(&s, &ipart, overflow) == 0)
                return -EINVAL;
        if (*s == '.') {
                s++;
                frac = s;
                n_frac = strspn(s, "0123456789");
                if (n_frac == 0)
                        return -EINVAL;
                s += n_frac;
        }
        mult = scan_duration_unit(&s);
        *ret_has_unit = mult != 0;
        if (mult == 0)
                mult = USEC_PER_SEC;

        if (__builtin_mul_overflow(ipart, mult, &v) ||
            add_overflows(v, frac ? fraction_times(frac, n_frac, mult) : 0, &v))
                *overflow = true;
        *ret_usec = v;
        *p = s;
        return 0;
}

int parse_duration(const char *s, uint64_t *ret_usec) {
        bool overflow = false, has_unit = true;
        uint64_t total = 0;

        if (!s || *s == '\0')
                return -EINVAL;
        for (unsigned i = 0; *s != '\0'; i++) {
                uint64_t v;
                int r;

                /* A number without unit (seconds) is only allowed on its own: "90", not "1m30". */
                if (!has_unit)
                        return -EINVAL;
                r = scan_duration_component(&s, &v, &has_unit, &overflow);
                if (r < 0)
                        return r;
                if (!has_unit && i > 0)
                        return -EINVAL;
                if (add_overflows(total, v, &total))
                        overflow = true;
        }
        if (overflow)
                return -ERANGE;
        *ret_usec = total;
        return 0;
}

const char *format_duration(char *buf, size_t size, uint64_t usec) {
        size_t off = 0;

        if (size < 2)
                return NULL;
        if (usec == 0)
                return strcpy(buf, "0");

        for (size_t i = 1 /* not weeks */; i < ELEMENTSOF(duration_units); i++) {
                uint64_t unit = duration_units[i].usec, n = usec / unit;
                int k;

                if (n == 0)
                        continue;
                usec -= n * unit;
                k = snprintf(buf + off, size - off, "%" PRIu64 "%s", n,
                             duration_units[i].suffix);
                if (k < 0 || (size_t) k >= size - off)
                        return NULL;
                off += (size_t) k;
        }
        return buf;
}

/* ---- sizes ---- */

static const struct {
        const char *suffix;
        unsigned shift;
} size_units[] = {
        { "", 0 },     { "B", 0 },    { "K", 10 },   { "k", 10 },   { "KiB", 10 },
        { "KB", 10 },  { "M", 20 },   { "MiB", 20 }, { "MB", 20 },  { "G", 30 },
        { "GiB", 30 }, { "GB", 30 },  { "T", 40 },   { "TiB", 40 }, { "TB", 40 },
};

int parse_size(const char *s, uint64_t *ret_bytes) {
        bool overflow = false;
        uint64_t v;

        if (!s || scan_digits(&s, &v, &overflow) == 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(size_units); i++) {
                unsigned shift = size_units[i].shift;

                if (!streq(s, size_units[i].suffix))
                        continue;
                if (overflow || v > (UINT64_MAX >> shift))
                        return -ERANGE;
                *ret_bytes = v << shift;
                return 0;
        }
        return -EINVAL;
}

/* ---- names ---- */

static bool char_is_name(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || char_is_digit(c) || c == '_' ||
               c == '-';
}

bool queue_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        for (n = 0; s[n] != '\0'; n++)
                if (n >= 64 || !char_is_name(s[n]))
                        return false;
        return n > 0;
}

/* ---- Redis addresses ---- */

/* Decodes n bytes of s with %XX escapes into a new string. Rejects bad escapes, %00, and raw
 * control characters or spaces (they are never part of a URL). */
static int percent_decode(const char *s, size_t n, char **ret) {
        _cleanup_free_ char *out = malloc(n + 1);
        size_t j = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c <= ' ' || c == 0x7f)
                        return -EINVAL;
                if (c == '%') {
                        int hi = i + 2 < n ? unhexchar(s[i + 1]) : -EINVAL;
                        int lo = hi >= 0 ? unhexchar(s[i + 2]) : -EINVAL;
                        if (lo < 0 || (hi == 0 && lo == 0))
                                return -EINVAL;
                        c = (unsigned char) (hi << 4 | lo);
                        i += 2;
                }
                out[j++] = (char) c;
        }
        out[j] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

/* Like percent_decode(), but an empty input yields NULL (an absent user or password). */
static int percent_decode_optional(const char *s, size_t n, char **ret) {
        if (n == 0) {
                *ret = NULL;
                return 0;
        }
        return percent_decode(s, n, ret);
}

/* Parses n bytes of decimal into 0..max. */
static int parse_bounded(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        char buf[24];
        uint64_t v;
        int r;

        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = '\0';
        r = parse_uint64(buf, &v);
        if (r < 0 || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_port(const char *s, size_t n, uint16_t *ret) {
        uint64_t v;
        int r = parse_bounded(s, n, 65535, &v);

        if (r < 0 || v == 0)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int parse_db(const char *s, size_t n, unsigned *ret) {
        uint64_t v;
        int r = parse_bounded(s, n, REDIS_DB_MAX, &v);

        if (r < 0)
                return r;
        *ret = (unsigned) v;
        return 0;
}

static bool hostname_is_valid(const char *s, size_t n) {
        if (n == 0 || n > HOSTNAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!char_is_name(s[i]) && s[i] != '.')
                        return false;
        return true;
}

/* "[v6]" or "name" followed by an optional ":port"; s is not NUL-terminated at n. */
static int parse_hostport(const char *s, size_t n, RedisAddress *a) {
        const char *end = s + n, *host = s, *colon;
        size_t n_host;

        if (n > 0 && *s == '[') {
                const char *close = memchr(s, ']', n);
                struct in6_addr in6;
                char buf[INET6_ADDRSTRLEN];

                if (!close || (size_t) (close - s - 1) >= sizeof(buf))
                        return -EINVAL;
                host = s + 1;
                n_host = (size_t) (close - host);
                memcpy(buf, host, n_host);
                buf[n_host] = '\0';
                if (inet_pton(AF_INET6, buf, &in6) != 1)
                        return -EINVAL;
                colon = close + 1 < end ? close + 1 : NULL;
                if (colon && *colon != ':')
                        return -EINVAL;
        } else {
                colon = memchr(s, ':', n);
                n_host = colon ? (size_t) (colon - s) : n;
                if (!hostname_is_valid(s, n_host))
                        return -EINVAL;
        }
        if (colon && parse_port(colon + 1, (size_t) (end - colon - 1), &a->port) < 0)
                return -EINVAL;
        a->host = strndup(host, n_host);
        return a->host ? 0 : -ENOMEM;
}

static int parse_userinfo(const char *s, size_t n, RedisAddress *a) {
        const char *colon = memchr(s, ':', n);
        size_t n_user = colon ? (size_t) (colon - s) : n;
        int r;

        r = percent_decode_optional(s, n_user, &a->user);
        if (r < 0 || !colon)
                return r;
        return percent_decode_optional(colon + 1, n - n_user - 1, &a->password);
}

/* After "redis://": [user[:password]@]host[:port][/db] */
static int parse_redis_tcp(const char *s, RedisAddress *a) {
        const char *slash = strchr(s, '/'), *at;
        size_t n_auth = slash ? (size_t) (slash - s) : strlen(s);
        int r;

        a->port = 6379;
        at = memrchr(s, '@', n_auth);
        if (at) {
                r = parse_userinfo(s, (size_t) (at - s), a);
                if (r < 0)
                        return r;
                n_auth -= (size_t) (at + 1 - s);
                s = at + 1;
        }
        r = parse_hostport(s, n_auth, a);
        if (r < 0)
                return r;
        /* "/" alone means db 0, as in every other Redis URL parser. */
        if (slash && slash[1] != '\0')
                return parse_db(slash + 1, strlen(slash + 1), &a->db);
        return 0;
}

/* One "key=value" of a unix:// query. Each key may appear once. */
static int parse_unix_param(const char *s, size_t n, RedisAddress *a, bool *seen_db) {
        const char *eq = memchr(s, '=', n);
        size_t n_key = eq ? (size_t) (eq - s) : n, n_val = eq ? n - n_key - 1 : 0;
        const char *val = eq ? eq + 1 : NULL;

        if (!eq || n_val == 0)
                return -EINVAL;
        if (n_key == 2 && strncmp(s, "db", 2) == 0 && !*seen_db) {
                *seen_db = true;
                return parse_db(val, n_val, &a->db);
        }
        if (n_key == 8 && strncmp(s, "password", 8) == 0 && !a->password)
                return percent_decode(val, n_val, &a->password);
        if (n_key == 4 && strncmp(s, "user", 4) == 0 && !a->user)
                return percent_decode(val, n_val, &a->user);
        return -EINVAL;
}

/* After "unix://": /path[?key=value[&key=value]…] with keys db, password, user. */
static int parse_redis_unix(const char *s, RedisAddress *a) {
        const char *q = strchr(s, '?');
        size_t n_path = q ? (size_t) (q - s) : strlen(s);
        bool seen_db = false;
        int r;

        if (n_path < 2 || s[0] != '/')
                return -EINVAL;
        r = percent_decode(s, n_path, &a->unix_path);
        if (r < 0)
                return r;
        if (strlen(a->unix_path) > UNIX_PATH_MAX)
                return -EINVAL;
        while (q) {
                const char *p = q + 1, *amp = strchr(p, '&');
                size_t n = amp ? (size_t) (amp - p) : strlen(p);

                r = parse_unix_param(p, n, a, &seen_db);
                if (r < 0)
                        return r;
                q = amp;
        }
        return 0;
}

int redis_address_parse(const char *url, RedisAddress *ret) {
        _cleanup_(redis_address_done) RedisAddress a = {};
        int r;

        if (!url)
                return -EINVAL;
        if (startswith(url, "redis://"))
                r = parse_redis_tcp(url + strlen("redis://"), &a);
        else if (startswith(url, "unix://"))
                r = parse_redis_unix(url + strlen("unix://"), &a);
        else
                r = -EINVAL;
        if (r < 0)
                return r;
        *ret = a;
        a = (RedisAddress) {};
        return 0;
}

static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

void redis_address_done(RedisAddress *a) {
        if (!a)
                return;
        free(a->host);
        free(a->unix_path);
        free(a->user);
        free_secret(a->password);
        *a = (RedisAddress) {};
}

static int strdup_optional(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int redis_address_copy(const RedisAddress *src, RedisAddress *ret) {
        _cleanup_(redis_address_done) RedisAddress a = {
                .port = src->port,
                .db = src->db,
        };

        if (strdup_optional(src->host, &a.host) < 0 ||
            strdup_optional(src->unix_path, &a.unix_path) < 0 ||
            strdup_optional(src->user, &a.user) < 0 ||
            strdup_optional(src->password, &a.password) < 0)
                return -ENOMEM;
        *ret = a;
        a = (RedisAddress) {};
        return 0;
}

/* Bytes in the largest binary unit that represents them exactly ("64M", "1536K", "100"). */
const char *format_size(char *buf, size_t size, uint64_t v) {
        static const struct {
                const char *suffix;
                unsigned shift;
        } units[] = { { "T", 40 }, { "G", 30 }, { "M", 20 }, { "K", 10 } };

        for (size_t i = 0; v > 0 && i < ELEMENTSOF(units); i++)
                if ((v & ((UINT64_C(1) << units[i].shift) - 1)) == 0) {
                        snprintf(buf, size, "%" PRIu64 "%s", v >> units[i].shift, units[i].suffix);
                        return buf;
                }
        snprintf(buf, size, "%" PRIu64, v);
        return buf;
}
