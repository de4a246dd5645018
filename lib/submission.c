/* Submission bodies decoded in bounded steps (see submission.h). */
#include "submission.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "config.h"
#include "job.h"
#include "json-scan.h"
#include "strutil.h"

/* Bytes given to the scanner between two looks at the clock. */
#define SUBMISSION_SCAN_CHUNK (64U * 1024U)
/* A job object's members (4 keys) and its args (max_args) with room for a mistake or two: a
 * container beyond this is not a job. */
#define SUBMISSION_ELEMENTS_SLACK 16U
#define SUBMISSION_BATCH_DEPTH 4U       /* body object, jobs array, job object, args array */
#define SUBMISSION_JOB_DEPTH 2U         /* job object, args array */

typedef enum Phase {
        PHASE_SCAN,
        PHASE_DECODE,
        PHASE_RELEASE,          /* refused: the jobs decoded so far are freed, then done */
} Phase;

struct Submission {
        sd_event_source *step;  /* a timer due at once, armed again after each step */
        const char *body;
        size_t len;
        const QueueConfig *q;
        bool batch;
        Phase phase;
        JsonScan scan;
        size_t scanned;         /* bytes given to the scanner */
        JobSpec **specs;
        size_t n_specs;         /* the jobs to decode */
        size_t decoded;
        int refusal;            /* PHASE_RELEASE: what done will say */
        char *refusal_message;
        SubmissionDone done;
        void *userdata;
        unsigned steps;
        uint64_t step_start;
        uint64_t longest_usec;
};

uint64_t submission_job_json_max(const QueueConfig *q) {
        return 8 * q->max_payload + (uint64_t) q->max_args * (6 * q->max_arg_len + 4) +
               UINT64_C(64) * 1024;
}

static uint64_t clock_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

static void specs_free(JobSpec **specs, size_t n) {
        for (size_t i = 0; specs && i < n; i++)
                job_spec_free(specs[i]);
        free(specs);
}

Submission *submission_free(Submission *sub) {
        if (!sub)
                return NULL;
        sd_event_source_disable_unref(sub->step);
        json_scan_done(&sub->scan);
        specs_free(sub->specs, sub->n_specs);
        free(sub->refusal_message);
        free(sub);
        return NULL;
}

/* Ends the submission: done is called last, and may free it. */
_printf_(3, 4) static void submission_finish(Submission *sub, int r, const char *fmt, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        (void) sd_event_source_set_enabled(sub->step, SD_EVENT_OFF);
        sub->longest_usec = MAX(sub->longest_usec, clock_usec() - sub->step_start);
        if (fmt) {
                va_start(ap, fmt);
                if (vasprintf(&message, fmt, ap) < 0)
                        message = NULL;
                va_end(ap);
        }
        sub->done(sub, r, message ?: (r < 0 ? strerror(-r) : NULL), sub->userdata);
}

/* A top-level key of the body (span: with its quotes) as a string, NULL when it is not one
 * (invalid UTF-8: the scanner does not check it). */
static json_t *key_at(const Submission *sub, JsonSpan span) {
        return span.length > 0 ? json_loadb(sub->body + span.offset, span.length,
                                            JSON_DECODE_ANY, NULL) : NULL;
}

/* Whether key is the string "jobs" (and no longer: a decoded key may hold a NUL). */
static bool is_jobs_key(const json_t *key) {
        return key && streq(json_string_value(key) ?: "", "jobs") && json_string_length(key) == 4;
}

/* The batch body's one wrong top-level key: the first when it is not "jobs", else the second
 * (then "jobs" twice, or another key beside it); NULL when none is known. */
static json_t *wrong_key(const Submission *sub, bool *ret_twice) {
        json_t *first = key_at(sub, sub->scan.first_key), *second;

        *ret_twice = false;
        if (!is_jobs_key(first))
                return first;
        json_decref(first);
        second = key_at(sub, sub->scan.second_key);
        *ret_twice = is_jobs_key(second);
        return second;
}

static void refuse_shape(Submission *sub) {
        _cleanup_(json_decrefp) json_t *key = NULL;
        bool twice;

        if (!sub->batch)
                return submission_finish(sub, -EBADMSG, "body must be a JSON object");
        key = sub->scan.top == '{' ? wrong_key(sub, &twice) : NULL;
        if (json_is_string(key) && twice)
                return submission_finish(sub, -EBADMSG, "key 'jobs' appears twice: body must be "
                                         "{\"jobs\": [job, ...]} with 1 to %u jobs",
                                         SUBMISSION_BATCH_MAX);
        if (json_is_string(key)) {
                const char *k = json_string_value(key);
                size_t n = MIN(strlen(k), (size_t) 64);

                while (n < strlen(k) && n > 0 && ((unsigned char) k[n] & 0xc0) == 0x80)
                        n--; /* not in the middle of a UTF-8 sequence */
                return submission_finish(sub, -EBADMSG, "unknown key '%.*s%s': body must be "
                                         "{\"jobs\": [job, ...]} with 1 to %u jobs, nothing else",
                                         (int) n, k, n < strlen(k) ? "..." : "",
                                         SUBMISSION_BATCH_MAX);
        }
        submission_finish(sub, -EBADMSG, "body must be {\"jobs\": [job, ...]} with 1 to %u jobs",
                          SUBMISSION_BATCH_MAX);
}

