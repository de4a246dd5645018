/* Verbs about single jobs: status, result, wait, cancel (docs/api.md "Results routes" and
 * DELETE /v1/jobs/{id}). */
#include <inttypes.h>
#include <jansson.h>
#include <time.h>

#include "client.h"
#include "output.h"
#include "tasactl.h"

/* Longest single long poll (the daemon allows 3600s); shorter polls notice a vanished
 * daemon sooner. */
#define WAIT_POLL_MAX_SEC UINT64_C(300)
/* How much longer than the poll a request may take before we give up on the daemon. */
#define WAIT_SLACK_USEC (15 * USEC_PER_SEC)

static const char *const final_states[] = { "done", "failed", "cancelled" };

uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

bool job_status_is_final(const json_t *status) {
        const char *state = json_string_value(json_object_get(status, "state"));

        for (size_t i = 0; state && i < ELEMENTSOF(final_states); i++)
                if (streq(state, final_states[i]))
                        return true;
        return false;
}

/* "/v1/jobs/ID[/TAIL][?queue=Q]" */
static int job_path(Client *c, const char *id, const char *tail, const char *queue, char **ret) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = client_path(c, &path, "jobs", id, tail, NULL);
        if (r < 0)
                return r;
        r = client_path_query(c, &path, "queue", queue);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(path);
        return 0;
}

/* GET a status object (tail NULL: now; "wait": long poll with ?timeout=) and check its shape. */
static int job_get(Client *c, const char *id, const char *queue, uint64_t poll_sec, json_t **ret) {
        _cleanup_free_ char *path = NULL, *what = NULL, *secs = NULL;
        _cleanup_(json_decrefp) json_t *st = NULL;
        uint64_t timeout = CLIENT_TIMEOUT_USEC;
        int r;

        if (asprintf(&what, poll_sec > 0 ? "cannot wait for job '%s'" : "cannot get the status of job '%s'",
                     id) < 0)
                return output_oom();
        r = job_path(c, id, poll_sec > 0 ? "wait" : NULL, NULL, &path);
        if (r >= 0 && poll_sec > 0) {
                if (asprintf(&secs, "%" PRIu64, poll_sec) < 0)
                        return output_oom();
                r = client_path_query(c, &path, "timeout", secs);
                timeout = poll_sec * USEC_PER_SEC + WAIT_SLACK_USEC;
        }
        if (r >= 0)
                r = client_path_query(c, &path, "queue", queue);
        if (r < 0)
                return r;
        r = client_call_json(c, CLIENT_RESULTS, "GET", path, NULL, timeout, what, &st);
        if (r < 0)
                return r;
        if (!json_is_string(json_object_get(st, "state")))
                return output_error(EPROTO, "%s: tasad-results sent a status without a state", what);
        *ret = TAKE_PTR(st);
        return 0;
}

/* Seconds for the next long poll: what is left until the deadline, rounded up. */
static uint64_t poll_seconds(uint64_t deadline) {
        uint64_t now = now_usec();

        if (deadline == USEC_INFINITY)
                return WAIT_POLL_MAX_SEC;
        return MIN(MAX((deadline - now + USEC_PER_SEC - 1) / USEC_PER_SEC, UINT64_C(1)),
                   WAIT_POLL_MAX_SEC);
}

int job_wait(Client *c, const char *id, const char *queue, uint64_t deadline, json_t **ret) {
        if (deadline != USEC_INFINITY && now_usec() >= deadline)
                return job_get(c, id, queue, 0, ret);
        for (;;) {
                json_t *st = NULL;
                int r;

                r = job_get(c, id, queue, poll_seconds(deadline), &st);
                if (r < 0)
                        return r;
                if (job_status_is_final(st) || (deadline != USEC_INFINITY && now_usec() >= deadline)) {
                        *ret = st;
                        return 0;
                }
                json_decref(st);
        }
}

int job_output(Client *c, const char *id, const char *queue, const char *stream, bool missing_ok,
               ClientReply *ret) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        _cleanup_(client_reply_done) ClientReply reply = {};
        int r;

        if (asprintf(&what, "cannot get the %s of job '%s'", stream, id) < 0)
                return output_oom();
        r = job_path(c, id, stream, queue, &path);
        if (r < 0)
                return r;
        r = client_request(c, CLIENT_RESULTS, "GET", path, NULL, CLIENT_TIMEOUT_USEC, what, &reply);
        if (r < 0)
                return r;
        if (missing_ok && reply.status == 404) {
                reply.body_len = 0;
                reply.body[0] = 0;
        } else {
                r = client_reply_check(c, &reply, what);
                if (r < 0)
                        return r;
        }
        *ret = reply;
        reply = (ClientReply){};
        return 0;
}

