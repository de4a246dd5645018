/* lib/job.c: states, the JSON submission spec, the netstring argument list (record version 1),
 * outcomes, signal names, ids and the result as JSON. QueueConfig is built by hand here so that
 * this suite does not depend on config.c. */
#include <check.h>
#include <jansson.h>
#include <regex.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "config.h"
#include "job.h"
#include "macro.h"

static QueueConfig q;

static void queue_init(const char *pattern) {
        memset(&q, 0, sizeof(q));
        q.name = (char *) "test";
        q.max_args = 16;
        q.max_arg_len = 4096;
        q.max_payload = 1048576;
        q.timeout_usec = 3600 * USEC_PER_SEC;
        if (pattern) {
                char re[256];

                snprintf(re, sizeof(re), "^(%s)$", pattern);
                ck_assert_int_eq(regcomp(&q.arg_regex, re, REG_EXTENDED | REG_NOSUB), 0);
                q.arg_pattern = (char *) pattern;
        }
}

static void queue_done(void) {
        if (q.arg_pattern)
                regfree(&q.arg_regex);
        memset(&q, 0, sizeof(q));
}

static void setup(void) {
        queue_init(NULL);
}

static void teardown(void) {
        queue_done();
}

static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);

        ck_assert_ptr_nonnull(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

/* ---- states ---- */

START_TEST(test_states) {
        static const char *const names[] = { "queued", "delayed", "running", "done", "failed",
                                              "cancelled" };

        ck_assert_int_eq(ELEMENTSOF(names), _JOB_STATE_MAX);
        for (int i = 0; i < _JOB_STATE_MAX; i++) {
                ck_assert_str_eq(job_state_to_string((JobState) i), names[i]);
                ck_assert_int_eq(job_state_from_string(names[i]), i);
        }
        ck_assert_ptr_null(job_state_to_string(_JOB_STATE_MAX));
        ck_assert_ptr_null(job_state_to_string(_JOB_STATE_INVALID));
        ck_assert_int_eq(job_state_from_string("Queued"), _JOB_STATE_INVALID);
        ck_assert_int_eq(job_state_from_string(""), _JOB_STATE_INVALID);
        ck_assert_int_eq(job_state_from_string(NULL), _JOB_STATE_INVALID);
        ck_assert(!job_state_is_final(JOB_QUEUED));
        ck_assert(!job_state_is_final(JOB_DELAYED));
        ck_assert(!job_state_is_final(JOB_RUNNING));
        ck_assert(job_state_is_final(JOB_DONE));
        ck_assert(job_state_is_final(JOB_FAILED));
        ck_assert(job_state_is_final(JOB_CANCELLED));
}
END_TEST

START_TEST(test_free_null) {
        ck_assert_ptr_null(job_spec_free(NULL));
        ck_assert_ptr_null(job_result_free(NULL));
        /* Half-built objects. */
        ck_assert_ptr_null(job_spec_free(calloc(1, sizeof(JobSpec))));
        ck_assert_ptr_null(job_result_free(calloc(1, sizeof(JobResult))));
}
END_TEST

/* ---- netstrings: golden vectors of record version 1 ---- */

typedef struct Golden {
        const char *args[4];
        size_t n;
        const char *wire;
        size_t wire_len;
} Golden;

#define W(s) s, sizeof(s) - 1
static const Golden golden[] = {
        { { NULL }, 0, W("") },
        { { "" }, 1, W("0:,") },
        { { "a", "bc", "" }, 3, W("1:a,2:bc,0:,") },
        { { "-sV", "127.0.0.1" }, 2, W("3:-sV,9:127.0.0.1,") },
        { { "0123456789" }, 1, W("10:0123456789,") },
        { { "hello, world:", "1:a," }, 2, W("13:hello, world:,4:1:a,,") },
        { { "\x01\xff\n\t\"\\", "\xc3\xa9" }, 2, W("6:\x01\xff\n\t\"\\,2:\xc3\xa9,") },
        { { "", "", "" }, 3, W("0:,0:,0:,") },
};

START_TEST(test_netstring_encode_golden) {
        for (size_t i = 0; i < ELEMENTSOF(golden); i++) {
                _cleanup_free_ char *buf = NULL;
                size_t len = 0;

                ck_assert_int_eq(job_args_encode((char *const *) golden[i].args, golden[i].n, &buf, &len), 0);
                ck_assert_uint_eq(len, golden[i].wire_len);
                ck_assert_mem_eq(buf, golden[i].wire, len);
                ck_assert_int_eq(buf[len], '\0');
        }
}
END_TEST

START_TEST(test_netstring_decode_golden) {
        for (size_t i = 0; i < ELEMENTSOF(golden); i++) {
                _cleanup_strv_free_ char **args = NULL;
                size_t n = 99;

                ck_assert_int_eq(job_args_decode(golden[i].wire, golden[i].wire_len, 16, 4096, &args, &n), 0);
                ck_assert_uint_eq(n, golden[i].n);
                ck_assert_ptr_nonnull(args);
                for (size_t j = 0; j < n; j++)
                        ck_assert_str_eq(args[j], golden[i].args[j]);
                ck_assert_ptr_null(args[n]);
        }
}
END_TEST

START_TEST(test_netstring_roundtrip) {
        _cleanup_free_ char *big = repeat('z', 4096), *buf = NULL;
        _cleanup_strv_free_ char **out = NULL;
        char bin[255];
        char *args[4];
        size_t len, n;

        /* every byte value except NUL */
        for (int i = 1; i < 256; i++)
                bin[i - 1] = (char) i;
        bin[254] = '\0';
        args[0] = bin;
        args[1] = (char *) "";
        args[2] = big;
        args[3] = (char *) ",:0";
        ck_assert_int_eq(job_args_encode(args, 4, &buf, &len), 0);
        ck_assert_uint_eq(len, (4 + 254 + 1) + 3 + (5 + 4096 + 1) + (2 + 3 + 1));
        ck_assert_int_eq(job_args_decode(buf, len, 4, 4096, &out, &n), 0);
        ck_assert_uint_eq(n, 4);
        for (size_t i = 0; i < 4; i++)
                ck_assert_str_eq(out[i], args[i]);
        ck_assert_ptr_null(out[4]);
}
END_TEST

START_TEST(test_netstring_encode_null) {
        char *args[] = { (char *) "a", NULL };
        char *buf = (char *) 0x1;
        size_t len = 7;

        ck_assert_int_eq(job_args_encode(args, 2, &buf, &len), -EINVAL);
        ck_assert_int_eq(job_args_encode(NULL, 1, &buf, &len), -EINVAL);
        ck_assert_ptr_eq(buf, (char *) 0x1);
        ck_assert_uint_eq(len, 7);
}
END_TEST

typedef struct Bad {
        const char *wire;
        size_t len;
        size_t max_args, max_arg_len;
        int r;
} Bad;

static const Bad bad_netstrings[] = {
        { W("01:a,"), 16, 4096, -EBADMSG },          /* leading zero */
        { W("00:,"), 16, 4096, -EBADMSG },
        { W("000:,"), 16, 4096, -EBADMSG },
        { W(":a,"), 16, 4096, -EBADMSG },            /* no length */
        { W(","), 16, 4096, -EBADMSG },
        { W("1a,"), 16, 4096, -EBADMSG },            /* missing ':' */
        { W("1"), 16, 4096, -EBADMSG },
        { W("1:a"), 16, 4096, -EBADMSG },            /* missing ',' */
        { W("1:ab,"), 16, 4096, -EBADMSG },          /* ',' expected */
        { W("2:a"), 16, 4096, -EBADMSG },            /* truncated */
        { W("3:a,"), 16, 4096, -EBADMSG },
        { W("1:a,x"), 16, 4096, -EBADMSG },          /* trailing bytes */
        { W("1:a,1:b"), 16, 4096, -EBADMSG },
        { W("1:a,\n"), 16, 4096, -EBADMSG },
        { W("1:a,\0"), 16, 4096, -EBADMSG },
        { W("3:a\0b,"), 16, 4096, -EBADMSG },        /* embedded NUL */
        { W("1:\0,"), 16, 4096, -EBADMSG },
        { W("-1:a,"), 16, 4096, -EBADMSG },          /* signs and spaces */
        { W("+1:a,"), 16, 4096, -EBADMSG },
        { W(" 1:a,"), 16, 4096, -EBADMSG },
        { W("1 :a,"), 16, 4096, -EBADMSG },
        { W("0x1:a,"), 16, 4096, -EBADMSG },
        { W("1:a,1:b,"), 1, 4096, -E2BIG },          /* more than max_args */
        { W("0:,"), 0, 4096, -E2BIG },
        { W("5:abcde,"), 16, 4, -E2BIG },            /* longer than max_arg_len */
        { W("1:a,"), 16, 0, -E2BIG },
        { W("99999999999999999999999:"), 16, 4096, -E2BIG },
        { W("99999999999999999999999:"), 16, SIZE_MAX, -EBADMSG }, /* length overflow */
        { W("18446744073709551615:a,"), 16, SIZE_MAX, -EBADMSG },  /* SIZE_MAX, not enough bytes */
        { W("18446744073709551616:a,"), 16, SIZE_MAX, -EBADMSG },  /* SIZE_MAX + 1 */
};

START_TEST(test_netstring_decode_bad) {
        const Bad *b = &bad_netstrings[_i];
        char **args = (char **) 0x1;
        size_t n = 77;

        ck_assert_msg(job_args_decode(b->wire, b->len, b->max_args, b->max_arg_len, &args, &n) == b->r,
                      "vector %d \"%s\"", _i, b->wire);
        ck_assert_ptr_eq(args, (char **) 0x1);
        ck_assert_uint_eq(n, 77);
}
END_TEST

START_TEST(test_netstring_decode_limits) {
        _cleanup_strv_free_ char **args = NULL;
        size_t n;

        /* exactly at the limits */
        ck_assert_int_eq(job_args_decode(W("4:abcd,1:e,"), 2, 4, &args, &n), 0);
        ck_assert_uint_eq(n, 2);
        strv_free(TAKE_PTR(args));
        /* the length is honoured, not a NUL: a buffer cut short is truncated input */
        ck_assert_int_eq(job_args_decode("1:a,1:b,", 6, 16, 4096, &args, &n), -EBADMSG);
        ck_assert_int_eq(job_args_decode("1:a,1:b,", 4, 16, 4096, &args, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(args[0], "a");
        strv_free(TAKE_PTR(args));
        ck_assert_int_eq(job_args_decode(NULL, 0, 16, 4096, &args, &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_null(args[0]);
        strv_free(TAKE_PTR(args));
        ck_assert_int_eq(job_args_decode(NULL, 1, 16, 4096, &args, &n), -EINVAL);
}
END_TEST

START_TEST(test_netstring_decode_many) {
        /* 1000 items: exercises growth of the result vector. */
        _cleanup_strv_free_ char **args = NULL;
        _cleanup_free_ char *wire = NULL;
        size_t n, len = 0;

        wire = malloc(1000 * 4 + 1);
        for (int i = 0; i < 1000; i++)
                len += (size_t) sprintf(wire + len, "1:%c,", 'a' + i % 26);
        ck_assert_int_eq(job_args_decode(wire, len, 999, 1, &args, &n), -E2BIG);
        ck_assert_int_eq(job_args_decode(wire, len, 1000, 1, &args, &n), 0);
        ck_assert_uint_eq(n, 1000);
        ck_assert_str_eq(args[999], "l");
        ck_assert_ptr_null(args[1000]);
}
END_TEST

/* ---- JSON spec ---- */

static JobSpec *spec_ok(const char *text) {
        _cleanup_free_ char *error = NULL;
        json_error_t jerr;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        JobSpec *s = NULL;
        int r;

        ck_assert_msg(j != NULL, "bad test JSON: %s", jerr.text);
        r = job_spec_from_json(j, &q, &s, &error);
        ck_assert_msg(r == 0, "%s: %d %s", text, r, error ? error : "(no message)");
        ck_assert_ptr_null(error);
        ck_assert_ptr_nonnull(s);
        ck_assert_ptr_nonnull(s->args);
        ck_assert_ptr_null(s->args[s->n_args]);
        json_decref(j);
        return s;
}

static void spec_fail_json(json_t *j, int r, const char *msg) {
        _cleanup_free_ char *error = NULL;
        JobSpec *s = (JobSpec *) 0x1;

        ck_assert_int_eq(job_spec_from_json(j, &q, &s, &error), r);
        ck_assert_ptr_eq(s, (JobSpec *) 0x1);
        ck_assert_ptr_nonnull(error);
        ck_assert_str_eq(error, msg);
        /* a NULL ret_error is allowed and gives the same result */
        ck_assert_int_eq(job_spec_from_json(j, &q, &s, NULL), r);
        json_decref(j);
}

static void spec_fail(const char *text, int r, const char *msg) {
        json_error_t jerr;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

        ck_assert_msg(j != NULL, "bad test JSON: %s", jerr.text);
        spec_fail_json(j, r, msg);
}

START_TEST(test_spec_empty) {
        _cleanup_(job_spec_freep) JobSpec *s = spec_ok("{}");

        ck_assert_uint_eq(s->n_args, 0);
        ck_assert_ptr_null(s->id);
        ck_assert_ptr_null(s->payload);
        ck_assert_uint_eq(s->payload_len, 0);
        ck_assert_uint_eq(s->timeout_usec, 0);
}
END_TEST

START_TEST(test_spec_full) {
        _cleanup_(job_spec_freep) JobSpec *s =
                spec_ok("{\"args\": [\"-p\", \"22\", \"\"], \"payload\": \"text on stdin\", "
                        "\"id\": \"my-key.1:x_y\", \"timeout\": \"30s\"}");

        ck_assert_uint_eq(s->n_args, 3);
        ck_assert_str_eq(s->args[0], "-p");
        ck_assert_str_eq(s->args[1], "22");
        ck_assert_str_eq(s->args[2], "");
        ck_assert_uint_eq(s->payload_len, 13);
        ck_assert_mem_eq(s->payload, "text on stdin", 13);
        ck_assert_str_eq(s->id, "my-key.1:x_y");
        ck_assert_uint_eq(s->timeout_usec, 30 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_spec_payload_text) {
        _cleanup_(job_spec_freep) JobSpec *s = spec_ok("{\"payload\": \"a\\u0000b\\u00e9\\n\"}");
        _cleanup_(job_spec_freep) JobSpec *e = spec_ok("{\"payload\": \"\"}");

        /* text payloads are bytes: NUL is fine on stdin, UTF-8 is kept as encoded */
        ck_assert_uint_eq(s->payload_len, 6);
        ck_assert_mem_eq(s->payload, "a\0b\xc3\xa9\n", 6);
        ck_assert_ptr_null(e->payload);
        ck_assert_uint_eq(e->payload_len, 0);
}
END_TEST

START_TEST(test_spec_timeout_forms) {
        _cleanup_(job_spec_freep) JobSpec *a = spec_ok("{\"timeout\": 30}");
        _cleanup_(job_spec_freep) JobSpec *b = spec_ok("{\"timeout\": \"1h\"}");
        _cleanup_(job_spec_freep) JobSpec *c = spec_ok("{\"timeout\": 3600}");
        _cleanup_(job_spec_freep) JobSpec *d = spec_ok("{\"timeout\": \"1m30s\"}");
        _cleanup_(job_spec_freep) JobSpec *e = spec_ok("{\"timeout\": \"250ms\"}");
        _cleanup_(job_spec_freep) JobSpec *f = spec_ok("{\"timeout\": 1.5}");
        _cleanup_(job_spec_freep) JobSpec *g = spec_ok("{\"timeout\": 0.000001}");
        _cleanup_(job_spec_freep) JobSpec *h = spec_ok("{\"timeout\": 3600.0}");

        ck_assert_uint_eq(a->timeout_usec, 30 * USEC_PER_SEC);
        ck_assert_uint_eq(b->timeout_usec, 3600 * USEC_PER_SEC); /* equal to the queue's */
        ck_assert_uint_eq(c->timeout_usec, 3600 * USEC_PER_SEC);
        ck_assert_uint_eq(d->timeout_usec, 90 * USEC_PER_SEC);
        ck_assert_uint_eq(e->timeout_usec, 250 * USEC_PER_MSEC);
        ck_assert_uint_eq(f->timeout_usec, 1500 * USEC_PER_MSEC);
        ck_assert_uint_eq(g->timeout_usec, 1);
        ck_assert_uint_eq(h->timeout_usec, 3600 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_spec_args_limits_ok) {
        _cleanup_(job_spec_freep) JobSpec *s = NULL;
        _cleanup_free_ char *big = repeat('a', 4096), *error = NULL;
        json_t *j = json_pack("{s:[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s]}", "args", big, "1", "2", "3",
                              "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15");

        ck_assert_int_eq(job_spec_from_json(j, &q, &s, &error), 0);
        ck_assert_uint_eq(s->n_args, 16);
        ck_assert_str_eq(s->args[0], big);
        ck_assert_str_eq(s->args[15], "15");
        json_decref(j);
}
END_TEST

START_TEST(test_spec_pattern_ok) {
        queue_done();
        queue_init("[0-9.]+");
        _cleanup_(job_spec_freep) JobSpec *s = spec_ok("{\"args\": [\"127.0.0.1\", \"10.0.0.1\"]}");
        ck_assert_uint_eq(s->n_args, 2);
        ck_assert_str_eq(s->args[1], "10.0.0.1");
}
END_TEST

START_TEST(test_spec_bad_shape) {
        spec_fail("[]", -EBADMSG, "job: must be a JSON object");
        spec_fail("\"x\"", -EBADMSG, "job: must be a JSON object");
        spec_fail("null", -EBADMSG, "job: must be a JSON object");
        spec_fail("{\"foo\": 1}", -EBADMSG, "unknown key 'foo'");
        spec_fail("{\"args\": [], \"Args\": []}", -EBADMSG, "unknown key 'Args'");
        spec_fail("{\"delay\": \"5s\"}", -EBADMSG, "unknown key 'delay'");
}
END_TEST

START_TEST(test_spec_key_with_nul) {
        json_t *j = json_object();

        ck_assert_int_eq(json_object_setn_new(j, "id\0x", 4, json_string("a")), 0);
        spec_fail_json(j, -EBADMSG, "unknown key 'id'");
}
END_TEST

START_TEST(test_spec_bad_args) {
        spec_fail("{\"args\": \"a\"}", -EBADMSG, "args: must be an array of strings");
        spec_fail("{\"args\": null}", -EBADMSG, "args: must be an array of strings");
        spec_fail("{\"args\": {}}", -EBADMSG, "args: must be an array of strings");
        spec_fail("{\"args\": [\"a\", 1]}", -EBADMSG, "args[1]: must be a string");
        spec_fail("{\"args\": [null]}", -EBADMSG, "args[0]: must be a string");
        spec_fail("{\"args\": [[\"a\"]]}", -EBADMSG, "args[0]: must be a string");
        spec_fail("{\"args\": [\"a\", \"b\\u0000c\"]}", -EINVAL, "args[1]: contains a NUL byte");
        spec_fail("{\"args\": [\"\\u0000\"]}", -EINVAL, "args[0]: contains a NUL byte");
}
END_TEST

START_TEST(test_spec_args_too_many) {
        json_t *j = json_pack("{s:[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s]}", "args", "0", "1", "2", "3",
                              "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16");

        spec_fail_json(j, -E2BIG, "args: 17 arguments exceed max_args (16)");
}
END_TEST

START_TEST(test_spec_args_too_long) {
        _cleanup_free_ char *big = repeat('a', 4097);

        spec_fail_json(json_pack("{s:[s,s,s]}", "args", "x", "y", big), -E2BIG,
                       "args[2]: longer than max_arg_len (4096)");
}
END_TEST

START_TEST(test_spec_args_pattern) {
        queue_done();
        queue_init("[0-9.]+");
        spec_fail("{\"args\": [\"127.0.0.1\", \"-oX\"]}", -EINVAL,
                  "args[1]: does not match the queue's pattern '[0-9.]+'");
        spec_fail("{\"args\": [\"127.0.0.1x\"]}", -EINVAL,
                  "args[0]: does not match the queue's pattern '[0-9.]+'");
        spec_fail("{\"args\": [\"\"]}", -EINVAL, "args[0]: does not match the queue's pattern '[0-9.]+'");
}
END_TEST

START_TEST(test_spec_bad_payload) {
        _cleanup_free_ char *big = repeat('p', 2000000);

        spec_fail("{\"payload\": 1}", -EBADMSG, "payload: must be a string");
        spec_fail("{\"payload\": null}", -EBADMSG, "payload: must be a string");
        spec_fail("{\"payload\": [\"a\"]}", -EBADMSG, "payload: must be a string");
        spec_fail_json(json_pack("{s:s}", "payload", big), -E2BIG,
                       "payload: 2000000 bytes exceeds max_payload (1048576)");
        spec_fail("{\"payload\": \"a\", \"payload_b64\": \"YQ==\"}", -EBADMSG,
                  "payload and payload_b64 are mutually exclusive");
        spec_fail("{\"payload_b64\": \"YQ==\", \"payload\": \"a\"}", -EBADMSG,
                  "payload and payload_b64 are mutually exclusive");
        spec_fail("{\"payload_b64\": \"\", \"payload\": \"\"}", -EBADMSG,
                  "payload and payload_b64 are mutually exclusive");
}
END_TEST

START_TEST(test_spec_payload_limit_exact) {
        _cleanup_free_ char *max = repeat('p', 1048576), *error = NULL;
        _cleanup_(job_spec_freep) JobSpec *s = NULL;
        json_t *j = json_pack("{s:s}", "payload", max);

        ck_assert_int_eq(job_spec_from_json(j, &q, &s, &error), 0);
        ck_assert_uint_eq(s->payload_len, 1048576);
        json_decref(j);
}
END_TEST

/* base64: RFC 4648 §10 test vectors plus every byte value. */
START_TEST(test_spec_base64_good) {
        static const struct {
                const char *enc, *dec;
        } v[] = {
                { "", "" },           { "Zg==", "f" },         { "Zm8=", "fo" },
                { "Zm9v", "foo" },    { "Zm9vYg==", "foob" }, { "Zm9vYmE=", "fooba" },
                { "Zm9vYmFy", "foobar" },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_free_ char *text = NULL;
                ck_assert_int_ge(asprintf(&text, "{\"payload_b64\": \"%s\"}", v[i].enc), 0);
                _cleanup_(job_spec_freep) JobSpec *s = spec_ok(text);
                ck_assert_uint_eq(s->payload_len, strlen(v[i].dec));
                if (s->payload_len > 0)
                        ck_assert_mem_eq(s->payload, v[i].dec, s->payload_len);
                else
                        ck_assert_ptr_null(s->payload);
        }
}
END_TEST

START_TEST(test_spec_base64_binary) {
        /* bytes 0x00..0xff, as encoded by coreutils base64 -w0 */
        static const char enc[] =
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
        _cleanup_free_ char *text = NULL;

        ck_assert_int_ge(asprintf(&text, "{\"payload_b64\": \"%s\"}", enc), 0);
        _cleanup_(job_spec_freep) JobSpec *s = spec_ok(text);
        ck_assert_uint_eq(s->payload_len, 256);
        for (int i = 0; i < 256; i++)
                ck_assert_uint_eq(s->payload[i], (uint8_t) i);
}
END_TEST

static const struct {
        const char *enc, *msg;
} bad_base64[] = {
        { "Zg", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Zm9", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Zg=", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Zm9vY", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Zm9v\\n", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Zg==\\n", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Z===", "payload_b64: invalid base64: bad padding" },
        { "====", "payload_b64: invalid base64: bad padding" },
        { "Zg=A", "payload_b64: invalid base64: bad padding" },
        { "Z=g=", "payload_b64: invalid base64: bad padding" },
        { "=Zm9", "payload_b64: invalid base64: bad padding" },
        { "Zg==Zm9v", "payload_b64: invalid base64: bad padding" },   /* padding in the middle */
        { "Zm8=Zm9v", "payload_b64: invalid base64: bad padding" },
        { "Zm9v====", "payload_b64: invalid base64: bad padding" },
        { "Zm9!", "payload_b64: invalid base64: invalid character" },
        { "Zm9vYmF\\n", "payload_b64: invalid base64: invalid character" },
        { "Zm 9", "payload_b64: invalid base64: invalid character" },
        { "-_8=", "payload_b64: invalid base64: invalid character" }, /* base64url */
        { "Zm9\\u0000", "payload_b64: invalid base64: invalid character" },
        { "Zm9\\u00e9", "payload_b64: invalid base64: length is not a multiple of 4" },
        { "Zh==", "payload_b64: invalid base64: non-zero bits in the padding" },
        { "Zm9=", "payload_b64: invalid base64: non-zero bits in the padding" },
        { "Zm+=", "payload_b64: invalid base64: non-zero bits in the padding" },
};

START_TEST(test_spec_base64_bad) {
        _cleanup_free_ char *text = NULL;

        ck_assert_int_ge(asprintf(&text, "{\"payload_b64\": \"%s\"}", bad_base64[_i].enc), 0);
        spec_fail(text, -EINVAL, bad_base64[_i].msg);
}
END_TEST

START_TEST(test_spec_base64_limit) {
        _cleanup_(job_spec_freep) JobSpec *s = NULL;

        spec_fail("{\"payload_b64\": 1}", -EBADMSG, "payload_b64: must be a string");
        q.max_payload = 4;
        spec_fail("{\"payload_b64\": \"AAAAAAA=\"}", -E2BIG, "payload_b64: 5 bytes exceeds max_payload (4)");
        spec_fail("{\"payload_b64\": \"AAAAAAAA\"}", -E2BIG, "payload_b64: 6 bytes exceeds max_payload (4)");
        s = spec_ok("{\"payload_b64\": \"AAAAAA==\"}");
        ck_assert_uint_eq(s->payload_len, 4);
        ck_assert_mem_eq(s->payload, "\0\0\0\0", 4);
}
END_TEST

START_TEST(test_spec_bad_id) {
        static const char msg[] = "id: must be 1-64 characters of [A-Za-z0-9_.:-], not starting with '.' or '-'";
        _cleanup_free_ char *id65 = repeat('a', 65), *id64 = repeat('b', 64);

        spec_fail("{\"id\": 5}", -EBADMSG, "id: must be a string");
        spec_fail("{\"id\": null}", -EBADMSG, "id: must be a string");
        spec_fail("{\"id\": \"\"}", -EINVAL, msg);
        spec_fail("{\"id\": \".a\"}", -EINVAL, msg);
        spec_fail("{\"id\": \"-a\"}", -EINVAL, msg);
        spec_fail("{\"id\": \"a b\"}", -EINVAL, msg);
        spec_fail("{\"id\": \"a/b\"}", -EINVAL, msg);
        spec_fail("{\"id\": \"a\\u0000b\"}", -EINVAL, msg);
        spec_fail_json(json_pack("{s:s}", "id", id65), -EINVAL, msg);

        json_t *j = json_pack("{s:s}", "id", id64);
        _cleanup_(job_spec_freep) JobSpec *s = NULL;
        ck_assert_int_eq(job_spec_from_json(j, &q, &s, NULL), 0);
        ck_assert_str_eq(s->id, id64);
        json_decref(j);
}
END_TEST

START_TEST(test_spec_bad_timeout) {
        static const char type[] = "timeout: must be a duration string or a positive number of seconds";

        spec_fail("{\"timeout\": \"2h\"}", -EINVAL, "timeout: 2h exceeds the queue's timeout (1h)");
        spec_fail("{\"timeout\": 7200}", -EINVAL, "timeout: 7200s exceeds the queue's timeout (1h)");
        spec_fail("{\"timeout\": 3601}", -EINVAL, "timeout: 3601s exceeds the queue's timeout (1h)");
        spec_fail("{\"timeout\": 9223372036854775807}", -EINVAL,
                  "timeout: 9223372036854775807s exceeds the queue's timeout (1h)");
        spec_fail("{\"timeout\": 0}", -EINVAL, "timeout: must be positive");
        spec_fail("{\"timeout\": -5}", -EINVAL, "timeout: must be positive");
        spec_fail("{\"timeout\": \"0s\"}", -EINVAL, "timeout: must be positive");
        spec_fail("{\"timeout\": 3600.5}", -EINVAL, "timeout: 3600.5s exceeds the queue's timeout (1h)");
        spec_fail("{\"timeout\": 1e300}", -EINVAL, "timeout: 1e+300s exceeds the queue's timeout (1h)");
        spec_fail("{\"timeout\": 0.0}", -EINVAL, "timeout: must be positive (at least 1 microsecond)");
        spec_fail("{\"timeout\": 1e-9}", -EINVAL, "timeout: must be positive (at least 1 microsecond)");
        spec_fail("{\"timeout\": -1.5}", -EINVAL, "timeout: must be positive (at least 1 microsecond)");
        spec_fail("{\"timeout\": true}", -EINVAL, type);
        spec_fail("{\"timeout\": null}", -EINVAL, type);
        spec_fail("{\"timeout\": \"abc\"}", -EINVAL, "timeout: not a valid duration (e.g. \"90s\", \"5m\")");
        spec_fail("{\"timeout\": \"\"}", -EINVAL, "timeout: not a valid duration (e.g. \"90s\", \"5m\")");
        spec_fail("{\"timeout\": \"30s\\u0000x\"}", -EINVAL,
                  "timeout: not a valid duration (e.g. \"90s\", \"5m\")");
        q.timeout_usec = 90 * USEC_PER_SEC;
        spec_fail("{\"timeout\": \"2m\"}", -EINVAL, "timeout: 2m exceeds the queue's timeout (1m30s)");
}
END_TEST

START_TEST(test_spec_first_error_wins) {
        /* keys are checked in document order */
        spec_fail("{\"id\": \".x\", \"foo\": 1}", -EINVAL,
                  "id: must be 1-64 characters of [A-Za-z0-9_.:-], not starting with '.' or '-'");
        spec_fail("{\"foo\": 1, \"id\": \".x\"}", -EBADMSG, "unknown key 'foo'");
}
END_TEST

/* ---- outcomes and signals ---- */

static void outcome_ok(int code, int status, const char *outcome, int exit_code) {
        _cleanup_free_ char *o = NULL;
        int e = 12345;

        ck_assert_int_eq(job_outcome_from_status(code, status, &o, &e), 0);
        ck_assert_str_eq(o, outcome);
        ck_assert_int_eq(e, exit_code);
}

START_TEST(test_outcome) {
        char *o = (char *) 0x1;
        int e = 12345;

        outcome_ok(CLD_EXITED, 0, "exit:0", 0);
        outcome_ok(CLD_EXITED, 2, "exit:2", 2);
        outcome_ok(CLD_EXITED, 255, "exit:255", 255);
        outcome_ok(CLD_KILLED, SIGKILL, "signal:KILL", -1);
        outcome_ok(CLD_KILLED, SIGTERM, "signal:TERM", -1);
        outcome_ok(CLD_DUMPED, SIGSEGV, "signal:SEGV", -1);
        outcome_ok(CLD_DUMPED, SIGSYS, "signal:SYS", -1);
        outcome_ok(CLD_KILLED, SIGXFSZ, "signal:XFSZ", -1);
        outcome_ok(CLD_KILLED, SIGRTMIN + 3, "signal:RTMIN+3", -1);
        ck_assert_int_eq(job_outcome_from_status(CLD_STOPPED, SIGSTOP, &o, &e), -EINVAL);
        ck_assert_int_eq(job_outcome_from_status(CLD_CONTINUED, SIGCONT, &o, &e), -EINVAL);
        ck_assert_int_eq(job_outcome_from_status(CLD_TRAPPED, SIGTRAP, &o, &e), -EINVAL);
        ck_assert_int_eq(job_outcome_from_status(0, 0, &o, &e), -EINVAL);
        ck_assert_ptr_eq(o, (char *) 0x1);
        ck_assert_int_eq(e, 12345);
        ck_assert_int_eq(job_outcome_from_status(CLD_EXITED, 3, &o, NULL), 0);
        ck_assert_str_eq(o, "exit:3");
        free(o);
}
END_TEST

START_TEST(test_signal_names) {
        static const struct {
                int sig;
                const char *name;
        } v[] = {
                { SIGHUP, "HUP" },       { SIGINT, "INT" },       { SIGQUIT, "QUIT" },
                { SIGILL, "ILL" },       { SIGTRAP, "TRAP" },     { SIGABRT, "ABRT" },
                { SIGBUS, "BUS" },       { SIGFPE, "FPE" },       { SIGKILL, "KILL" },
                { SIGUSR1, "USR1" },     { SIGSEGV, "SEGV" },     { SIGUSR2, "USR2" },
                { SIGPIPE, "PIPE" },     { SIGALRM, "ALRM" },     { SIGTERM, "TERM" },
                { SIGSTKFLT, "STKFLT" }, { SIGCHLD, "CHLD" },     { SIGCONT, "CONT" },
                { SIGSTOP, "STOP" },     { SIGTSTP, "TSTP" },     { SIGTTIN, "TTIN" },
                { SIGTTOU, "TTOU" },     { SIGURG, "URG" },       { SIGXCPU, "XCPU" },
                { SIGXFSZ, "XFSZ" },     { SIGVTALRM, "VTALRM" }, { SIGPROF, "PROF" },
                { SIGWINCH, "WINCH" },   { SIGIO, "IO" },         { SIGPWR, "PWR" },
                { SIGSYS, "SYS" },
        };
        char buf[16], expect[16];

        ck_assert_uint_eq(ELEMENTSOF(v), 31); /* every standard signal, 1..31 */
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                ck_assert_int_eq(v[i].sig, (int) i + 1);
                ck_assert_str_eq(signal_name(v[i].sig, buf), v[i].name);
        }
        ck_assert_str_eq(signal_name(SIGRTMIN, buf), "RTMIN");
        ck_assert_str_eq(signal_name(SIGRTMIN + 1, buf), "RTMIN+1");
        snprintf(expect, sizeof(expect), "RTMIN+%d", SIGRTMAX - SIGRTMIN);
        ck_assert_str_eq(signal_name(SIGRTMAX, buf), expect);
        ck_assert_str_eq(signal_name(0, buf), "0");
        ck_assert_str_eq(signal_name(-1, buf), "-1");
        ck_assert_str_eq(signal_name(SIGRTMAX + 1, buf), "65");
        ck_assert_str_eq(signal_name(200, buf), "200");
        ck_assert_str_eq(signal_name(INT32_MIN, buf), "-2147483648");
        /* glibc keeps 32 and 33 for itself: below SIGRTMIN they have no name */
        for (int s = 32; s < SIGRTMIN; s++) {
                snprintf(expect, sizeof(expect), "%d", s);
                ck_assert_str_eq(signal_name(s, buf), expect);
        }
}
END_TEST

/* ---- ids ---- */

static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

static uint64_t id_millis(const char *id) {
        uint64_t v = 0;

        /* the first 9 characters (45 bits) and the top 3 bits of the 10th are the time */
        for (int i = 0; i < 10; i++)
                v = v << 5 | (uint64_t) (strchr(alphabet, id[i]) - alphabet);
        return v >> 2;
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

START_TEST(test_id_format) {
        char id[21];
        uint64_t before = now_ms(), after;

        ck_assert_int_eq(job_id_generate(id), 0);
        after = now_ms();
        ck_assert_uint_eq(strlen(id), 20);
        ck_assert_uint_eq(strspn(id, alphabet), 20);
        ck_assert(job_id_is_valid(id));
        ck_assert_uint_ge(id_millis(id), before);
        ck_assert_uint_le(id_millis(id), after);
}
END_TEST

START_TEST(test_id_monotonic) {
        char prev[21], id[21];

        ck_assert_int_eq(job_id_generate(prev), 0);
        for (int i = 0; i < 20; i++) {
                nanosleep(&(struct timespec){ .tv_nsec = 2 * 1000 * 1000 }, NULL);
                ck_assert_int_eq(job_id_generate(id), 0);
                ck_assert_msg(strcmp(prev, id) < 0, "%s !< %s", prev, id);
                memcpy(prev, id, sizeof(id));
        }
}
END_TEST

static int cmp_id(const void *a, const void *b) {
        return strcmp(a, b);
}

START_TEST(test_id_unique) {
        enum { N = 10000 };
        char(*ids)[21] = calloc(N, sizeof(*ids));

        ck_assert_ptr_nonnull(ids);
        for (int i = 0; i < N; i++) {
                ck_assert_int_eq(job_id_generate(ids[i]), 0);
                ck_assert_uint_eq(strspn(ids[i], alphabet), 20);
                ck_assert_int_eq(ids[i][20], '\0');
        }
        qsort(ids, N, sizeof(*ids), cmp_id);
        for (int i = 1; i < N; i++)
                ck_assert_str_ne(ids[i - 1], ids[i]);
        free(ids);
}
END_TEST

START_TEST(test_id_valid) {
        _cleanup_free_ char *id64 = repeat('x', 64), *id65 = repeat('x', 65);
        static const char *const good[] = { "a", "A", "0", "_", ":", "my-key", "a.b:c_d-e",
                                            "01hx3k9q2m7v8w4t5r6s", "a.", "a-", "Z9" };
        static const char *const bad[] = { "", ".a", "-a", ".", "-", "a b", "a/b", "a\n",
                                           "\xc3\xa9", "a{b}", "a*", "a\\b", "a+b", "a=b" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ck_assert_msg(job_id_is_valid(good[i]), "'%s'", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(!job_id_is_valid(bad[i]), "'%s'", bad[i]);
        ck_assert(job_id_is_valid(id64));
        ck_assert(!job_id_is_valid(id65));
        ck_assert(!job_id_is_valid(NULL));
}
END_TEST

/* Ids as Redis returns them: a length and bytes that may hold NUL or '/'. */
START_TEST(test_id_valid_n) {
        _cleanup_free_ char *id64 = repeat('x', 64), *id65 = repeat('x', 65);
        static const struct {
                const char *s;
                size_t len;
                bool ok;
        } cases[] = {
                { "abc", 3, true },          { "01hx3k9q2m7v8w4t5r6s", 20, true },
                { "abc", 2, true },          /* the first two bytes only */
                { "a\0b", 3, false },        /* a NUL inside: strlen() would see "a" */
                { "a/b", 3, false },         { "../x", 4, false },
                { "..", 2, false },          { ".", 1, false },
                { "", 0, false },            { "abc", 0, false },
                { "-x", 2, false },          { "x\n", 2, false },
                { "a b", 3, false },         { "x\xff", 2, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                ck_assert_msg(job_id_is_valid_n(cases[i].s, cases[i].len) == cases[i].ok,
                              "case %zu", i);
        ck_assert(job_id_is_valid_n(id64, 64));
        ck_assert(!job_id_is_valid_n(id65, 65));
        ck_assert(!job_id_is_valid_n(NULL, 3));
        /* Generated ids pass both. */
        for (int i = 0; i < 100; i++) {
                char id[21];
                ck_assert_int_eq(job_id_generate(id), 0);
                ck_assert(job_id_is_valid_n(id, 20));
        }
}
END_TEST

/* ---- result as JSON ---- */

static char *dump(json_t *j) {
        char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);

        ck_assert_ptr_nonnull(s);
        return s;
}

START_TEST(test_result_json_exit) {
        JobResult r = {
                .outcome = (char *) "exit:0", .exit_code = 0, .detail = NULL,
                .out_len = 2048, .out_truncated = false, .err_len = 0, .err_truncated = false,
                .started_usec = UINT64_C(1763900000125000), .finished_usec = UINT64_C(1763900001500000),
                .wall_usec = 1375 * USEC_PER_MSEC + 999, .cpu_usec = 40 * USEC_PER_MSEC,
                .max_rss_kib = 10240,
        };
        _cleanup_free_ char *s = NULL;
        json_t *j = NULL;

        ck_assert_int_eq(job_result_to_json(&r, &j), 0);
        s = dump(j);
        ck_assert_str_eq(s, "{\"cpu_ms\":40,\"detail\":null,\"exit_code\":0,\"finished\":1763900001.5,"
                            "\"max_rss_kib\":10240,\"outcome\":\"exit:0\",\"started\":1763900000.125,"
                            "\"stderr_bytes\":0,\"stderr_truncated\":false,\"stdout_bytes\":2048,"
                            "\"stdout_truncated\":false,\"wall_ms\":1375}");
        json_decref(j);
}
END_TEST

START_TEST(test_result_json_signal) {
        JobResult r = {
                .outcome = (char *) "signal:SYS", .exit_code = -1,
                .detail = (char *) "syscall ptrace", .out_len = 1048576, .out_truncated = true,
                .err_len = 7, .err_truncated = true, .started_usec = 0, .finished_usec = 0,
        };
        _cleanup_free_ char *s = NULL;
        json_t *j = NULL;

        ck_assert_int_eq(job_result_to_json(&r, &j), 0);
        s = dump(j);
        ck_assert_str_eq(s, "{\"cpu_ms\":0,\"detail\":\"syscall ptrace\",\"exit_code\":null,"
                            "\"finished\":null,\"max_rss_kib\":0,\"outcome\":\"signal:SYS\","
                            "\"started\":null,\"stderr_bytes\":7,\"stderr_truncated\":true,"
                            "\"stdout_bytes\":1048576,\"stdout_truncated\":true,\"wall_ms\":0}");
        json_decref(j);
}
END_TEST

START_TEST(test_result_json_exit_code_only_for_exit) {
        /* a stale exit_code next to another outcome is not reported */
        JobResult r = { .outcome = (char *) "timeout", .exit_code = 0 };
        json_t *j = NULL, *bad = (json_t *) 0x1;

        ck_assert_int_eq(job_result_to_json(&r, &j), 0);
        ck_assert(json_is_null(json_object_get(j, "exit_code")));
        ck_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "timeout");
        json_decref(j);
        r.outcome = (char *) "exit:7";
        r.exit_code = 7;
        ck_assert_int_eq(job_result_to_json(&r, &j), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "exit_code")), 7);
        json_decref(j);
        ck_assert_int_eq(job_result_to_json(NULL, &bad), -EINVAL);
        ck_assert_ptr_eq(bad, (json_t *) 0x1);
}
END_TEST

static Suite *job_suite(void) {
        Suite *s = suite_create("job");
        TCase *tc;

        tc = tcase_create("basics");
        tcase_add_test(tc, test_states);
        tcase_add_test(tc, test_free_null);
        suite_add_tcase(s, tc);

        tc = tcase_create("netstring");
        tcase_add_test(tc, test_netstring_encode_golden);
        tcase_add_test(tc, test_netstring_decode_golden);
        tcase_add_test(tc, test_netstring_roundtrip);
        tcase_add_test(tc, test_netstring_encode_null);
        tcase_add_loop_test(tc, test_netstring_decode_bad, 0, (int) ELEMENTSOF(bad_netstrings));
        tcase_add_test(tc, test_netstring_decode_limits);
        tcase_add_test(tc, test_netstring_decode_many);
        suite_add_tcase(s, tc);

        tc = tcase_create("spec");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_spec_empty);
        tcase_add_test(tc, test_spec_full);
        tcase_add_test(tc, test_spec_payload_text);
        tcase_add_test(tc, test_spec_timeout_forms);
        tcase_add_test(tc, test_spec_args_limits_ok);
        tcase_add_test(tc, test_spec_pattern_ok);
        tcase_add_test(tc, test_spec_bad_shape);
        tcase_add_test(tc, test_spec_key_with_nul);
        tcase_add_test(tc, test_spec_bad_args);
        tcase_add_test(tc, test_spec_args_too_many);
        tcase_add_test(tc, test_spec_args_too_long);
        tcase_add_test(tc, test_spec_args_pattern);
        tcase_add_test(tc, test_spec_bad_payload);
        tcase_add_test(tc, test_spec_payload_limit_exact);
        tcase_add_test(tc, test_spec_base64_good);
        tcase_add_test(tc, test_spec_base64_binary);
        tcase_add_loop_test(tc, test_spec_base64_bad, 0, (int) ELEMENTSOF(bad_base64));
        tcase_add_test(tc, test_spec_base64_limit);
        tcase_add_test(tc, test_spec_bad_id);
        tcase_add_test(tc, test_spec_bad_timeout);
        tcase_add_test(tc, test_spec_first_error_wins);
        suite_add_tcase(s, tc);

        tc = tcase_create("outcome");
        tcase_add_test(tc, test_outcome);
        tcase_add_test(tc, test_signal_names);
        suite_add_tcase(s, tc);

        tc = tcase_create("id");
        tcase_add_test(tc, test_id_format);
        tcase_add_test(tc, test_id_monotonic);
        tcase_add_test(tc, test_id_unique);
        tcase_add_test(tc, test_id_valid);
        tcase_add_test(tc, test_id_valid_n);
        suite_add_tcase(s, tc);

        tc = tcase_create("result");
        tcase_add_test(tc, test_result_json_exit);
        tcase_add_test(tc, test_result_json_signal);
        tcase_add_test(tc, test_result_json_exit_code_only_for_exit);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(job_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
