/* lib/json-scan: the streaming JSON checker, fed whole and byte by byte, with exact errors,
 * limits and recorded spans. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json-scan.h"
#include "macro.h"

static const JsonScanLimits loose = {
        .max_depth = JSON_SCAN_DEPTH_MAX,
        .max_elements = 1000,
        .max_split_elements = 1000,
        .max_split_bytes = 1000,
};

/* Scans doc whole (s) and byte by byte (a second scanner); both must agree. */
static int scan(const char *doc, size_t len, const JsonScanLimits *l, JsonScan *s) {
        JsonScan b;
        int r1, r2 = 0;

        ck_assert_int_eq(json_scan_init(s, l), 0);
        ck_assert_int_eq(json_scan_init(&b, l), 0);
        r1 = json_scan_feed(s, doc, len);
        if (r1 == 0)
                r1 = json_scan_finish(s);
        for (size_t i = 0; i < len && r2 == 0; i++)
                r2 = json_scan_feed(&b, doc + i, 1);
        if (r2 == 0)
                r2 = json_scan_finish(&b);
        ck_assert_int_eq(r1, r2);
        ck_assert_str_eq(s->message, b.message);
        ck_assert_uint_eq(s->n_spans, b.n_spans);
        if (s->n_spans > 0)
                ck_assert_mem_eq(s->spans, b.spans, s->n_spans * sizeof(JsonSpan));
        json_scan_done(&b);
        return r1;
}

static int scan_str(const char *doc, const JsonScanLimits *l, JsonScan *s) {
        return scan(doc, strlen(doc), l, s);
}

static void assert_valid(const char *doc) {
        JsonScan s;

        ck_assert_msg(scan_str(doc, &loose, &s) == 0, "%s: %s", doc, s.message);
        json_scan_done(&s);
}

static void assert_error(const char *doc, const JsonScanLimits *l, int error, const char *msg) {
        JsonScan s;

        ck_assert_int_eq(scan_str(doc, l ?: &loose, &s), error);
        ck_assert_str_eq(s.message, msg);
        /* Sticky. */
        ck_assert_int_eq(json_scan_feed(&s, "1", 1), error);
        ck_assert_int_eq(json_scan_finish(&s), error);
        json_scan_done(&s);
}

START_TEST(test_valid) {
        static const char *const docs[] = {
                "{}", "[]", " { } ", "0", "-0", "1.5e+10", "-12.25E-3", "\"\"", "true", "false",
                "null", "[1,2,[3,{\"a\":[]}],\"x\\\"y\\\\\",-1e5]",
                "{\"a\":1,\"b\":{\"c\":[true,false,null]},\"\\u00e9\":\"\\n\\t\\/\\b\\f\\r\"}",
                "\t\r\n[\n1\n]\n", "\"\xc3\xa9 raw UTF-8 is fine\"", "[0,0.0,0e0]",
        };

        for (size_t i = 0; i < ELEMENTSOF(docs); i++)
                assert_valid(docs[i]);
}
END_TEST

