/* What tasad-scheduler and tasad-results share: the queues they serve with their Redis keys,
 * one command connection to Redis with outage reporting (one log line per outage, STATUS=,
 * READY=1 after the first round trip), the HTTP server on the activated or self-bound socket,
 * and per-request helpers (queue lookup with authorization, finding which queue holds an id). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "http.h"
#include "macro.h"

typedef struct sd_event sd_event;
typedef struct sd_event_source sd_event_source;
typedef struct TasadConfig TasadConfig;
typedef struct QueueConfig QueueConfig;
typedef struct QueueSet QueueSet;
typedef struct QueueKeys QueueKeys;
typedef struct RedisConn RedisConn;
typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;
typedef struct HttpRoute HttpRoute;

typedef struct Service Service;
typedef void (*ServiceStateHook)(Service *s, bool up, void *userdata);

struct Service {
        sd_event *event;
        const char *name;          /* "tasad-scheduler" */
        TasadConfig *config;
        QueueSet *queues;
        QueueKeys **keys;          /* keys[i] belongs to queues->queues[i] */
        struct ApiTokens *tokens;  /* of api_tokens_credential; NULL: Unix sockets only */
        RedisConn *redis;
        HttpServer *http;          /* made at the first Redis round trip, serving every socket */
        int listen_fds[HTTP_LISTEN_MAX];   /* until then, the sockets (connections wait in their backlog) */
        size_t n_listen;
        const HttpRoute *routes;
        size_t n_routes;
        void *route_userdata;
        bool ready_sent, redis_down;
        time_t down_since;
        sd_event_source *watchdog;   /* PING every WATCHDOG_USEC/3; WATCHDOG=1 on each reply */
        ServiceStateHook state_hook;
        void *state_userdata;
};

/* Takes ownership of config; loads the queues of config->queues_dir (logs what is wrong). */
int service_new(sd_event *e, const char *name, TasadConfig *config, Service **ret);
Service *service_free(Service *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Service *, service_free);

/* Opens the socket (fd name `fdname` from systemd, else `path`) and connects to Redis; requests
 * are served from the first successful round trip on (READY=1), and wait in the socket's
 * backlog until then. When systemd asks for a watchdog, WATCHDOG=1 follows each successful
 * Redis round trip. `routes` and `userdata` must outlive the service. */
int service_start(Service *s, const char *fdname, const char *path, const HttpRoute *routes,
                  size_t n_routes, void *userdata);

/* The queue named in the request, if it exists and the peer may use it (groups: the queue's
 * submit_groups when `write`, else read_groups). Otherwise replies 404/403 and returns < 0. */
int service_request_queue(Service *s, HttpRequest *req, const char *name, bool write,
                          size_t *ret_index);

/* Whether the client may act on something guarded by `groups`: its uid (Unix socket) or its
 * API token (TCP) is in one of them. 1, 0, or -errno from a failed lookup. */
int service_request_allowed(Service *s, HttpRequest *req, char *const *groups);

/* 503 `unavailable`: Redis could not be reached for this request. */
void service_reply_unavailable(HttpRequest *req);

/* Replies 503 when Redis is down and returns -ENOTCONN; 0 when up. */
int service_require_redis(Service *s, HttpRequest *req);

/* Whether the client may see the jobs of queue i at all: it may read them (read_groups), or,
 * with `write`, also act on them (submit_groups). To a client, a job or batch of a queue it may
 * not see does not exist: lookups by id answer 404 for it, never 403, so that nobody learns
 * which ids exist in the queues they may not read. */
bool service_request_sees(Service *s, HttpRequest *req, size_t i, bool write);

/* Finds the queue holding the key `key(keys, id)` (queue_key_job for jobs, queue_key_batch for
 * batches) among the queues the client of req sees (service_request_sees with `write`), only
 * in the queue named `queue_hint` when not NULL (an unknown or unseen one finds nothing):
 * calls back with the index of the queue, -ENOENT (nowhere), -ENOTUNIQ (in several) or another
 * -errno. req is only looked at during the call. An invalid id is -ENOENT at once. */
typedef void (*ServiceLocateCallback)(Service *s, int r, size_t index, void *userdata);
typedef char *(*ServiceKeyFunc)(const QueueKeys *k, const char *id);
int service_locate(Service *s, HttpRequest *req, bool write, ServiceKeyFunc key, const char *id,
                   const char *queue_hint, ServiceLocateCallback cb, void *userdata);

/* Replies with the error that a failed service_locate() means. */
void service_reply_locate_error(HttpRequest *req, int r, const char *id);
