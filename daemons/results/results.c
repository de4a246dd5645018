#include "results.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "auth.h"
#include "config.h"
#include "fsutil.h"
#include "http.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "record.h"
#include "redis.h"
#include "service.h"
#include "strutil.h"

#define GATHER_COUNT "256"
#define WAIT_DEFAULT_SEC 30
#define WAIT_MAX_SEC 3600
#define GATHER_RETRY_USEC (5 * USEC_PER_SEC)

typedef struct Ack {
        size_t queue;
        char *entry;
} Ack;

typedef struct Waiter Waiter;
struct Waiter {
        Results *results;
        Waiter *prev, *next;
        HttpRequest *req;
        char *id;                /* job or batch id */
        bool batch;
        size_t queue;
        sd_event_source *timer;
};

struct Results {
        Service *service;
        RedisConn *feed;         /* XREADGROUP … BLOCK 0: nothing else on it */
        char *consumer;
        bool reading, backlog;   /* backlog: still re-reading our own pending entries ("0") */
        bool write_failed;       /* this round could not write a result: pause before the next */
        sd_event_source *retry_timer;
        size_t gathering;        /* entries being written */
        uint64_t gathered;
        int *queue_dirs;         /* per queue: its results directory, or -1 until first used */
        Ack *acks;               /* entries gathered in this round, acknowledged at its end */
        size_t n_acks, cap_acks;
        Waiter *waiters;
};

/* A request that waits for one Redis reply, with what it needs to answer. */
typedef struct Query {
        Results *results;
        HttpRequest *req;        /* NULL when the client went away */
        size_t queue;
        char *id;
        char *what;              /* "stdout", "stderr", "status", "wait", "batch" */
        uint64_t wait_usec;
        size_t pending;
        json_t *acc;
} Query;

static void results_read(Results *r);
static void waiters_wake(Results *r, const char *id, bool batch);
static int query_status(Query *q);
static int query_batch(Query *q);

static const char *queue_name(Results *r, size_t i) {
        return r->service->queues->queues[i]->name;
}

static Query *query_new(Results *r, HttpRequest *req, const char *id, const char *what) {
        Query *q = calloc(1, sizeof(Query));
        if (!q)
                return NULL;
        *q = (Query){ .results = r, .req = req, .id = id ? strdup(id) : NULL, .what = strdup(what) };
        if ((id && !q->id) || !q->what) {
                free(q->id);
                free(q->what);
                free(q);
                return NULL;
        }
        return q;
}

static void query_free(Query *q) {
        if (!q)
                return;
        json_decref(q->acc);
        free(q->id);
        free(q->what);
        free(q);
}

static void on_query_abort(HttpRequest *req, void *userdata) {
        Query *q = userdata;
        q->req = NULL;
}

/* --- files in the results directory --------------------------------------------------------- */

static char *result_path(Results *r, size_t qi, const char *id, const char *file) {
        char *p;
        if (asprintf(&p, "%s/%s/%s%s%s", r->service->config->results_dir, queue_name(r, qi), id,
                     file ? "/" : "", file ? file : "") < 0)
                return NULL;
        return p;
}

static int write_file(int dirfd, const char *name, const void *data, size_t len) {
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);

        return fd < 0 ? -errno : write_all(fd, data, len);
}

/* The queue's results directory, made and opened once (again when it was removed meanwhile:
 * `fresh`). */
static int queue_dir(Results *r, size_t qi, bool fresh) {
        _cleanup_free_ char *path = NULL;
        int k;

        if (r->queue_dirs[qi] >= 0 && !fresh)
                return r->queue_dirs[qi];
        r->queue_dirs[qi] = safe_close(r->queue_dirs[qi]);
        if (asprintf(&path, "%s/%s", r->service->config->results_dir, queue_name(r, qi)) < 0)
                return -ENOMEM;
        k = mkdir_parents(path, 0750);
        if (k < 0)
                return k;
        r->queue_dirs[qi] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return r->queue_dirs[qi] < 0 ? -errno : r->queue_dirs[qi];
}

/* A fresh, empty <queue dir>/<tmp> (what a crash left there is removed first). */
static int make_tmp_dir(Results *r, size_t qi, const char *tmp, int *ret_qfd) {
        int qfd = queue_dir(r, qi, false);

        if (qfd < 0)
                return qfd;
        if (mkdirat(qfd, tmp, 0750) == 0)
                goto done;
        if (errno == ENOENT) /* the queue's directory was removed under us */
                qfd = queue_dir(r, qi, true);
        else if (errno == EEXIST)
                (void) rm_rf_at(qfd, tmp);
        else
                return -errno;
        if (qfd < 0)
                return qfd;
        if (mkdirat(qfd, tmp, 0750) < 0)
                return -errno;
done:
        *ret_qfd = qfd;
        return 0;
}

/* Writes stdout, stderr and result.json into a fresh directory and renames it into place, so a
 * reader sees all three files or none. */
