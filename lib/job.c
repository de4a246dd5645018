/* The job model and its codecs: states, the JSON submission spec, the netstring argument list of
 * the Redis record (version 1), attempt outcomes, signal names, job ids and the result as JSON. */
#include "strutil.h"
#include "job.h"

#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/random.h>
#include <time.h>

#include "args.h"
#include "config.h"
#include "parse.h"

/* Formats a message into *ret_error (when the caller wants one) and returns r; -ENOMEM if the
 * message itself cannot be allocated. */
/* ---- states ---- */

static const char *const job_state_table[_JOB_STATE_MAX] = {
        [JOB_QUEUED] = "queued",
        [JOB_DELAYED] = "delayed",
        [JOB_RUNNING] = "running",
        [JOB_DONE] = "done",
        [JOB_FAILED] = "failed",
        [JOB_CANCELLED] = "cancelled",
};

const char *job_state_to_string(JobState s) {
        if (s < 0 || s >= _JOB_STATE_MAX)
                return NULL;
        return job_state_table[s];
}

JobState job_state_from_string(const char *s) {
        if (!s)
                return _JOB_STATE_INVALID;
        for (int i = 0; i < _JOB_STATE_MAX; i++)
                if (streq(job_state_table[i], s))
                        return (JobState) i;
        return _JOB_STATE_INVALID;
}

bool job_state_is_final(JobState s) {
        return s == JOB_DONE || s == JOB_FAILED || s == JOB_CANCELLED;
}

/* ---- frees ---- */

JobSpec *job_spec_free(JobSpec *s) {
        if (!s)
                return NULL;
        free(s->id);
        strv_free(s->args);
        free(s->payload);
        free(s);
        return NULL;
}

JobResult *job_result_free(JobResult *r) {
        if (!r)
                return NULL;
        free(r->outcome);
        free(r->detail);
        free(r->out);
        free(r->err);
        free(r);
        return NULL;
}

/* ---- base64 (RFC 4648 §4, standard alphabet, padding required) ---- */

static int base64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Decoded size of a well-formed encoding, or -EINVAL with *ret_why when its length or padding
 * is wrong. Run before decoding so the limit is checked before anything is allocated. */
static int base64_decoded_size(const char *s, size_t len, size_t *ret, const char **ret_why) {
        size_t pad = 0;

        if (len % 4 != 0) {
                *ret_why = "length is not a multiple of 4";
                return -EINVAL;
        }
        while (pad < len && pad < 3 && s[len - 1 - pad] == '=')
                pad++;
        if (pad > 2) {
                *ret_why = "bad padding";
                return -EINVAL;
        }
        *ret = len / 4 * 3 - pad;
        return 0;
}

/* Strict decoder: every character outside the final padding must be in the alphabet, '='
 * appears only as the last one or two characters, and the bits the padding discards must be
 * zero (so every payload has exactly one encoding). out must hold base64_decoded_size bytes. */
static int base64_decode(const char *s, size_t len, uint8_t *out, const char **ret_why) {
        size_t o = 0;

        for (size_t i = 0; i < len; i += 4) {
                bool last = i + 4 == len;
                int v[4];
                size_t n = 4;

                for (size_t j = 0; j < 4; j++) {
                        v[j] = base64_value(s[i + j]);
                        if (v[j] >= 0)
                                continue;
                        if (s[i + j] != '=' || !last || j < 2) {
                                *ret_why = s[i + j] == '=' ? "bad padding" : "invalid character";
                                return -EINVAL;
                        }
                        if (n == 4)
                                n = j;
                        v[j] = 0;
                }
                if (n == 2 && s[i + 3] != '=') { /* "QQ=A" */
                        *ret_why = "bad padding";
                        return -EINVAL;
                }
                if ((n == 2 && (v[1] & 0x0f)) || (n == 3 && (v[2] & 0x03))) {
                        *ret_why = "non-zero bits in the padding";
                        return -EINVAL;
                }
                uint32_t q = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 |
                             (uint32_t) v[3];
                out[o++] = q >> 16;
                if (n > 2)
                        out[o++] = (q >> 8) & 0xff;
                if (n > 3)
                        out[o++] = q & 0xff;
        }
        return 0;
}

/* ---- job_spec_from_json ---- */

typedef struct SpecParser {
        const QueueConfig *q;
        JobSpec *spec;
        bool have_payload;
} SpecParser;

/* A string value without embedded NUL, or NULL. */
static const char *json_cstring(const json_t *v) {
        const char *s = json_string_value(v);

        if (!s || strlen(s) != json_string_length(v))
                return NULL;
        return s;
}

