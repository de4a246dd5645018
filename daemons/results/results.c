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
#include "gather.h"
#include "http.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "record.h"
#include "redis.h"
#include "service.h"
#include "trim.h"

#define WAIT_DEFAULT_SEC 30
#define WAIT_MAX_SEC 3600

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
        Gatherer *gatherer;
        Trimmer *trimmer;
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
        json_t *held;            /* a staged job's status while its batch's state is asked */
} Query;

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
        json_decref(q->held);
        free(q->id);
        free(q->what);
        free(q);
}

static void on_query_abort(HttpRequest *req, void *userdata) {
        Query *q = userdata;
        q->req = NULL;
}

/* --- the results directory and the gatherer --------------------------------------------------- */

static char *result_path(Results *r, size_t qi, const char *id, const char *file) {
        char *p;
        if (asprintf(&p, "%s/%s/%s%s%s", r->service->config->results_dir, queue_name(r, qi), id,
                     file ? "/" : "", file ? file : "") < 0)
                return NULL;
        return p;
}

/* A job's entry was handled: whoever waits for it (or its batch) gets the answer now. */
static void on_gathered(void *userdata, size_t qi, const char *id, const char *batch) {
        Results *r = userdata;

        waiters_wake(r, id, false);
        if (batch)
                waiters_wake(r, batch, true);
}

static void on_service_state(Service *s, bool up, void *userdata) {
        Results *r = userdata;

        if (up)
                gatherer_redis_up(r->gatherer);
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

/* Answers the status (which it takes), or waits when the query waits and it is not final. */
static void status_answer(Query *q, json_t *status) {
        /* Not finished: the gatherer wakes the waiter when it is (or its timeout does). */
        if (!streq(q->what, "wait"))
                q->wait_usec = 0;
        query_reply_or_wait(q, status, status_is_final(status), false);
}

/* A job of a batch stored in steps (docs/protocol.md): unknown until its batch is committed,
 * queued from then on until it is delivered to ready. */
static void on_staged_batch(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Query *q = userdata;
        json_t *status = TAKE_PTR(q->held);
        const char *state = redis_reply_string(reply, NULL);

        if (!q->req)
                json_decref(status);
        else if (error < 0) {
                json_decref(status);
                service_reply_unavailable(q->req);
        } else if (state && streq(state, "committed")) {
                (void) json_object_set_new(status, "state", json_string("queued"));
                status_answer(q, status);
        } else {
                json_decref(status);
                http_reply_error(q->req, 404, "not-found", "no job '%s'", q->id);
        }
        query_free(q);
}

static int ask_batch_state(Query *q, json_t *status) {
        const char *batch = json_string_value(json_object_get(status, "batch"));
        _cleanup_free_ char *bk = batch ? queue_key_batch(q->results->service->keys[q->queue],
                                                          batch) : NULL;
        int r;

        if (!bk)
                return -ENOMEM;
        q->held = status;
        r = redis_command_argv(q->results->service->redis, on_staged_batch, q, 3,
                               (const char *[]){ "HGET", bk, "state" }, NULL);
        if (r < 0)
                q->held = NULL;
        return r;
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
        if (status && streq(json_string_value(json_object_get(status, "state")) ?: "", "staged")) {
                if (ask_batch_state(q, status) >= 0)
                        return; /* q goes on */
                json_decref(status);
                service_reply_unavailable(q->req);
                goto out;
        }
        if (!status)
                status = status_from_disk(r, q->queue, q->id);
        if (!status) {
                http_reply_error(q->req, 404, "not-found", "no job '%s'", q->id);
                goto out;
        }
        status_answer(q, status);
out:
        query_free(q);
}

static int query_status(Query *q) {
        return query_hgetall(q, queue_key_job, on_status_record);
}

/* Whether a job cancelled before any attempt ran: from the record's state and attempt (the
 * HMGET of reply_output), or from its result.json once the record expired. */
static bool never_ran(Query *q, const redisReply *reply) {
        const char *state = redis_reply_string(redis_reply_element(reply, 1), NULL);
        const char *attempt = redis_reply_string(redis_reply_element(reply, 2), NULL);
        _cleanup_(json_decrefp) json_t *status = NULL;

        if (state)
                return streq(state, "cancelled") && (!attempt || streq(attempt, "0"));
        status = status_from_disk(q->results, q->queue, q->id);
        return status && streq(json_string_value(json_object_get(status, "state")) ?: "",
                               "cancelled") &&
               json_integer_value(json_object_get(status, "attempt")) == 0;
}

/* reply: HMGET out|err state attempt of the record. */
static void reply_output(Query *q, const redisReply *reply) {
        Results *r = q->results;
        _cleanup_free_ char *path = result_path(r, q->queue, q->id, q->what), *data = NULL;
        size_t len = 0;
        const char *v = redis_reply_string(redis_reply_element(reply, 0), &len);
        _cleanup_fclose_ FILE *f = NULL;

        if (v) /* not gathered yet: still in Redis */
                return (void) http_reply_bytes(q->req, 200, "application/octet-stream", v, len);
        if (never_ran(q, reply))
                return (void) http_reply_error(q->req, 404, "not-found", "job '%s' was cancelled "
                                               "before any attempt ran: it has no %s", q->id,
                                               q->what);
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
                k = !jk ? -ENOMEM : redis_command_argv(svc->redis, on_output_field, q, 5,
                                  (const char *[]){ "HMGET", jk, streq(q->what, "stdout") ? "out" : "err",
                                                    "state", "attempt" }, NULL);
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
        /* A batch stored in steps exists once committed (docs/protocol.md). */
        if ((v = record_get(rec, "state", NULL)) && !streq(v, "committed"))
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
        static const char *const names[] = { "ready", "delayed", "running", "dead", "workers",
                                             "gather_failed" };
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
        if (e >= 0) e = redis_command(c, NULL, NULL, "ZCARD %s", k->gather_failed);
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

/* No route takes a body: one of at most HTTP_NO_BODY_MAX bytes is ignored, a larger one 413. */
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
        log_info("Stopping after gathering %" PRIu64 " result(s).", gatherer_count(r->gatherer));
        return sd_event_exit(r->service->event, 0);
}

int results_new(sd_event *e, TasadConfig *config, Results **ret) {
        _cleanup_(results_freep) Results *r = calloc(1, sizeof(Results));
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
        k = gatherer_new(r->service, on_gathered, r, &r->gatherer);
        if (k >= 0)
                k = trimmer_new(r->service, &r->trimmer);
        if (k >= 0)
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
        return gatherer_start(r->gatherer);
}

Results *results_free(Results *r) {
        if (!r)
                return NULL;
        while (r->waiters) {
                http_reply_error(r->waiters->req, 503, "unavailable", "tasad-results is stopping");
                waiter_free(r->waiters);
        }
        /* The gatherer first: the replies it still waits for come when the service's
         * connection is freed, and find their entries orphaned. */
        r->gatherer = gatherer_free(r->gatherer);
        r->trimmer = trimmer_free(r->trimmer);
        service_free(r->service);
        free(r);
        return NULL;
}
