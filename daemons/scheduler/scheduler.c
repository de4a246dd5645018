#include "scheduler.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "http.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "service.h"
#include "submission.h"

#define REAP_INTERVAL_USEC USEC_PER_SEC
#define SCRIPT_LIMIT "1000"
#define BATCH_CHUNK 10000        /* jobs per submit_batch call: bounds Redis' memory per call */
/* Batches of more jobs than BATCH_STEP are stored in steps (docs/protocol.md): each step stages
 * at most BATCH_STEP jobs or BATCH_STEP_BYTES of their arguments and payloads (at least one
 * job), so no step holds Redis for more than milliseconds. */
#define BATCH_STEP 1000
#define BATCH_STEP_BYTES (4U << 20)
#define BATCH_STEP_STR "1000"
/* A client's batch id leaves room for ".<index>" in its jobs' derived ids. */
#define BATCH_ID_MAX 48

struct Scheduler {
        Service *service;
        sd_event_source *timer;
        uint64_t *next_promote;    /* per queue, CLOCK_MONOTONIC */
        uint64_t next_reap;
        /* per queue, CLOCK_MONOTONIC: no reaping before, see on_redis_state() */
        uint64_t *reap_after;
        bool *delivering;          /* per queue: a batch_deliver call in flight */
        bool *abandoning;          /* per queue: a batch_abandon call in flight */
        uint64_t accepted;
};

typedef struct TimerCall {
        Scheduler *scheduler;
        size_t queue;
} TimerCall;

/* A request waiting for Redis. */
typedef struct Pending {
        Scheduler *scheduler;
        HttpRequest *req;          /* NULL once the client went away */
        size_t queue;
        char *id;                  /* single submission / cancel / requeue */
        char *batch;
        json_t *ids;               /* batch: the ids, in order */
        JobSpec **specs;           /* batch of generated ids: kept until Redis' time is known;
                                    * a batch in steps: the jobs not yet staged */
        size_t n_specs;
        bool plain;                /* stored with plain commands: every job was created */
        size_t staged;             /* a batch in steps: specs[0..staged) were sent */
        bool client_batch;         /* the client named the batch (PUT): it may exist */
} Pending;

static Pending *pending_new(Scheduler *s, HttpRequest *req, size_t queue) {
        Pending *p = calloc(1, sizeof(Pending));
        if (p)
                *p = (Pending){ .scheduler = s, .req = req, .queue = queue };
        return p;
}

static void pending_free(Pending *p) {
        if (!p)
                return;
        free(p->id);
        free(p->batch);
        json_decref(p->ids);
        for (size_t i = 0; i < p->n_specs; i++)
                job_spec_free(p->specs[i]);
        free(p->specs);
        free(p);
}

static void on_abort(HttpRequest *req, void *userdata) {
        Pending *p = userdata;
        p->req = NULL;   /* the Redis reply still comes; it is then dropped */
}

static const QueueConfig *queue_of(Scheduler *s, size_t i) {
        return s->service->queues->queues[i];
}

static const char *queue_name(Scheduler *s, size_t i) {
        return queue_of(s, i)->name;
}

/* Replies 503 for a lost connection, 500 otherwise, to a request that waited for Redis. */
static void reply_redis_error(HttpRequest *req, int error, const redisReply *reply) {
        if (error == -EIO && reply && reply->str)
                http_reply_error(req, 500, "internal", "Redis refused: %s", reply->str);
        else
                http_reply_error(req, 503, "unavailable",
                                 "Redis connection lost (%s); the outcome is unknown, resubmit "
                                 "with the same id to be safe", strerror(-error));
}

/* --- request bodies: decoded by lib/submission.c in bounded steps -------------------------- */

/* A body being decoded for a route; the request is kept (its owner) until then. */
typedef struct Parse {
        Scheduler *scheduler;
        HttpRequest *req;
        size_t queue;
        bool batch;
        Submission *sub;
} Parse;

static void parse_free(Parse *p) {
        if (!p)
                return;
        submission_free(p->sub);
        free(p);
}

static void on_parse_abort(HttpRequest *req, void *userdata) {
        parse_free(userdata);
}

static void specs_free(JobSpec **specs, size_t n) {
        for (size_t i = 0; specs && i < n; i++)
                job_spec_free(specs[i]);
        free(specs);
}

/* The answer to a body that lib/submission.c refused. */
static void reply_refused(HttpRequest *req, int r, const char *message) {
        if (r == -EBADMSG)
                http_reply_error(req, 400, "bad-request", "%s", message);
        else if (r == -EINVAL)
                http_reply_error(req, 400, "invalid-argument", "%s", message);
        else if (r == -E2BIG)
                http_reply_error(req, 413, "too-large", "%s", message);
        else
                http_reply_error(req, 500, "internal", "decoding the body failed: %s", message);
}

static int store_job(Scheduler *s, HttpRequest *req, size_t qi, JobSpec *spec);
static int store_batch(Scheduler *s, HttpRequest *req, size_t qi, JobSpec **specs, size_t n);

