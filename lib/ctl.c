/* HTTP/1.1 control-socket server on sd-event (see ctl.h).
 *
 * A connection's life, all of it inside CTL_DEADLINE_USEC from accept:
 *  1. the head is read into a fixed buffer of CTL_HEAD_MAX bytes and checked byte by byte as
 *     it arrives (http_head_scan(), lib/http-head.c), so that a bad byte or line end is refused at once instead of
 *     waiting for a blank line that may never come;
 *  2. once the blank line is in, the head is parsed in place (http_head_parse()); what cannot be
 *     served (400, 413, 431, 501, 505) is answered now;
 *  3. the Content-Length body is read and thrown away, so that the client, which may block
 *     while sending it, gets to read the reply;
 *  4. the route is looked up (404, 405) and its handler runs once, replying into a buffer;
 *  5. the buffer is written without blocking (EPOLLOUT when the socket is full), then the
 *     connection is closed.
 * A connection that fails anywhere (client gone, deadline, out of memory) is closed unanswered
 * and freed at once; nothing outlives it. */
#include "ctl.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "http-head.h"
#include "http-json.h"
#include "log.h"

#define CTL_METHOD_MAX 16U
/* Connections accepted per wake-up: the rest wait for the next loop iteration (the io source
 * is level-triggered), so a flood of connects cannot starve the other sources. */
#define CTL_ACCEPT_BURST 16U
/* Out of fds or memory: stop accepting for this long instead of spinning on a listening socket
 * that stays readable. */
#define CTL_ACCEPT_RETRY_USEC (100 * USEC_PER_MSEC)
#define CTL_DEADLINE_ACCURACY_USEC (10 * USEC_PER_MSEC)

/* The limits are spelled out in the error messages below. */
_Static_assert(CTL_HEAD_MAX == 8192, "update the 431 message");
_Static_assert(CTL_BODY_MAX == 4096, "update the 413 message");

typedef enum CtlState {
        CTL_READ_HEAD,
        CTL_READ_BODY,
        CTL_WRITE,
} CtlState;

/* One connection, which carries exactly one request. */
struct CtlRequest {
        CtlServer *server;
        CtlRequest *prev, *next;
        int fd;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        CtlState state;
        bool has_peer;
        struct ucred peer;
        char head[CTL_HEAD_MAX];
        size_t head_len;
        HttpHeadScan scan;
        const char *method;             /* into head[] */
        const char *path;
        uint64_t body_left;             /* body bytes still to be read and dropped */
        bool replied;
        char *out;                      /* the whole reply: status line, headers, body */
        size_t out_len;
        size_t out_done;
};

struct CtlServer {
        sd_event *event;
        int listen_fd;
        sd_event_source *listen_source;
        sd_event_source *retry_source;  /* re-enables listen_source after a resource error */
        CtlRoute *routes;
        size_t n_routes;
        void *userdata;
        uint64_t deadline_usec;
        CtlRequest *requests;           /* every open connection */
        size_t n_requests;
};

/* ---- the head: lib/http-head.c, with this server's policy -------------------------------- */

static size_t span_upper(const char *s) {
        size_t n = 0;

        while (s[n] >= 'A' && s[n] <= 'Z')
                n++;
        return n;
}

/* Visible ASCII: what a request target may consist of. */
static size_t span_visible(const char *s) {
        size_t n = 0;

        while (s[n] > 0x20 && s[n] < 0x7f)
                n++;
        return n;
}

/* http_head_parse(), then what this server does not serve: any Transfer-Encoding
 * (-EOPNOTSUPP, 501) and bodies above CTL_BODY_MAX (-EFBIG, 413). */
static int head_parse(char *head, size_t len, HttpHead *ret, const char **ret_why) {
        int r = http_head_parse(head, len, ret, ret_why);

        if (r < 0)
                return r;
        if (ret->n_transfer_encoding > 0)
                return *ret_why = "Transfer-Encoding is not supported", -EOPNOTSUPP;
        if (ret->content_length > CTL_BODY_MAX)
                return *ret_why = "Request body is larger than 4096 bytes", -EFBIG;
        return 0;
}

/* ---- replies -------------------------------------------------------------------------- */

