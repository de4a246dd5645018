#include "service.h"

#include <hiredis/hiredis.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "tokens.h"

/* The auth hook of a TCP listener: the client is the API token of its "Authorization: Bearer"
 * header, or gets 401. (Unix listeners need no hook: the peer's credentials say who it is.) */
static int service_authenticate(HttpRequest *req, void *userdata, const char **ret_message) {
        Service *s = userdata;
        const ApiToken *tok;

        tok = api_tokens_find(s->tokens,
                              api_tokens_bearer(http_request_header(req, "Authorization")));
        if (!tok) {
                *ret_message = "a request over TCP needs the header 'Authorization: Bearer "
                               "<token>' with a valid API token";
                return -EACCES;
        }
        http_request_set_principal(req, tok);
        return 0;
}

static void service_http_limits(const TasadConfig *c, HttpLimits *ret) {
        http_limits_default(ret);
        ret->max_body = c->max_request;
        ret->max_buffered = c->max_request_buffered;
        ret->max_connections = c->http_max_connections;
        ret->max_connections_per_peer = c->http_max_connections_per_host;
        ret->head_timeout_usec = c->http_timeout_usec;
        ret->io_timeout_usec = c->http_timeout_usec;
}

/* Connections, listening sockets and what a daemon has open besides (Redis, the journal, the
 * results directories): the soft RLIMIT_NOFILE is raised as far as that needs (systemd starts
 * services at 1024, with a much higher hard limit). */
static void service_raise_nofile(const TasadConfig *c) {
        rlim_t need = (rlim_t) c->http_max_connections + 256;
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
                return;
        rl.rlim_cur = MIN(need, rl.rlim_max);
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_debug_errno(negative_errno(), "Failed to raise RLIMIT_NOFILE: %m");
}

/* Requests are served from the first Redis round trip on: until then a client (one that woke
 * the socket-activated daemon, say) waits in the listen backlog instead of getting 503. One
 * server for every socket, so that the connection and body limits hold for the daemon. */