static void on_parsed(Submission *sub, int r, const char *message, void *userdata) {
        Parse *p = userdata;
        Scheduler *s = p->scheduler;
        HttpRequest *req = p->req;
        bool batch = p->batch;
        size_t qi = p->queue, n = 0;
        JobSpec **specs = NULL;

        if (r >= 0)
                specs = submission_take_specs(sub, &n);
        parse_free(p);
        if (r < 0)
                return reply_refused(req, r, message);
        http_request_drop_body(req); /* the jobs are decoded: the body's room is free */
        if (service_require_redis(s->service, req) < 0)
                return specs_free(specs, n);
        /* store_*() take the request over (or reply) and free the specs. */
        if (batch)
                r = store_batch(s, req, qi, specs, n);
        else {
                r = store_job(s, req, qi, specs[0]);
                free(specs);
        }
        if (r < 0)
                http_reply_error(req, 500, "internal", "%s", strerror(-r));
}

/* Decodes the request's body as a job (or a batch) of queue qi, then stores it. */
static int parse_start(Scheduler *s, HttpRequest *req, size_t qi, bool batch) {
        Parse *p = calloc(1, sizeof(Parse));
        size_t len;
        const uint8_t *body = http_request_body(req, &len);
        int r;

        if (!p)
                return -ENOMEM;
        *p = (Parse) { .scheduler = s, .req = req, .queue = qi, .batch = batch };
        r = submission_new(s->service->event, body, len, queue_of(s, qi), batch, on_parsed, p,
                           &p->sub);
        if (r < 0) {
                parse_free(p);
                return r;
        }
        http_request_keep(req, on_parse_abort, p);
        return 0;
}

/* --- submission ----------------------------------------------------------------------------- */

static int send_submit(Scheduler *s, size_t qi, const JobSpec *spec, const char *id,
                       const char *batch, RedisCallback cb, void *userdata) {
        const QueueKeys *k = s->service->keys[qi];
        _cleanup_free_ char *jk = queue_key_job(k, id), *bk = NULL, *args = NULL;
        char timeout[24] = "", retention[24];
        size_t args_len = 0;
        int r;

        if (!jk || (batch && !(bk = queue_key_batch(k, batch))))
                return -ENOMEM;
        r = job_args_encode(spec->args, spec->n_args, &args, &args_len);
        if (r < 0)
                return r;
        if (spec->timeout_usec > 0)
                snprintf(timeout, sizeof(timeout), "%" PRIu64, spec->timeout_usec);
        snprintf(retention, sizeof(retention), "%" PRIu64,
                 tasad_config_retention_sec(s->service->config));
        const char *argv[] = { jk, k->ready, bk ? bk : jk, id, args,
                               spec->payload ? (const char *) spec->payload : "", timeout,
                               batch ? batch : "", retention };
        size_t len[] = { strlen(jk), strlen(k->ready), strlen(bk ? bk : jk), strlen(id), args_len,
                         spec->payload_len, strlen(timeout), batch ? strlen(batch) : 0,
                         strlen(retention) };
        return redis_script(s->service->redis, SCRIPT_SUBMIT, cb, userdata, 3, ELEMENTSOF(argv),
                            argv, len);
}

static void on_submit_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        long long created = 0;
        const char *state = redis_reply_string(redis_reply_element(reply, 1), NULL);

        if (!p->req)
                goto out;
        if (error < 0 || redis_reply_integer(redis_reply_element(reply, 0), &created) < 0) {
                reply_redis_error(p->req, error < 0 ? error : -EPROTO, reply);
                goto out;
        }
        p->scheduler->accepted += created > 0;
        json_t *body = json_pack("{s:s, s:s, s:s}", "id", p->id, "queue",
                                 queue_name(p->scheduler, p->queue), "state", state ? state : "");
        if (!created)
                json_object_set_new(body, "existing", json_true());
        http_reply_json(p->req, created ? 201 : 200, body);
out:
        pending_free(p);
}

static int route_submit(HttpRequest *req, void *userdata) {
        Scheduler *s = userdata;
        size_t qi;

        if (service_request_queue(s->service, req, http_request_param(req, "queue"), true, &qi) < 0 ||
            service_require_redis(s->service, req) < 0)
                return 0;
        return parse_start(s, req, qi, false);
}

/* Stores one decoded job (spec is consumed); replies, or hands the request to the Redis
 * reply. */
static int store_job(Scheduler *s, HttpRequest *req, size_t qi, JobSpec *job) {
        _cleanup_(job_spec_freep) JobSpec *spec = job;
        char gen[21];
        Pending *p;
        int r;

        if (!spec->id && job_id_generate(gen) < 0)
                return -EIO;
        p = pending_new(s, req, qi);
        if (!p || !(p->id = strdup(spec->id ? spec->id : gen))) {
                pending_free(p);
                return -ENOMEM;
        }
        r = send_submit(s, qi, spec, p->id, NULL, on_submit_reply, p);
        if (r < 0) {
                pending_free(p);
                return r;
        }
        http_request_keep(req, on_abort, p);
        return 0;
}

/* A stored batch: 201, or 200 for a batch an earlier request committed (created 0). */
static void reply_batch_stored(Pending *p, unsigned status, long long created) {
        p->scheduler->accepted += (uint64_t) created;
        http_reply_json(p->req, status, json_pack("{s:s, s:s, s:I, s:I, s:O}", "batch", p->batch,
                                                  "queue", queue_name(p->scheduler, p->queue),
                                                  "count", (json_int_t) json_array_size(p->ids),
                                                  "created", (json_int_t) created, "ids", p->ids));
}