/* What a scanner error means for a submission. */
static void refuse_scan(Submission *sub, int r) {
        const JsonScan *s = &sub->scan;
        char where[48] = "";

        if (s->in_split)
                snprintf(where, sizeof(where), "jobs[%zu]: ", s->n_spans);
        switch (r) {
        case -EBADMSG:
                return submission_finish(sub, r, "%sbody is not valid JSON: %s", where,
                                         s->message);
        case -ELOOP:
                return submission_finish(sub, -EBADMSG, "%sbody is nested deeper than %u levels",
                                         where, s->limits.max_depth);
        case -E2BIG:
                if (s->split_overflow)
                        return submission_finish(sub, r, "more than %u jobs in one batch",
                                                 SUBMISSION_BATCH_MAX);
                return submission_finish(sub, r, "%s%s", where, s->message);
        case -EFBIG:
                return submission_finish(sub, -E2BIG, "%smore than %" PRIu64 " bytes of JSON, the "
                                         "most a job of this queue can take", where,
                                         s->limits.max_split_bytes);
        case -ENOTUNIQ: /* a second array beside "jobs": not the batch's shape */
                return refuse_shape(sub);
        default:
                return submission_finish(sub, r, "%s", s->message);
        }
}

/* The scan is complete: is the body the shape it must be? */
static int shape_check(Submission *sub) {
        const JsonScan *s = &sub->scan;
        json_t *key;
        bool ok;

        if (!sub->batch)
                return s->top == '{' ? 0 : -EBADMSG;
        if (s->top != '{' || s->top_members != 1 || s->split_arrays != 1 || s->n_spans == 0)
                return -EBADMSG;
        key = json_loadb(sub->body + s->first_key.offset, s->first_key.length, JSON_DECODE_ANY,
                         NULL);
        ok = key && json_string_length(key) == 4 && streq(json_string_value(key), "jobs");
        json_decref(key);
        return ok ? 0 : -EBADMSG;
}

/* The whole body is scanned: true when decoding goes on, false once the submission ended (sub
 * may be gone). */
static bool scan_complete(Submission *sub) {
        int r = json_scan_finish(&sub->scan);

        if (r < 0) {
                refuse_scan(sub, r);
                return false;
        }
        if (shape_check(sub) < 0) {
                refuse_shape(sub);
                return false;
        }
        sub->n_specs = sub->batch ? sub->scan.n_spans : 1;
        sub->specs = calloc(sub->n_specs, sizeof(JobSpec *));
        if (!sub->specs) {
                sub->n_specs = 0;
                submission_finish(sub, -ENOMEM, NULL);
                return false;
        }
        sub->phase = PHASE_DECODE;
        return true;
}

/* Scans until the step's time is up; false once the submission ended. */
static bool scan_some(Submission *sub, uint64_t until) {
        uint64_t max = submission_job_json_max(sub->q);

        if (!sub->batch && sub->len > max) {
                submission_finish(sub, -E2BIG, "the job is larger than %" PRIu64 " bytes of JSON, "
                                  "the most a job of this queue can take", max);
                return false;
        }
        while (sub->scanned < sub->len) {
                size_t n = MIN(sub->len - sub->scanned, (size_t) SUBMISSION_SCAN_CHUNK);
                int r = json_scan_feed(&sub->scan, sub->body + sub->scanned, n);

                if (r < 0) {
                        refuse_scan(sub, r);
                        return false;
                }
                sub->scanned += n;
                if (clock_usec() >= until)
                        return true;
        }
        return scan_complete(sub);
}

/* A job of a batch is refused after `decoded` others were decoded: those are freed in steps
 * (a million of them take longer than a step) before done hears of it. */
_printf_(3, 4) static void refuse_decoded(Submission *sub, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&sub->refusal_message, fmt, ap) < 0)
                sub->refusal_message = NULL;
        va_end(ap);
        sub->refusal = r;
        sub->phase = PHASE_RELEASE;
}

/* Frees decoded jobs from the last one down until the step's time is up; false once done. */
static bool release_some(Submission *sub, uint64_t until) {
        while (sub->decoded > 0) {
                sub->decoded--;
                sub->specs[sub->decoded] = job_spec_free(sub->specs[sub->decoded]);
                if (sub->decoded % 256 == 0 && clock_usec() >= until)
                        return true;
        }
        submission_finish(sub, sub->refusal, "%s", sub->refusal_message ?: strerror(-sub->refusal));
        return false;
}