static int service_serve(Service *s) {
        HttpLimits limits;
        int r;

        service_http_limits(s->config, &limits);
        service_raise_nofile(s->config);
        r = http_server_new(s->event, s->routes, s->n_routes, s->route_userdata, &limits,
                            &s->http);
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->n_listen; i++) {
                int fd = TAKE_FD(s->listen_fds[i]); /* the server owns it now */
                bool is_unix = sd_is_socket(fd, AF_UNIX, 0, -1) > 0;

                /* TCP is only possible with API tokens (http_listen_fds). */
                r = http_server_listen(s->http, fd, is_unix ? NULL : service_authenticate, s);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void on_redis_state(RedisConn *c, bool up, int error, void *userdata) {
        Service *s = userdata;

        if (!up && !s->redis_down) {
                s->redis_down = true;
                s->down_since = time(NULL);
                log_warning_errno(error, "Redis is unreachable: %s; requests that need it get "
                                  "503 until it is back, reconnecting with backoff.",
                                  redis_conn_error_text(c, error));
                sd_notifyf(false, "STATUS=%s: Redis unreachable, reconnecting", s->name);
        } else if (up) {
                if (s->redis_down)
                        log_info("Redis is reachable again after %lds.",
                                 (long) (time(NULL) - s->down_since));
                s->redis_down = false;
                if (!s->ready_sent) {
                        int r = service_serve(s);

                        if (r < 0) {
                                log_error_errno(r, "Failed to start the HTTP server: %m");
                                (void) sd_event_exit(s->event, r);
                                return;
                        }
                        s->ready_sent = true;
                        sd_notify(false, "READY=1");
                        log_info("%s ready, serving %zu queue(s).", s->name, s->queues->n_queues);
                }
                sd_notifyf(false, "STATUS=%s: serving %zu queue(s)", s->name, s->queues->n_queues);
        }
        if (s->state_hook)
                s->state_hook(s, up, s->state_userdata);
}

int service_new(sd_event *e, const char *name, TasadConfig *config, Service **ret) {
        _cleanup_(service_freep) Service *s = calloc(1, sizeof(Service));
        _cleanup_free_ char *error = NULL;
        int r;

        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        for (size_t i = 0; i < HTTP_LISTEN_MAX; i++)
                s->listen_fds[i] = -EBADF;
        s->name = name;
        s->config = config;
        r = queue_set_load(config->queues_dir, &s->queues, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to load the queues: %s",
                                       error ? error : strerror(-r));
        if (config->credentials_loaded) {
                r = api_tokens_load(config, &s->tokens, &error);
                if (r < 0)
                        return log_error_errno(r, "Failed to load credentials: %s",
                                               error ? error : strerror(-r));
        }
        s->keys = calloc(s->queues->n_queues + 1, sizeof(QueueKeys *));
        if (!s->keys)
                return -ENOMEM;
        for (size_t i = 0; i < s->queues->n_queues; i++) {
                r = queue_keys_new(config->prefix, s->queues->queues[i]->name, &s->keys[i]);
                if (r < 0)
                        return r;
        }
        r = redis_conn_new(e, &config->redis, "command", &s->redis);
        if (r < 0)
                return r;
        redis_conn_set_timeout(s->redis, config->redis_timeout_usec);
        redis_conn_set_state_callback(s->redis, on_redis_state, s);
        *ret = TAKE_PTR(s);
        return 0;
}

Service *service_free(Service *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->watchdog);
        http_server_free(s->http);
        for (size_t i = 0; i < s->n_listen; i++)
                safe_close(s->listen_fds[i]);
        s->redis = redis_conn_free(s->redis);
        if (s->keys && s->queues)
                for (size_t i = 0; i < s->queues->n_queues; i++)
                        queue_keys_free(s->keys[i]);
        free(s->keys);
        queue_set_free(s->queues);
        api_tokens_free(s->tokens);
        tasad_config_free(s->config);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

/* The watchdog follows the daemon's own event loop, never Redis: through a Redis outage the
 * daemon keeps serving (503 for what needs Redis) and says so in STATUS=. */
static int on_watchdog(sd_event_source *src, uint64_t usec, void *userdata) {
        uint64_t wd = 0;

        sd_notify(false, "WATCHDOG=1");
        (void) sd_watchdog_enabled(false, &wd);
        (void) sd_event_source_set_time_relative(src, wd / 3);
        return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

int service_start(Service *s, const char *fdname, const char *path, const HttpRoute *routes,
                  size_t n_routes, void *userdata) {
        bool activated = false;
        int r;

        r = http_listen_fds(fdname, path, s->tokens != NULL, s->listen_fds,
                            &s->n_listen, &activated);
        if (r < 0)
                return log_error_errno(r, "Failed to open the socket %s: %m", path);
        s->routes = routes;
        s->n_routes = n_routes;
        s->route_userdata = userdata;
        /* The sockets' own addresses: a TCP socket passed by systemd is not `path`. */
        for (size_t i = 0; i < s->n_listen; i++) {
                char where[128];

                http_listen_describe(s->listen_fds[i], where, sizeof(where));
                log_info("Listening on %s%s%s.", where, activated ? ", passed by systemd as " : "",
                         activated ? fdname : "");
        }
        if (activated && s->n_listen > 1)
                log_info("Listening on the %zu sockets passed by systemd as '%s'%s.", s->n_listen,
                         fdname, s->tokens ? " (TCP: API tokens)" : "");
        sd_notifyf(false, "STATUS=%s: connecting to Redis", s->name);
        if (sd_watchdog_enabled(false, NULL) > 0) {
                r = sd_event_add_time_relative(s->event, &s->watchdog, CLOCK_MONOTONIC, 0,
                                               USEC_PER_MSEC, on_watchdog, s);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the watchdog: %m");
        }
        return redis_conn_start(s->redis);
}

int service_request_allowed(Service *s, HttpRequest *req, char *const *groups) {
        const ApiToken *tok = http_request_principal(req);
        uid_t uid;
        gid_t gid;

        if (tok)
                return api_token_in_groups(tok, groups);
        if (http_request_peer(req, &uid, &gid, NULL) < 0)
                return 0; /* a TCP request without a token never gets this far */
        return auth_uid_in_groups(uid, gid, groups);
}

int service_request_queue(Service *s, HttpRequest *req, const char *name, bool write,
                          size_t *ret_index) {
        const ApiToken *tok = http_request_principal(req);
        uid_t uid = 0;
        int r;

        for (size_t i = 0; i < s->queues->n_queues; i++) {
                const QueueConfig *q = s->queues->queues[i];
                if (!streq(q->name, name))
                        continue;
                r = service_request_allowed(s, req, write ? q->submit_groups : q->read_groups);
                if (r <= 0) {
                        if (tok)
                                http_reply_error(req, 403, "forbidden", "token %s may not %s queue '%s'",
                                                 tok->name, write ? "submit to" : "read", name);
                        else {
                                (void) http_request_peer(req, &uid, NULL, NULL);
                                http_reply_error(req, 403, "forbidden", "user %u may not %s queue '%s'",
                                                 (unsigned) uid, write ? "submit to" : "read", name);
                        }
                        return -EPERM;
                }
                *ret_index = i;
                return 0;
        }
        http_reply_error(req, 404, "not-found", "no queue '%s'", name);
        return -ENOENT;
}

void service_reply_unavailable(HttpRequest *req) {
        http_reply_error(req, 503, "unavailable", "Redis is unreachable; try again later");
}

int service_require_redis(Service *s, HttpRequest *req) {
        if (redis_conn_is_up(s->redis))
                return 0;
        http_reply_error(req, 503, "unavailable", "Redis is unreachable; nothing was changed, try again later");
        return -ENOTCONN;
}

typedef struct Locate Locate;
typedef struct LocateItem {
        Locate *locate;
        size_t index;           /* the queue this EXISTS asked about */
} LocateItem;

struct Locate {
        Service *service;
        ServiceLocateCallback cb;
        void *userdata;
        size_t pending, found, index;
        int error;
        LocateItem items[];
};

static void on_exists(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        LocateItem *item = userdata;
        Locate *l = item->locate;
        long long v = 0;

        if (error < 0)
                l->error = error;
        else if (redis_reply_integer(reply, &v) >= 0 && v > 0) {
                l->found++;
                l->index = item->index;
        }
        if (--l->pending > 0)
                return;
        if (l->error < 0)
                l->cb(l->service, l->error, 0, l->userdata);
        else if (l->found == 0)
                l->cb(l->service, -ENOENT, 0, l->userdata);
        else if (l->found > 1)
                l->cb(l->service, -ENOTUNIQ, 0, l->userdata);
        else
                l->cb(l->service, 0, l->index, l->userdata);
        free(l);
}

bool service_request_sees(Service *s, HttpRequest *req, size_t i, bool write) {
        const QueueConfig *q = s->queues->queues[i];

        /* A failed group lookup (-errno) sees nothing: the job is not found, nothing leaks. */
        if (service_request_allowed(s, req, q->read_groups) > 0)
                return true;
        return write && service_request_allowed(s, req, q->submit_groups) > 0;
}

int service_locate(Service *s, HttpRequest *req, bool write, ServiceKeyFunc keyf, const char *id,
                   const char *queue_hint, ServiceLocateCallback cb, void *userdata) {
        size_t n = s->queues->n_queues, sent = 0;
        Locate *l;
        int r;

        if (!job_id_is_valid(id))
                return -ENOENT;
        l = calloc(1, sizeof(Locate) + n * sizeof(LocateItem));
        if (!l)
                return -ENOMEM;
        *l = (Locate){ .service = s, .cb = cb, .userdata = userdata };
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *key = NULL;
                if ((queue_hint && !streq(queue_hint, s->queues->queues[i]->name)) ||
                    !service_request_sees(s, req, i, write))
                        continue;
                key = keyf(s->keys[i], id);
                if (!key)
                        continue;
                l->items[i] = (LocateItem){ l, i };
                r = redis_command_argv(s->redis, on_exists, &l->items[i], 2,
                                       (const char *[]){ "EXISTS", key }, NULL);
                if (r < 0)
                        l->error = r;
                else
                        sent++;
        }
        /* Replies only arrive from the event loop, never while we are still sending. */
        l->pending = sent;
        if (sent > 0)
                return 0;
        r = l->error < 0 ? l->error : -ENOENT;
        free(l);
        return r;
}

void service_reply_locate_error(HttpRequest *req, int r, const char *id) {
        if (r == -ENOENT)
                http_reply_error(req, 404, "not-found", "no job '%s'", id);
        else if (r == -ENOTUNIQ)
                http_reply_error(req, 409, "conflict",
                                 "job id '%s' exists in several queues: name the queue", id);
        else if (r == -ENOTCONN || r == -ECONNRESET || r == -ETIMEDOUT)
                service_reply_unavailable(req);
        else
                http_reply_error(req, 500, "internal", "looking up job '%s' failed: %s", id,
                                 strerror(-r));
}