/* A batch whose storing failed: what the client should do (docs/api.md). */
static void reply_batch_error(Pending *p, int error, const redisReply *reply, bool unknown) {
        const char *q = queue_name(p->scheduler, p->queue);

        if (error == -EIO && reply && reply->str)
                http_reply_error(p->req, 500, "internal", "Redis refused: %s", reply->str);
        else
                http_reply_error(p->req, 503, "unavailable",
                                 "Redis connection lost (%s); %s: send it again with PUT "
                                 "/v1/queues/%s/batches/%s (nothing is stored twice)",
                                 strerror(-error),
                                 unknown ? "whether the batch was stored is unknown"
                                         : "the batch was not committed", q, p->batch);
}

static void on_exec_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        long long created = 0, v;

        if (!p->req)
                goto out;
        if (error < 0 || !reply || reply->type != REDIS_REPLY_ARRAY) {
                reply_batch_error(p, error < 0 ? error : -EPROTO, reply, true);
                goto out;
        }
        for (size_t i = 0; i < reply->elements; i++)
                if (reply->element[i]->type == REDIS_REPLY_ERROR) {
                        reply_batch_error(p, -EIO, reply->element[i], true);
                        goto out;
                } else if (!p->plain && redis_reply_integer(reply->element[i], &v) >= 0)
                        created += v;
        if (p->plain)
                created = (long long) json_array_size(p->ids);
        reply_batch_stored(p, 201, created);
out:
        pending_free(p);
}

/* The arguments of a script call that stores specs[first..first+n): `head` strings first, then
 * id, args, payload, timeout per job (ids already assigned, in p->ids). Owns what it points to. */
typedef struct BatchArgs {
        const char **argv;
        size_t *len;
        size_t m;
        char **args;            /* the encoded arguments of each job */
        char *timeouts;         /* 24 bytes per job */
        size_t n;
} BatchArgs;

static void batch_args_done(BatchArgs *a) {
        for (size_t i = 0; a->args && i < a->n; i++)
                free(a->args[i]);
        free(a->args);
        free(a->argv);
        free(a->len);
        free(a->timeouts);
}

static int batch_args_build(BatchArgs *a, const Pending *p, JobSpec *const *specs, size_t first,
                            size_t n, const char *const *head, size_t n_head) {
        *a = (BatchArgs){ .argv = calloc(n_head + 4 * n, sizeof(char *)),
                          .len = calloc(n_head + 4 * n, sizeof(size_t)),
                          .args = calloc(n, sizeof(char *)), .timeouts = calloc(n, 24), .n = n };
        if (!a->argv || !a->len || !a->args || !a->timeouts)
                return -ENOMEM;
#define ARG(v, l) (a->argv[a->m] = (v), a->len[a->m++] = (l))
        for (size_t i = 0; i < n_head; i++)
                ARG(head[i], strlen(head[i]));
        for (size_t i = 0; i < n; i++) {
                const JobSpec *spec = specs[first + i];
                const char *id = json_string_value(json_array_get(p->ids, first + i));
                char *t = a->timeouts + 24 * i;
                size_t args_len = 0;
                int r = job_args_encode(spec->args, spec->n_args, &a->args[i], &args_len);

                if (r < 0)
                        return r;
                if (spec->timeout_usec > 0)
                        snprintf(t, 24, "%" PRIu64, spec->timeout_usec);
                ARG(id, strlen(id));
                ARG(a->args[i], args_len);
                ARG(spec->payload ? (const char *) spec->payload : "", spec->payload_len);
                ARG(t, strlen(t));
        }
#undef ARG
        return 0;
}

/* One submit_batch call for specs[0..n) (ids already assigned, in p->ids). */
static int send_batch_chunk(Scheduler *s, Pending *p, JobSpec **specs, size_t first, size_t n) {
        const QueueKeys *k = s->service->keys[p->queue];
        _cleanup_free_ char *bk = queue_key_batch(k, p->batch);
        _cleanup_(batch_args_done) BatchArgs a = {};
        char retention[24];
        /* Generated ids are new by construction: only client ids need an existence check. */
        bool check = false;
        int r;

        for (size_t i = 0; i < n; i++)
                check = check || specs[first + i]->id;
        snprintf(retention, sizeof(retention), "%" PRIu64,
                 tasad_config_retention_sec(s->service->config));
        if (!bk)
                return -ENOMEM;
        r = batch_args_build(&a, p, specs, first, n,
                             (const char *[]){ k->ready, bk, k->job_prefix, p->batch, retention,
                                               check ? "1" : "0" }, 6);
        if (r < 0)
                return r;
        return redis_script(s->service->redis, SCRIPT_SUBMIT_BATCH, NULL, NULL, 2, (int) a.m,
                            a.argv, a.len);
}

/* Jobs whose ids the scheduler generated cannot exist yet: they are stored with plain commands,
 * with submit_batch's effects (an HSET per job, one LPUSH per chunk in order, the batch's
 * total), which costs Redis half of what a script does. `created` is Redis' time, asked first. */
static int send_plain_job(RedisConn *c, const QueueKeys *k, const JobSpec *spec, const char *id,
                          const char *created, const char *batch) {
        _cleanup_free_ char *jk = queue_key_job(k, id), *args = NULL;
        const char *argv[15] = { "HSET", jk, "v", "1", "state", "queued", "created", created,
                                 "args", NULL, "batch", batch };
        size_t len[15], args_len = 0;
        char timeout[24];
        int n = 12, r;

        if (!jk)
                return -ENOMEM;
        r = job_args_encode(spec->args, spec->n_args, &args, &args_len);
        if (r < 0)
                return r;
        argv[9] = args;
        if (spec->payload_len > 0) {
                argv[n++] = "payload";
                argv[n++] = (const char *) spec->payload;
        }
        if (spec->timeout_usec > 0) {
                snprintf(timeout, sizeof(timeout), "%" PRIu64, spec->timeout_usec);
                argv[n++] = "timeout";
                argv[n++] = timeout;
        }
        for (int i = 0; i < n; i++)
                len[i] = i == 9 ? args_len : argv[i] == (const char *) spec->payload
                                                     ? spec->payload_len : strlen(argv[i]);
        return redis_command_argv(c, NULL, NULL, n, argv, len);
}