static int write_result_dir(Results *r, size_t qi, const char *id, const redisReply *rec,
                            json_t *status) {
        _cleanup_free_ char *json = NULL;
        _cleanup_close_ int dfd = -EBADF;
        size_t out_len = 0, err_len = 0;
        const char *out = record_get(rec, "out", &out_len), *err = record_get(rec, "err", &err_len);
        char tmp[128];
        int qfd = -EBADF, k;

        snprintf(tmp, sizeof(tmp), ".%s.tmp", id); /* ids are at most 64 characters */
        k = make_tmp_dir(r, qi, tmp, &qfd);
        if (k < 0)
                return k;
        dfd = openat(qfd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        json = json_dumps(status, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
        if (dfd < 0 || !json)
                return dfd < 0 ? -errno : -ENOMEM;
        k = write_file(dfd, "stdout", out ? out : "", out ? out_len : 0);
        if (k >= 0)
                k = write_file(dfd, "stderr", err ? err : "", err ? err_len : 0);
        if (k >= 0)
                k = write_file(dfd, "result.json", json, strlen(json));
        if (k < 0)
                return k;
        if (renameat(qfd, tmp, qfd, id) < 0) {
                if (errno != ENOTEMPTY && errno != EEXIST)
                        return -errno;
                (void) rm_rf_at(qfd, id); /* gathered before (a crash before XACK): replace it */
                if (renameat(qfd, tmp, qfd, id) < 0)
                        return -errno;
        }
        return 0;
}

/* --- the gatherer ---------------------------------------------------------------------------- */

typedef struct Gather {
        Results *results;
        size_t queue;
        char *entry;             /* stream entry id */
        char *id, *batch;
        bool batch_done;         /* the batch may have finished with this job: wake its waiters */
} Gather;

static void gather_free(Gather *g) {
        free(g->entry);
        free(g->id);
        free(g->batch);
        free(g);
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Results *r = userdata;

        r->backlog = true;
        results_read(r);
        return 0;
}

/* The read loop goes on when every entry of a round is handled; after a failed write (disk
 * full, permissions) only after a pause, so unwritable entries are not re-read in a tight loop. */
/* One XACK per queue for the entries of a round (they stay pending if it is lost: gathering is
 * idempotent). */
static void acks_flush(Results *r) {
        size_t nq = r->service->queues->n_queues;
        _cleanup_free_ const char **argv = NULL;

        if (r->n_acks == 0)
                return;
        argv = calloc(3 + r->n_acks, sizeof(char *));
        for (size_t qi = 0; argv && qi < nq; qi++) {
                size_t k = 0;

                argv[k++] = "XACK";
                argv[k++] = r->service->keys[qi]->done;
                argv[k++] = "gatherer";
                for (size_t i = 0; i < r->n_acks; i++)
                        if (r->acks[i].queue == qi)
                                argv[k++] = r->acks[i].entry;
                if (k > 3)
                        (void) redis_command_argv(r->service->redis, NULL, NULL, (int) k, argv, NULL);
        }
        if (!argv)
                log_oom();
        for (size_t i = 0; i < r->n_acks; i++)
                free(r->acks[i].entry);
        r->n_acks = 0;
}

static void ack_add(Results *r, Gather *g) {
        if (r->n_acks == r->cap_acks) {
                size_t cap = MAX(r->cap_acks * 2, (size_t) 64);
                Ack *a = reallocarray(r->acks, cap, sizeof(Ack));
                if (!a)
                        return (void) log_oom(); /* stays pending; gathered again later */
                r->acks = a;
                r->cap_acks = cap;
        }
        r->acks[r->n_acks++] = (Ack){ g->queue, TAKE_PTR(g->entry) };
}

static void gather_done(Results *r) {
        if (--r->gathering > 0)
                return;
        acks_flush(r);
        if (!r->write_failed) {
                results_read(r);
                return;
        }
        r->write_failed = false;
        if (!r->retry_timer)
                (void) sd_event_add_time_relative(r->service->event, &r->retry_timer, CLOCK_MONOTONIC,
                                                  GATHER_RETRY_USEC, USEC_PER_SEC, on_retry_timer, r);
        else {
                (void) sd_event_source_set_time_relative(r->retry_timer, GATHER_RETRY_USEC);
                (void) sd_event_source_set_enabled(r->retry_timer, SD_EVENT_ONESHOT);
        }
}

static void on_gather_record(RedisConn *c, const redisReply *rec, int error, void *userdata) {
        Gather *g = userdata;
        Results *r = g->results;
        _cleanup_free_ char *jk = queue_key_job(r->service->keys[g->queue], g->id);
        json_t *status = NULL;
        size_t out_len = 0, err_len = 0;
        char ol[24], el[24];
        int w = 0;

        if (error < 0 || !jk)
                goto out; /* stays pending in the group; re-read after reconnect */
        status = record_to_status(rec, queue_name(r, g->queue), g->id);
        if (status)
                w = write_result_dir(r, g->queue, g->id, rec, status);
        if (w < 0) {
                LogJob lj = { .queue = queue_name(r, g->queue), .job_id = g->id };
                log_job_errno(LOG_ERR, w, &lj, "Failed to write the result to %s: %m; it stays in "
                              "Redis and is retried in %" PRIu64 "s.", r->service->config->results_dir,
                              GATHER_RETRY_USEC / USEC_PER_SEC);
                r->write_failed = true;
                goto out;
        }
        if (status) {
                (void) record_get(rec, "out", &out_len);
                (void) record_get(rec, "err", &err_len);
                snprintf(ol, sizeof(ol), "%zu", out_len);
                snprintf(el, sizeof(el), "%zu", err_len);
                /* Once on disk, the outputs leave Redis; their sizes stay for the status. Empty
                 * ones may stay: they cost nothing and say the same. */
                if (out_len + err_len == 0)
                        (void) redis_command_argv(c, NULL, NULL, 4,
                                (const char *[]){ "HSET", jk, "gathered", "1" }, NULL);
                else {
                        (void) redis_command_argv(c, NULL, NULL, 8,
                                (const char *[]){ "HSET", jk, "gathered", "1", "out_len", ol, "err_len", el }, NULL);
                        (void) redis_command_argv(c, NULL, NULL, 4,
                                (const char *[]){ "HDEL", jk, "out", "err" }, NULL);
                }
        }
        ack_add(r, g);
        r->gathered++;
        waiters_wake(r, g->id, false);
        if (g->batch_done)
                waiters_wake(r, g->batch, true);
out:
        json_decref(status);
        gather_done(r);
        gather_free(g);
}

static int gather_entry(Results *r, size_t qi, const redisReply *entry) {
        const redisReply *fields = redis_reply_element(entry, 1);
        const char *eid = redis_reply_string(redis_reply_element(entry, 0), NULL);
        const char *id = record_get(fields, "id", NULL), *batch = record_get(fields, "batch", NULL);
        const char *left = record_get(fields, "left", NULL);
        _cleanup_free_ char *jk = NULL;
        Gather *g;

        if (!eid || !id)
                return 0;
        g = calloc(1, sizeof(Gather));
        if (!g)
                return -ENOMEM;
        /* Entries without `left` (written by older workers) wake the batch's waiters each. */
        *g = (Gather){ r, qi, strdup(eid), strdup(id), batch ? strdup(batch) : NULL,
                       batch && (!left || streq(left, "0")) };
        jk = queue_key_job(r->service->keys[qi], id);
        if (!g->entry || !g->id || (batch && !g->batch) || !jk ||
            redis_command_argv(r->service->redis, on_gather_record, g, 2,
                               (const char *[]){ "HGETALL", jk }, NULL) < 0) {
                gather_free(g);
                return -ENOMEM;
        }
        r->gathering++;
        return 1;
}

static size_t queue_of_stream(Results *r, const char *key) {
        for (size_t i = 0; i < r->service->queues->n_queues; i++)
                if (streq(r->service->keys[i]->done, key))
                        return i;
        return SIZE_MAX;
}

static void on_feed(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Results *r = userdata;
        size_t n = 0;

        r->reading = false;
        if (error < 0)
                return; /* reconnect restarts reading with the backlog */
        r->gathering++; /* hold: the read loop goes on only when every entry is written */
        for (size_t s = 0; reply && reply->type == REDIS_REPLY_ARRAY && s < reply->elements; s++) {
                const redisReply *stream = reply->element[s];
                size_t qi = queue_of_stream(r, redis_reply_string(redis_reply_element(stream, 0), NULL) ?: "");
                const redisReply *entries = redis_reply_element(stream, 1);
                for (size_t e = 0; qi != SIZE_MAX && entries && e < entries->elements; e++)
                        n += gather_entry(r, qi, entries->element[e]) > 0;
        }
        if (r->backlog && n == 0)
                r->backlog = false; /* our pending entries are all done: now new ones */
        gather_done(r);
}

static void results_read(Results *r) {
        size_t nq = r->service->queues->n_queues, k = 0;
        _cleanup_free_ const char **argv = NULL;

        if (r->reading || r->gathering > 0 || nq == 0 || !redis_conn_is_up(r->feed) ||
            !redis_conn_is_up(r->service->redis))
                return;
        argv = calloc(9 + 2 * nq, sizeof(char *));
        if (!argv)
                return (void) log_oom();
        argv[k++] = "XREADGROUP";
        argv[k++] = "GROUP";
        argv[k++] = "gatherer";
        argv[k++] = r->consumer;
        argv[k++] = "COUNT";
        argv[k++] = GATHER_COUNT;
        if (!r->backlog) {
                argv[k++] = "BLOCK";
                argv[k++] = "0";
        }
        argv[k++] = "STREAMS";
        for (size_t i = 0; i < nq; i++)
                argv[k++] = r->service->keys[i]->done;
        for (size_t i = 0; i < nq; i++)
                argv[k++] = r->backlog ? "0" : ">";
        if (redis_command_argv(r->feed, on_feed, r, (int) k, argv, NULL) >= 0)
                r->reading = true;
}

static void on_feed_state(RedisConn *c, bool up, int error, void *userdata) {
        Results *r = userdata;

        if (!up) {
                r->reading = false;
                return;
        }
        /* The groups exist before the first read (same connection, so in order). */
        for (size_t i = 0; i < r->service->queues->n_queues; i++)
                (void) redis_command_argv(c, NULL, NULL, 6,
                                          (const char *[]){ "XGROUP", "CREATE", r->service->keys[i]->done,
                                                            "gatherer", "0", "MKSTREAM" }, NULL);
        r->backlog = true;
        results_read(r);
}

static void on_service_state(Service *s, bool up, void *userdata) {
        Results *r = userdata;

        if (!up)
                return;
        r->backlog = true; /* entries whose gathering failed with the connection are pending */
        results_read(r);
}

/* --- waiters (long polls) -------------------------------------------------------------------- */

static void waiter_free(Waiter *w) {
        Results *r = w->results;

        if (w->prev)
                w->prev->next = w->next;
        else
                r->waiters = w->next;
        if (w->next)
                w->next->prev = w->prev;
        sd_event_source_disable_unref(w->timer);
        free(w->id);
        free(w);
}

/* Time left before the waiter's own timeout. */
static uint64_t waiter_left(Waiter *w) {
        uint64_t when = 0, now = 0;

        if (sd_event_source_get_time(w->timer, &when) < 0 ||
            sd_event_now(w->results->service->event, CLOCK_MONOTONIC, &now) < 0 || when <= now)
                return 0;
        return when - now;
}

/* Hands the waiter's request to a fresh query and forgets the waiter. Woken by a completion, the
 * query waits again for the time left if the job or batch is still not finished (a batch is
 * woken by each of its jobs); at the timeout it answers with the current status. */
static void waiter_answer(Waiter *w, bool woken) {
        Query *q = query_new(w->results, w->req, w->id, w->batch ? "batch" : woken ? "wait" : "status");
        int k;

        if (!q) {
                http_reply_error(w->req, 500, "internal", "out of memory");
                return waiter_free(w);
        }
        q->queue = w->queue;
        q->wait_usec = woken ? waiter_left(w) : 0;
        http_request_keep(w->req, on_query_abort, q);
        k = w->batch ? query_batch(q) : query_status(q);
        if (k < 0) {
                service_reply_unavailable(w->req);
                query_free(q);
        }
        waiter_free(w);
}

static void waiters_wake(Results *r, const char *id, bool batch) {
        for (Waiter *w = r->waiters, *next; w; w = next) {
                next = w->next;
                if (w->batch == batch && streq(w->id, id))
                        waiter_answer(w, true);
        }
}

static int on_waiter_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        waiter_answer(userdata, false);
        return 0;
}

static void on_waiter_abort(HttpRequest *req, void *userdata) {
        waiter_free(userdata);
}

static int waiter_add(Results *r, HttpRequest *req, const char *id, bool batch, size_t qi,
                      uint64_t usec) {
        Waiter *w = calloc(1, sizeof(Waiter));
        int k;

        if (!w || !(w->id = strdup(id))) {
                free(w);
                return -ENOMEM;
        }
        *w = (Waiter){ .results = r, .req = req, .id = w->id, .batch = batch, .queue = qi,
                       .next = r->waiters };
        k = sd_event_add_time_relative(r->service->event, &w->timer, CLOCK_MONOTONIC, usec,
                                       USEC_PER_MSEC, on_waiter_timeout, w);
        if (k < 0) {
                free(w->id);
                free(w);
                return k;
        }
        if (r->waiters)
                r->waiters->prev = w;
        r->waiters = w;
        http_request_keep(req, on_waiter_abort, w);
        return 0;
}

/* --- job status, output, wait ---------------------------------------------------------------- */

static bool status_is_final(const json_t *status) {
        const char *st = json_string_value(json_object_get(status, "state"));
        return st && job_state_is_final(job_state_from_string(st));
}

/* A job no longer in Redis (retention expired) may still be on disk. */
static json_t *status_from_disk(Results *r, size_t qi, const char *id) {
        _cleanup_free_ char *p = result_path(r, qi, id, "result.json");
        return p ? json_load_file(p, 0, NULL) : NULL;
}

/* Replies with a job's or batch's status, or, when the query waits and it is not finished,
 * hands the request to a waiter. Consumes status. */
static void query_reply_or_wait(Query *q, json_t *status, bool finished, bool batch) {
        HttpRequest *req;

        if (q->wait_usec == 0 || finished) {
                http_reply_json(q->req, 200, status);
                return;
        }
        req = TAKE_PTR(q->req);
        json_decref(status);
        if (waiter_add(q->results, req, q->id, batch, q->queue, q->wait_usec) < 0)
                http_reply_error(req, 500, "internal", "out of memory");
}

/* HGETALL of one key for a query; the reply goes to cb. */
static int query_hgetall(Query *q, char *(*keyf)(const QueueKeys *, const char *), RedisCallback cb) {
        _cleanup_free_ char *key = keyf(q->results->service->keys[q->queue], q->id);

        if (!key)
                return -ENOMEM;
        return redis_command_argv(q->results->service->redis, cb, q, 2,
                                  (const char *[]){ "HGETALL", key }, NULL);
}

static void on_status_record(RedisConn *c, const redisReply *rec, int error, void *userdata) {
        Query *q = userdata;
        Results *r = q->results;
        json_t *status;

        if (!q->req)
                goto out;
        if (error < 0) {
                service_reply_unavailable(q->req);
                goto out;
        }
        status = record_to_status(rec, queue_name(r, q->queue), q->id);
        if (!status)
                status = status_from_disk(r, q->queue, q->id);
        if (!status) {
                http_reply_error(q->req, 404, "not-found", "no job '%s'", q->id);
                goto out;
        }
        /* Not finished: the gatherer wakes the waiter when it is (or its timeout does). */
        if (!streq(q->what, "wait"))
                q->wait_usec = 0;
        query_reply_or_wait(q, status, status_is_final(status), false);
out:
        query_free(q);
}

static int query_status(Query *q) {
        return query_hgetall(q, queue_key_job, on_status_record);
}

static void reply_output(Query *q, const redisReply *reply) {
        Results *r = q->results;
        _cleanup_free_ char *path = result_path(r, q->queue, q->id, q->what), *data = NULL;
        size_t len = 0;
        const char *v = redis_reply_string(reply, &len);
        _cleanup_fclose_ FILE *f = NULL;

        if (v) /* not gathered yet: still in Redis */
                return (void) http_reply_bytes(q->req, 200, "application/octet-stream", v, len);
        f = path ? fopen(path, "re") : NULL;
        if (!f)
                return (void) http_reply_error(q->req, 404, "not-found",
                                               "job '%s' has no %s (yet)", q->id, q->what);
        data = malloc(r->service->queues->queues[q->queue]->max_output + 1);
        if (!data)
                return (void) http_reply_error(q->req, 500, "internal", "out of memory");
        len = fread(data, 1, r->service->queues->queues[q->queue]->max_output, f);
        http_reply_bytes(q->req, 200, "application/octet-stream", data, len);
}

static void on_output_field(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Query *q = userdata;

        if (q->req)
                reply_output(q, error < 0 ? NULL : reply);
        query_free(q);
}

/* A job no longer in Redis (retention expired) may still be on disk: looked for with the same
 * restrictions as in Redis, only in the queue the request names (?queue=) and only in the
 * queues the client may read. 0 and *ret_index, -ENOENT or -ENOTUNIQ. */
static int locate_on_disk(Results *r, HttpRequest *req, const char *id, size_t *ret_index) {
        const char *hint = http_request_query(req, "queue");
        size_t found = 0, index = 0;

        for (size_t i = 0; i < r->service->queues->n_queues; i++) {
                _cleanup_free_ char *p = NULL;

                if ((hint && !streq(hint, queue_name(r, i))) ||
                    !service_request_sees(r->service, req, i, false))
                        continue;
                p = result_path(r, i, id, NULL);
                if (p && access(p, F_OK) == 0) {
                        found++;
                        index = i;
                }
        }
        if (found == 0)
                return -ENOENT;
        if (found > 1)
                return -ENOTUNIQ;
        *ret_index = index;
        return 0;
}

static void on_job_located(Service *svc, int k, size_t qi, void *userdata) {
        Query *q = userdata;
        _cleanup_free_ char *jk = NULL;

        if (!q->req)
                return query_free(q);
        if (k == -ENOENT)
                k = locate_on_disk(q->results, q->req, q->id, &qi);
        if (k < 0) {
                service_reply_locate_error(q->req, k, q->id);
                return query_free(q);
        }
        q->queue = qi; /* one the client may read: nothing else is searched */
        jk = queue_key_job(svc->keys[qi], q->id);
        if (streq(q->what, "stdout") || streq(q->what, "stderr"))
                k = !jk ? -ENOMEM : redis_command_argv(svc->redis, on_output_field, q, 3,
                                  (const char *[]){ "HGET", jk, streq(q->what, "stdout") ? "out" : "err" }, NULL);
        else
                k = query_status(q);
        if (k < 0) {
                service_reply_unavailable(q->req);
                query_free(q);
        }
}

static int parse_wait(HttpRequest *req, uint64_t *ret) {
        const char *t = http_request_query(req, "timeout");
        uint64_t sec = WAIT_DEFAULT_SEC;

        if (t && (parse_uint64(t, &sec) < 0 || sec > WAIT_MAX_SEC)) {
                http_reply_error(req, 400, "bad-request", "timeout must be 0..%d seconds", WAIT_MAX_SEC);
                return -EINVAL;
        }
        *ret = sec * USEC_PER_SEC;
        return 0;
}

static int job_route(HttpRequest *req, Results *r, const char *what) {
        uint64_t wait = 0;
        Query *q;
        int k;

        if (streq(what, "wait") && parse_wait(req, &wait) < 0)
                return 0;
        /* Ids become path components below: only valid ones go any further. */
        if (!job_id_is_valid(http_request_param(req, "id")))
                return http_reply_error(req, 404, "not-found", "no job '%s'",
                                        http_request_param(req, "id")), 0;
        if (service_require_redis(r->service, req) < 0)
                return 0;
        q = query_new(r, req, http_request_param(req, "id"), what);
        if (!q)
                return -ENOMEM;
        q->wait_usec = wait;
        /* A job of a queue the client may not read is, to it, a job that does not exist. */
        k = service_locate(r->service, req, false, queue_key_job, q->id,
                           http_request_query(req, "queue"), on_job_located, q);
        if (k < 0 && k != -ENOENT) {
                query_free(q);
                return k;
        }
        http_request_keep(req, on_query_abort, q);
        if (k == -ENOENT) /* no queue to ask in Redis: the disk, through the same path */
                on_job_located(r->service, -ENOENT, 0, q);
        return 0;
}

static int route_status(HttpRequest *req, void *userdata) {
        return job_route(req, userdata, "status");
}

static int route_stdout(HttpRequest *req, void *userdata) {
        return job_route(req, userdata, "stdout");
}

static int route_stderr(HttpRequest *req, void *userdata) {
        return job_route(req, userdata, "stderr");
}

static int route_wait(HttpRequest *req, void *userdata) {
        return job_route(req, userdata, "wait");
}

/* --- batches ----------------------------------------------------------------------------------- */

static json_t *batch_status(Results *r, const redisReply *rec, size_t qi, const char *id) {
        long long total = 0, done = 0, failed = 0, cancelled = 0;
        const char *v;

        if (!rec || rec->type != REDIS_REPLY_ARRAY || rec->elements == 0)
                return NULL;
        if ((v = record_get(rec, "total", NULL)))
                total = atoll(v);
        if ((v = record_get(rec, "done", NULL)))
                done = atoll(v);
        if ((v = record_get(rec, "failed", NULL)))
                failed = atoll(v);
        if ((v = record_get(rec, "cancelled", NULL)))
                cancelled = atoll(v);
        return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "batch", id, "queue",
                         queue_name(r, qi), "total", (json_int_t) total, "done", (json_int_t) done,
                         "failed", (json_int_t) failed, "cancelled", (json_int_t) cancelled,
                         "finished", done + failed + cancelled >= total);
}