static const struct {
        unsigned status;
        const char *reason;
} reasons[] = {
        { 200, "OK" },
        { 400, "Bad Request" },
        { 403, "Forbidden" },
        { 404, "Not Found" },
        { 405, "Method Not Allowed" },
        { 409, "Conflict" },
        { 411, "Length Required" },
        { 413, "Content Too Large" },
        { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" },
        { 501, "Not Implemented" },
        { 505, "HTTP Version Not Supported" },
};

static const char *status_reason(unsigned status) {
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                if (reasons[i].status == status)
                        return reasons[i].reason;
        return NULL;
}

/* Renders the whole reply into req->out. Consumes body (an object or array), also on
 * failure. */
static int reply_build(CtlRequest *req, unsigned status, json_t *body, const char *allow) {
        _cleanup_(json_decrefp) json_t *b = body;
        _cleanup_free_ char *text = NULL;
        const char *reason = status_reason(status);
        char *out;
        int n;

        if (req->replied)
                return -EALREADY;
        if (!reason || !(json_is_object(b) || json_is_array(b)))
                return -EINVAL;
        text = json_dumps(b, HTTP_JSON_FLAGS);
        if (!text)
                return -ENOMEM;
        n = asprintf(&out,
                     "HTTP/1.1 %u %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s%s%s"
                     "\r\n%s",
                     status, reason, strlen(text), allow ? "Allow: " : "", allow ?: "",
                     allow ? "\r\n" : "", text);
        if (n < 0)
                return -ENOMEM;
        req->out = out;
        req->out_len = (size_t) n;
        req->replied = true;
        return 0;
}

int ctl_reply_json(CtlRequest *req, unsigned status, json_t *body) {
        if (!req) {
                json_decref(body);
                return -EINVAL;
        }
        return reply_build(req, status, body, NULL);
}

int ctl_reply_error(CtlRequest *req, unsigned status, const char *code, const char *format,
                    ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int r;

        if (!req || !code || !format)
                return -EINVAL;
        if (req->replied)
                return -EALREADY;
        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return reply_build(req, status, http_error_body(code, message), NULL);
}

/* An answer from the server itself; what follows is writing it. */
static int request_fail(CtlRequest *req, unsigned status, const char *code, const char *message,
                        const char *allow) {
        req->state = CTL_WRITE;
        return reply_build(req, status, http_error_body(code, message), allow);
}

/* ---- routing -------------------------------------------------------------------------- */

/* The route for method and path; NULL with *ret_path_known telling whether another method has
 * this path. */
static const CtlRoute *route_find(const CtlServer *s, const char *method, const char *path,
                                  bool *ret_path_known) {
        bool known = false;

        for (size_t i = 0; i < s->n_routes; i++) {
                if (!streq(s->routes[i].path, path))
                        continue;
                if (streq(s->routes[i].method, method))
                        return &s->routes[i];
                known = true;
        }
        *ret_path_known = known;
        return NULL;
}

/* "GET, POST": the methods of the routes with this path, in table order. */
static int route_allow(const CtlServer *s, const char *path, char **ret) {
        _cleanup_free_ char *allow = NULL;
        size_t size = 1, len = 0;

        for (size_t i = 0; i < s->n_routes; i++)
                if (streq(s->routes[i].path, path))
                        size += strlen(s->routes[i].method) + 2;
        allow = malloc(size);
        if (!allow)
                return -ENOMEM;
        allow[0] = '\0';
        for (size_t i = 0; i < s->n_routes; i++)
                if (streq(s->routes[i].path, path))
                        len += (size_t) snprintf(allow + len, size - len, "%s%s",
                                                 len > 0 ? ", " : "", s->routes[i].method);
        *ret = TAKE_PTR(allow);
        return 0;
}

static int reply_not_found(CtlRequest *req) {
        _cleanup_free_ char *message = NULL;

        if (asprintf(&message, "No such path: %s", req->path) < 0)
                return -ENOMEM;
        return request_fail(req, 404, "not-found", message, NULL);
}

static int reply_method_not_allowed(CtlRequest *req) {
        _cleanup_free_ char *allow = NULL, *message = NULL;
        int r;

        r = route_allow(req->server, req->path, &allow);
        if (r < 0)
                return r;
        if (asprintf(&message, "Method %s is not allowed here (allowed: %s)", req->method,
                     allow) < 0)
                return -ENOMEM;
        return request_fail(req, 405, "method-not-allowed", message, allow);
}

/* Runs the handler once. 0 with a reply to write, -errno when none could be made. */
static int request_dispatch(CtlRequest *req) {
        const CtlServer *s = req->server;
        const CtlRoute *rt;
        bool path_known;
        int r;

        req->state = CTL_WRITE;
        rt = route_find(s, req->method, req->path, &path_known);
        if (!rt)
                return path_known ? reply_method_not_allowed(req) : reply_not_found(req);
        r = rt->handler(req, s->userdata);
        if (req->replied) {
                if (r < 0)
                        log_debug_errno(r, "Control handler for %s %s failed after replying, "
                                        "sending its reply: %m", req->method, req->path);
                return 0;
        }
        if (r < 0)
                return request_fail(req, 500, "internal", strerror(-r), NULL);
        return request_fail(req, 500, "internal", "The handler did not reply", NULL);
}

/* ---- connections ---------------------------------------------------------------------- */

static CtlRequest *request_free(CtlRequest *req) {
        CtlServer *s;

        if (!req)
                return NULL;
        s = req->server;
        if (req->prev)
                req->prev->next = req->next;
        else if (s->requests == req)
                s->requests = req->next;
        if (req->next)
                req->next->prev = req->prev;
        s->n_requests--;
        sd_event_source_disable_unref(req->io_source);
        sd_event_source_disable_unref(req->timer_source);
        safe_close(req->fd);
        free(req->out);
        free(req);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlRequest *, request_free);

/* Bytes read (> 0), or -errno: -EAGAIN when there are none yet, -ECONNRESET at EOF. */
static int socket_recv(int fd, void *buf, size_t size) {
        for (;;) {
                ssize_t n = recv(fd, buf, size, 0);

                if (n > 0)
                        return (int) n;
                if (n == 0)
                        return -ECONNRESET;
                if (errno != EINTR)
                        return negative_errno();
        }
}

/* Maps head_parse() errors to their answers. */
static int head_refuse(CtlRequest *req, int error, const char *why) {
        static const struct {
                int error;
                unsigned status;
                const char *code;
        } table[] = {
                { -EBADMSG, 400, "bad-request" },
                { -EFBIG, 413, "too-large" },
                { -EMSGSIZE, 431, "header-too-large" },
                { -E2BIG, 431, "header-too-large" },
                { -EOPNOTSUPP, 501, "not-implemented" },
                { -EPROTONOSUPPORT, 505, "version-not-supported" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].error == error)
                        return request_fail(req, table[i].status, table[i].code, why, NULL);
        return error;
}

static int head_complete(CtlRequest *req, size_t len) {
        const char *why = NULL;
        HttpHead h;
        int r;

        r = head_parse(req->head, len, &h, &why);
        if (r < 0)
                return head_refuse(req, r, why);
        req->method = h.method;
        req->path = h.path;
        /* Bytes that came with the head are the body's beginning. */
        req->body_left = h.content_length - MIN((uint64_t) (req->head_len - len),
                                                h.content_length);
        req->state = CTL_READ_BODY;
        return 0;
}

/* Reads what there is of the head. 1 when it is complete (parsed, or refused with a reply to
 * write), 0 while more is needed, -errno when the connection is to be dropped. */
static int head_receive(CtlRequest *req) {
        const char *why = NULL;
        int r;

        for (;;) {
                r = http_head_scan(req->head, req->head_len, SIZE_MAX, &req->scan, &why);
                if (r != 0)
                        break;
                if (req->head_len == CTL_HEAD_MAX)
                        return head_refuse(req, -EMSGSIZE,
                                           "Request head is larger than 8192 bytes") ?: 1;
                r = socket_recv(req->fd, req->head + req->head_len, CTL_HEAD_MAX - req->head_len);
                if (r < 0)
                        return r == -EAGAIN ? 0 : r;
                req->head_len += (size_t) r;
        }
        if (r < 0)
                return head_refuse(req, r, why) ?: 1;
        return head_complete(req, (size_t) r) ?: 1;
}

/* 1 when the whole body is read (and dropped), 0 while more is to come, or -errno. */
static int body_discard(CtlRequest *req) {
        char buf[1024];

        while (req->body_left > 0) {
                int r = socket_recv(req->fd, buf, (size_t) MIN(req->body_left, sizeof(buf)));

                if (r < 0)
                        return r == -EAGAIN ? 0 : r;
                req->body_left -= (uint64_t) r;
        }
        return 1;
}

/* 1 when the reply is written, 0 when the socket is full (EPOLLOUT then), or -errno. */
static int request_send(CtlRequest *req) {
        while (req->out_done < req->out_len) {
                /* MSG_NOSIGNAL: a client gone away is EPIPE, not SIGPIPE for the daemon. */
                ssize_t n = send(req->fd, req->out + req->out_done, req->out_len - req->out_done,
                                 MSG_NOSIGNAL);

                if (n >= 0) {
                        req->out_done += (size_t) n;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return negative_errno();
                return sd_event_source_set_io_events(req->io_source, EPOLLOUT);
        }
        return 1;
}

/* Moves the exchange on as far as the bytes that are there allow. 1 when it is over (the reply
 * written), 0 while it waits for the client, -errno when the connection is to be dropped. */
static int request_process(CtlRequest *req) {
        int r;

        if (req->state == CTL_READ_HEAD) {
                r = head_receive(req);
                if (r <= 0)
                        return r;
        }
        if (req->state == CTL_READ_BODY) {
                r = body_discard(req);
                if (r <= 0)
                        return r;
                r = request_dispatch(req);
                if (r < 0)
                        return r;
        }
        return request_send(req);
}

static int on_request_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        CtlRequest *req = userdata;
        int r = request_process(req);

        if (r < 0)
                log_debug_errno(r, "Closing a control connection %s: %m",
                                req->replied ? "before its reply was written" : "unanswered");
        if (r != 0)
                request_free(req);
        return 0;
}

static int on_request_deadline(sd_event_source *src, uint64_t usec, void *userdata) {
        CtlRequest *req = userdata;

        log_debug("Control connection took longer than %" PRIu64 " ms, closing it.",
                  req->server->deadline_usec / USEC_PER_MSEC);
        request_free(req);
        return 0;
}

static void request_take_peer(CtlRequest *req) {
        socklen_t len = sizeof(req->peer);

        /* Sockets other than AF_UNIX report no pid. */
        req->has_peer = getsockopt(req->fd, SOL_SOCKET, SO_PEERCRED, &req->peer, &len) >= 0 &&
                        len == sizeof(req->peer) && req->peer.pid > 0;
}

/* Takes fd (an accepted connection), also on failure. */
static int request_new(CtlServer *s, int fd) {
        _cleanup_close_ int cfd = fd;
        _cleanup_(request_freep) CtlRequest *req = NULL;
        int r;

        req = calloc(1, sizeof(CtlRequest));
        if (!req)
                return -ENOMEM;
        req->server = s;
        req->fd = TAKE_FD(cfd);
        req->next = s->requests;
        if (s->requests)
                s->requests->prev = req;
        s->requests = req;
        s->n_requests++;
        request_take_peer(req);

        r = sd_event_add_io(s->event, &req->io_source, req->fd, EPOLLIN, on_request_io, req);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(req->io_source, "ctl-connection");
        r = sd_event_add_time_relative(s->event, &req->timer_source, CLOCK_MONOTONIC,
                                       s->deadline_usec, CTL_DEADLINE_ACCURACY_USEC,
                                       on_request_deadline, req);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(req->timer_source, "ctl-deadline");
        TAKE_PTR(req);
        return 0;
}

/* ---- the listening socket ------------------------------------------------------------- */

/* -EAGAIN when no connection is waiting; 0 when one was taken (or dropped: too many, or no
 * memory for it). */
static int server_accept_one(CtlServer *s) {
        int fd, r;

        fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (s->n_requests >= CTL_CONNECTIONS_MAX) {
                log_debug("%u control connections open, closing a new one.",
                          CTL_CONNECTIONS_MAX);
                safe_close(fd);
                return 0;
        }
        r = request_new(s, fd);
        if (r < 0)
                log_debug_errno(r, "Failed to set up a control connection, closing it: %m");
        return 0;
}

/* Errors of accept4() that concern one connection only (or a signal). */
static bool accept_error_transient(int r) {
        return r == -ECONNABORTED || r == -EINTR || r == -EPROTO || r == -EPERM;
}

/* Errors that go away when fds or memory are freed. */
static bool accept_error_resources(int r) {
        return r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM;
}

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        CtlServer *s = userdata;

        return sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
}

