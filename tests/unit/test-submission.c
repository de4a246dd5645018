/* lib/submission: submission bodies decoded in steps on a real sd-event loop, against a
 * QueueConfig built by hand: the jobs that come out, the exact refusals, and that the work is
 * cut into steps whatever the body. */
#include <check.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "event-fixture.h"
#include "job.h"
#include "macro.h"
#include "submission.h"

#define LOOP_TIMEOUT_USEC (30 * USEC_PER_SEC)

static QueueConfig q;
static sd_event *event;

typedef struct Outcome {
        bool done;
        int r;
        char *message;
        JobSpec **specs;
        size_t n;
        unsigned steps;
        uint64_t longest_usec;
} Outcome;

static Outcome out;

static void setup(void) {
        memset(&q, 0, sizeof(q));
        q.name = (char *) "test";
        q.max_args = 16;
        q.max_arg_len = 4096;
        q.max_payload = 1048576;
        q.timeout_usec = 3600 * USEC_PER_SEC;
        memset(&out, 0, sizeof(out));
        ck_assert_int_ge(sd_event_new(&event), 0);
}

static void teardown(void) {
        for (size_t i = 0; i < out.n; i++)
                job_spec_free(out.specs[i]);
        free(out.specs);
        free(out.message);
        event = sd_event_unref(event);
}

static void on_done(Submission *sub, int r, const char *message, void *userdata) {
        out.done = true;
        out.r = r;
        out.message = message ? strdup(message) : NULL;
        submission_stats(sub, &out.steps, &out.longest_usec);
        if (r >= 0)
                out.specs = submission_take_specs(sub, &out.n);
        submission_free(sub);
}

static bool is_done(void) {
        return out.done;
}

/* Decodes body (len bytes) and returns the outcome's r. */
static int run(const char *body, size_t len, bool batch) {
        Submission *sub = NULL;

        ck_assert_int_eq(submission_new(event, body, len, &q, batch, on_done, NULL, &sub), 0);
        ck_assert_msg(event_run_until(event, is_done, LOOP_TIMEOUT_USEC), "submission not done");
        return out.r;
}

static int run_str(const char *body, bool batch) {
        return run(body, strlen(body), batch);
}

static void assert_refused(const char *body, bool batch, int r, const char *message) {
        free(out.message);
        out = (Outcome) {};
        ck_assert_int_eq(run_str(body, batch), r);
        ck_assert_str_eq(out.message, message);
}

START_TEST(test_single) {
        ck_assert_int_eq(run_str("{\"args\": [\"a\", \"b\"], \"payload\": \"hi\", \"id\": \"k-1\"}",
                                 false), 0);
        ck_assert_uint_eq(out.n, 1);
        ck_assert_uint_eq(out.specs[0]->n_args, 2);
        ck_assert_str_eq(out.specs[0]->args[1], "b");
        ck_assert_str_eq(out.specs[0]->id, "k-1");
        ck_assert_uint_eq(out.specs[0]->payload_len, 2);
}
END_TEST

START_TEST(test_single_refused) {
        assert_refused("", false, -EBADMSG,
                       "body is not valid JSON: unexpected end of the document at byte 0");
        assert_refused("[]", false, -EBADMSG, "body must be a JSON object");
        assert_refused("{\"args\": [\"a\"", false, -EBADMSG,
                       "body is not valid JSON: unexpected end of the document at byte 13");
        assert_refused("{\"args\": [[\"a\"]]}", false, -EBADMSG,
                       "body is nested deeper than 2 levels");
        assert_refused("{\"bogus\": 1}", false, -EBADMSG, "unknown key 'bogus'");
        assert_refused("{\"args\": [\"a\"], \"args\": [\"b\"]}", false, -EBADMSG,
                       "body is not valid JSON: duplicate object key near '\"args\"' (line 1, column 22)");
        /* Not UTF-8: the scanner lets it pass, jansson does not. */
        assert_refused("{\"args\": [\"\xff\"]}", false, -EBADMSG,
                       "body is not valid JSON: unable to decode byte 0xff near '\"' (line 1, column 11)");
}
END_TEST

START_TEST(test_batch) {
        ck_assert_int_eq(run_str(" {\"jobs\": [{}, {\"args\": [\"x\"]}, {\"payload\": \"p\"}]} ", true),
                         0);
        ck_assert_uint_eq(out.n, 3);
        ck_assert_uint_eq(out.specs[0]->n_args, 0);
        ck_assert_str_eq(out.specs[1]->args[0], "x");
        ck_assert_uint_eq(out.specs[2]->payload_len, 1);
        free(out.message);
        for (size_t i = 0; i < out.n; i++)
                job_spec_free(out.specs[i]);
        free(out.specs);
        out = (Outcome) {};
        /* The key is decoded, not compared as bytes. */
        ck_assert_int_eq(run_str("{\"\\u006aobs\": [{}]}", true), 0);
        ck_assert_uint_eq(out.n, 1);
}
END_TEST