static int send_plain_push(RedisConn *c, const QueueKeys *k, const json_t *ids, size_t first,
                           size_t n) {
        _cleanup_free_ const char **argv = calloc(n + 2, sizeof(char *));

        if (!argv)
                return -ENOMEM;
        argv[0] = "LPUSH";
        argv[1] = k->ready;
        for (size_t i = 0; i < n; i++)
                argv[2 + i] = json_string_value(json_array_get(ids, first + i));
        return redis_command_argv(c, NULL, NULL, (int) n + 2, argv, NULL);
}

static void on_batch_time(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        Scheduler *s = p->scheduler;
        const QueueKeys *k = s->service->keys[p->queue];
        _cleanup_free_ char *bk = queue_key_batch(k, p->batch);
        const char *sec = redis_reply_string(redis_reply_element(reply, 0), NULL);
        const char *usec = redis_reply_string(redis_reply_element(reply, 1), NULL);
        char created[24], total[24], retention[24];
        int r;

        if (!p->req)
                return pending_free(p);
        if (error < 0 || !sec || !usec) {
                reply_redis_error(p->req, error < 0 ? error : -EPROTO, reply);
                return pending_free(p);
        }
        snprintf(created, sizeof(created), "%llu",
                 strtoull(sec, NULL, 10) * 1000 + strtoull(usec, NULL, 10) / 1000);
        snprintf(total, sizeof(total), "%zu", p->n_specs);
        snprintf(retention, sizeof(retention), "%" PRIu64,
                 tasad_config_retention_sec(s->service->config));
        r = bk ? redis_command(c, NULL, NULL, "MULTI") : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < p->n_specs; i++) {
                r = send_plain_job(c, k, p->specs[i], json_string_value(json_array_get(p->ids, i)),
                                   created, p->batch);
                p->specs[i] = job_spec_free(p->specs[i]);
                if (r >= 0 && (i + 1) % BATCH_CHUNK == 0)
                        r = send_plain_push(c, k, p->ids, i + 1 - BATCH_CHUNK, BATCH_CHUNK);
        }
        if (r >= 0 && p->n_specs % BATCH_CHUNK > 0)
                r = send_plain_push(c, k, p->ids, p->n_specs - p->n_specs % BATCH_CHUNK,
                                    p->n_specs % BATCH_CHUNK);
        if (r >= 0)
                r = redis_command_argv(c, NULL, NULL, 4,
                                       (const char *[]){ "HINCRBY", bk, "total", total }, NULL);
        if (r >= 0)
                r = redis_command_argv(c, NULL, NULL, 3,
                                       (const char *[]){ "EXPIRE", bk, retention }, NULL);
        if (r >= 0)
                r = redis_command(c, on_exec_reply, p, "EXEC");
        if (r < 0) {
                (void) redis_command(c, NULL, NULL, "DISCARD");
                http_reply_error(p->req, 503, "unavailable", "could not send the batch to Redis "
                                 "(%s); nothing was stored", strerror(-r));
                pending_free(p);
        }
}

static int send_stage_step(Scheduler *s, Pending *p);

/* A batch of at most BATCH_STEP jobs goes in one MULTI/EXEC, BATCH_CHUNK jobs per script call:
 * stored whole or not at all, without one script call per job. A larger one, and every batch a
 * client named, is stored in steps and committed (send_stage_step). Jobs without an id get
 * "<batch>.<index>", so a retry of the same batch (PUT with its id) names the same jobs. */
static int send_batch(Scheduler *s, Pending *p, JobSpec ***specs, size_t n) {
        RedisConn *c = s->service->redis;
        bool client_ids = false;
        char derived[JOB_ID_MAX + 1];
        int r = 0;

        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *id = (*specs)[i]->id;
                if (!id) {
                        snprintf(derived, sizeof(derived), "%s.%zu", p->batch, i);
                        id = derived;
                }
                client_ids = client_ids || (*specs)[i]->id;
                r = json_array_append_new(p->ids, json_string(id)) < 0 ? -ENOMEM : 0;
        }
        /* A named batch (PUT) is always stored in steps: a retry resumes or finds it committed. */
        if (r >= 0 && (n > BATCH_STEP || p->client_batch)) {
                p->specs = TAKE_PTR(*specs); /* the pending request's now */
                p->n_specs = n;
                return send_stage_step(s, p);
        }
        if (r >= 0 && !client_ids) {
                r = redis_command(c, on_batch_time, p, "TIME");
                if (r >= 0) { /* the specs are the pending request's now */
                        p->specs = TAKE_PTR(*specs);
                        p->n_specs = n;
                        p->plain = true;
                }
                return r;
        }
        if (r >= 0)
                r = redis_command(c, NULL, NULL, "MULTI");
        for (size_t i = 0; r >= 0 && i < n; i += BATCH_CHUNK)
                r = send_batch_chunk(s, p, *specs, i, MIN(n - i, (size_t) BATCH_CHUNK));
        if (r < 0) {
                (void) redis_command(c, NULL, NULL, "DISCARD");
                return r;
        }
        return redis_command(c, on_exec_reply, p, "EXEC");
}