static void on_batch_record(RedisConn *c, const redisReply *rec, int error, void *userdata) {
        Query *q = userdata;
        json_t *status;

        if (!q->req)
                goto out;
        if (error < 0) {
                service_reply_unavailable(q->req);
                goto out;
        }
        status = batch_status(q->results, rec, q->queue, q->id);
        if (!status) {
                http_reply_error(q->req, 404, "not-found", "no batch '%s'", q->id);
                goto out;
        }
        query_reply_or_wait(q, status, json_is_true(json_object_get(status, "finished")), true);
out:
        query_free(q);
}

static int query_batch(Query *q) {
        return query_hgetall(q, queue_key_batch, on_batch_record);
}

static void on_batch_located(Service *svc, int k, size_t qi, void *userdata) {
        Query *q = userdata;

        if (!q->req)
                return query_free(q);
        if (k < 0) {
                if (k == -ENOENT)
                        http_reply_error(q->req, 404, "not-found", "no batch '%s'", q->id);
                else
                        service_reply_locate_error(q->req, k, q->id);
                return query_free(q);
        }
        q->queue = qi; /* one the client may read: nothing else is searched */
        if (query_batch(q) < 0) {
                service_reply_unavailable(q->req);
                query_free(q);
        }
}

static int batch_route(HttpRequest *req, Results *r, bool wait) {
        const char *id = http_request_param(req, "batch");
        uint64_t usec = 0;
        Query *q;
        int k;

        if (wait && parse_wait(req, &usec) < 0)
                return 0;
        if (service_require_redis(r->service, req) < 0)
                return 0;
        q = query_new(r, req, id, "batch");
        if (!q)
                return -ENOMEM;
        q->wait_usec = usec;
        k = service_locate(r->service, req, false, queue_key_batch, id,
                           http_request_query(req, "queue"), on_batch_located, q);
        if (k < 0) {
                query_free(q);
                if (k == -ENOENT)
                        return http_reply_error(req, 404, "not-found", "no batch '%s'", id), 0;
                return k;
        }
        http_request_keep(req, on_query_abort, q);
        return 0;
}

