/* The submit verb: one job (POST /v1/queues/{queue}/jobs), optionally waited for, or one job
 * per line of standard input (--each, POST /v1/queues/{queue}/batches in batches). */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>

#include "strutil.h"
#include "client.h"
#include "output.h"
#include "parse.h"
#include "tasactl.h"

/* Jobs per batch request with --each; with --batch-id every line goes in one batch. */
#define EACH_BATCH_MAX 10000
#define NAMED_BATCH_MAX 1000000
/* Payload bytes per EVP_EncodeBlock() call: a multiple of 3, far below INT_MAX. */
#define BASE64_CHUNK (3 * 65536)

/* What every job of one submit has in common: the command line's ARGs and the options. */
typedef struct JobTemplate {
        json_t *args;           /* array of strings */
        json_t *payload_b64;    /* NULL: no payload */
        json_t *id;
        json_t *timeout;
} JobTemplate;

static void job_template_done(JobTemplate *t) {
        json_decref(t->args);
        json_decref(t->payload_b64);
        json_decref(t->id);
        json_decref(t->timeout);
}

static int check_options(void) {
        if (arg_stdin && arg_payload_file)
                return tasactl_usage_error("--stdin and --payload-file exclude each other");
        if (arg_each && arg_stdin)
                return tasactl_usage_error("--each reads job arguments from standard input, so "
                                           "the payload cannot come from there (--payload-file)");
        if (arg_each && arg_id)
                return tasactl_usage_error("--id names one job; it cannot be used with --each");
        if (arg_each && arg_wait)
                return tasactl_usage_error("--wait waits for one job; it cannot be used with --each");
        if (arg_batch_id && !arg_each)
                return tasactl_usage_error("--batch-id names the batch of --each");
        return 0;
}