static int server_pause_accepting(CtlServer *s) {
        int r;

        r = sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        if (!s->retry_source) {
                r = sd_event_add_time_relative(s->event, &s->retry_source, CLOCK_MONOTONIC,
                                               CTL_ACCEPT_RETRY_USEC, 0, on_accept_retry, s);
                if (r >= 0)
                        (void) sd_event_source_set_description(s->retry_source, "ctl-retry");
                return r;
        }
        r = sd_event_source_set_time_relative(s->retry_source, CTL_ACCEPT_RETRY_USEC);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s->retry_source, SD_EVENT_ONESHOT);
}

static int on_listen_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        CtlServer *s = userdata;

        for (unsigned i = 0; i < CTL_ACCEPT_BURST; i++) {
                int r = server_accept_one(s);

                if (r == -EAGAIN)
                        return 0;
                if (r >= 0 || accept_error_transient(r))
                        continue;
                if (accept_error_resources(r)) {
                        log_debug_errno(r, "Failed to accept a control connection, pausing for "
                                        "%" PRIu64 " ms: %m",
                                        CTL_ACCEPT_RETRY_USEC / USEC_PER_MSEC);
                        return server_pause_accepting(s);
                }
                /* Anything else will not go away: sd-event disables this source. */
                return log_debug_errno(r, "Failed to accept a control connection, no longer "
                                       "accepting: %m");
        }
        return 0;
}