static int route_batch(HttpRequest *req, void *userdata) {
        return batch_route(req, userdata, false);
}

static int route_batch_wait(HttpRequest *req, void *userdata) {
        return batch_route(req, userdata, true);
}

/* --- queue statistics and dead letters --------------------------------------------------------- */

/* GET /v1/queues: one MULTI/EXEC per queue (a consistent snapshot of each), the reply when the
 * last one answered. */
typedef struct QueuesQuery {
        Results *results;
        HttpRequest *req;
        json_t *queues;
        size_t pending;
        int error;
} QueuesQuery;

typedef struct QueueItem {
        QueuesQuery *qq;
        size_t queue;
} QueueItem;

static void on_queues_abort(HttpRequest *req, void *userdata) {
        QueuesQuery *qq = userdata;
        qq->req = NULL;
}

static json_t *queue_stats_json(Results *r, size_t qi, const redisReply *x) {
        static const char *const names[] = { "ready", "delayed", "running", "dead", "workers" };
        const redisReply *stats = redis_reply_element(x, 3);
        static const char *const counters[] = { "done", "failed", "cancelled" };
        json_t *o = json_pack("{s:s}", "name", queue_name(r, qi));
        long long v;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                v = 0;
                (void) redis_reply_integer(redis_reply_element(x, i < 3 ? i : i + 1), &v);
                json_object_set_new(o, names[i], json_integer(v));
        }
        for (size_t i = 0; i < ELEMENTSOF(counters); i++) {
                v = 0;
                (void) redis_reply_integer(redis_reply_element(stats, i), &v);
                json_object_set_new(o, counters[i], json_integer(v));
        }
        return o;
}