/* --- batches stored in steps (docs/protocol.md, "How a batch is stored") ------------------------ */

static void deliver_kick(Scheduler *s, size_t qi);

static void reply_batch_abandoned(Pending *p) {
        http_reply_error(p->req, 409, "conflict", "an earlier attempt of batch %s that was never "
                         "committed is being discarded; send it again in a moment", p->batch);
}

static void on_commit_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        const char *what = redis_reply_string(redis_reply_element(reply, 0), NULL);
        long long total = 0, fresh = 0;

        if (error >= 0 && what && streq(what, "committed") &&
            redis_reply_integer(redis_reply_element(reply, 1), &total) >= 0 &&
            redis_reply_integer(redis_reply_element(reply, 2), &fresh) >= 0) {
                deliver_kick(p->scheduler, p->queue);
                if (fresh)
                        log_job(LOG_INFO, &(LogJob){ .queue = queue_name(p->scheduler, p->queue) },
                                "Batch %s committed: %lld job(s).", p->batch, total);
                if (p->req)
                        reply_batch_stored(p, fresh ? 201 : 200, fresh ? total : 0);
        } else if (!p->req)
                ;
        else if (error >= 0 && what && streq(what, "abandoned"))
                reply_batch_abandoned(p);
        else
                reply_batch_error(p, error < 0 ? error : -EPROTO, reply, true);
        pending_free(p);
}

static int send_commit(Scheduler *s, Pending *p) {
        const QueueKeys *k = s->service->keys[p->queue];
        _cleanup_free_ char *bk = queue_key_batch(k, p->batch), *lk = queue_key_staged(k, p->batch);
        char retention[24];

        if (!bk || !lk)
                return -ENOMEM;
        snprintf(retention, sizeof(retention), "%" PRIu64,
                 tasad_config_retention_sec(s->service->config));
        return redis_script(s->service->redis, SCRIPT_BATCH_COMMIT, on_commit_reply, p, 4, 6,
                            (const char *[]){ bk, lk, k->staging, k->delivering, p->batch,
                                              retention }, NULL);
}

static void on_stage_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        Scheduler *s = p->scheduler;
        const char *what = redis_reply_string(redis_reply_element(reply, 0), NULL);
        int r;

        if (!p->req) /* gone: what was staged is discarded later, or a retry goes on with it */
                return pending_free(p);
        if (error < 0 || !what) {
                reply_batch_error(p, error < 0 ? error : -EPROTO, reply, false);
                return pending_free(p);
        }
        if (streq(what, "abandoned")) {
                reply_batch_abandoned(p);
                return pending_free(p);
        }
        /* Staged, or committed by an earlier attempt: the commit says which. */
        r = streq(what, "staged") && p->staged < p->n_specs ? send_stage_step(s, p)
                                                             : send_commit(s, p);
        if (r < 0) {
                reply_batch_error(p, r, NULL, false);
                pending_free(p);
        }
}

static size_t spec_bytes(const JobSpec *spec) {
        size_t n = spec->payload_len + 64;

        for (size_t i = 0; i < spec->n_args; i++)
                n += strlen(spec->args[i]) + 8;
        return n;
}

/* Stages the next step of p's jobs (they are freed once sent), or commits when all are. */
static int send_stage_step(Scheduler *s, Pending *p) {
        const QueueKeys *k = s->service->keys[p->queue];
        _cleanup_free_ char *bk = queue_key_batch(k, p->batch), *lk = queue_key_staged(k, p->batch);
        _cleanup_(batch_args_done) BatchArgs a = {};
        size_t first = p->staged, n = 0, bytes = 0;
        int r;

        if (!bk || !lk)
                return -ENOMEM;
        while (first + n < p->n_specs && n < BATCH_STEP && (n == 0 || bytes < BATCH_STEP_BYTES))
                bytes += spec_bytes(p->specs[first + n++]);
        r = batch_args_build(&a, p, p->specs, first, n,
                             (const char *[]){ bk, lk, k->staging, k->job_prefix, p->batch }, 5);
        if (r >= 0)
                r = redis_script(s->service->redis, SCRIPT_BATCH_STAGE, on_stage_reply, p, 3,
                                 (int) a.m, a.argv, a.len);
        if (r < 0)
                return r;
        /* The command holds its own copy. */
        for (size_t i = first; i < first + n; i++)
                p->specs[i] = job_spec_free(p->specs[i]);
        p->staged = first + n;
        return 0;
}

static void on_deliver_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        TimerCall *t = userdata;
        long long more = 0;

        t->scheduler->delivering[t->queue] = false;
        if (error >= 0 && redis_reply_integer(redis_reply_element(reply, 1), &more) >= 0 && more)
                deliver_kick(t->scheduler, t->queue);
        free(t);
}

/* Moves committed batches' jobs to ready, one step at a time, until none is left. */
static void deliver_kick(Scheduler *s, size_t qi) {
        const QueueKeys *k = s->service->keys[qi];
        TimerCall *t;

        if (s->delivering[qi] || !redis_conn_is_up(s->service->redis) ||
            !(t = malloc(sizeof(TimerCall))))
                return;
        *t = (TimerCall){ s, qi };
        if (redis_script(s->service->redis, SCRIPT_BATCH_DELIVER, on_deliver_reply, t, 2, 5,
                         (const char *[]){ k->delivering, k->ready, k->job_prefix,
                                           k->staged_prefix, BATCH_STEP_STR }, NULL) < 0)
                free(t);
        else
                s->delivering[qi] = true;
}

