/* Unit tests for lib/parse.c: durations, sizes, integers, Redis URLs, queue names. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "parse.h"

#define SENTINEL UINT64_C(0xdeadbeef)

/* ---- parse_uint64 ---- */

static const struct {
        const char *s;
        int r;
        uint64_t v;
} uint64_cases[] = {
        { "0", 0, 0 },
        { "7", 0, 7 },
        { "007", 0, 7 },
        { "4294967296", 0, UINT64_C(4294967296) },
        { "18446744073709551615", 0, UINT64_MAX },
        { "18446744073709551616", -ERANGE, 0 },
        { "99999999999999999999999", -ERANGE, 0 },
        { "99999999999999999999999x", -EINVAL, 0 },
        { "", -EINVAL, 0 },
        { "+1", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { " 1", -EINVAL, 0 },
        { "1 ", -EINVAL, 0 },
        { "1a", -EINVAL, 0 },
        { "0x10", -EINVAL, 0 },
        { "1.0", -EINVAL, 0 },
};

START_TEST(test_uint64) {
        uint64_t v = SENTINEL;
        int r = parse_uint64(uint64_cases[_i].s, &v);

        ck_assert_msg(r == uint64_cases[_i].r, "\"%s\": r=%d", uint64_cases[_i].s, r);
        ck_assert_uint_eq(v, r == 0 ? uint64_cases[_i].v : SENTINEL);
}
END_TEST

START_TEST(test_uint64_null) {
        uint64_t v = SENTINEL;

        ck_assert_int_eq(parse_uint64(NULL, &v), -EINVAL);
        ck_assert_uint_eq(v, SENTINEL);
}
END_TEST

/* ---- parse_duration ---- */

#define S_ USEC_PER_SEC
static const struct {
        const char *s;
        int r;
        uint64_t v;
} duration_cases[] = {
        { "0", 0, 0 },
        { "0s", 0, 0 },
        { "30", 0, 30 * S_ },
        { "30s", 0, 30 * S_ },
        { "250ms", 0, 250 * USEC_PER_MSEC },
        { "10us", 0, 10 },
        { "5m", 0, 300 * S_ },
        { "2h", 0, 7200 * S_ },
        { "1d", 0, 86400 * S_ },
        { "1w", 0, 7 * 86400 * S_ },
        { "1m30s", 0, 90 * S_ },
        { "1h1m1s1ms1us", 0, 3661 * S_ + 1001 },
        { "30s1m", 0, 90 * S_ },
        { "1.5s", 0, 1500 * USEC_PER_MSEC },
        { "1.5", 0, 1500 * USEC_PER_MSEC },
        { "0.5ms", 0, 500 },
        { "1.25h", 0, 4500 * S_ },
        { "0.1m", 0, 6 * S_ },
        { "1.5us", 0, 1 },                     /* truncated to whole microseconds */
        { "1.0000009s", 0, S_ },
        { "0.333333333333333333333333d", 0, 28799999999 }, /* floor(86400e6 / 3) - 1 */
        { "1m0.5s", 0, 60 * S_ + 500000 },
        { "18446744073709551615us", 0, UINT64_MAX },
        { "30500568w", 0, UINT64_C(30500568) * 7 * 86400 * S_ },
        { "18446744073709551616us", -ERANGE, 0 },
        { "30500569w", -ERANGE, 0 },
        { "30500568w7d", -ERANGE, 0 },          /* the sum overflows */
        { "99999999999999999999", -ERANGE, 0 },
        { "99999999999999999999x", -EINVAL, 0 }, /* garbage wins over overflow */
        { "", -EINVAL, 0 },
        { "5x", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "-1s", -EINVAL, 0 },
        { "+1s", -EINVAL, 0 },
        { "1m30", -EINVAL, 0 },                 /* a bare number only on its own */
        { "1.s", -EINVAL, 0 },
        { ".5s", -EINVAL, 0 },
        { "1..5s", -EINVAL, 0 },
        { "1.5.5s", -EINVAL, 0 },
        { "s", -EINVAL, 0 },
        { "1sec", -EINVAL, 0 },
        { "1min", -EINVAL, 0 },
        { "1 s", -EINVAL, 0 },
        { " 1s", -EINVAL, 0 },
        { "1s ", -EINVAL, 0 },
        { "1m 30s", -EINVAL, 0 },
        { "1e3", -EINVAL, 0 },
        { "1S", -EINVAL, 0 },
        { "infinity", -EINVAL, 0 },
};

START_TEST(test_duration) {
        uint64_t v = SENTINEL;
        int r = parse_duration(duration_cases[_i].s, &v);

        ck_assert_msg(r == duration_cases[_i].r, "\"%s\": r=%d", duration_cases[_i].s, r);
        ck_assert_msg(v == (r == 0 ? duration_cases[_i].v : SENTINEL), "\"%s\": %" PRIu64,
                      duration_cases[_i].s, v);
}
END_TEST

START_TEST(test_duration_null) {
        uint64_t v = SENTINEL;

        ck_assert_int_eq(parse_duration(NULL, &v), -EINVAL);
        ck_assert_uint_eq(v, SENTINEL);
}
END_TEST

/* ---- format_duration ---- */

static const struct {
        uint64_t v;
        const char *s;
} format_cases[] = {
        { 0, "0" },
        { 1, "1us" },
        { 250 * USEC_PER_MSEC, "250ms" },
        { 1500 * USEC_PER_MSEC, "1s500ms" },
        { 30 * S_, "30s" },
        { 90 * S_, "1m30s" },
        { 3600 * S_, "1h" },
        { 3661 * S_ + 1001, "1h1m1s1ms1us" },
        { 7 * 86400 * S_, "7d" },
        { 365 * 86400 * S_, "365d" },
        { UINT64_MAX, "213503982d8h1m49s551ms615us" },
};

START_TEST(test_format_duration) {
        char buf[32];

        ck_assert_str_eq(format_duration(buf, sizeof(buf), format_cases[_i].v), format_cases[_i].s);
}
END_TEST

START_TEST(test_format_duration_round_trip) {
        uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
        char buf[32];

        /* Values of every magnitude: an LCG sample shifted right by 0..63 bits. */
        for (unsigned i = 0; i < 4096; i++) {
                uint64_t v, back = SENTINEL;

                x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
                v = x >> (i % 64);
                ck_assert_ptr_nonnull(format_duration(buf, sizeof(buf), v));
                ck_assert_int_eq(parse_duration(buf, &back), 0);
                ck_assert_msg(back == v, "%" PRIu64 " -> \"%s\" -> %" PRIu64, v, buf, back);
        }
}
END_TEST

START_TEST(test_format_duration_small_buffer) {
        char buf[8];

        ck_assert_ptr_null(format_duration(buf, sizeof(buf), 90 * S_ + 1));
        ck_assert_ptr_null(format_duration(buf, 1, 0));
        ck_assert_str_eq(format_duration(buf, 2, 0), "0");
        ck_assert_str_eq(format_duration(buf, 6, 90 * S_), "1m30s");
        ck_assert_ptr_null(format_duration(buf, 5, 90 * S_));
}
END_TEST

/* ---- parse_size ---- */

static const struct {
        const char *s;
        int r;
        uint64_t v;
} size_cases[] = {
        { "0", 0, 0 },
        { "512", 0, 512 },
        { "512B", 0, 512 },
        { "64k", 0, 65536 },
        { "64K", 0, 65536 },
        { "64KiB", 0, 65536 },
        { "64KB", 0, 65536 },
        { "1M", 0, 1048576 },
        { "1MiB", 0, 1048576 },
        { "1MB", 0, 1048576 },
        { "2G", 0, UINT64_C(2147483648) },
        { "2GiB", 0, UINT64_C(2147483648) },
        { "2GB", 0, UINT64_C(2147483648) },
        { "1T", 0, UINT64_C(1) << 40 },
        { "1TiB", 0, UINT64_C(1) << 40 },
        { "16777215T", 0, UINT64_C(16777215) << 40 },
        { "18446744073709551615", 0, UINT64_MAX },
        { "16777216T", -ERANGE, 0 },
        { "18446744073709551616", -ERANGE, 0 },
        { "17179869184G", -ERANGE, 0 },
        { "", -EINVAL, 0 },
        { "K", -EINVAL, 0 },
        { "1.5M", -EINVAL, 0 },
        { "1m", -EINVAL, 0 },
        { "1g", -EINVAL, 0 },
        { "1Kib", -EINVAL, 0 },
        { "1KiBx", -EINVAL, 0 },
        { "1 K", -EINVAL, 0 },
        { " 1K", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "0x10", -EINVAL, 0 },
        { "1P", -EINVAL, 0 },
};

START_TEST(test_size) {
        uint64_t v = SENTINEL;
        int r = parse_size(size_cases[_i].s, &v);

        ck_assert_msg(r == size_cases[_i].r, "\"%s\": r=%d", size_cases[_i].s, r);
        ck_assert_uint_eq(v, r == 0 ? size_cases[_i].v : SENTINEL);
}
END_TEST

/* ---- Redis URLs ---- */

typedef struct UrlCase {
        const char *url;
        const char *host, *unix_path, *user, *password;
        uint16_t port;
        unsigned db;
} UrlCase;

static const UrlCase url_good[] = {
        { "redis://localhost", "localhost", NULL, NULL, NULL, 6379, 0 },
        { "redis://127.0.0.1:6380/2", "127.0.0.1", NULL, NULL, NULL, 6380, 2 },
        { "redis://redis.example.org:1/", "redis.example.org", NULL, NULL, NULL, 1, 0 },
        { "redis://h_1-x:65535/32767", "h_1-x", NULL, NULL, NULL, 65535, 32767 },
        { "redis://alice:s3cret@db1:7000/4", "db1", NULL, "alice", "s3cret", 7000, 4 },
        { "redis://:s3cret@db1", "db1", NULL, NULL, "s3cret", 6379, 0 },
        { "redis://alice@db1", "db1", NULL, "alice", NULL, 6379, 0 },
        { "redis://alice:@db1", "db1", NULL, "alice", NULL, 6379, 0 },
        { "redis://us%40er:p%3Ass%2Fw%25rd%20x@db1", "db1", NULL, "us@er", "p:ss/w%rd x", 6379, 0 },
        { "redis://u:p@ss@db1", "db1", NULL, "u", "p@ss", 6379, 0 },
        { "redis://u:%e2%82%AC@db1", "db1", NULL, "u", "\xe2\x82\xac", 6379, 0 },
        { "redis://[::1]", "::1", NULL, NULL, NULL, 6379, 0 },
        { "redis://[::1]:6380", "::1", NULL, NULL, NULL, 6380, 0 },
        { "redis://u:p@[2001:db8::7]:6380/3", "2001:db8::7", NULL, "u", "p", 6380, 3 },
        { "unix:///run/redis/redis-server.sock", NULL, "/run/redis/redis-server.sock", NULL, NULL,
          0, 0 },
        { "unix:///run/redis.sock?db=3", NULL, "/run/redis.sock", NULL, NULL, 0, 3 },
        { "unix:///run/redis.sock?db=3&password=s%26cret", NULL, "/run/redis.sock", NULL, "s&cret",
          0, 3 },
        { "unix:///run/redis.sock?password=x&db=1&user=bob", NULL, "/run/redis.sock", "bob", "x", 0,
          1 },
        { "unix:///tmp/my%20redis.sock", NULL, "/tmp/my redis.sock", NULL, NULL, 0, 0 },
};

static void assert_str_or_null(const char *got, const char *want, const char *what,
                               const char *url) {
        if (!want)
                ck_assert_msg(!got, "%s: %s: expected NULL, got \"%s\"", url, what, got);
        else
                ck_assert_msg(got && streq(got, want), "%s: %s: expected \"%s\", got \"%s\"", url,
                              what, want, got ?: "(null)");
}

static void assert_address(const RedisAddress *a, const UrlCase *c) {
        assert_str_or_null(a->host, c->host, "host", c->url);
        assert_str_or_null(a->unix_path, c->unix_path, "unix_path", c->url);
        assert_str_or_null(a->user, c->user, "user", c->url);
        assert_str_or_null(a->password, c->password, "password", c->url);
        ck_assert_msg(a->port == c->port, "%s: port %u", c->url, a->port);
        ck_assert_msg(a->db == c->db, "%s: db %u", c->url, a->db);
}

START_TEST(test_url_good) {
        RedisAddress a = {}, copy = {};

        ck_assert_int_eq(redis_address_parse(url_good[_i].url, &a), 0);
        assert_address(&a, &url_good[_i]);
        ck_assert_int_eq(redis_address_copy(&a, &copy), 0);
        assert_address(&copy, &url_good[_i]);
        redis_address_done(&a);
        ck_assert_ptr_null(a.host);
        ck_assert_ptr_null(a.unix_path);
        ck_assert_ptr_null(a.password);
        ck_assert_uint_eq(a.port, 0);
        assert_address(&copy, &url_good[_i]); /* deep copy */
        redis_address_done(&copy);
        redis_address_done(&copy);            /* idempotent */
}
END_TEST

static const char *const url_bad[] = {
        "",
        "localhost",
        "redis:/localhost",
        "REDIS://localhost",
        "rediss://localhost",
        "http://localhost",
        "redis://",
        "redis://:6379",
        "redis://host:",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:99999999999999999999",
        "redis://host:-1",
        "redis://host:+1",
        "redis://host:abc",
        "redis://host:6379x",
        "redis://host:6379:1",
        "redis://host/x",
        "redis://host/1x",
        "redis://host/1/2",
        "redis://host/32768",
        "redis://host/-1",
        "redis://host?db=1",
        "redis://host#frag",
        "redis://ho st",
        "redis://host ",
        "redis://ho%41st",
        "redis://[::1",
        "redis://[::1]x",
        "redis://[::1]:",
        "redis://[::1]:0",
        "redis://[zz::1]",
        "redis://[127.0.0.1]",
        "redis://::1",
        "redis://u:p%zz@host",
        "redis://u:p%4@host",
        "redis://u:p%@host",
        "redis://u:%00@host",
        "redis://u:p w@host",
        "redis://u:p@",
        "unix:/run/redis.sock",
        "unix://run/redis.sock",
        "unix://",
        "unix:///",
        "unix:///a?",
        "unix:///a?db",
        "unix:///a?db=",
        "unix:///a?db=1&",
        "unix:///a?&db=1",
        "unix:///a?db=1&db=2",
        "unix:///a?password=x&password=y",
        "unix:///a?foo=1",
        "unix:///a?db=x",
        "unix:///a?db=32768",
        "unix:///a?password=",
        "unix:///a?password=%zz",
        "unix:///a%00b",
        "unix:///a b",
};

START_TEST(test_url_bad) {
        RedisAddress a = { .port = 42 };

        ck_assert_msg(redis_address_parse(url_bad[_i], &a) == -EINVAL, "accepted \"%s\"", url_bad[_i]);
        ck_assert_uint_eq(a.port, 42);
        ck_assert_ptr_null(a.host);
}
END_TEST

START_TEST(test_url_unix_path_limit) {
        /* sun_path holds 107 bytes and the NUL: 107 is the longest usable path. */
        char url[256] = "unix:///";
        RedisAddress a = {};

        memset(url + 8, 'a', 106);
        ck_assert_int_eq(redis_address_parse(url, &a), 0);
        ck_assert_uint_eq(strlen(a.unix_path), 107);
        redis_address_done(&a);
        url[8 + 106] = 'a';
        ck_assert_int_eq(redis_address_parse(url, &a), -EINVAL);
}
END_TEST

START_TEST(test_url_null) {
        RedisAddress a = {};

        ck_assert_int_eq(redis_address_parse(NULL, &a), -EINVAL);
        redis_address_done(NULL);
}
END_TEST

/* ---- queue names ---- */

START_TEST(test_queue_name) {
        char name[66];

        ck_assert(queue_name_is_valid("a"));
        ck_assert(queue_name_is_valid("tnmap"));
        ck_assert(queue_name_is_valid("A_b-9"));
        ck_assert(queue_name_is_valid("-"));
        memset(name, 'q', 64);
        name[64] = '\0';
        ck_assert(queue_name_is_valid(name));
        name[64] = 'q';
        name[65] = '\0';
        ck_assert(!queue_name_is_valid(name));
        ck_assert(!queue_name_is_valid(""));
        ck_assert(!queue_name_is_valid(NULL));
        ck_assert(!queue_name_is_valid("a.b"));
        ck_assert(!queue_name_is_valid(".."));
        ck_assert(!queue_name_is_valid("a/b"));
        ck_assert(!queue_name_is_valid("a b"));
        ck_assert(!queue_name_is_valid("a:b"));
        ck_assert(!queue_name_is_valid("{a}"));
        ck_assert(!queue_name_is_valid("caf\xc3\xa9"));
}
END_TEST

static Suite *parse_suite(void) {
        Suite *s = suite_create("parse");
        TCase *tc;

        tc = tcase_create("uint64");
        tcase_add_loop_test(tc, test_uint64, 0, ELEMENTSOF(uint64_cases));
        tcase_add_test(tc, test_uint64_null);
        suite_add_tcase(s, tc);

        tc = tcase_create("duration");
        tcase_add_loop_test(tc, test_duration, 0, ELEMENTSOF(duration_cases));
        tcase_add_test(tc, test_duration_null);
        tcase_add_loop_test(tc, test_format_duration, 0, ELEMENTSOF(format_cases));
        tcase_add_test(tc, test_format_duration_round_trip);
        tcase_add_test(tc, test_format_duration_small_buffer);
        suite_add_tcase(s, tc);

        tc = tcase_create("size");
        tcase_add_loop_test(tc, test_size, 0, ELEMENTSOF(size_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("redis-url");
        tcase_add_loop_test(tc, test_url_good, 0, ELEMENTSOF(url_good));
        tcase_add_loop_test(tc, test_url_bad, 0, ELEMENTSOF(url_bad));
        tcase_add_test(tc, test_url_unix_path_limit);
        tcase_add_test(tc, test_url_null);
        suite_add_tcase(s, tc);

        tc = tcase_create("names");
        tcase_add_test(tc, test_queue_name);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(parse_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