static void on_queue_exec(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        QueueItem *it = userdata;
        QueuesQuery *qq = it->qq;

        if (error < 0 || !reply || reply->type != REDIS_REPLY_ARRAY)
                qq->error = error < 0 ? error : -EPROTO;
        else
                json_array_append_new(qq->queues, queue_stats_json(qq->results, it->queue, reply));
        free(it);
        if (--qq->pending > 0)
                return;
        if (qq->req && qq->error < 0)
                service_reply_unavailable(qq->req);
        else if (qq->req)
                http_reply_json(qq->req, 200, json_pack("{s:O}", "queues", qq->queues));
        json_decref(qq->queues);
        free(qq);
}

static int send_queue_stats(Results *r, QueuesQuery *qq, size_t qi) {
        const QueueKeys *k = r->service->keys[qi];
        RedisConn *c = r->service->redis;
        QueueItem *it = malloc(sizeof(QueueItem));
        char now[32];
        int e;

        if (!it)
                return -ENOMEM;
        *it = (QueueItem){ qq, qi };
        /* Live workers: liveness expiry still ahead (ms; this host's clock is close enough). */
        snprintf(now, sizeof(now), "%lld", (long long) time(NULL) * 1000);
        e = redis_command(c, NULL, NULL, "MULTI");
        if (e >= 0) e = redis_command(c, NULL, NULL, "LLEN %s", k->ready);
        if (e >= 0) e = redis_command(c, NULL, NULL, "ZCARD %s", k->delayed);
        if (e >= 0) e = redis_command(c, NULL, NULL, "ZCARD %s", k->leases);
        if (e >= 0) e = redis_command(c, NULL, NULL, "HMGET %s done failed cancelled", k->stats);
        if (e >= 0) e = redis_command(c, NULL, NULL, "ZCARD %s", k->dead);
        if (e >= 0) e = redis_command(c, NULL, NULL, "ZCOUNT %s %s +inf", k->workers, now);
        if (e >= 0) e = redis_command(c, on_queue_exec, it, "EXEC");
        if (e < 0)
                free(it);
        return e;
}