static void abandon_kick(Scheduler *s, size_t qi);

static void on_abandon_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        TimerCall *t = userdata;
        long long deleted = 0, more = 0;

        t->scheduler->abandoning[t->queue] = false;
        if (error >= 0 && redis_reply_integer(redis_reply_element(reply, 0), &deleted) >= 0 &&
            redis_reply_integer(redis_reply_element(reply, 1), &more) >= 0) {
                if (deleted > 0)
                        log_job(LOG_NOTICE, &(LogJob){ .queue = queue_name(t->scheduler, t->queue) },
                                "Discarded %lld staged job(s) of a batch never committed.",
                                deleted);
                if (more)
                        abandon_kick(t->scheduler, t->queue);
        }
        free(t);
}

/* Discards batches whose staging stopped batch_abandon_after ago, one step at a time. */
static void abandon_kick(Scheduler *s, size_t qi) {
        const QueueKeys *k = s->service->keys[qi];
        char older_ms[24];
        TimerCall *t;

        snprintf(older_ms, sizeof(older_ms), "%" PRIu64,
                 MAX(s->service->config->batch_abandon_after_usec / USEC_PER_MSEC, 1));
        if (s->abandoning[qi] || !redis_conn_is_up(s->service->redis) ||
            !(t = malloc(sizeof(TimerCall))))
                return;
        *t = (TimerCall){ s, qi };
        if (redis_script(s->service->redis, SCRIPT_BATCH_ABANDON, on_abandon_reply, t, 1, 6,
                         (const char *[]){ k->staging, k->job_prefix, k->batch_prefix,
                                           k->staged_prefix, older_ms, BATCH_STEP_STR },
                         NULL) < 0)
                free(t);
        else
                s->abandoning[qi] = true;
}

/* PUT /v1/queues/{queue}/batches/{batch}: the client names the batch, so sending it again after
 * an unknown outcome stores nothing twice. */
static int route_batch_put(HttpRequest *req, void *userdata) {
        Scheduler *s = userdata;
        const char *batch = http_request_param(req, "batch");
        size_t qi;

        if (!job_id_is_valid(batch) || strlen(batch) > BATCH_ID_MAX)
                return http_reply_error(req, 400, "invalid-argument",
                                        "batch id: 1 to %d bytes of [A-Za-z0-9_.:-], not "
                                        "starting with '.' or '-'", BATCH_ID_MAX);
        if (service_request_queue(s->service, req, http_request_param(req, "queue"), true, &qi) < 0 ||
            service_require_redis(s->service, req) < 0)
                return 0;
        return parse_start(s, req, qi, true);
}

static int route_batch(HttpRequest *req, void *userdata) {
        Scheduler *s = userdata;
        size_t qi;

        if (service_request_queue(s->service, req, http_request_param(req, "queue"), true, &qi) < 0 ||
            service_require_redis(s->service, req) < 0)
                return 0;
        return parse_start(s, req, qi, true);
}

/* Stores a decoded batch (specs[0..n) are consumed), validated whole before: replies, or
 * hands the request to the Redis reply. */
static int store_batch(Scheduler *s, HttpRequest *req, size_t qi, JobSpec **specs, size_t n) {
        const char *named = http_request_param(req, "batch"); /* PUT …/batches/{batch} */
        char gen[21];
        Pending *p;
        int r;

        p = pending_new(s, req, qi);
        r = !p || (!named && job_id_generate(gen) < 0) || !(p->batch = strdup(named ?: gen)) ||
                            !(p->ids = json_array())
                    ? -ENOMEM : 0;
        if (r >= 0) {
                p->client_batch = named;
                r = send_batch(s, p, &specs, n);
        }
        for (size_t i = 0; specs && i < n; i++)
                job_spec_free(specs[i]);
        free(specs);
        if (r < 0) {
                pending_free(p);
                return r;
        }
        http_request_keep(req, on_abort, p);
        return 0;
}

/* --- cancel and requeue --------------------------------------------------------------------- */

static void on_cancel_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        const char *v = redis_reply_string(redis_reply_element(reply, 0), NULL);
        const char *st = redis_reply_string(redis_reply_element(reply, 1), NULL);

        if (!p->req)
                goto out;
        if (error < 0 || !v)
                reply_redis_error(p->req, error < 0 ? error : -EPROTO, reply);
        else if (streq(v, "missing"))
                http_reply_error(p->req, 404, "not-found", "no job '%s'", p->id);
        else if (streq(v, "final"))
                http_reply_error(p->req, 409, "conflict", "job '%s' already finished (%s)", p->id,
                                 st ? st : "?");
        else
                http_reply_json(p->req, 200, json_pack("{s:s, s:s, s:s}", "id", p->id, "queue",
                                                       queue_name(p->scheduler, p->queue), "state", v));
out:
        pending_free(p);
}