static int spec_parse_args(SpecParser *p, const json_t *v, char **ret_error) {
        _cleanup_strv_free_ char **args = NULL;
        size_t n;
        int r;

        if (!json_is_array(v))
                return error_setf(ret_error, -EBADMSG, "args: must be an array of strings");
        n = json_array_size(v);
        args = calloc(n + 1, sizeof(char *));
        if (!args)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const json_t *e = json_array_get(v, i);

                if (!json_is_string(e))
                        return error_setf(ret_error, -EBADMSG, "args[%zu]: must be a string", i);
                if (!json_cstring(e))
                        return error_setf(ret_error, -EINVAL, "args[%zu]: contains a NUL byte", i);
                args[i] = strdup(json_string_value(e));
                if (!args[i])
                        return -ENOMEM;
        }
        r = args_validate(p->q, args, n, ret_error);
        if (r < 0)
                return r;
        strv_free(p->spec->args);
        p->spec->args = TAKE_PTR(args);
        p->spec->n_args = n;
        return 0;
}

static int spec_check_payload(SpecParser *p, const char *field, size_t size, char **ret_error) {
        if (p->have_payload)
                return error_setf(ret_error, -EBADMSG, "payload and payload_b64 are mutually exclusive");
        if (size > p->q->max_payload)
                return error_setf(ret_error, -E2BIG, "%s: %zu bytes exceeds max_payload (%" PRIu64 ")",
                                  field, size, p->q->max_payload);
        return 0;
}

/* An empty payload is stored as none (NULL, 0): both give the job an empty stdin. */
static void spec_set_payload(SpecParser *p, uint8_t *data, size_t size) {
        p->have_payload = true;
        free(p->spec->payload);
        p->spec->payload = size > 0 ? data : NULL;
        p->spec->payload_len = size;
        if (size == 0)
                free(data);
}

static int spec_parse_payload(SpecParser *p, const json_t *v, char **ret_error) {
        uint8_t *data = NULL;
        size_t size;
        int r;

        if (!json_is_string(v))
                return error_setf(ret_error, -EBADMSG, "payload: must be a string");
        size = json_string_length(v);
        r = spec_check_payload(p, "payload", size, ret_error);
        if (r < 0)
                return r;
        if (size > 0) {
                data = malloc(size);
                if (!data)
                        return -ENOMEM;
                memcpy(data, json_string_value(v), size);
        }
        spec_set_payload(p, data, size);
        return 0;
}

static int spec_parse_payload_b64(SpecParser *p, const json_t *v, char **ret_error) {
        _cleanup_free_ uint8_t *data = NULL;
        const char *s, *why = NULL;
        size_t len, size;
        int r;

        if (!json_is_string(v))
                return error_setf(ret_error, -EBADMSG, "payload_b64: must be a string");
        s = json_string_value(v);
        len = json_string_length(v);
        if (base64_decoded_size(s, len, &size, &why) < 0)
                return error_setf(ret_error, -EINVAL, "payload_b64: invalid base64: %s", why);
        r = spec_check_payload(p, "payload_b64", size, ret_error);
        if (r < 0)
                return r;
        data = malloc(MAX(size, (size_t) 1));
        if (!data)
                return -ENOMEM;
        if (base64_decode(s, len, data, &why) < 0)
                return error_setf(ret_error, -EINVAL, "payload_b64: invalid base64: %s", why);
        spec_set_payload(p, TAKE_PTR(data), size);
        return 0;
}

static int spec_parse_id(SpecParser *p, const json_t *v, char **ret_error) {
        const char *s = json_cstring(v);
        char *id;

        if (!json_is_string(v))
                return error_setf(ret_error, -EBADMSG, "id: must be a string");
        if (!s || !job_id_is_valid(s))
                return error_setf(ret_error, -EINVAL,
                                  "id: must be 1-64 characters of [A-Za-z0-9_.:-], not starting with '.' or '-'");
        id = strdup(s);
        if (!id)
                return -ENOMEM;
        free(p->spec->id);
        p->spec->id = id;
        return 0;
}