static int route_queues(HttpRequest *req, void *userdata) {
        Results *r = userdata;
        QueuesQuery *qq;

        if (service_require_redis(r->service, req) < 0)
                return 0;
        qq = calloc(1, sizeof(QueuesQuery));
        if (!qq || !(qq->queues = json_array())) {
                free(qq);
                return -ENOMEM;
        }
        qq->results = r;
        qq->req = req;
        for (size_t i = 0; i < r->service->queues->n_queues; i++) {
                /* Only the queues this client may read. */
                if (service_request_allowed(r->service, req, r->service->queues->queues[i]->read_groups) <= 0)
                        continue;
                if (send_queue_stats(r, qq, i) >= 0)
                        qq->pending++;
        }
        if (qq->pending == 0) {
                http_reply_json(req, 200, json_pack("{s:O}", "queues", qq->queues));
                json_decref(qq->queues);
                free(qq);
                return 0;
        }
        http_request_keep(req, on_queues_abort, qq);
        return 0;
}

/* GET /v1/queues/{queue}/dead: the newest 1000 dead letters with their last outcome. */
static void on_dead_details(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Query *q = userdata;
        json_t *jobs = json_array();

        for (size_t i = 0; q->req && error >= 0 && reply && i < reply->elements; i++) {
                const redisReply *one = reply->element[i];
                const char *id = json_string_value(json_array_get(q->acc, i));
                const char *outcome = redis_reply_string(redis_reply_element(one, 0), NULL);
                long long attempt = 0, finished = 0;
                (void) redis_reply_integer(redis_reply_element(one, 1), &attempt);
                (void) redis_reply_integer(redis_reply_element(one, 2), &finished);
                if (!outcome) /* expired meanwhile */
                        continue;
                json_array_append_new(jobs, json_pack("{s:s, s:s, s:I, s:f}", "id", id, "outcome",
                                                      outcome, "attempt", (json_int_t) attempt,
                                                      "finished", (double) finished / 1000.0));
        }
        if (q->req && error < 0)
                service_reply_unavailable(q->req);
        else if (q->req)
                http_reply_json(q->req, 200, json_pack("{s:s, s:o}", "queue",
                                                       queue_name(q->results, q->queue), "jobs", jobs));
        if (!q->req || error < 0)
                json_decref(jobs);
        query_free(q);
}

