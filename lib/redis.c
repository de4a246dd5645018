#include "redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "parse.h"

/* Reconnecting: the delay grows with the outage (an eighth of its age so far, between these
 * two), so a Redis that is back after a short restart is found within a few hundred ms, and a
 * long outage costs one attempt every few seconds. */
#define RETRY_MIN_USEC (100 * USEC_PER_MSEC)
#define RETRY_MAX_USEC (5 * USEC_PER_SEC)
/* From connect() to the PING's reply: the kernel's own SYN retries would take minutes. */
#define CONNECT_TIMEOUT_USEC (3 * USEC_PER_SEC)
/* TCP: an idle connection is probed after 5 s, then every 2 s, dead after 3 unanswered probes;
 * data unacknowledged for TCP_USER_TIMEOUT also drops it. */
#define KEEPALIVE_IDLE_SEC 5
#define KEEPALIVE_INTERVAL_SEC 2
#define KEEPALIVE_COUNT 3

typedef enum ConnState { CONN_UNKNOWN, CONN_UP, CONN_DOWN } ConnState;

struct RedisConn {
        sd_event *event;
        char *name;
        RedisAddress addr;
        redisAsyncContext *ac;
        sd_event_source *io, *reconnect_timer, *timeout_timer, *connect_timer;
        uint32_t io_events;
        bool ready;             /* connected and set up */
        bool freeing;
        int fail_error;         /* why conn_failed() dropped the current context, or 0 */
        ConnState state;        /* last state reported to the state callback */
        uint64_t outage_start;  /* CLOCK_MONOTONIC of the first failure since last up, or 0 */
        uint64_t timeout_usec;
        char *server_error;     /* the server's error text that made the last setup fail */
        char error_text[320];   /* redis_conn_error_text()'s buffer */
        uint64_t last_progress; /* CLOCK_MONOTONIC of the last reply or of sending into idle */
        size_t pending;
        RedisStateCallback state_cb;
        void *state_userdata;
};

typedef struct Pending {
        RedisConn *conn;
        RedisCallback cb;
        void *userdata;
} Pending;

static int conn_connect(RedisConn *c);
static void conn_failed(RedisConn *c, int error);

static void connect_timer_stop(RedisConn *c) {
        if (c->connect_timer)
                (void) sd_event_source_set_enabled(c->connect_timer, SD_EVENT_OFF);
}

static void server_error_set(RedisConn *c, const char *text) {
        free(c->server_error);
        c->server_error = text ? strndup(text, 120) : NULL;
}