/* Decodes job i; on failure the submission is refused (false). */
static bool decode_one(Submission *sub, size_t i) {
        const JsonSpan *sp = sub->batch ? &sub->scan.spans[i] : NULL;
        const char *text = sp ? sub->body + sp->offset : sub->body;
        size_t len = sp ? sp->length : sub->len;
        _cleanup_free_ char *error = NULL;
        char where[48] = "";
        json_error_t e;
        json_t *j;
        int r;

        if (sub->batch)
                snprintf(where, sizeof(where), "jobs[%zu]: ", i);
        j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
        if (!j) {
                refuse_decoded(sub, -EBADMSG, "%sbody is not valid JSON: %s (line %d, column %d)",
                               where, e.text, e.line, e.column);
                return false;
        }
        r = job_spec_from_json(j, sub->q, &sub->specs[i], &error);
        json_decref(j);
        if (r < 0) {
                refuse_decoded(sub, r, "%s%s", where, error ?: strerror(-r));
                return false;
        }
        return true;
}

/* Decodes until the step's time is up (one job at least); false once the submission ended
 * (or is refused: PHASE_RELEASE). */
static bool decode_some(Submission *sub, uint64_t until) {
        do {
                if (!decode_one(sub, sub->decoded))
                        return sub->phase == PHASE_RELEASE;
                sub->decoded++;
        } while (sub->decoded < sub->n_specs && clock_usec() < until);
        if (sub->decoded == sub->n_specs) {
                submission_finish(sub, 0, NULL);
                return false;
        }
        return true;
}

/* The next step is a timer due at once, not a defer source: while a defer source is pending,
 * sd-event does not poll for I/O at all, so the daemon's clients would wait for the whole
 * decoding; a due timer comes back through epoll together with whatever else is ready. */
static void step_again(Submission *sub) {
        (void) sd_event_source_set_time_relative(sub->step, 0);
        (void) sd_event_source_set_enabled(sub->step, SD_EVENT_ONESHOT);
}

static int on_step(sd_event_source *src, uint64_t usec, void *userdata) {
        Submission *sub = userdata;
        uint64_t start = clock_usec(), until = start + SUBMISSION_STEP_USEC;
        bool going = true;

        sub->steps++;
        sub->step_start = start;
        if (sub->phase == PHASE_SCAN)
                going = scan_some(sub, until);
        if (going && sub->phase == PHASE_DECODE && clock_usec() < until)
                going = decode_some(sub, until);
        if (going && sub->phase == PHASE_RELEASE && clock_usec() < until)
                going = release_some(sub, until);
        /* Once done was called, sub may be gone. */
        if (going) {
                sub->longest_usec = MAX(sub->longest_usec, clock_usec() - start);
                step_again(sub);
        }
        return 0;
}

static int scan_setup(Submission *sub) {
        const QueueConfig *q = sub->q;
        JsonScanLimits l = {
                .max_depth = sub->batch ? SUBMISSION_BATCH_DEPTH : SUBMISSION_JOB_DEPTH,
                .max_elements = (uint64_t) q->max_args + SUBMISSION_ELEMENTS_SLACK,
                .split_depth = sub->batch ? 2 : 0,
                .max_split_elements = SUBMISSION_BATCH_MAX,
                .max_split_bytes = submission_job_json_max(q),
        };

        return json_scan_init(&sub->scan, &l);
}

int submission_new(sd_event *e, const void *body, size_t len, const QueueConfig *q, bool batch,
                   SubmissionDone done, void *userdata, Submission **ret) {
        _cleanup_(submission_freep) Submission *sub = NULL;
        int r;

        if (!e || (!body && len > 0) || !q || !done || !ret)
                return -EINVAL;
        sub = calloc(1, sizeof(Submission));
        if (!sub)
                return -ENOMEM;
        *sub = (Submission) { .body = body ?: "", .len = len, .q = q, .batch = batch,
                              .done = done, .userdata = userdata };
        r = scan_setup(sub);
        if (r < 0)
                return r;
        /* Accuracy 1 µs: 0 would mean sd-event's default, 250 ms. */
        r = sd_event_add_time_relative(e, &sub->step, CLOCK_MONOTONIC, 0, 1, on_step, sub);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(sub->step, "submission-step");
        *ret = TAKE_PTR(sub);
        return 0;
}

JobSpec **submission_take_specs(Submission *sub, size_t *ret_n) {
        JobSpec **specs = TAKE_PTR(sub->specs);

        *ret_n = sub->n_specs;
        sub->n_specs = 0;
        return specs;
}

void submission_stats(const Submission *sub, unsigned *ret_steps, uint64_t *ret_longest_usec) {
        if (ret_steps)
                *ret_steps = sub->steps;
        if (ret_longest_usec)
                *ret_longest_usec = sub->longest_usec;
}