int verb_status(int argc, char *argv[]) {
        _cleanup_(json_decrefp) json_t *st = NULL;
        Client *c;
        int r;

        r = tasactl_client(&c);
        if (r < 0)
                return r;
        r = job_get(c, argv[1], arg_queue, 0, &st);
        if (r < 0)
                return r;
        r = arg_json ? output_json(st) : output_object(st);
        return r < 0 ? r : TASACTL_EXIT_OK;
}

int verb_result(int argc, char *argv[]) {
        _cleanup_(client_reply_done) ClientReply out = {};
        Client *c;
        int r;

        r = tasactl_client(&c);
        if (r < 0)
                return r;
        r = job_output(c, argv[1], arg_queue, arg_stderr ? "stderr" : "stdout", false, &out);
        if (r < 0)
                return r;
        r = output_bytes(stdout, out.body, out.body_len);
        return r < 0 ? r : TASACTL_EXIT_OK;
}

/* "ID STATE OUTCOME", or the object with --json. */
static int print_wait_line(const char *id, const json_t *st) {
        _cleanup_free_ char *state = NULL, *outcome = NULL;
        int r;

        if (arg_json)
                return output_json(st);
        r = output_value(json_object_get(st, "state"), &state);
        if (r >= 0)
                r = output_value(json_object_get(st, "outcome"), &outcome);
        if (r < 0)
                return r;
        printf("%s %s %s\n", id, state, outcome);
        return 0;
}

/* 2 if a job is not final, else 1 if one is not done, else 0. */
static int wait_exit_status(const json_t *all) {
        int status = TASACTL_EXIT_OK;
        size_t i;
        json_t *st;

        json_array_foreach(all, i, st) {
                if (!job_status_is_final(st))
                        return TASACTL_EXIT_WAIT_TIMEOUT;
                if (!streq(json_string_value(json_object_get(st, "state")), "done"))
                        status = TASACTL_EXIT_FAILURE;
        }
        return status;
}

int verb_wait(int argc, char *argv[]) {
        _cleanup_(json_decrefp) json_t *all = json_array();
        uint64_t now = now_usec(), deadline = USEC_INFINITY;
        Client *c;
        int r;

        for (int i = 1; i < argc; i++)
                if (!*argv[i])
                        return tasactl_usage_error("empty job id for 'wait'");
        if (arg_timeout_usec != USEC_INFINITY && arg_timeout_usec < USEC_INFINITY - now)
                deadline = now + arg_timeout_usec;
        if (!all)
                return output_oom();
        r = tasactl_client(&c);
        if (r < 0)
                return r;
        /* One after the other: the overall deadline bounds them all, and nothing is printed
         * before every job answered (no partial output on error). */
        for (int i = 1; i < argc; i++) {
                json_t *st = NULL;

                r = job_wait(c, argv[i], arg_queue, deadline, &st);
                if (r < 0)
                        return r;
                if (json_array_append_new(all, st) < 0)
                        return output_oom();
        }
        for (int i = 1; i < argc; i++) {
                r = print_wait_line(argv[i], json_array_get(all, (size_t) i - 1));
                if (r < 0)
                        return r;
        }
        return wait_exit_status(all);
}

int job_state_change(Client *c, const char *method, const char *path, const char *what,
                     const char *id) {
        _cleanup_(json_decrefp) json_t *reply = NULL;
        _cleanup_free_ char *state = NULL;
        int r;

        r = client_call_json(c, CLIENT_SCHEDULER, method, path, NULL, CLIENT_TIMEOUT_USEC, what,
                             &reply);
        if (r < 0)
                return r;
        if (arg_json)
                return output_json(reply);
        r = output_value(json_object_get(reply, "state"), &state);
        if (r < 0)
                return r;
        printf("%s %s\n", id, state);
        return TASACTL_EXIT_OK;
}

int verb_cancel(int argc, char *argv[]) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        Client *c;
        int r;

        if (asprintf(&what, "cancel of job '%s' refused", argv[1]) < 0)
                return output_oom();
        r = tasactl_client(&c);
        if (r >= 0)
                r = job_path(c, argv[1], NULL, arg_queue, &path);
        if (r < 0)
                return r;
        return job_state_change(c, "DELETE", path, what, argv[1]);
}