/* A listening stream socket, made non-blocking: accept4() is called until EAGAIN. */
static int listen_fd_prepare(int fd) {
        int accepting = 0, flags;
        socklen_t len = sizeof(accepting);

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
                return negative_errno();
        if (!accepting)
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return negative_errno();
        return 0;
}

/* ---- the server ----------------------------------------------------------------------- */

static bool route_valid(const CtlRoute *rt) {
        size_t n;

        if (!rt->method || !rt->path || !rt->handler)
                return false;
        n = span_upper(rt->method);
        /* A path with '?' or bytes a target cannot carry would never match. */
        return n >= 1 && n <= CTL_METHOD_MAX && rt->method[n] == '\0' && rt->path[0] == '/' &&
               rt->path[span_visible(rt->path)] == '\0' && !strchr(rt->path, '?');
}

/* Copies the table; malformed or duplicate (method, path) routes are -EINVAL. */
static int server_set_routes(CtlServer *s, const CtlRoute *routes, size_t n_routes) {
        for (size_t i = 0; i < n_routes; i++) {
                if (!route_valid(&routes[i]))
                        return -EINVAL;
                for (size_t k = 0; k < i; k++)
                        if (streq(routes[k].method, routes[i].method) &&
                            streq(routes[k].path, routes[i].path))
                                return -EINVAL;
        }
        s->routes = calloc(MAX(n_routes, (size_t) 1), sizeof(CtlRoute));
        if (!s->routes)
                return -ENOMEM;
        if (n_routes > 0)
                memcpy(s->routes, routes, n_routes * sizeof(CtlRoute));
        s->n_routes = n_routes;
        return 0;
}