static void on_cancel_located(Service *svc, int r, size_t qi, void *userdata) {
        Pending *p = userdata;
        Scheduler *s = p->scheduler;
        const QueueKeys *k;
        _cleanup_free_ char *jk = NULL;
        char retention[24];

        if (!p->req)
                return pending_free(p);
        if (r < 0) {
                service_reply_locate_error(p->req, r, p->id);
                return pending_free(p);
        }
        if (service_request_queue(svc, p->req, queue_name(s, qi), true, &qi) < 0)
                return pending_free(p);
        p->queue = qi;
        k = svc->keys[qi];
        jk = queue_key_job(k, p->id);
        snprintf(retention, sizeof(retention), "%" PRIu64,
                 tasad_config_retention_sec(svc->config));
        const char *argv[] = { jk, k->ready, k->delayed, k->done, k->stats, p->id, retention,
                               k->batch_prefix };
        if (!jk || redis_script(svc->redis, SCRIPT_CANCEL, on_cancel_reply, p, 5, ELEMENTSOF(argv),
                                argv, NULL) < 0) {
                service_reply_unavailable(p->req);
                pending_free(p);
        }
}

static int route_cancel(HttpRequest *req, void *userdata) {
        Scheduler *s = userdata;
        Pending *p;
        int r;

        if (service_require_redis(s->service, req) < 0)
                return 0;
        p = pending_new(s, req, 0);
        if (!p || !(p->id = strdup(http_request_param(req, "id")))) {
                pending_free(p);
                return -ENOMEM;
        }
        /* Only queues the client may read or submit to: to anyone else the job does not exist. */
        r = service_locate(s->service, req, true, queue_key_job, p->id,
                           http_request_query(req, "queue"), on_cancel_located, p);
        if (r < 0) {
                service_reply_locate_error(req, r, p->id);
                pending_free(p);
                return 0;
        }
        http_request_keep(req, on_abort, p);
        return 0;
}

static void on_requeue_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Pending *p = userdata;
        const char *v = redis_reply_string(redis_reply_element(reply, 0), NULL);

        if (!p->req)
                goto out;
        if (error < 0 || !v)
                reply_redis_error(p->req, error < 0 ? error : -EPROTO, reply);
        else if (!streq(v, "queued"))
                http_reply_error(p->req, 404, "not-found", "job '%s' is not in the dead-letter list of queue '%s'",
                                 p->id, queue_name(p->scheduler, p->queue));
        else
                http_reply_json(p->req, 200, json_pack("{s:s, s:s, s:s}", "id", p->id, "queue",
                                                       queue_name(p->scheduler, p->queue), "state", v));
out:
        pending_free(p);
}

static int route_requeue(HttpRequest *req, void *userdata) {
        Scheduler *s = userdata;
        _cleanup_free_ char *jk = NULL;
        const QueueKeys *k;
        const char *id = http_request_param(req, "id");
        Pending *p;
        size_t qi;
        int r;

        if (service_request_queue(s->service, req, http_request_param(req, "queue"), true, &qi) < 0 ||
            service_require_redis(s->service, req) < 0)
                return 0;
        if (!job_id_is_valid(id))
                return http_reply_error(req, 404, "not-found", "no job '%s'", id), 0;
        k = s->service->keys[qi];
        jk = queue_key_job(k, id);
        p = pending_new(s, req, qi);
        if (!jk || !p || !(p->id = strdup(id))) {
                pending_free(p);
                return -ENOMEM;
        }
        r = redis_script(s->service->redis, SCRIPT_REQUEUE, on_requeue_reply, p, 3, 5,
                         (const char *[]){ jk, k->dead, k->ready, id, k->batch_prefix }, NULL);
        if (r < 0) {
                pending_free(p);
                return r;
        }
        http_request_keep(req, on_abort, p);
        return 0;
}

/* Only submissions take a body, JSON (cancel and requeue: at most HTTP_NO_BODY_MAX bytes,
 * ignored). */
static const HttpRoute routes[] = {
        { "POST", "/v1/queues/{queue}/jobs", route_submit, .takes_body = true, .json_body = true },
        { "POST", "/v1/queues/{queue}/batches", route_batch, .takes_body = true, .json_body = true },
        { "PUT", "/v1/queues/{queue}/batches/{batch}", route_batch_put, .takes_body = true,
          .json_body = true },
        { "DELETE", "/v1/jobs/{id}", route_cancel },
        { "POST", "/v1/queues/{queue}/dead/{id}/requeue", route_requeue },
};

/* --- timers: promote due delayed jobs, reclaim the jobs of dead workers ---------------------- */

static uint64_t mono_now(Scheduler *s) {
        uint64_t t = 0;
        (void) sd_event_now(s->service->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void on_promote_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        TimerCall *t = userdata;
        Scheduler *s = t->scheduler;
        long long moved = 0, next = -1;

        if (error >= 0 && redis_reply_integer(redis_reply_element(reply, 0), &moved) >= 0 &&
            redis_reply_integer(redis_reply_element(reply, 1), &next) >= 0) {
                /* More due jobs than the limit: come back at once. */
                uint64_t delay = moved >= 1000 ? 0 : next < 0 ? USEC_PER_SEC
                                                               : MIN((uint64_t) next * USEC_PER_MSEC, USEC_PER_SEC);
                s->next_promote[t->queue] = mono_now(s) + delay;
        }
        free(t);
}

static void on_reap_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        TimerCall *t = userdata;
        LogJob lj = { .queue = queue_name(t->scheduler, t->queue) };
        long long requeued = 0, dead = 0, workers = 0;

        if (error >= 0 && redis_reply_integer(redis_reply_element(reply, 0), &requeued) >= 0 &&
            redis_reply_integer(redis_reply_element(reply, 1), &dead) >= 0 &&
            redis_reply_integer(redis_reply_element(reply, 2), &workers) >= 0 &&
            (requeued || dead || workers))
                log_job(LOG_NOTICE, &lj, "Reclaimed from dead workers: %lld job(s) requeued, %lld dead-lettered "
                        "after too many lease expiries, %lld worker(s) gone.", requeued, dead, workers);
        free(t);
}