static int spec_timeout_value(const json_t *v, uint64_t *ret_usec, char **ret_error) {
        uint64_t usec = 0;
        const char *s;

        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);

                if (i <= 0)
                        return error_setf(ret_error, -EINVAL, "timeout: must be positive");
                *ret_usec = (uint64_t) i > UINT64_MAX / USEC_PER_SEC ? UINT64_MAX
                                                                      : (uint64_t) i * USEC_PER_SEC;
                return 0;
        }
        if (json_is_real(v)) {
                /* Seconds with a fraction (1.5), to the microsecond, rounded down. jansson has
                 * no real for what overflows a double, so every real here is finite. */
                double d = json_real_value(v);

                if (!(d * USEC_PER_SEC >= 1.0))
                        return error_setf(ret_error, -EINVAL,
                                          "timeout: must be positive (at least 1 microsecond)");
                *ret_usec = d >= (double) UINT64_MAX / USEC_PER_SEC ? UINT64_MAX
                                                                     : (uint64_t) (d * USEC_PER_SEC);
                return 0;
        }
        if (!json_is_string(v))
                return error_setf(ret_error, -EINVAL,
                                  "timeout: must be a duration string or a positive number of seconds");
        s = json_cstring(v);
        if (!s || parse_duration(s, &usec) < 0)
                return error_setf(ret_error, -EINVAL, "timeout: not a valid duration (e.g. \"90s\", \"5m\")");
        if (usec == 0)
                return error_setf(ret_error, -EINVAL, "timeout: must be positive");
        *ret_usec = usec;
        return 0;
}

static int spec_parse_timeout(SpecParser *p, const json_t *v, char **ret_error) {
        char limit[32];
        uint64_t usec = 0;
        int r;

        r = spec_timeout_value(v, &usec, ret_error);
        if (r < 0)
                return r;
        if (usec > p->q->timeout_usec) {
                /* Quote the client's own value; an integer is seconds. */
                format_duration(limit, sizeof(limit), p->q->timeout_usec);
                if (json_is_integer(v))
                        return error_setf(ret_error, -EINVAL,
                                          "timeout: %" JSON_INTEGER_FORMAT "s exceeds the queue's timeout (%s)",
                                          json_integer_value(v), limit);
                if (json_is_real(v))
                        return error_setf(ret_error, -EINVAL,
                                          "timeout: %.16gs exceeds the queue's timeout (%s)",
                                          json_real_value(v), limit);
                return error_setf(ret_error, -EINVAL, "timeout: %s exceeds the queue's timeout (%s)",
                                  json_string_value(v), limit);
        }
        p->spec->timeout_usec = usec;
        return 0;
}

typedef int (*SpecKeyParser)(SpecParser *p, const json_t *v, char **ret_error);

static const struct {
        const char *key;
        SpecKeyParser parse;
} spec_keys[] = {
        { "args", spec_parse_args },
        { "payload", spec_parse_payload },
        { "payload_b64", spec_parse_payload_b64 },
        { "id", spec_parse_id },
        { "timeout", spec_parse_timeout },
};

static SpecKeyParser spec_key_lookup(const char *key, size_t key_len) {
        if (strlen(key) != key_len) /* a key with an embedded NUL is never ours */
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(spec_keys); i++)
                if (streq(spec_keys[i].key, key))
                        return spec_keys[i].parse;
        return NULL;
}

int job_spec_from_json(const json_t *obj, const QueueConfig *q, JobSpec **ret, char **ret_error) {
        _cleanup_(job_spec_freep) JobSpec *s = NULL;
        json_t *o = (json_t *) obj; /* jansson's iterators take non-const; nothing is modified */
        SpecParser p = { .q = q };
        int r;

        if (!json_is_object(obj))
                return error_setf(ret_error, -EBADMSG, "job: must be a JSON object");
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->args = calloc(1, sizeof(char *));
        if (!s->args)
                return -ENOMEM;
        p.spec = s;

        for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
                const char *key = json_object_iter_key(it);
                SpecKeyParser parse = spec_key_lookup(key, json_object_iter_key_len(it));

                if (!parse)
                        return error_setf(ret_error, -EBADMSG, "unknown key '%s'", key);
                r = parse(&p, json_object_iter_value(it), ret_error);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- netstring argument list (record version 1) ---- */

int job_args_encode(char *const *args, size_t n_args, char **ret, size_t *ret_len) {
        size_t total = 0, o = 0;
        char *buf;

        for (size_t i = 0; i < n_args; i++) {
                size_t l;

                if (!args || !args[i])
                        return -EINVAL;
                l = strlen(args[i]);
                /* at most 20 digits, ':' and ',' per item, and the final NUL */
                if (total > SIZE_MAX - 33 || l > SIZE_MAX - 33 - total)
                        return -E2BIG;
                total += l + 32;
        }
        buf = malloc(total + 1);
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < n_args; i++) {
                size_t l = strlen(args[i]);

                o += (size_t) sprintf(buf + o, "%zu:", l);
                memcpy(buf + o, args[i], l);
                o += l;
                buf[o++] = ',';
        }
        buf[o] = '\0';
        *ret = buf;
        *ret_len = o;
        return 0;
}

