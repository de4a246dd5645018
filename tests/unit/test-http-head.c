/* lib/http-head: the request head scanner and parser and the chunked body decoder, pure
 * functions fed hostile and good input, with exact results. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http-head.h"
#include "macro.h"

/* Scans the whole of s (len bytes) in one go and then byte by byte: both must agree. */
static int scan_all(const char *s, size_t len, size_t max_line, const char **ret_why) {
        HttpHeadScan whole = {}, bytes = {};
        const char *why1 = NULL, *why2 = NULL;
        int r1, r2 = 0;

        r1 = http_head_scan(s, len, max_line, &whole, &why1);
        for (size_t i = 1; i <= len; i++) {
                r2 = http_head_scan(s, i, max_line, &bytes, &why2);
                if (r2 != 0)
                        break;
        }
        ck_assert_int_eq(r1, r2);
        ck_assert_ptr_eq(why1, why2);
        *ret_why = why1;
        return r1;
}

/* Scans and parses a complete head given as a string; returns parse's result. */
static int parse(const char *text, HttpHead *h, const char **ret_why, char **ret_buf) {
        size_t len = strlen(text);
        char *buf = strdup(text);
        int r;

        ck_assert_ptr_nonnull(buf);
        r = scan_all(buf, len, SIZE_MAX, ret_why);
        ck_assert_msg(r == (int) len, "scan of %s: %d", text, r);
        r = http_head_parse(buf, len, h, ret_why);
        *ret_buf = buf;
        return r;
}

static void assert_parse_error(const char *text, int error, const char *why) {
        HttpHead h;
        const char *got = NULL;
        char *buf;

        ck_assert_int_eq(parse(text, &h, &got, &buf), error);
        ck_assert_str_eq(got, why);
        free(buf);
}

static void assert_scan_error(const char *s, size_t len, int error, const char *why) {
        const char *got = NULL;

        ck_assert_int_eq(scan_all(s, len, SIZE_MAX, &got), error);
        ck_assert_str_eq(got, why);
}

START_TEST(test_good_head) {
        HttpHead h;
        const char *why = NULL;
        char *buf;

        ck_assert_int_eq(parse("POST /v1/queues/q/jobs?a=1&b HTTP/1.1\r\nHost: localhost\r\n"
                               "content-length:  12 \r\nX-Empty:\r\nConnection: keep-alive, "
                               "Close\r\nExpect: 100-Continue\r\nAuthorization: Bearer x y\r\n"
                               "\r\n", &h, &why, &buf), 0);
        ck_assert_str_eq(h.method, "POST");
        ck_assert_str_eq(h.path, "/v1/queues/q/jobs");
        ck_assert_str_eq(h.query, "a=1&b");
        ck_assert_uint_eq(h.minor, 1);
        ck_assert_uint_eq(h.n_headers, 6);
        ck_assert(h.has_content_length);
        ck_assert_uint_eq(h.content_length, 12);
        ck_assert_uint_eq(h.n_host, 1);
        ck_assert(h.connection_close);
        ck_assert(h.expect_continue);
        ck_assert_uint_eq(h.n_transfer_encoding, 0);
        ck_assert(!h.chunked);
        ck_assert_str_eq(http_head_header(&h, "X-EMPTY"), "");
        ck_assert_str_eq(http_head_header(&h, "authorization"), "Bearer x y");
        ck_assert_ptr_null(http_head_header(&h, "Cookie"));
        free(buf);

        ck_assert_int_eq(parse("GET / HTTP/1.0\r\n\r\n", &h, &why, &buf), 0);
        ck_assert_str_eq(h.path, "/");
        ck_assert_ptr_null(h.query);
        ck_assert_uint_eq(h.minor, 0);
        ck_assert_uint_eq(h.n_host, 0);
        ck_assert(!h.has_content_length);
        ck_assert(!h.connection_close);
        free(buf);
}
END_TEST

START_TEST(test_content_length) {
        HttpHead h;
        const char *why = NULL;
        char *buf;

        /* The same value twice (also written differently) is one value. */
        ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\n",
                               &h, &why, &buf), 0);
        ck_assert_uint_eq(h.content_length, 2);
        free(buf);
        ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                               &h, &why, &buf), 0);
        ck_assert_uint_eq(h.content_length, UINT64_MAX);
        free(buf);

        assert_parse_error("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                           -EBADMSG, "Conflicting Content-Length headers");
        assert_parse_error("POST / HTTP/1.1\r\nContent-Length: 4\r\nX: y\r\ncontent-length: 40\r\n\r\n",
                           -EBADMSG, "Conflicting Content-Length headers");
        assert_parse_error("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", -EBADMSG,
                           "Malformed Content-Length");
        assert_parse_error("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -EBADMSG,
                           "Malformed Content-Length");
        assert_parse_error("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", -EBADMSG,
                           "Malformed Content-Length");
        assert_parse_error("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", -EBADMSG,
                           "Malformed Content-Length");
        assert_parse_error("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", -EBADMSG,
                           "Malformed Content-Length");
}
END_TEST