static int send_timer_call(Scheduler *s, size_t qi, bool reap) {
        const QueueConfig *q = queue_of(s, qi);
        const QueueKeys *k = s->service->keys[qi];
        TimerCall *t = malloc(sizeof(TimerCall));
        char maxr[16], ret[24];
        int r;

        if (!t)
                return -ENOMEM;
        *t = (TimerCall){ s, qi };
        snprintf(maxr, sizeof(maxr), "%u", q->max_redeliveries);
        snprintf(ret, sizeof(ret), "%" PRIu64, tasad_config_retention_sec(s->service->config));
        if (reap)
                r = redis_script(s->service->redis, SCRIPT_REAP, on_reap_reply, t, 6, 13,
                                 (const char *[]){ k->leases, k->workers, k->ready, k->dead, k->done,
                                                   k->stats, k->job_prefix, k->proc_prefix, maxr,
                                                   SCRIPT_LIMIT, ret, k->batch_prefix,
                                                   STRINGIFY(REAP_WORKER_GRACE_MS) }, NULL);
        else
                r = redis_script(s->service->redis, SCRIPT_PROMOTE, on_promote_reply, t, 2, 4,
                                 (const char *[]){ k->delayed, k->ready, k->job_prefix, SCRIPT_LIMIT },
                                 NULL);
        if (r < 0)
                free(t);
        return r;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Scheduler *s = userdata;
        size_t n = s->service->queues->n_queues;
        uint64_t now = mono_now(s), next = now + REAP_INTERVAL_USEC;
        bool up = redis_conn_is_up(s->service->redis);

        for (size_t i = 0; i < n; i++) {
                if (up && s->next_promote[i] <= now) {
                        /* Until the reply says otherwise, look again in a second. */
                        s->next_promote[i] = now + USEC_PER_SEC;
                        (void) send_timer_call(s, i, false);
                }
                next = MIN(next, s->next_promote[i]);
        }
        if (up && s->next_reap <= now) {
                s->next_reap = now + REAP_INTERVAL_USEC;
                for (size_t i = 0; i < n; i++) {
                        if (s->reap_after[i] <= now)
                                (void) send_timer_call(s, i, true);
                        /* Batches another scheduler (or an earlier run) committed, and
                         * staging that stopped. */
                        deliver_kick(s, i);
                        abandon_kick(s, i);
                }
        }
        (void) sd_event_source_set_time(src, MAX(next, now + 10 * USEC_PER_MSEC));
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

/* Connected again (or for the first time): Redis may have been down or restarted, and then
 * the leases of live workers expired only because nobody could renew them. The workers
 * reconnect and renew within moments; the reaper gives them one lease period before it takes
 * an expired lease for a dead worker. Wake the timer at the next loop iteration for the rest
 * (promotions). */
static void on_redis_state(Service *svc, bool up, void *userdata) {
        Scheduler *s = userdata;
        uint64_t now = mono_now(s);

        if (!up)
                return;
        for (size_t i = 0; i < s->service->queues->n_queues; i++)
                s->reap_after[i] = now + queue_of(s, i)->lease_usec;
        if (s->timer)
                (void) sd_event_source_set_time(s->timer, 0);
}

/* --- life cycle ----------------------------------------------------------------------------- */

static int on_sigterm(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Scheduler *s = userdata;
        sd_notify(false, "STOPPING=1");
        log_info("Stopping.");
        return sd_event_exit(s->service->event, 0);
}

int scheduler_new(sd_event *e, TasadConfig *config, Scheduler **ret) {
        _cleanup_(scheduler_freep) Scheduler *s = calloc(1, sizeof(Scheduler));
        int r;

        if (!s) {
                tasad_config_free(config);
                return -ENOMEM;
        }
        r = service_new(e, "tasad-scheduler", config, &s->service);
        if (r < 0)
                return r;
        s->service->state_hook = on_redis_state;
        s->service->state_userdata = s;
        s->next_promote = calloc(s->service->queues->n_queues + 1, sizeof(uint64_t));
        s->reap_after = calloc(s->service->queues->n_queues + 1, sizeof(uint64_t));
        s->delivering = calloc(s->service->queues->n_queues + 1, sizeof(bool));
        s->abandoning = calloc(s->service->queues->n_queues + 1, sizeof(bool));
        if (!s->next_promote || !s->reap_after || !s->delivering || !s->abandoning)
                return -ENOMEM;
        r = sd_event_add_time(e, &s->timer, CLOCK_MONOTONIC, 0, 10 * USEC_PER_MSEC, on_timer, s);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGTERM, on_sigterm, s);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, on_sigterm, s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int scheduler_start(Scheduler *s) {
        return service_start(s->service, "scheduler", s->service->config->scheduler_socket, routes,
                             ELEMENTSOF(routes), s);
}

Scheduler *scheduler_free(Scheduler *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->timer);
        service_free(s->service);
        free(s->next_promote);
        free(s->reap_after);
        free(s->delivering);
        free(s->abandoning);
        free(s);
        return NULL;
}