/* Parses the "<len>:" header at *pos: decimal without leading zeros (except "0" itself).
 * -E2BIG above max_len, -EBADMSG when malformed. */
static int netstring_length(const char *buf, size_t len, size_t *pos, size_t max_len,
                            size_t *ret) {
        size_t i = *pos, v = 0;

        if (i >= len || buf[i] < '0' || buf[i] > '9')
                return -EBADMSG;
        if (buf[i] == '0' && i + 1 < len && buf[i + 1] >= '0' && buf[i + 1] <= '9')
                return -EBADMSG;
        for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
                size_t d = (size_t) (buf[i] - '0');

                if (v > (SIZE_MAX - d) / 10)
                        return -EBADMSG;
                v = v * 10 + d;
                if (v > max_len)
                        return -E2BIG;
        }
        if (i >= len || buf[i] != ':')
                return -EBADMSG;
        *pos = i + 1;
        *ret = v;
        return 0;
}

/* One "<len>:<bytes>," item at *pos, copied out as a string. */
static int netstring_next(const char *buf, size_t len, size_t *pos, size_t max_len, char **ret) {
        size_t i = *pos, l;
        char *s;
        int r;

        r = netstring_length(buf, len, &i, max_len, &l);
        if (r < 0)
                return r;
        if (l >= len - i || buf[i + l] != ',')
                return -EBADMSG;
        if (memchr(buf + i, '\0', l))
                return -EBADMSG;
        s = strndup(buf + i, l);
        if (!s)
                return -ENOMEM;
        *pos = i + l + 1;
        *ret = s;
        return 0;
}

int job_args_decode(const char *buf, size_t len, size_t max_args, size_t max_arg_len,
                    char ***ret_args, size_t *ret_n) {
        _cleanup_strv_free_ char **args = NULL;
        size_t n = 0, allocated = 0, pos = 0;
        int r;

        if (!buf && len > 0)
                return -EINVAL;
        args = calloc(1, sizeof(char *));
        if (!args)
                return -ENOMEM;
        allocated = 1;
        while (pos < len) {
                if (n >= max_args)
                        return -E2BIG;
                if (n + 1 >= allocated) {
                        size_t a = MAX(allocated * 2, (size_t) 8);
                        char **m = reallocarray(args, a, sizeof(char *));

                        if (!m)
                                return -ENOMEM;
                        args = m;
                        allocated = a;
                }
                r = netstring_next(buf, len, &pos, max_arg_len, &args[n]);
                args[n + 1] = NULL;
                if (r < 0)
                        return r;
                n++;
        }
        *ret_args = TAKE_PTR(args);
        *ret_n = n;
        return 0;
}

/* ---- outcomes and signals ---- */

int job_outcome_from_status(int code, int status, char **ret_outcome, int *ret_exit) {
        char buf[16], *o;
        int exit_code = -1, k;

        switch (code) {
        case CLD_EXITED:
                exit_code = status;
                k = asprintf(&o, "exit:%d", status);
                break;
        case CLD_KILLED:
        case CLD_DUMPED:
                k = asprintf(&o, "signal:%s", signal_name(status, buf));
                break;
        default:
                return -EINVAL;
        }
        if (k < 0)
                return -ENOMEM;
        *ret_outcome = o;
        if (ret_exit)
                *ret_exit = exit_code;
        return 0;
}

static const char *const signal_table[] = {
        [SIGHUP] = "HUP",       [SIGINT] = "INT",       [SIGQUIT] = "QUIT",
        [SIGILL] = "ILL",       [SIGTRAP] = "TRAP",     [SIGABRT] = "ABRT",
        [SIGBUS] = "BUS",       [SIGFPE] = "FPE",       [SIGKILL] = "KILL",
        [SIGUSR1] = "USR1",     [SIGSEGV] = "SEGV",     [SIGUSR2] = "USR2",
        [SIGPIPE] = "PIPE",     [SIGALRM] = "ALRM",     [SIGTERM] = "TERM",
        [SIGSTKFLT] = "STKFLT", [SIGCHLD] = "CHLD",     [SIGCONT] = "CONT",
        [SIGSTOP] = "STOP",     [SIGTSTP] = "TSTP",     [SIGTTIN] = "TTIN",
        [SIGTTOU] = "TTOU",     [SIGURG] = "URG",       [SIGXCPU] = "XCPU",
        [SIGXFSZ] = "XFSZ",     [SIGVTALRM] = "VTALRM", [SIGPROF] = "PROF",
        [SIGWINCH] = "WINCH",   [SIGIO] = "IO",         [SIGPWR] = "PWR",
        [SIGSYS] = "SYS",
};