START_TEST(test_transfer_encoding) {
        HttpHead h;
        const char *why = NULL;
        char *buf;

        ck_assert_int_eq(parse("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &h, &why,
                               &buf), 0);
        ck_assert_uint_eq(h.n_transfer_encoding, 1);
        ck_assert(h.chunked);
        free(buf);
        /* Anything but exactly one "chunked" is not plain chunked (the server refuses it). */
        ck_assert_int_eq(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h,
                               &why, &buf), 0);
        ck_assert(!h.chunked);
        ck_assert_uint_eq(h.n_transfer_encoding, 1);
        free(buf);
        ck_assert_int_eq(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n", &h, &why, &buf), 0);
        ck_assert(!h.chunked);
        ck_assert_uint_eq(h.n_transfer_encoding, 2);
        free(buf);
        ck_assert_int_eq(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "Content-Length: 5\r\n\r\n", &h, &why, &buf), 0);
        ck_assert(h.chunked && h.has_content_length);
        free(buf);
}
END_TEST

START_TEST(test_host) {
        HttpHead h;
        const char *why = NULL;
        char *buf;

        ck_assert_int_eq(parse("GET / HTTP/1.1\r\n\r\n", &h, &why, &buf), 0);
        ck_assert_uint_eq(h.n_host, 0);
        free(buf);
        ck_assert_int_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", &h, &why, &buf), 0);
        ck_assert_uint_eq(h.n_host, 2);
        free(buf);
}
END_TEST