/* The whole content of fd, at most max bytes (0: no limit). */
static int read_all(int fd, uint64_t max, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0, alloc = 0;

        for (;;) {
                ssize_t n;

                if (len == alloc) {
                        uint8_t *b;

                        alloc = MAX(alloc * 2, (size_t) 65536);
                        b = realloc(buf, alloc);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = read(fd, buf + len, alloc - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                len += (size_t) n;
                if (max > 0 && len > max)
                        return -EFBIG;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int base64_encode(const uint8_t *data, size_t len, json_t **ret) {
        _cleanup_free_ char *out = malloc(4 * ((len + 2) / 3) + 1);
        size_t n = 0;

        if (!out)
                return -ENOMEM;
        for (size_t off = 0; off < len; off += BASE64_CHUNK)
                n += (size_t) EVP_EncodeBlock((unsigned char *) out + n, data + off,
                                              (int) MIN((size_t) BASE64_CHUNK, len - off));
        out[n] = 0;
        *ret = json_stringn_nocheck(out, n);
        return *ret ? 0 : -ENOMEM;
}

/* The payload of --stdin or --payload-file as a base64 JSON string, or NULL. */
static int payload_load(json_t **ret) {
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *name = arg_payload_file ?: "standard input";
        uint64_t max = tasactl_max_request();
        size_t len = 0;
        int r;

        *ret = NULL;
        if (!arg_stdin && !arg_payload_file)
                return 0;
        if (arg_payload_file) {
                fd = open(arg_payload_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return output_error(errno, "cannot open payload file %s: %m", name);
        }
        r = read_all(arg_payload_file ? fd : STDIN_FILENO, max, &data, &len);
        if (r == -EFBIG)
                return output_error(r, "the payload in %s is larger than the daemons accept "
                                    "(max_request, %" PRIu64 " bytes)", name, max);
        if (r < 0)
                return output_error(r, "cannot read the payload from %s: %m", name);
        r = base64_encode(data, len, ret);
        return r < 0 ? output_oom() : 0;
}

/* JSON strings of the command line's ARGs (JSON carries UTF-8 only). */
static int args_to_json(char **args, size_t n, json_t **ret) {
        _cleanup_(json_decrefp) json_t *a = json_array();

        if (!a)
                return output_oom();
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_string(args[i]);

                if (!s)
                        return tasactl_usage_error("job argument %zu is not valid UTF-8", i + 1);
                if (json_array_append_new(a, s) < 0)
                        return output_oom();
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/* 0, a usage error's exit status, or -errno. */
static int job_template_build(char **args, size_t n_args, JobTemplate *t) {
        int r;

        r = args_to_json(args, n_args, &t->args);
        if (r != 0)
                return r;
        if (arg_id && !(t->id = json_string(arg_id)))
                return tasactl_usage_error("--id is not valid UTF-8");
        if (arg_timeout && !(t->timeout = json_string(arg_timeout)))
                return output_oom();
        return 0;
}

/* One job object: the template, with extra (may be NULL) appended to its args. */
static int job_object(const JobTemplate *t, const json_t *extra, json_t **ret) {
        _cleanup_(json_decrefp) json_t *job = json_object(), *args = json_copy(t->args);
        int r = job && args ? 0 : -ENOMEM;

        if (r >= 0 && extra)
                r = json_array_extend(args, (json_t *) extra);
        if (r >= 0)
                r = json_object_set(job, "args", args);
        /* Shared, not copied: a payload may be large and is the same for every job. */
        if (r >= 0 && t->payload_b64)
                r = json_object_set(job, "payload_b64", t->payload_b64);
        if (r >= 0 && t->id)
                r = json_object_set(job, "id", t->id);
        if (r >= 0 && t->timeout)
                r = json_object_set(job, "timeout", t->timeout);
        if (r < 0)
                return output_oom();
        *ret = TAKE_PTR(job);
        return 0;
}

/* The exit status for a final job (see TASACTL_EXIT_*): exit:N -> N, timeout -> 124,
 * signal:NAME -> 128 + number, anything else -> 1. */
static int signal_from_name(const char *s) {
        uint64_t n = 0;

        if (startswith(s, "SIG"))
                s += 3;
        if (parse_uint64(s, &n) >= 0)
                return n > 0 && n < NSIG ? (int) n : -EINVAL;
        for (int i = 1; i < NSIG; i++)
                if (sigabbrev_np(i) && streq(sigabbrev_np(i), s))
                        return i;
        if (startswith(s, "RTMIN") && (!s[5] || (s[5] == '+' && parse_uint64(s + 6, &n) >= 0)))
                return s[5] && n <= (uint64_t) (SIGRTMAX - SIGRTMIN) ? SIGRTMIN + (int) n : SIGRTMIN;
        if (startswith(s, "RTMAX") && (!s[5] || (s[5] == '-' && parse_uint64(s + 6, &n) >= 0)))
                return s[5] && n <= (uint64_t) (SIGRTMAX - SIGRTMIN) ? SIGRTMAX - (int) n : SIGRTMAX;
        return -EINVAL;
}

static int exit_status_from_job(const json_t *st) {
        const char *outcome = json_string_value(json_object_get(st, "outcome"));
        const char *state = json_string_value(json_object_get(st, "state"));
        uint64_t n;
        int sig;

        if (!outcome)
                return streq_ptr(state, "done") ? TASACTL_EXIT_OK : TASACTL_EXIT_FAILURE;
        if (startswith(outcome, "exit:") && parse_uint64(outcome + 5, &n) >= 0 && n <= 255)
                return (int) n;
        if (streq(outcome, "timeout"))
                return TASACTL_EXIT_JOB_TIMEOUT;
        if (startswith(outcome, "signal:") && (sig = signal_from_name(outcome + 7)) > 0)
                return TASACTL_EXIT_JOB_SIGNAL + sig;
        return TASACTL_EXIT_FAILURE;
}

/* --wait: the job's output on our stdout and stderr, its exit status as ours. */
static int wait_and_relay(Client *c, const char *queue, const char *id) {
        _cleanup_(client_reply_done) ClientReply out = {}, err = {};
        _cleanup_(json_decrefp) json_t *st = NULL;
        _cleanup_free_ char *note = NULL;
        int r;

        /* Whatever fails from now on, the job exists: every error line says which. */
        if (asprintf(&note, "job %s was submitted to queue '%s'", id, queue) < 0)
                return output_oom();
        r = client_set_note(c, note);
        if (r >= 0)
                r = job_wait(c, id, queue, USEC_INFINITY, &st);
        if (r >= 0 && !arg_json)
                r = job_output(c, id, queue, "stdout", true, &out);
        if (r >= 0 && !arg_json)
                r = job_output(c, id, queue, "stderr", true, &err);
        if (r < 0)
                return r;
        if (arg_json)
                r = output_json(st);
        else {
                r = output_bytes(stdout, out.body, out.body_len);
                if (r >= 0)
                        r = output_flush();
                if (r >= 0)
                        r = output_bytes(stderr, err.body, err.body_len);
        }
        return r < 0 ? r : exit_status_from_job(st);
}

static int submit_one(Client *c, const char *queue, const JobTemplate *t) {
        _cleanup_(json_decrefp) json_t *job = NULL, *reply = NULL;
        _cleanup_free_ char *path = NULL, *what = NULL;
        const char *id;
        int r;

        if (asprintf(&what, "submit to queue '%s' refused", queue) < 0)
                return output_oom();
        r = job_object(t, NULL, &job);
        if (r >= 0)
                r = client_path(c, &path, "queues", queue, "jobs", NULL);
        if (r >= 0)
                r = client_call_json(c, CLIENT_SCHEDULER, "POST", path, job, CLIENT_TIMEOUT_USEC,
                                     what, &reply);
        if (r < 0)
                return r;
        id = json_string_value(json_object_get(reply, "id"));
        if (!id || !*id)
                return output_error(EPROTO, "%s: tasad-scheduler answered without a job id", what);
        if (arg_wait)
                return wait_and_relay(c, queue, id);
        if (arg_json)
                return output_json(reply);
        printf("%s\n", id);
        return TASACTL_EXIT_OK;
}

/* --each: jobs collected from standard input, sent EACH_BATCH_MAX at a time. */
typedef struct Each {
        Client *client;
        const char *queue;
        const JobTemplate *template;
        char *what;
        json_t *jobs;                   /* the batch being collected */
        size_t max;                     /* jobs per request */
        size_t *lines;                  /* input line of each job of the batch */
        size_t n_submitted;             /* jobs of earlier batches, stored by the scheduler */
        char *note;
} Each;

static Each *each_free(Each *e) {
        if (!e)
                return NULL;
        free(e->what);
        free(e->lines);
        json_decref(e->jobs);
        free(e->note);
        free(e);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Each *, each_free);

/* One error line; once jobs were stored it says so, as their ids are already on stdout. */
_printf_(3, 4) static int each_error(Each *e, int error, const char *format, ...) {
        char buf[4096];
        va_list ap;

        errno = error < 0 ? -error : error;
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        if (e->note)
                return output_error(error, "%s; %s", buf, e->note);
        return output_error(error, "%s", buf);
}

/* The daemon names a bad job "jobs[N]…"; the user knows it by its input line. */
static int each_refused(Each *e, const ClientReply *reply) {
        _cleanup_free_ char *msg = NULL;
        const char *rest;
        char *end;
        unsigned long i;

        if (client_reply_message(reply, &msg) < 0)
                return output_oom();
        /* Control characters are escaped when the line is printed (output_line). */
        if (startswith(msg, "jobs[")) {
                i = strtoul(msg + 5, &end, 10);
                if (*end == ']' && i < json_array_size(e->jobs)) {
                        /* "jobs[3].args[0]: …" or "jobs[3]: args[0]: …" */
                        rest = end + 1 + strspn(end + 1, ".: ");
                        return each_error(e, client_errno_from_status(reply->status),
                                          "%s: standard input line %zu: %s", e->what, e->lines[i], rest);
                }
        }
        return each_error(e, reply->status >= 400 ? client_errno_from_status(reply->status) : -EPROTO,
                          "%s: %s", e->what, msg);
}

static int each_print_ids(Each *e, const json_t *reply) {
        const json_t *ids = json_object_get(reply, "ids");
        size_t i;
        json_t *id;

        if (json_array_size(ids) != json_array_size(e->jobs))
                return each_error(e, EPROTO, "%s: tasad-scheduler answered with %zu ids for %zu jobs",
                                  e->what, json_array_size(ids), json_array_size(e->jobs));
        json_array_foreach(ids, i, id)
                if (!json_is_string(id))
                        return each_error(e, EPROTO, "%s: tasad-scheduler answered with a bad id",
                                          e->what);
        if (arg_json)
                return output_json(reply);
        json_array_foreach(ids, i, id)
                printf("%s\n", json_string_value(id));
        return 0;
}

static int each_send(Each *e) {
        _cleanup_(client_reply_done) ClientReply reply = {};
        _cleanup_(json_decrefp) json_t *body = NULL, *answer = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (json_array_size(e->jobs) == 0)
                return 0;
        body = json_pack("{sO}", "jobs", e->jobs);
        if (!body)
                return output_oom();
        r = client_path(e->client, &path, "queues", e->queue, "batches", arg_batch_id, NULL);
        if (r >= 0)
                r = client_request(e->client, CLIENT_SCHEDULER, arg_batch_id ? "PUT" : "POST",
                                   path, body, CLIENT_TIMEOUT_USEC, e->what, &reply);
        if (r < 0)
                return r;
        if (reply.status < 200 || reply.status >= 300)
                return each_refused(e, &reply);
        answer = json_loadb(reply.body, reply.body_len, 0, NULL);
        r = each_print_ids(e, answer);
        if (r < 0)
                return r;
        r = output_flush();
        if (r < 0)
                return r;
        e->n_submitted += json_array_size(e->jobs);
        free(e->note);
        e->note = NULL;
        if (asprintf(&e->note, "the %zu jobs submitted before were kept, their ids are on standard "
                     "output", e->n_submitted) < 0)
                return output_oom();
        r = client_set_note(e->client, e->note);
        if (r < 0)
                return r;
        json_array_clear(e->jobs);
        return 0;
}

/* The words of one input line as a JSON array; an empty array for a blank line. */
static int each_words(Each *e, char *line, size_t len, size_t lineno, json_t **ret) {
        _cleanup_(json_decrefp) json_t *words = json_array();
        char *save = NULL;

        if (!words)
                return output_oom();
        if (strlen(line) != len)
                return each_error(e, EINVAL, "standard input line %zu contains a NUL byte", lineno);
        for (char *w = strtok_r(line, " \t\n\v\f\r", &save); w; w = strtok_r(NULL, " \t\n\v\f\r", &save)) {
                json_t *s = json_string(w);

                if (!s)
                        return each_error(e, EINVAL, "standard input line %zu is not valid UTF-8",
                                          lineno);
                if (json_array_append_new(words, s) < 0)
                        return output_oom();
        }
        *ret = TAKE_PTR(words);
        return 0;
}

static int each_add_line(Each *e, char *line, size_t len, size_t lineno) {
        _cleanup_(json_decrefp) json_t *words = NULL;
        json_t *job = NULL;
        int r;

        r = each_words(e, line, len, lineno, &words);
        if (r < 0 || json_array_size(words) == 0)
                return r;
        r = job_object(e->template, words, &job);
        if (r < 0)
                return r;
        if (json_array_size(e->jobs) == e->max) {
                if (arg_batch_id)
                        return each_error(e, E2BIG, "standard input line %zu: a batch (--batch-id) "
                                          "holds at most %d jobs; nothing was submitted", lineno,
                                          NAMED_BATCH_MAX);
                r = each_send(e);
                if (r < 0)
                        return r;
        }
        e->lines[json_array_size(e->jobs)] = lineno;
        if (json_array_append_new(e->jobs, job) < 0)
                return output_oom();
        return 0;
}

static int submit_each(Client *c, const char *queue, const JobTemplate *t) {
        _cleanup_(each_freep) Each *e = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0, lineno = 0;
        ssize_t n;
        int r = 0;

        e = calloc(1, sizeof(Each));
        if (!e)
                return output_oom();
        e->max = arg_batch_id ? NAMED_BATCH_MAX : EACH_BATCH_MAX;
        if (!(e->jobs = json_array()) || !(e->lines = calloc(e->max, sizeof(size_t))) ||
            asprintf(&e->what, "submit to queue '%s' refused", queue) < 0)
                return output_oom();
        /* A named batch whose outcome is unknown can be sent again as it is. */
        if (arg_batch_id && (asprintf(&e->note, "run the same command again: with --batch-id "
                                      "nothing is stored twice") < 0 ||
                             client_set_note(c, e->note) < 0))
                return output_oom();
        e->client = c;
        e->queue = queue;
        e->template = t;
        while (r >= 0 && (n = getline(&line, &size, stdin)) >= 0)
                r = each_add_line(e, line, (size_t) n, ++lineno);
        if (r < 0)
                return r;
        if (ferror(stdin))
                return each_error(e, errno ?: EIO, "cannot read standard input: %m");
        r = each_send(e);
        return r < 0 ? r : TASACTL_EXIT_OK;
}

int verb_submit(int argc, char *argv[]) {
        _cleanup_(job_template_done) JobTemplate t = {};
        const char *queue = argv[1];
        Client *c;
        int r;

        r = check_options();
        if (r == 0)
                r = job_template_build(argv + 2, (size_t) argc - 2, &t);
        if (r != 0)
                return r;
        r = tasactl_client(&c);
        if (r >= 0)
                r = payload_load(&t.payload_b64);
        if (r < 0)
                return r;
        return arg_each ? submit_each(c, queue, &t) : submit_one(c, queue, &t);
}