static void on_dead_ids(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Query *q = userdata;
        const QueueKeys *k = q->results->service->keys[q->queue];
        int e = 0;

        if (!q->req || error < 0 || !reply || reply->type != REDIS_REPLY_ARRAY) {
                if (q->req)
                        service_reply_unavailable(q->req);
                return query_free(q);
        }
        q->acc = json_array();
        e = redis_command(c, NULL, NULL, "MULTI");
        for (size_t i = 0; e >= 0 && i < reply->elements; i++) {
                _cleanup_free_ char *jk = queue_key_job(k, reply->element[i]->str);
                json_array_append_new(q->acc, json_string(reply->element[i]->str));
                e = jk ? redis_command(c, NULL, NULL, "HMGET %s outcome attempt finished", jk) : -ENOMEM;
        }
        if (e >= 0)
                e = redis_command(c, on_dead_details, q, "EXEC");
        if (e < 0) {
                service_reply_unavailable(q->req);
                query_free(q);
        }
}

static int route_dead(HttpRequest *req, void *userdata) {
        Results *r = userdata;
        Query *q;
        size_t qi;

        if (service_request_queue(r->service, req, http_request_param(req, "queue"), false, &qi) < 0 ||
            service_require_redis(r->service, req) < 0)
                return 0;
        q = query_new(r, req, NULL, "dead");
        if (!q)
                return -ENOMEM;
        q->queue = qi;
        if (redis_command(r->service->redis, on_dead_ids, q, "ZREVRANGE %s 0 999",
                          r->service->keys[qi]->dead) < 0) {
                query_free(q);
                return -ENOTCONN;
        }
        http_request_keep(req, on_query_abort, q);
        return 0;
}