/* 63 bytes, then a 2-byte character: the message cuts before it, not inside. */
#define LONG_KEY "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"

START_TEST(test_batch_shape) {
        static const char *const bad[] = {
                "{\"jobs\": []}", "{\"jobs\": {}}", "[{}]", "{}", "{\"jobs\": 1}", "\"jobs\"",
        };
        /* A key beside (or instead of) "jobs" is named; with a second array beside it, the
         * scanner refuses as that array opens. */
        static const char *const unknown[][2] = {
                { "{\"jobs\": [{}], \"x\": 1}", "x" }, { "{\"job\": [{}]}", "job" },
                { "{\"jobsx\": [{}]}", "jobsx" }, { "{\"jobs\": [{}], \"x\": [{}]}", "x" },
                { "{\"x\": [0, 0], \"jobs\": [{}]}", "x" },
                { "{\"jobs\": [{}], \"" LONG_KEY "\u00e9\": 1}", LONG_KEY "..." },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_refused(bad[i], true, -EBADMSG,
                               "body must be {\"jobs\": [job, ...]} with 1 to 1000000 jobs");
        for (size_t i = 0; i < ELEMENTSOF(unknown); i++) {
                _cleanup_free_ char *m = NULL;

                ck_assert_int_ge(asprintf(&m, "unknown key '%s': body must be {\"jobs\": "
                                          "[job, ...]} with 1 to 1000000 jobs, nothing else",
                                          unknown[i][1]), 0);
                assert_refused(unknown[i][0], true, -EBADMSG, m);
        }
        assert_refused("{\"jobs\": [{}], \"jobs\": [{}]}", true, -EBADMSG,
                       "key 'jobs' appears twice: body must be {\"jobs\": [job, ...]} with 1 to "
                       "1000000 jobs");
        assert_refused("{\"jobs\": [", true, -EBADMSG,
                       "body is not valid JSON: unexpected end of the document at byte 10");
        assert_refused("{\"jobs\": [{}, {\"args\": [1,]}]}", true, -EBADMSG,
                       "jobs[1]: body is not valid JSON: unexpected ']' at byte 26");
        assert_refused("{\"jobs\": [{}, {\"args\": [[[]]]}]}", true, -EBADMSG,
                       "jobs[1]: body is nested deeper than 4 levels");
        assert_refused("{\"jobs\": [{}, 5]}", true, -EBADMSG, "jobs[1]: job: must be a JSON object");
        assert_refused("{\"jobs\": [{}, {\"bogus\": true}]}", true, -EBADMSG,
                       "jobs[1]: unknown key 'bogus'");
}
END_TEST

START_TEST(test_job_limits) {
        char *body;
        size_t n = 70000;

        q.max_payload = 10;
        q.max_args = 1;
        q.max_arg_len = 5;
        /* 8 × 10 + 1 × (6 × 5 + 4) + 65536 */
        ck_assert_uint_eq(submission_job_json_max(&q), 65650);
        body = malloc(n + 64);
        ck_assert_ptr_nonnull(body);
        strcpy(body, "{\"jobs\": [{\"payload\": \"");
        memset(body + 23, 'x', n);
        strcpy(body + 23 + n, "\"}]}");
        assert_refused(body, true, -E2BIG,
                       "jobs[0]: more than 65650 bytes of JSON, the most a job of this queue can take");
        assert_refused(body + 10, false, -E2BIG,
                       "the job is larger than 65650 bytes of JSON, the most a job of this queue "
                       "can take");
        /* max_args + 16 elements in one array: more is not a job. */
        assert_refused("{\"jobs\": [{\"args\": [\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
                       "\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]}]}", true, -E2BIG,
                       "jobs[0]: an array with more than 17 elements (byte 88)");
        assert_refused("{\"jobs\": [{\"args\": [\"a\", \"b\"]}]}", true, -E2BIG,
                       "jobs[0]: args: 2 arguments exceed max_args (1)");
        free(body);
}
END_TEST

/* Appends n copies of job (and a comma after each but the last) to a {"jobs": [ …]} body. */
static char *batch_of(const char *job, size_t n, const char *last) {
        size_t jl = strlen(job), ll = last ? strlen(last) + 1 : 0, len = 10 + n * (jl + 1) + ll + 2;
        char *b = malloc(len + 1), *p;

        ck_assert_ptr_nonnull(b);
        p = stpcpy(b, "{\"jobs\": [");
        for (size_t i = 0; i < n; i++) {
                memcpy(p, job, jl);
                p += jl;
                if (i + 1 < n || last)
                        *p++ = ',';
        }
        if (last)
                p = stpcpy(p, last);
        strcpy(p, "]}");
        return b;
}

/* The body: far more jobs than a batch may have. Refused at the first one too many,
 * before any of it is decoded, in steps. */
START_TEST(test_too_many_jobs) {
        char *body = batch_of("{}", 3000000, NULL);

        ck_assert_int_eq(run_str(body, true), -E2BIG);
        ck_assert_str_eq(out.message, "more than 1000000 jobs in one batch");
        ck_assert_uint_ge(out.steps, 1);
        /* A step is 2 ms of work (and a 64 KiB piece at most past it). */
        ck_assert_uint_lt(out.longest_usec, 100 * USEC_PER_MSEC);
        free(body);
}
END_TEST

/* Many valid jobs and a bad last one: every job is decoded, in many short steps, then the whole
 * batch is refused with the bad job's index. */
START_TEST(test_steps) {
        char *body = batch_of("{\"args\": [\"127.0.0.1\"], \"payload\": \"abc\"}", 200000,
                              "{\"args\": [\"x\"], \"bogus\": 1}");

        ck_assert_int_eq(run_str(body, true), -EBADMSG);
        ck_assert_str_eq(out.message, "jobs[200000]: unknown key 'bogus'");
        ck_assert_uint_gt(out.steps, 10);
        ck_assert_uint_lt(out.longest_usec, 100 * USEC_PER_MSEC);
        free(body);
        free(out.message);
        out = (Outcome) {};
        body = batch_of("{\"args\": [\"127.0.0.1\"]}", 50000, NULL);
        ck_assert_int_eq(run_str(body, true), 0);
        ck_assert_uint_eq(out.n, 50000);
        ck_assert_str_eq(out.specs[49999]->args[0], "127.0.0.1");
        free(body);
}
END_TEST

static unsigned io_dispatched;

static int on_readable(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        io_dispatched++;
        return 0;
}

/* The loop polls for I/O between steps: a socket that is always readable is dispatched about
 * once per step, not only after the submission. */
START_TEST(test_io_between_steps) {
        char *body = batch_of("{\"args\": [\"127.0.0.1\"]}", 200000, "{\"bogus\": 1}");
        sd_event_source *src = NULL;
        int fds[2];

        ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
        ck_assert_int_eq(write(fds[1], "x", 1), 1);
        ck_assert_int_ge(sd_event_add_io(event, &src, fds[0], EPOLLIN, on_readable, NULL), 0);
        io_dispatched = 0;
        ck_assert_int_eq(run_str(body, true), -EBADMSG);
        ck_assert_uint_gt(out.steps, 10);
        ck_assert_uint_ge(io_dispatched, out.steps - 1);
        sd_event_source_disable_unref(src);
        close(fds[0]);
        close(fds[1]);
        free(body);
}
END_TEST

/* Freed before it is done: no callback, nothing left behind (valgrind). */
START_TEST(test_free_early) {
        char *body = batch_of("{}", 100000, NULL);
        Submission *sub = NULL;

        ck_assert_int_eq(submission_new(event, body, strlen(body), &q, true, on_done, NULL, &sub), 0);
        ck_assert_int_ge(sd_event_run(event, 0), 0);
        ck_assert(!out.done);
        ck_assert_ptr_null(submission_free(sub));
        event_run_until(event, event_never, 10 * USEC_PER_MSEC);
        ck_assert(!out.done);
        ck_assert_ptr_null(submission_free(NULL));
        free(body);
}
END_TEST

static Suite *submission_suite(void) {
        Suite *s = suite_create("submission");
        TCase *tc = tcase_create("decode");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_single);
        tcase_add_test(tc, test_single_refused);
        tcase_add_test(tc, test_batch);
        tcase_add_test(tc, test_batch_shape);
        tcase_add_test(tc, test_job_limits);
        tcase_add_test(tc, test_too_many_jobs);
        tcase_add_test(tc, test_steps);
        tcase_add_test(tc, test_io_between_steps);
        tcase_add_test(tc, test_free_early);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(submission_suite());
        int failed;

        srunner_run_all(sr, CK_VERBOSE);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