static uint64_t now_usec(RedisConn *c) {
        uint64_t t = 0;
        (void) sd_event_now(c->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void report_state(RedisConn *c, ConnState s, int error) {
        if (c->state == s)
                return;
        c->state = s;
        if (c->state_cb)
                c->state_cb(c, s == CONN_UP, error, c->state_userdata);
}

/* --- the five hiredis hooks ------------------------------------------------------------- */

static void io_update(RedisConn *c) {
        if (!c->io)
                return;
        if (c->io_events == 0) {
                (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_io_events(c->io, c->io_events);
        (void) sd_event_source_set_enabled(c->io, SD_EVENT_ON);
}

static void hook_add_read(void *p) {
        RedisConn *c = p;
        c->io_events |= EPOLLIN;
        io_update(c);
}

static void hook_del_read(void *p) {
        RedisConn *c = p;
        c->io_events &= ~(uint32_t) EPOLLIN;
        io_update(c);
}

static void hook_add_write(void *p) {
        RedisConn *c = p;
        c->io_events |= EPOLLOUT;
        io_update(c);
}

static void hook_del_write(void *p) {
        RedisConn *c = p;
        c->io_events &= ~(uint32_t) EPOLLOUT;
        io_update(c);
}

/* hiredis frees the context after this: forget it. */
static void hook_cleanup(void *p) {
        RedisConn *c = p;
        c->io = sd_event_source_disable_unref(c->io);
        c->io_events = 0;
        c->ac = NULL;
        c->ready = false;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RedisConn *c = userdata;

        if (c->ac && (revents & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                redisAsyncHandleRead(c->ac);
        /* The read may have freed the context (disconnect): check again. */
        if (c->ac && (revents & EPOLLOUT))
                redisAsyncHandleWrite(c->ac);
        return 0;
}

static int attach(RedisConn *c) {
        redisAsyncContext *ac = c->ac;
        int r;

        r = sd_event_add_io(c->event, &c->io, ac->c.fd, 0, on_io, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        (void) sd_event_source_set_description(c->io, "redis-io");
        ac->ev.data = c;
        ac->ev.addRead = hook_add_read;
        ac->ev.delRead = hook_del_read;
        ac->ev.addWrite = hook_add_write;
        ac->ev.delWrite = hook_del_write;
        ac->ev.cleanup = hook_cleanup;
        return 0;
}

/* --- command timeouts ------------------------------------------------------------------- */

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;

        if (c->pending == 0 || c->timeout_usec == 0)
                return 0;
        if (usec >= c->last_progress + c->timeout_usec) {
                conn_failed(c, -ETIMEDOUT);
                return 0;
        }
        (void) sd_event_source_set_time(s, c->last_progress + c->timeout_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static void timeout_arm(RedisConn *c) {
        if (c->timeout_usec == 0 || c->pending == 0) {
                if (c->timeout_timer)
                        (void) sd_event_source_set_enabled(c->timeout_timer, SD_EVENT_OFF);
                return;
        }
        if (!c->timeout_timer) {
                if (sd_event_add_time(c->event, &c->timeout_timer, CLOCK_MONOTONIC,
                                      c->last_progress + c->timeout_usec, USEC_PER_MSEC * 10,
                                      on_timeout, c) < 0)
                        return;
                return;
        }
        (void) sd_event_source_set_time(c->timeout_timer, c->last_progress + c->timeout_usec);
        (void) sd_event_source_set_enabled(c->timeout_timer, SD_EVENT_ONESHOT);
}

/* --- commands --------------------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
        Pending *p = privdata;
        RedisConn *c = p->conn;
        const redisReply *r = reply;
        int error = 0;

        c->pending--;
        c->last_progress = now_usec(c);
        if (!r)
                error = c->freeing ? -ECANCELED : c->fail_error < 0 ? c->fail_error : -ECONNRESET;
        else if (r->type == REDIS_REPLY_ERROR)
                error = -EIO;
        if (p->cb)
                p->cb(c, r, error, p->userdata);
        free(p);
        if (c->freeing)
                return;
        /* A replica refuses every write: this is the wrong server (a failover moved the
         * primary). Reconnect, which resolves the name again. */
        if (r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "READONLY", 8) == 0) {
                server_error_set(c, r->str);
                conn_failed(c, -EROFS);
                return;
        }
        timeout_arm(c);
}

static int send_argv(RedisConn *c, RedisCallback cb, void *userdata, int argc, const char **argv,
                     const size_t *argvlen) {
        Pending *p;

        if (!c->ac)
                return -ENOTCONN;
        p = malloc(sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (Pending){ c, cb, userdata };
        if (redisAsyncCommandArgv(c->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
                free(p);
                return -ENOTCONN;
        }
        if (c->pending++ == 0)
                c->last_progress = now_usec(c);
        timeout_arm(c);
        return 0;
}

int redis_command_argv(RedisConn *c, RedisCallback cb, void *userdata, int argc,
                       const char **argv, const size_t *argvlen) {
        if (!c->ready)
                return -ENOTCONN;
        return send_argv(c, cb, userdata, argc, argv, argvlen);
}

int redis_command(RedisConn *c, RedisCallback cb, void *userdata, const char *format, ...) {
        Pending *p;
        va_list ap;
        int r;

        if (!c->ready || !c->ac)
                return -ENOTCONN;
        p = malloc(sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (Pending){ c, cb, userdata };
        va_start(ap, format);
        r = redisvAsyncCommand(c->ac, on_reply, p, format, ap);
        va_end(ap);
        if (r != REDIS_OK) {
                free(p);
                return -ENOTCONN;
        }
        if (c->pending++ == 0)
                c->last_progress = now_usec(c);
        timeout_arm(c);
        return 0;
}

int redis_script(RedisConn *c, ScriptId id, RedisCallback cb, void *userdata, int nkeys, int argc,
                 const char **argv, const size_t *argvlen) {
        _cleanup_free_ const char **v = NULL;
        _cleanup_free_ size_t *vl = NULL;
        char nk[16];

        v = malloc(sizeof(char *) * (size_t) (argc + 3));
        vl = malloc(sizeof(size_t) * (size_t) (argc + 3));
        if (!v || !vl)
                return -ENOMEM;
        snprintf(nk, sizeof(nk), "%d", nkeys);
        v[0] = "EVALSHA";
        v[1] = script_sha(id);
        v[2] = nk;
        vl[0] = 7;
        vl[1] = 40;
        vl[2] = strlen(nk);
        for (int i = 0; i < argc; i++) {
                v[i + 3] = argv[i];
                vl[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
        }
        return redis_command_argv(c, cb, userdata, argc + 3, v, vl);
}

/* --- connection life cycle -------------------------------------------------------------- */

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;
        int r;

        r = conn_connect(c);
        if (r < 0)
                conn_failed(c, r);
        return 0;
}

static uint64_t retry_delay(RedisConn *c) {
        uint64_t now = now_usec(c), d;
        uint32_t rnd = 0;

        if (c->outage_start == 0)
                c->outage_start = now;
        d = CLAMP((now - c->outage_start) / 8, RETRY_MIN_USEC, RETRY_MAX_USEC);
        /* +-20%: the clients of one Redis do not all come back in the same millisecond. */
        (void) getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
        return d - d / 5 + (uint64_t) rnd % (d / 5 * 2 + 1);
}

static void schedule_reconnect(RedisConn *c) {
        uint64_t when = now_usec(c) + retry_delay(c);

        if (!c->reconnect_timer) {
                if (sd_event_add_time(c->event, &c->reconnect_timer, CLOCK_MONOTONIC, when, 0,
                                      on_reconnect, c) >= 0)
                        (void) sd_event_source_set_description(c->reconnect_timer, "redis-reconnect");
                return;
        }
        (void) sd_event_source_set_time(c->reconnect_timer, when);
        (void) sd_event_source_set_enabled(c->reconnect_timer, SD_EVENT_ONESHOT);
}

/* The connection failed or was lost: drop it (pending callbacks get -ECONNRESET), report the
 * transition once and try again later. */
static void conn_failed(RedisConn *c, int error) {
        c->ready = false;
        connect_timer_stop(c);
        /* Pending callbacks and on_disconnect (both run from redisAsyncFree, maybe deferred
         * until the current hiredis callback returns) report this error, not a generic one. */
        c->fail_error = error;
        if (c->ac) {
                redisAsyncContext *ac = c->ac;
                /* Frees the context unless we are inside one of its callbacks, where hiredis
                 * defers it; either way hook_cleanup forgets it. */
                redisAsyncFree(ac);
        }
        if (c->freeing)
                return;
        report_state(c, CONN_DOWN, error);
        schedule_reconnect(c);
}

/* Which failure a setup reply means: a refused login, a server still loading its data set
 * (tried again soon, like any other failure while the outage is young), or a protocol error. */
static int setup_error(const redisReply *reply) {
        const char *e = reply && reply->str ? reply->str : "";

        if (strncmp(e, "WRONGPASS", 9) == 0 || strncmp(e, "NOAUTH", 6) == 0 ||
            strstr(e, "invalid password") || strstr(e, "invalid username-password"))
                return -EACCES;
        if (strncmp(e, "LOADING", 7) == 0)
                return -EAGAIN;
        return -EPROTO;
}

static void on_setup_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        bool last = userdata != NULL;

        if (error < 0) {
                if (error != -ECANCELED && error != -ECONNRESET && c->fail_error == 0) {
                        server_error_set(c, reply ? reply->str : NULL);
                        conn_failed(c, reply ? setup_error(reply) : error);
                }
                return;
        }
        if (!last)
                return;
        c->ready = true;
        c->outage_start = 0;
        server_error_set(c, NULL);
        connect_timer_stop(c);
        report_state(c, CONN_UP, 0);
}

/* AUTH, SELECT, SCRIPT LOAD of every script, PING; the PING's reply marks the connection up. */
static int conn_setup(RedisConn *c) {
        char db[16];
        int r = 0;

        if (c->addr.password && c->addr.user)
                r = send_argv(c, on_setup_reply, NULL, 3,
                              (const char *[]){ "AUTH", c->addr.user, c->addr.password }, NULL);
        else if (c->addr.password)
                r = send_argv(c, on_setup_reply, NULL, 2,
                              (const char *[]){ "AUTH", c->addr.password }, NULL);
        if (r >= 0 && c->addr.db != 0) {
                snprintf(db, sizeof(db), "%u", c->addr.db);
                r = send_argv(c, on_setup_reply, NULL, 2,
                              (const char *[]){ "SELECT", db }, NULL);
        }
        for (ScriptId i = 0; r >= 0 && i < _SCRIPT_MAX; i++)
                r = send_argv(c, on_setup_reply, NULL, 3,
                              (const char *[]){ "SCRIPT", "LOAD", script_source(i) }, NULL);
        if (r >= 0)
                r = send_argv(c, on_setup_reply, (void *) c, 1,
                              (const char *[]){ "PING" }, NULL);
        return r;
}

/* Finds a dead peer within seconds instead of the kernel's defaults (2 h idle, ~15 min of
 * retransmissions). Best effort: a failure leaves the kernel's defaults. */
static void tcp_tune(RedisConn *c, int fd) {
        int on = 1, idle = KEEPALIVE_IDLE_SEC, intvl = KEEPALIVE_INTERVAL_SEC,
            cnt = KEEPALIVE_COUNT;
        unsigned user_ms = (unsigned) (CLAMP(c->timeout_usec ? c->timeout_usec : 10 * USEC_PER_SEC,
                                             2 * USEC_PER_SEC, 30 * USEC_PER_SEC) /
                                       USEC_PER_MSEC);

        (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms));
}

static void on_connect(const redisAsyncContext *ac, int status) {
        RedisConn *c = ac->data;
        int r;

        if (status != REDIS_OK) {
                /* hiredis frees the context after this callback. */
                r = -ENOTCONN;
                c->ac = NULL;
                c->io = sd_event_source_disable_unref(c->io);
                connect_timer_stop(c);
                if (!c->freeing) {
                        server_error_set(c, ac->c.errstr[0] ? ac->c.errstr : NULL);
                        report_state(c, CONN_DOWN, r);
                        schedule_reconnect(c);
                }
                return;
        }
        if (!c->addr.unix_path)
                tcp_tune(c, ac->c.fd);
        r = conn_setup(c);
        if (r < 0)
                conn_failed(c, r);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
        RedisConn *c = ac->data;

        c->ready = false;
        c->ac = NULL;
        /* Dropped by conn_failed(), which reports and schedules the reconnect itself. */
        if (c->freeing || c->fail_error < 0)
                return;
        report_state(c, CONN_DOWN, -ECONNRESET);
        schedule_reconnect(c);
}

static int on_connect_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;

        if (c->ac && !c->ready) {
                server_error_set(c, NULL);
                conn_failed(c, -ETIMEDOUT);
        }
        return 0;
}

/* Connecting and setting up must be done by then. */
static int connect_timer_arm(RedisConn *c) {
        uint64_t when = now_usec(c) + CONNECT_TIMEOUT_USEC;

        if (!c->connect_timer)
                return sd_event_add_time(c->event, &c->connect_timer, CLOCK_MONOTONIC, when,
                                         10 * USEC_PER_MSEC, on_connect_timeout, c);
        (void) sd_event_source_set_time(c->connect_timer, when);
        return sd_event_source_set_enabled(c->connect_timer, SD_EVENT_ONESHOT);
}

static int conn_connect(RedisConn *c) {
        redisAsyncContext *ac;
        int r;

        c->fail_error = 0;
        if (c->addr.unix_path)
                ac = redisAsyncConnectUnix(c->addr.unix_path);
        else
                ac = redisAsyncConnect(c->addr.host, c->addr.port);
        if (!ac)
                return -ENOMEM;
        if (ac->err) {
                r = ac->c.err == REDIS_ERR_IO && errno > 0 ? -errno : -ECONNREFUSED;
                redisAsyncFree(ac);
                return r;
        }
        ac->data = c;
        c->ac = ac;
        r = attach(c);
        if (r < 0) {
                c->ac = NULL;
                redisAsyncFree(ac);
                return r;
        }
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        return connect_timer_arm(c);
}

int redis_conn_new(sd_event *e, const RedisAddress *addr, const char *name, RedisConn **ret) {
        _cleanup_(redis_conn_freep) RedisConn *c = NULL;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->timeout_usec = 10 * USEC_PER_SEC;
        c->name = strdup(name ? name : "redis");
        if (!c->name)
                return -ENOMEM;
        r = redis_address_copy(addr, &c->addr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

RedisConn *redis_conn_free(RedisConn *c) {
        if (!c)
                return NULL;
        c->freeing = true;
        if (c->ac)
                redisAsyncFree(c->ac);
        c->io = sd_event_source_disable_unref(c->io);
        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
        c->timeout_timer = sd_event_source_disable_unref(c->timeout_timer);
        c->connect_timer = sd_event_source_disable_unref(c->connect_timer);
        sd_event_unref(c->event);
        free(c->server_error);
        redis_address_done(&c->addr);
        free(c->name);
        free(c);
        return NULL;
}

void redis_conn_set_state_callback(RedisConn *c, RedisStateCallback cb, void *userdata) {
        c->state_cb = cb;
        c->state_userdata = userdata;
}

void redis_conn_set_timeout(RedisConn *c, uint64_t usec) {
        c->timeout_usec = usec;
        timeout_arm(c);
}

int redis_conn_start(RedisConn *c) {
        int r = conn_connect(c);
        if (r < 0)
                conn_failed(c, r);
        return 0;
}

bool redis_conn_is_up(const RedisConn *c) {
        return c->ready;
}

const char *redis_conn_name(const RedisConn *c) {
        return c->name;
}

const char *redis_conn_error_text(RedisConn *c, int error) {
        const char *what, *e = c->server_error;

        switch (error) {
        case -EACCES:
                what = "authentication failed (check the password and user of the Redis URL or "
                       "redis_password_credential)";
                break;
        case -EROFS:
                what = "the server is a read-only replica; reconnecting to find the primary";
                break;
        case -EAGAIN:
                what = "the server is still loading its data set";
                break;
        case -ENOTCONN:
                what = "could not connect";
                break;
        case -ETIMEDOUT:
                what = "no answer in time";
                break;
        case -EPROTO:
                what = "the server refused the connection's setup";
                break;
        default:
                what = strerror(error < 0 ? -error : error);
        }
        snprintf(c->error_text, sizeof(c->error_text), "%s%s%s%s", what, e ? " (" : "", e ? e : "",
                 e ? ")" : "");
        return c->error_text;
}

void redis_conn_reset(RedisConn *c) {
        if (c->ac)
                conn_failed(c, -ECONNRESET);
}

size_t redis_conn_pending(const RedisConn *c) {
        return c->pending;
}

const redisReply *redis_reply_element(const redisReply *r, size_t i) {
        if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
                return NULL;
        return r->element[i];
}

const char *redis_reply_string(const redisReply *r, size_t *ret_len) {
        if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
                return NULL;
        if (ret_len)
                *ret_len = r->len;
        return r->str;
}

int redis_reply_integer(const redisReply *r, long long *ret) {
        if (!r)
                return -ENODATA;
        if (r->type == REDIS_REPLY_INTEGER) {
                *ret = r->integer;
                return 0;
        }
        if (r->type == REDIS_REPLY_STRING) {
                char *end;
                errno = 0;
                long long v = strtoll(r->str, &end, 10);
                if (errno != 0 || end == r->str || *end)
                        return -EINVAL;
                *ret = v;
                return 0;
        }
        return -EINVAL;
}