static const HttpRoute routes[] = {
        { "GET", "/v1/jobs/{id}", route_status },
        { "GET", "/v1/jobs/{id}/stdout", route_stdout },
        { "GET", "/v1/jobs/{id}/stderr", route_stderr },
        { "GET", "/v1/jobs/{id}/wait", route_wait },
        { "GET", "/v1/batches/{batch}", route_batch },
        { "GET", "/v1/batches/{batch}/wait", route_batch_wait },
        { "GET", "/v1/queues", route_queues },
        { "GET", "/v1/queues/{queue}/dead", route_dead },
};

/* --- life cycle -------------------------------------------------------------------------------- */

static int on_sigterm(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Results *r = userdata;
        sd_notify(false, "STOPPING=1");
        log_info("Stopping after gathering %" PRIu64 " result(s).", r->gathered);
        return sd_event_exit(r->service->event, 0);
}

int results_new(sd_event *e, TasadConfig *config, Results **ret) {
        _cleanup_(results_freep) Results *r = calloc(1, sizeof(Results));
        char host[256] = "localhost";
        int k;

        if (!r) {
                tasad_config_free(config);
                return -ENOMEM;
        }
        k = service_new(e, "tasad-results", config, &r->service);
        if (k < 0)
                return k;
        r->service->state_hook = on_service_state;
        r->service->state_userdata = r;
        r->queue_dirs = calloc(MAX(r->service->queues->n_queues, (size_t) 1), sizeof(int));
        if (!r->queue_dirs)
                return -ENOMEM;
        for (size_t i = 0; i < r->service->queues->n_queues; i++)
                r->queue_dirs[i] = -EBADF;
        /* Stable across restarts, so entries pending from a previous run are ours again. */
        (void) gethostname(host, sizeof(host) - 1);
        r->consumer = strdup(host);
        if (!r->consumer)
                return -ENOMEM;
        k = redis_conn_new(e, &r->service->config->redis, "feed", &r->feed);
        if (k < 0)
                return k;
        redis_conn_set_timeout(r->feed, 0);
        redis_conn_set_state_callback(r->feed, on_feed_state, r);
        k = sd_event_add_signal(e, NULL, SIGTERM, on_sigterm, r);
        if (k >= 0)
                k = sd_event_add_signal(e, NULL, SIGINT, on_sigterm, r);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

int results_start(Results *r) {
        int k = service_start(r->service, "results", r->service->config->results_socket, routes,
                              ELEMENTSOF(routes), r);
        if (k < 0)
                return k;
        return redis_conn_start(r->feed);
}

Results *results_free(Results *r) {
        if (!r)
                return NULL;
        while (r->waiters) {
                http_reply_error(r->waiters->req, 503, "unavailable", "tasad-results is stopping");
                waiter_free(r->waiters);
        }
        r->feed = redis_conn_free(r->feed);
        sd_event_source_disable_unref(r->retry_timer);
        for (size_t i = 0; r->queue_dirs && i < r->service->queues->n_queues; i++)
                safe_close(r->queue_dirs[i]);
        free(r->queue_dirs);
        for (size_t i = 0; i < r->n_acks; i++)
                free(r->acks[i].entry);
        free(r->acks);
        service_free(r->service);
        free(r->consumer);
        free(r);
        return NULL;
}