const char *signal_name(int sig, char buf[static 16]) {
        if (sig > 0 && (size_t) sig < ELEMENTSOF(signal_table) && signal_table[sig])
                return signal_table[sig];
        if (sig == SIGRTMIN)
                return "RTMIN";
        if (sig > SIGRTMIN && sig <= SIGRTMAX)
                snprintf(buf, 16, "RTMIN+%d", sig - SIGRTMIN);
        else
                snprintf(buf, 16, "%d", sig);
        return buf;
}

/* ---- job ids ---- */

static const char job_id_alphabet[32] = "0123456789abcdefghjkmnpqrstvwxyz";

/* From getrandom(), 64 values per call: a batch of 100 000 jobs would otherwise make 100 000
 * system calls. The pool belongs to this process (tasad's daemons never fork without exec). */
static int random_u64(uint64_t *ret) {
        static uint64_t pool[64];
        static size_t left = 0;
        ssize_t k;

        if (left == 0) {
                do
                        k = getrandom(pool, sizeof(pool), 0);
                while (k < 0 && errno == EINTR);
                if (k < 0)
                        return negative_errno();
                if ((size_t) k != sizeof(pool))
                        return -EIO;
                left = ELEMENTSOF(pool);
        }
        *ret = pool[--left];
        pool[left] = 0; /* not kept once used */
        return 0;
}

int job_id_generate(char ret[static 21]) {
        unsigned __int128 v;
        struct timespec ts;
        uint64_t ms, rnd;
        int r;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return negative_errno();
        r = random_u64(&rnd);
        if (r < 0)
                return r;
        ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
        /* 100 bits: 48 bits of time on top so that ids sort by time, then 52 random bits. */
        v = (unsigned __int128) (ms & ((UINT64_C(1) << 48) - 1)) << 52 |
            (rnd & ((UINT64_C(1) << 52) - 1));
        for (int i = 19; i >= 0; i--) {
                ret[i] = job_id_alphabet[(unsigned) (v & 31)];
                v >>= 5;
        }
        ret[20] = '\0';
        return 0;
}

static bool job_id_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == ':' || c == '-';
}

bool job_id_is_valid_n(const char *id, size_t len) {
        if (!id || len == 0 || len > JOB_ID_MAX || id[0] == '.' || id[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++)
                if (!job_id_char(id[i])) /* NUL included: the id must be all of the bytes */
                        return false;
        return true;
}

bool job_id_is_valid(const char *id) {
        return id && job_id_is_valid_n(id, strnlen(id, JOB_ID_MAX + 1));
}

/* ---- result as JSON ---- */

static json_t *json_uint(uint64_t v) {
        return json_integer((json_int_t) MIN(v, (uint64_t) INT64_MAX));
}

/* Seconds since the epoch with a fraction; null when the time was never recorded. */
static json_t *json_time(uint64_t usec) {
        if (usec == 0)
                return json_null();
        return json_real((double) usec / (double) USEC_PER_SEC);
}

static bool outcome_is_exit(const char *outcome) {
        return outcome && strncmp(outcome, "exit:", 5) == 0;
}

int job_result_to_json(const JobResult *r, json_t **ret) {
        json_t *j;

        if (!r)
                return -EINVAL;
        j = json_pack("{s:s?, s:o, s:s?, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:b}",
                      "outcome", r->outcome,
                      "exit_code", outcome_is_exit(r->outcome) && r->exit_code >= 0
                                           ? json_integer(r->exit_code) : json_null(),
                      "detail", r->detail,
                      "started", json_time(r->started_usec),
                      "finished", json_time(r->finished_usec),
                      "wall_ms", json_uint(r->wall_usec / USEC_PER_MSEC),
                      "cpu_ms", json_uint(r->cpu_usec / USEC_PER_MSEC),
                      "max_rss_kib", json_uint(r->max_rss_kib),
                      "stdout_bytes", json_uint(r->out_len),
                      "stdout_truncated", (int) r->out_truncated,
                      "stderr_bytes", json_uint(r->err_len),
                      "stderr_truncated", (int) r->err_truncated);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}