START_TEST(test_bad_request_line) {
        static const char *const bad[] = {
                "get / HTTP/1.1\r\n\r\n",
                "GET v1 HTTP/1.1\r\n\r\n",
                "GET http://localhost/v1 HTTP/1.1\r\n\r\n",
                "GET * HTTP/1.1\r\n\r\n",
                "GET  / HTTP/1.1\r\n\r\n",
                "GET /\r\n\r\n",
                "GET / HTTP/1.1 \r\n\r\n",
                "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n",
                "GET /a b HTTP/1.1\r\n\r\n",
                "GET /\xc3\xb6 HTTP/1.1\r\n\r\n",
                "GET / http/1.1\r\n\r\n",
                "GET / HTTP/1.10\r\n\r\n",
                "\r\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_parse_error(bad[i], -EBADMSG, "Malformed request line");
        assert_parse_error("GET / HTTP/2.0\r\n\r\n", -EPROTONOSUPPORT,
                           "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)");
        assert_parse_error("GET / HTTP/0.9\r\n\r\n", -EPROTONOSUPPORT,
                           "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)");
}
END_TEST

START_TEST(test_bad_headers) {
        char many[4096];
        size_t n;

        assert_parse_error("GET / HTTP/1.1\r\nNoColon\r\n\r\n", -EBADMSG, "Malformed header line");
        assert_parse_error("GET / HTTP/1.1\r\nName : v\r\n\r\n", -EBADMSG, "Malformed header line");
        assert_parse_error("GET / HTTP/1.1\r\n: v\r\n\r\n", -EBADMSG, "Malformed header line");
        assert_parse_error("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", -EBADMSG,
                           "Obsolete line folding in the request head");
        assert_parse_error("GET / HTTP/1.1\r\n\tHost: x\r\n\r\n", -EBADMSG,
                           "Obsolete line folding in the request head");

        n = (size_t) snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
        for (unsigned i = 0; i < HTTP_HEADERS_MAX; i++)
                n += (size_t) snprintf(many + n, sizeof(many) - n, "X%u: v\r\n", i);
        strcpy(many + n, "\r\n");
        {
                HttpHead h;
                const char *why;
                char *buf;

                ck_assert_int_eq(parse(many, &h, &why, &buf), 0);
                ck_assert_uint_eq(h.n_headers, HTTP_HEADERS_MAX);
                free(buf);
        }
        strcpy(many + n, "One-More: v\r\n\r\n");
        assert_parse_error(many, -E2BIG, "Too many header fields");
}
END_TEST

START_TEST(test_scan_hostile_bytes) {
        static const char nul_target[] = "GET /v1/queues\0/x HTTP/1.1\r\nHost: a\r\n\r\n";
        static const char nul_value[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
        const char *why = NULL;

        assert_scan_error(nul_target, sizeof(nul_target) - 1, -EBADMSG,
                          "Control byte in the request head");
        assert_scan_error(nul_value, sizeof(nul_value) - 1, -EBADMSG,
                          "Control byte in the request head");
        assert_scan_error("GET /\x7f HTTP/1.1\r\n\r\n", 19, -EBADMSG,
                          "Control byte in the request head");
        assert_scan_error("GET / HTTP/1.1\n\n", 16, -EBADMSG,
                          "Bare LF in the request head (lines end in CRLF)");
        assert_scan_error("GET / HTTP/1.1\r\nHost: a\n\r\n", 26, -EBADMSG,
                          "Bare LF in the request head (lines end in CRLF)");
        assert_scan_error("GET / HTTP/1.1\r\r\n\r\n", 19, -EBADMSG, "Bare CR in the request head");
        assert_scan_error("GET / HTTP/1.1\rX", 16, -EBADMSG, "Bare CR in the request head");
        /* A bad byte is refused at once, before any blank line. */
        assert_scan_error("GET / HTTP/1.1\r\nX: \x01", 20, -EBADMSG,
                          "Control byte in the request head");
        /* Incomplete: 0, also with a CR whose LF has not come yet. */
        ck_assert_int_eq(scan_all("GET / HTTP/1.1\r\nHost: a\r\n\r", 26, SIZE_MAX, &why), 0);
        ck_assert_int_eq(scan_all("GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", 31, SIZE_MAX, &why), 27);
        ck_assert_int_eq(scan_all("GET / HTTP/1.1\r\nX:\ta\tb\r\n\r\n", 26, SIZE_MAX, &why), 26);
}
END_TEST

START_TEST(test_scan_long_request_line) {
        char line[64];
        const char *why = NULL;

        /* "GET /xxx HTTP/1.1" is 17 bytes: a limit of 17 takes it, 16 does not. */
        strcpy(line, "GET /xxx HTTP/1.1\r\nHost: a\r\n\r\n");
        ck_assert_int_eq(scan_all(line, strlen(line), 17, &why), (int) strlen(line));
        ck_assert_int_eq(scan_all(line, strlen(line), 16, &why), -ENAMETOOLONG);
        ck_assert_str_eq(why, "Request line too long");
        /* Refused as soon as the line passes the limit, without its end. */
        ck_assert_int_eq(scan_all("GET /xxxxxxxxxxxxxxxxxxxxxxxxx", 30, 16, &why), -ENAMETOOLONG);
        ck_assert_int_eq(scan_all("GET /xxxxxxxxxxx", 16, 16, &why), 0);
        /* Headers may be longer than the request line. */
        strcpy(line, "GET / HTTP/1.1\r\nX-Long-Header: 0123456789\r\n\r\n");
        ck_assert_int_eq(scan_all(line, strlen(line), 16, &why), (int) strlen(line));
}
END_TEST

/* ---- chunked --------------------------------------------------------------------------- */

/* Decodes s whole, then in pieces of `step` bytes; both give the same data and used length. */
static int chunked_all(const char *s, size_t step, char *out, size_t *ret_out, size_t *ret_used,
                       const char **ret_why) {
        HttpChunked d = {};
        size_t len = strlen(s), done = 0, o = 0;
        char buf[512];
        int r = 0;

        ck_assert_uint_lt(len, sizeof(buf));
        while (done < len) {
                size_t n = MIN(step, len - done), used = 0, got = 0;

                memcpy(buf, s + done, n);
                r = http_chunked_decode(&d, buf, n, &used, &got, ret_why);
                if (r < 0)
                        return r;
                memcpy(out + o, buf, got);
                o += got;
                done += used;
                if (r == 1)
                        break;
                ck_assert_uint_eq(used, n);
        }
        out[o] = '\0';
        *ret_out = o;
        *ret_used = done;
        return r;
}

static void assert_chunked(const char *s, const char *data, size_t used, int result) {
        for (size_t step = 1; step <= strlen(s); step++) {
                char out[512];
                size_t n = 0, u = 0;
                const char *why = NULL;

                ck_assert_int_eq(chunked_all(s, step, out, &n, &u, &why), result);
                ck_assert_str_eq(out, data);
                ck_assert_uint_eq(u, used);
        }
}

static void assert_chunked_bad(const char *s, const char *why) {
        for (size_t step = 1; step <= strlen(s); step++) {
                char out[512];
                size_t n = 0, u = 0;
                const char *got = NULL;

                ck_assert_int_eq(chunked_all(s, step, out, &n, &u, &got), -EBADMSG);
                ck_assert_str_eq(got, why);
        }
}

START_TEST(test_chunked_good) {
        assert_chunked("5\r\nhello\r\n0\r\n\r\n", "hello", 15, 1);
        assert_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /", "hello world", 26, 1);
        assert_chunked("A;name=value\r\n0123456789\r\n0 ;x\r\nTrailer: t\r\n\r\n", "0123456789",
                       46, 1);
        assert_chunked("00000000000001\r\nx\r\n0\r\n\r\n", "x", 24, 1);
        /* Not complete yet. */
        assert_chunked("5\r\nhel", "hel", 6, 0);
        assert_chunked("0\r\n", "", 3, 0);
}
END_TEST

START_TEST(test_chunked_bad) {
        char line[HTTP_CHUNK_LINE_MAX + 16];

        assert_chunked_bad("\r\n", "Malformed chunk size");
        assert_chunked_bad("x\r\n", "Malformed chunk size");
        assert_chunked_bad("5 \r\nhello\r\n0\r\n\r\n", "Malformed chunk size");
        assert_chunked_bad("5x\r\nhello\r\n0\r\n\r\n", "Malformed chunk size");
        assert_chunked_bad("-5\r\n", "Malformed chunk size");
        assert_chunked_bad("5\nhello\r\n0\r\n\r\n", "Malformed chunk size");
        assert_chunked_bad("5\r\rhello", "Bare CR in the chunked framing");
        assert_chunked_bad("5\r\nhelloX\r\n", "Chunk data longer than its size");
        assert_chunked_bad("5\r\nhello\r\r", "Bare CR in the chunked framing");
        assert_chunked_bad("5\r\nhello\r\n0\r\nX: y\n\r\n", "Bare LF in the chunked framing");
        assert_chunked_bad("5\r\nhello\r\n0\r\nX: \x01\r\n\r\n", "Control byte in a trailer");
        assert_chunked_bad("5;\x01\r\n", "Control byte in a chunk extension");
        assert_chunked_bad("1000000000000000\r\n", "Chunk size too large");
        assert_chunked_bad("0000000000000001\r\n", "Chunk size too large");
        assert_chunked_bad("0\r\n\rX", "Bare CR in the chunked framing");
        memset(line, 'a', sizeof(line));
        memcpy(line, "5;", 2);
        line[sizeof(line) - 1] = '\0';
        {
                HttpChunked d = {};
                size_t used, out;
                const char *why = NULL;

                ck_assert_int_eq(http_chunked_decode(&d, line, strlen(line), &used, &out, &why),
                                 -EBADMSG);
                ck_assert_str_eq(why, "Chunk size line too long");
        }
}
END_TEST

START_TEST(test_chunked_trailers_limit) {
        size_t len = HTTP_TRAILERS_MAX + 64;
        char *s = malloc(len + 1);
        HttpChunked d = {};
        size_t used, out;
        const char *why = NULL;

        ck_assert_ptr_nonnull(s);
        memset(s, 'a', len);
        memcpy(s, "0\r\nX: ", 6);
        s[len] = '\0';
        ck_assert_int_eq(http_chunked_decode(&d, s, len, &used, &out, &why), -EBADMSG);
        ck_assert_str_eq(why, "Trailers too large");
        free(s);
}
END_TEST

static Suite *http_head_suite(void) {
        Suite *s = suite_create("http-head");
        TCase *tc = tcase_create("decoders");

        tcase_add_test(tc, test_good_head);
        tcase_add_test(tc, test_content_length);
        tcase_add_test(tc, test_transfer_encoding);
        tcase_add_test(tc, test_host);
        tcase_add_test(tc, test_bad_request_line);
        tcase_add_test(tc, test_bad_headers);
        tcase_add_test(tc, test_scan_hostile_bytes);
        tcase_add_test(tc, test_scan_long_request_line);
        tcase_add_test(tc, test_chunked_good);
        tcase_add_test(tc, test_chunked_bad);
        tcase_add_test(tc, test_chunked_trailers_limit);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(http_head_suite());
        int failed;

        srunner_run_all(sr, CK_VERBOSE);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