START_TEST(test_syntax_errors) {
        assert_error("", NULL, -EBADMSG, "unexpected end of the document at byte 0");
        assert_error("{\"a\":}", NULL, -EBADMSG, "unexpected '}' at byte 5");
        assert_error("[1,]", NULL, -EBADMSG, "unexpected ']' at byte 3");
        assert_error("[1 2]", NULL, -EBADMSG, "unexpected '2' at byte 3");
        assert_error("{\"a\" 1}", NULL, -EBADMSG, "unexpected '1' at byte 5");
        assert_error("{1:2}", NULL, -EBADMSG, "unexpected '1' at byte 1");
        assert_error("{\"a\":1,}", NULL, -EBADMSG, "unexpected '}' at byte 7");
        assert_error("[}", NULL, -EBADMSG, "unexpected '}' at byte 1");
        assert_error("]", NULL, -EBADMSG, "unexpected ']' at byte 0");
        assert_error("[1", NULL, -EBADMSG, "unexpected end of the document at byte 2");
        assert_error("\"abc", NULL, -EBADMSG, "unexpected end of the document at byte 4");
        assert_error("01", NULL, -EBADMSG, "malformed number at byte 1");
        assert_error("-", NULL, -EBADMSG, "unexpected end of the document at byte 1");
        assert_error("[-a]", NULL, -EBADMSG, "malformed number at byte 2");
        assert_error("[1.]", NULL, -EBADMSG, "malformed number at byte 3");
        assert_error("[1e]", NULL, -EBADMSG, "malformed number at byte 3");
        assert_error("[.5]", NULL, -EBADMSG, "unexpected '.' at byte 1");
        assert_error("[+1]", NULL, -EBADMSG, "unexpected '+' at byte 1");
        assert_error("tru", NULL, -EBADMSG, "unexpected end of the document at byte 3");
        assert_error("trux", NULL, -EBADMSG, "malformed literal at byte 3");
        assert_error("[nul]", NULL, -EBADMSG, "malformed literal at byte 4");
        assert_error("[truex]", NULL, -EBADMSG, "unexpected 'x' at byte 5");
        assert_error("\"a\x01\"", NULL, -EBADMSG, "control character in a string at byte 2");
        assert_error("\"a\nb\"", NULL, -EBADMSG, "control character in a string at byte 2");
        assert_error("\"\\q\"", NULL, -EBADMSG, "bad escape in a string at byte 2");
        assert_error("\"\\u12g4\"", NULL, -EBADMSG, "bad \\u escape in a string at byte 5");
        assert_error("{} x", NULL, -EBADMSG, "trailing bytes after the JSON value at byte 3");
        assert_error("1 2", NULL, -EBADMSG, "trailing bytes after the JSON value at byte 2");
        assert_error("[\x80]", NULL, -EBADMSG, "unexpected byte 0x80 at byte 1");
        assert_error("'a'", NULL, -EBADMSG, "unexpected ''' at byte 0");
}
END_TEST

START_TEST(test_nul_byte) {
        static const char doc[] = "[\"a\0b\"]";
        JsonScan s;

        ck_assert_int_eq(scan(doc, sizeof(doc) - 1, &loose, &s), -EBADMSG);
        ck_assert_str_eq(s.message, "control character in a string at byte 3");
        json_scan_done(&s);
}
END_TEST

START_TEST(test_depth) {
        JsonScanLimits l = loose;
        size_t n = 100000;
        char *deep = malloc(n + 1);
        JsonScan s;

        l.max_depth = 3;
        assert_valid("[[[]]]");
        assert_error("[[[[]]]]", &l, -ELOOP, "nested deeper than 3 levels (byte 3)");
        assert_error("{\"a\":{\"b\":[{}]}}", &l, -ELOOP, "nested deeper than 3 levels (byte 11)");
        ck_assert_int_eq(scan_str("[[[]]]", &l, &s), 0);
        json_scan_done(&s);
        /* A hundred thousand '[' cost nothing beyond the limit. */
        ck_assert_ptr_nonnull(deep);
        memset(deep, '[', n);
        deep[n] = '\0';
        assert_error(deep, NULL, -ELOOP, "nested deeper than 32 levels (byte 32)");
        free(deep);
}
END_TEST

START_TEST(test_elements) {
        JsonScanLimits l = loose;

        l.max_elements = 2;
        assert_error("[1,2,3]", &l, -E2BIG, "an array with more than 2 elements (byte 5)");
        assert_error("{\"a\":1,\"b\":2,\"c\":3}", &l, -E2BIG,
                     "an object with more than 2 elements (byte 13)");
        assert_error("[[1,2],[3,4],[5]]", &l, -E2BIG, "an array with more than 2 elements (byte 13)");
        {
                JsonScan s;

                ck_assert_int_eq(scan_str("[[1,2],[3,4]]", &l, &s), 0);
                ck_assert(!s.split_overflow);
                json_scan_done(&s);
        }
}
END_TEST