int ctl_server_new(sd_event *e, int listen_fd, const CtlRoute *routes, size_t n_routes,
                   void *userdata, CtlServer **ret) {
        _cleanup_close_ int fd = listen_fd;
        _cleanup_(ctl_server_freep) CtlServer *s = NULL;
        int r;

        if (!e || fd < 0 || (!routes && n_routes > 0) || !ret)
                return -EINVAL;
        r = listen_fd_prepare(fd);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(CtlServer));
        if (!s)
                return -ENOMEM;
        *s = (CtlServer) {
                .event = sd_event_ref(e),
                .listen_fd = TAKE_FD(fd),
                .userdata = userdata,
                .deadline_usec = CTL_DEADLINE_USEC,
        };
        r = server_set_routes(s, routes, n_routes);
        if (r < 0)
                return r;
        r = sd_event_add_io(e, &s->listen_source, s->listen_fd, EPOLLIN, on_listen_io, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->listen_source, "ctl-listen");
        *ret = TAKE_PTR(s);
        return 0;
}

CtlServer *ctl_server_free(CtlServer *s) {
        if (!s)
                return NULL;
        while (s->requests)
                request_free(s->requests);
        sd_event_source_disable_unref(s->listen_source);
        sd_event_source_disable_unref(s->retry_source);
        safe_close(s->listen_fd);
        sd_event_unref(s->event);
        free(s->routes);
        free(s);
        return NULL;
}

void ctl_server_set_deadline(CtlServer *s, uint64_t usec) {
        s->deadline_usec = usec;
}

const char *ctl_request_method(const CtlRequest *req) {
        return req->method;
}

const char *ctl_request_path(const CtlRequest *req) {
        return req->path;
}

int ctl_request_peer(const CtlRequest *req, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid) {
        if (!req->has_peer)
                return -ENODATA;
        if (ret_uid)
                *ret_uid = req->peer.uid;
        if (ret_gid)
                *ret_gid = req->peer.gid;
        if (ret_pid)
                *ret_pid = req->peer.pid;
        return 0;
}