START_TEST(test_split) {
        static const char doc[] = "{\"jobs\" : [ {} ,{\"a\":[1,2]},\"x\\\"]\", 5 , [ ] ]}";
        JsonScanLimits l = loose;
        JsonScan s;

        l.split_depth = 2;
        ck_assert_int_eq(scan_str(doc, &l, &s), 0);
        ck_assert_int_eq(s.top, '{');
        ck_assert_uint_eq(s.top_members, 1);
        ck_assert_uint_eq(s.split_arrays, 1);
        ck_assert_uint_eq(s.first_key.offset, 1);
        ck_assert_uint_eq(s.first_key.length, 6);
        ck_assert_uint_eq(s.n_spans, 5);
        const char *want[] = { "{}", "{\"a\":[1,2]}", "\"x\\\"]\"", "5", "[ ]" };
        for (size_t i = 0; i < 5; i++) {
                ck_assert_uint_eq(s.spans[i].length, strlen(want[i]));
                ck_assert_mem_eq(doc + s.spans[i].offset, want[i], strlen(want[i]));
        }
        json_scan_done(&s);

        /* Arrays deeper or shallower are not split; a second one at the depth is refused. */
        ck_assert_int_eq(scan_str("{\"a\":[1],\"b\":{\"c\":[2,3]},\"d\":4}", &l, &s), 0);
        ck_assert_uint_eq(s.split_arrays, 1);
        ck_assert_uint_eq(s.n_spans, 1);
        ck_assert_uint_eq(s.top_members, 3);
        json_scan_done(&s);
        assert_error("{\"a\":[1],\"b\":{\"c\":[2]},\"d\":[3,4]}", &l, -ENOTUNIQ,
                     "a second array at depth 2 (byte 27)");
        ck_assert_int_eq(scan_str("[]", &l, &s), 0);
        ck_assert_uint_eq(s.n_spans, 0);
        ck_assert_int_eq(s.top, '[');
        json_scan_done(&s);
}
END_TEST

START_TEST(test_split_limits) {
        JsonScanLimits l = loose;
        JsonScan s;

        l.split_depth = 2;
        l.max_split_elements = 2;
        l.max_elements = 5;
        ck_assert_int_eq(scan_str("{\"jobs\":[{},{},{}]}", &l, &s), -E2BIG);
        ck_assert_str_eq(s.message, "an array with more than 2 elements (byte 15)");
        ck_assert(s.split_overflow);
        ck_assert_uint_eq(s.n_spans, 2);
        json_scan_done(&s);

        l.max_split_elements = 10;
        l.max_split_bytes = 9;
        ck_assert_int_eq(scan_str("{\"jobs\":[\"123456789\"]}", &l, &s), -EFBIG);
        ck_assert_str_eq(s.message, "element 0 is larger than 9 bytes");
        ck_assert(s.in_split);
        json_scan_done(&s);
        ck_assert_int_eq(scan_str("{\"jobs\":[\"1234567\",{\"a\":1234}]}", &l, &s), -EFBIG);
        ck_assert_str_eq(s.message, "element 1 is larger than 9 bytes");
        json_scan_done(&s);
        ck_assert_int_eq(scan_str("{\"jobs\":[\"1234567\"]}", &l, &s), 0);
        json_scan_done(&s);

        /* A growing element is refused when a piece ends past the limit, not only at its end. */
        ck_assert_int_eq(json_scan_init(&s, &l), 0);
        ck_assert_int_eq(json_scan_feed(&s, "{\"jobs\":[\"12345", 14), 0);
        ck_assert_int_eq(json_scan_feed(&s, "67890", 5), -EFBIG);
        json_scan_done(&s);
}
END_TEST

/* The body: {"jobs":[{},{},…]} far beyond the job limit is refused at the first job
 * too many, having recorded that many spans and no more. */
START_TEST(test_huge_batch) {
        size_t n = 3000000, len = 9 + 3 * n + 1;
        char *doc = malloc(len + 1);
        JsonScanLimits l = loose;
        JsonScan s;
        int r = 0;

        ck_assert_ptr_nonnull(doc);
        memcpy(doc, "{\"jobs\":[", 9);
        for (size_t i = 0; i < n; i++)
                memcpy(doc + 9 + 3 * i, "{},", 3);
        memcpy(doc + len - 2, "]}", 2);
        doc[len] = '\0';
        l.split_depth = 2;
        l.max_split_elements = 1000000;
        ck_assert_int_eq(json_scan_init(&s, &l), 0);
        for (size_t off = 0; off < len && r == 0; off += 65536)
                r = json_scan_feed(&s, doc + off, MIN((size_t) 65536, len - off));
        ck_assert_int_eq(r, -E2BIG);
        ck_assert_str_eq(s.message, "an array with more than 1000000 elements (byte 3000009)");
        ck_assert(s.split_overflow);
        ck_assert_uint_eq(s.n_spans, 1000000);
        ck_assert_uint_eq(s.spans[999999].offset, 9 + 3 * 999999);
        json_scan_done(&s);
        free(doc);
}
END_TEST

/* The finding's body: {"a":[0,0,…],"b":[0,0,…],…}, each array within max_split_elements, is
 * refused as the second array opens: spans stay within max_split_elements in all (before,
 * every array was recorded, each up to the limit). */
START_TEST(test_split_many_arrays) {
        size_t per = 1000, n_arrays = 8, len = 0;
        char *doc = malloc(n_arrays * (8 + 2 * per) + 2);
        JsonScanLimits l = loose;
        JsonScan s;
        int r = 0;

        ck_assert_ptr_nonnull(doc);
        doc[len++] = '{';
        for (size_t a = 0; a < n_arrays; a++) {
                len += (size_t) sprintf(doc + len, "%s\"%c\":[", a > 0 ? "," : "", (char) ('a' + a));
                for (size_t i = 0; i < per; i++)
                        len += (size_t) sprintf(doc + len, "%s0", i > 0 ? "," : "");
                doc[len++] = ']';
        }
        doc[len++] = '}';
        l.split_depth = 2;
        l.max_split_elements = per;
        ck_assert_int_eq(json_scan_init(&s, &l), 0);
        for (size_t off = 0; off < len && r == 0; off += 100)
                r = json_scan_feed(&s, doc + off, MIN((size_t) 100, len - off));
        if (r == 0)
                r = json_scan_finish(&s);
        ck_assert_int_eq(r, -ENOTUNIQ);
        ck_assert_uint_eq(s.n_spans, per);
        ck_assert_uint_le(s.spans_alloc, 2 * per);
        ck_assert_str_eq(s.message, "a second array at depth 2 (byte 2011)");
        json_scan_done(&s);
        free(doc);
}
END_TEST

START_TEST(test_limits_refused) {
        JsonScanLimits l = loose;
        JsonScan s;

        l.max_depth = 0;
        ck_assert_int_eq(json_scan_init(&s, &l), -EINVAL);
        l.max_depth = JSON_SCAN_DEPTH_MAX + 1;
        ck_assert_int_eq(json_scan_init(&s, &l), -EINVAL);
        l.max_depth = 2;
        l.split_depth = 3;
        ck_assert_int_eq(json_scan_init(&s, &l), -EINVAL);
        /* Above 4 GiB in all: refused before a byte is looked at. */
        l.split_depth = 0;
        ck_assert_int_eq(json_scan_init(&s, &l), 0);
        ck_assert_int_eq(json_scan_feed(&s, "", (size_t) UINT32_MAX + 1), -EFBIG);
        ck_assert_str_eq(s.message, "document larger than 4 GiB");
}
END_TEST

static Suite *json_scan_suite(void) {
        Suite *s = suite_create("json-scan");
        TCase *tc = tcase_create("scan");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_valid);
        tcase_add_test(tc, test_syntax_errors);
        tcase_add_test(tc, test_nul_byte);
        tcase_add_test(tc, test_depth);
        tcase_add_test(tc, test_elements);
        tcase_add_test(tc, test_split);
        tcase_add_test(tc, test_split_limits);
        tcase_add_test(tc, test_huge_batch);
        tcase_add_test(tc, test_split_many_arrays);
        tcase_add_test(tc, test_limits_refused);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(json_scan_suite());
        int failed;

        srunner_run_all(sr, CK_VERBOSE);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
