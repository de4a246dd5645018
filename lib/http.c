/* HTTP+JSON server: libmicrohttpd driven by sd-event, without threads (see http.h).
 *
 * MHD runs in "external epoll" mode: its epoll fd is an sd-event io source and MHD_run() is
 * called when it is readable; one sd-event timer is re-armed from MHD_get_timeout() after every
 * run, and fires at once ("run soon") after a connection was resumed from outside MHD.
 *
 * A request's life:
 *  1. headers received: the path is split and %-decoded, the route looked up; unknown path →
 *     404, other method → 405, bad %-escape → 400. These replies are queued before the body is
 *     read (MHD then closes the connection).
 *  2. body chunks are accumulated up to max_body; beyond that they are discarded and the
 *     request ends in 413 without reaching the handler. A Content-Length above max_body gets
 *     its 413 at once only when the client waits for "100 Continue" (or the body is absurdly
 *     large): a client already sending its body would otherwise get a broken pipe instead of
 *     the 413. Discarding stops after HTTP_DISCARD_MAX bytes by closing the connection.
 *  3. the handler runs once. It replies, or keeps the request: the connection is then
 *     suspended, and an sd-event io source watches its fd for EPOLLRDHUP, because MHD does not
 *     notice a client leaving while a connection is suspended.
 *  4. a later reply queues the response on the suspended connection and resumes it; a client
 *     that goes away first gets the owner's on_abort, once.
 *  5. MHD's "request completed" callback frees the request.
 *
 * Paths are not decoded by MHD (its unescape callback is replaced by a no-op) so that "%2F"
 * inside a segment does not split it; query arguments are decoded here as well. */
#include "strutil.h"
#include "http.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "http-json.h"
#include "log.h"

/* Idle keep-alive connections are closed after this; suspended ones never time out. */
#define HTTP_CONNECTION_TIMEOUT_SEC 60U
#define HTTP_BODY_START 4096U
/* Bytes beyond max_body read and thrown away so that the client gets to read its 413. */
#define HTTP_DISCARD_MAX (16U * 1024U * 1024U)

typedef struct HttpParam {
        const char *name;       /* points into the route's pattern, not NUL-terminated */
        size_t name_len;
        const char *value;      /* points into HttpRequest.segments */
} HttpParam;

struct HttpServer {
        sd_event *event;
        struct MHD_Daemon *daemon;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        HttpRoute *routes;
        size_t n_routes;
        void *userdata;
        uint64_t max_body;
        HttpAuthHook auth;      /* called before every handler, or NULL */
        void *auth_userdata;
        HttpRequest *requests;  /* every live request, for http_server_free() */
        bool in_run;            /* inside MHD_run(): the timer is armed when it returns */
        bool run_soon;          /* a connection was resumed: run MHD again at once */
        bool freeing;
};

struct HttpRequest {
        HttpServer *server;
        struct MHD_Connection *conn;
        HttpRequest *prev, *next;
        int fd;                 /* the connection's socket, owned by MHD */
        char *method;
        char *path;             /* as received, without the query string */
        char **segments;        /* the path's segments, %-decoded */
        char **query;           /* decoded name, value, name, value, …, NULL */
        size_t n_query;         /* entries in query (twice the number of arguments) */
        int query_error;
        const HttpRoute *route;
        HttpParam *params;
        size_t n_params;
        uint8_t *body;          /* NUL-terminated for convenience; the NUL is not counted */
        size_t body_len;
        size_t body_alloc;
        bool too_large;
        uint64_t discarded;
        bool dispatched;        /* the handler ran (or 413 was sent instead) */
        bool in_handler;
        bool kept;
        bool suspended;
        bool replied;
        bool aborted;           /* on_abort was called (or is being called) */
        HttpAbortHandler on_abort;
        const void *principal;  /* set by the auth hook */
        void *abort_userdata;
        sd_event_source *hup_source;
};

static int server_arm_timer(HttpServer *s);

/* ---- %-decoding and routing ------------------------------------------------------------ */

/* %-decodes s[0..n) into a new string; '+' becomes a space when plus_is_space (query strings).
 * -EINVAL for a malformed escape or an encoded NUL (it would silently truncate the value). */
static int pct_decode(const char *s, size_t n, bool plus_is_space, char **ret) {
        _cleanup_free_ char *out = malloc(n + 1);
        size_t j = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%') {
                        int hi, lo;

                        if (n - i < 3)
                                return -EINVAL;
                        hi = unhexchar(s[i + 1]);
                        lo = unhexchar(s[i + 2]);
                        if (hi < 0 || lo < 0 || (hi | lo) == 0)
                                return -EINVAL;
                        out[j++] = (char) (hi << 4 | lo);
                        i += 2;
                } else
                        out[j++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
        }
        out[j] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

/* "/a/b%20c/" → {"a", "b c", ""}. -EINVAL unless the path starts with '/'. */
static int path_split(const char *path, char ***ret) {
        _cleanup_strv_free_ char **segs = NULL;
        size_t n = 1, i = 0;

        if (path[0] != '/')
                return -EINVAL;
        for (const char *p = path + 1; *p; p++)
                n += *p == '/';
        segs = calloc(n + 1, sizeof(char *));
        if (!segs)
                return -ENOMEM;
        for (const char *p = path + 1;; p++) {
                size_t len = strcspn(p, "/");
                int r = pct_decode(p, len, false, &segs[i++]);
                if (r < 0)
                        return r;
                p += len;
                if (*p == '\0')
                        break;
        }
        *ret = TAKE_PTR(segs);
        return 0;
}

static bool segment_is_param(const char *seg, size_t len) {
        return len > 2 && seg[0] == '{' && seg[len - 1] == '}';
}

/* Whether `pattern` matches the decoded segments; its {name} values go to params[]. */
static bool pattern_match(const char *pattern, char *const *segs, HttpParam *params,
                          size_t *ret_n) {
        const char *p = pattern + 1;
        size_t n = 0;

        for (size_t i = 0;; i++) {
                size_t len = strcspn(p, "/");

                if (!segs[i])
                        return false;
                if (segment_is_param(p, len)) {
                        if (segs[i][0] == '\0')
                                return false;
                        params[n++] = (HttpParam) { p + 1, len - 2, segs[i] };
                } else if (strlen(segs[i]) != len || memcmp(p, segs[i], len) != 0)
                        return false;
                p += len;
                if (*p == '\0') {
                        if (segs[i + 1])
                                return false;
                        break;
                }
                p++;
        }
        *ret_n = n;
        return true;
}

/* 0: req->route set. -ENOENT: no route has this path. -EOPNOTSUPP: only with other methods. */
static int route_find(HttpRequest *req) {
        const HttpServer *s = req->server;
        bool path_known = false;

        for (size_t i = 0; i < s->n_routes; i++) {
                const HttpRoute *rt = &s->routes[i];

                if (!pattern_match(rt->pattern, req->segments, req->params, &req->n_params))
                        continue;
                if (streq(rt->method, req->method)) {
                        req->route = rt;
                        return 0;
                }
                path_known = true;
        }
        req->n_params = 0;
        return path_known ? -EOPNOTSUPP : -ENOENT;
}

/* "GET, DELETE": the methods of the routes whose pattern matches req's path. */
static int route_allow(HttpRequest *req, char **ret) {
        const HttpServer *s = req->server;
        _cleanup_free_ char *allow = NULL;
        size_t len = 0, n;

        for (size_t i = 0; i < s->n_routes; i++) {
                const char *m = s->routes[i].method;
                char *a;

                if (!pattern_match(s->routes[i].pattern, req->segments, req->params, &n))
                        continue;
                a = realloc(allow, len + strlen(m) + 3);
                if (!a)
                        return -ENOMEM;
                allow = a;
                len += (size_t) sprintf(allow + len, "%s%s", len > 0 ? ", " : "", m);
        }
        req->n_params = 0;
        *ret = TAKE_PTR(allow);
        return 0;
}

static int route_validate(const HttpRoute *rt) {
        if (!rt->method || !rt->handler || !rt->pattern || rt->pattern[0] != '/')
                return -EINVAL;
        for (const char *p = rt->pattern + 1;;) {
                size_t len = strcspn(p, "/");
                if (memchr(p, '{', len) && !segment_is_param(p, len))
                        return -EINVAL;
                p += len;
                if (*p++ == '\0')
                        return 0;
        }
}

/* ---- replies ------------------------------------------------------------------------------ */

static int response_new(const void *data, size_t len, enum MHD_ResponseMemoryMode mode,
                        const char *content_type, struct MHD_Response **ret) {
        struct MHD_Response *resp;

        resp = MHD_create_response_from_buffer(len, (void *) data, mode);
        if (!resp)
                return -ENOMEM;
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
                MHD_destroy_response(resp);
                return -ENOMEM;
        }
        *ret = resp;
        return 0;
}

/* Consumes body (one reference), also on failure. */
static int response_new_json(json_t *body, struct MHD_Response **ret) {
        _cleanup_(json_decrefp) json_t *b = body;
        char *text;
        int r;

        if (!b)
                return -EINVAL;
        text = json_dumps(b, HTTP_JSON_FLAGS);
        if (!text)
                return -ENOMEM;
        r = response_new(text, strlen(text), MHD_RESPMEM_MUST_FREE, "application/json", ret);
        if (r < 0)
                free(text);
        return r;
}

static void request_resume(HttpRequest *req) {
        HttpServer *s = req->server;

        req->hup_source = sd_event_source_disable_unref(req->hup_source);
        req->suspended = false;
        MHD_resume_connection(req->conn);
        s->run_soon = true;
        (void) server_arm_timer(s);
}

/* Queues resp (consumed) as the reply. Callers check that req may still reply. */
static int request_send(HttpRequest *req, unsigned status, struct MHD_Response *resp) {
        enum MHD_Result q;

        q = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        if (q != MHD_YES)
                return -EIO;
        req->replied = true;
        if (req->suspended)
                request_resume(req);
        return 0;
}

static int request_send_error(HttpRequest *req, unsigned status, const char *code,
                              const char *message, const char *allow) {
        struct MHD_Response *resp;
        int r;

        r = response_new_json(http_error_body(code, message), &resp);
        if (r < 0)
                return r;
        if (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) {
                MHD_destroy_response(resp);
                return -ENOMEM;
        }
        return request_send(req, status, resp);
}

static bool request_done(const HttpRequest *req) {
        return req->replied || req->aborted;
}

int http_reply_json(HttpRequest *req, unsigned status, json_t *body) {
        struct MHD_Response *resp;
        int r;

        if (!req || request_done(req)) {
                json_decref(body);
                return req ? -EALREADY : -EINVAL;
        }
        r = response_new_json(body, &resp);
        if (r < 0)
                return r;
        return request_send(req, status, resp);
}

int http_reply_bytes(HttpRequest *req, unsigned status, const char *content_type,
                     const void *data, size_t len) {
        struct MHD_Response *resp;
        int r;

        if (!req || (!data && len > 0))
                return -EINVAL;
        if (request_done(req))
                return -EALREADY;
        r = response_new(data, len, MHD_RESPMEM_MUST_COPY,
                         content_type ?: "application/octet-stream", &resp);
        if (r < 0)
                return r;
        return request_send(req, status, resp);
}

int http_reply_error(HttpRequest *req, unsigned status, const char *code, const char *format,
                     ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int r;

        if (!req || !code || !format)
                return -EINVAL;
        if (request_done(req))
                return -EALREADY;
        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return request_send_error(req, status, code, message, NULL);
}

/* ---- requests ----------------------------------------------------------------------------- */

static HttpRequest *request_free(HttpRequest *req) {
        HttpServer *s;

        if (!req)
                return NULL;
        s = req->server;
        if (req->prev)
                req->prev->next = req->next;
        else if (s->requests == req)
                s->requests = req->next;
        if (req->next)
                req->next->prev = req->prev;
        sd_event_source_disable_unref(req->hup_source);
        free(req->method);
        free(req->path);
        strv_free(req->segments);
        strv_free(req->query);
        free(req->params);
        free(req->body);
        free(req);
        return NULL;
}

/* The owner of a kept, unanswered request learns that it will never be answered. Once. */
static void request_abort(HttpRequest *req) {
        if (!req->kept || request_done(req))
                return;
        req->aborted = true;
        if (req->on_abort)
                req->on_abort(req, req->abort_userdata);
}

static int request_new(HttpServer *s, struct MHD_Connection *conn, const char *url,
                       const char *method, HttpRequest **ret) {
        const union MHD_ConnectionInfo *ci;
        HttpRequest *req;

        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        req = calloc(1, sizeof(HttpRequest));
        if (!req)
                return -ENOMEM;
        *req = (HttpRequest) {
                .server = s,
                .conn = conn,
                .fd = ci ? ci->connect_fd : -EBADF,
                .next = s->requests,
        };
        if (s->requests)
                s->requests->prev = req;
        s->requests = req;
        req->method = strdup(method);
        req->path = strdup(url);
        if (!req->method || !req->path) {
                request_free(req);
                return -ENOMEM;
        }
        *ret = req;
        return 0;
}

static int query_append(HttpRequest *req, const char *key, const char *value) {
        _cleanup_free_ char *k = NULL, *v = NULL;
        char **q;
        int r;

        r = pct_decode(key, strlen(key), true, &k);
        if (r >= 0)
                r = pct_decode(value ?: "", strlen(value ?: ""), true, &v);
        if (r < 0)
                return r;
        q = realloc(req->query, (req->n_query + 3) * sizeof(char *));
        if (!q)
                return -ENOMEM;
        req->query = q;
        q[req->n_query++] = TAKE_PTR(k);
        q[req->n_query++] = TAKE_PTR(v);
        q[req->n_query] = NULL;
        return 0;
}

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value) {
        HttpRequest *req = cls;
        int r = query_append(req, key, value);

        if (r < 0 && req->query_error == 0)
                req->query_error = r;
        return r < 0 ? MHD_NO : MHD_YES;
}

/* The path's segments and the query; -EINVAL for a malformed %-escape. */
static int request_parse(HttpRequest *req) {
        int r;

        r = path_split(req->path, &req->segments);
        if (r < 0)
                return r;
        req->params = calloc(strv_length(req->segments), sizeof(HttpParam));
        if (!req->params)
                return -ENOMEM;
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, on_query_arg, req);
        return req->query_error;
}

/* The Content-Length, 0 when there is none (MHD has already refused malformed ones). */
static uint64_t request_content_length(HttpRequest *req) {
        const char *cl;
        unsigned long long n;

        cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!cl)
                return 0;
        errno = 0;
        n = strtoull(cl, NULL, 10);
        return errno == ERANGE ? UINT64_MAX : n;
}

static bool request_expects_continue(HttpRequest *req) {
        const char *e = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_EXPECT);
        return e && strcasecmp(e, "100-continue") == 0;
}

static enum MHD_Result mhd_result(int r) {
        return r < 0 ? MHD_NO : MHD_YES;
}

static enum MHD_Result reply_too_large(HttpRequest *req) {
        _cleanup_free_ char *message = NULL;

        if (asprintf(&message, "Request body is larger than %" PRIu64 " bytes",
                     req->server->max_body) < 0)
                return MHD_NO;
        return mhd_result(request_send_error(req, 413, "too-large", message, NULL));
}

static enum MHD_Result reply_method_not_allowed(HttpRequest *req) {
        _cleanup_free_ char *allow = NULL, *message = NULL;

        if (route_allow(req, &allow) < 0 ||
            asprintf(&message, "Method %s is not allowed here (allowed: %s)", req->method,
                     allow) < 0)
                return MHD_NO;
        return mhd_result(request_send_error(req, 405, "method-not-allowed", message, allow));
}

static enum MHD_Result reply_not_found(HttpRequest *req) {
        _cleanup_free_ char *message = NULL;

        if (asprintf(&message, "No such path: %s", req->path) < 0)
                return MHD_NO;
        return mhd_result(request_send_error(req, 404, "not-found", message, NULL));
}

/* A declared body above max_body: 413 now if the client waits for "100 Continue" (it sends
 * nothing more) or if reading it is not worth it; else after reading and discarding it. */
static enum MHD_Result request_check_length(HttpRequest *req) {
        uint64_t len = request_content_length(req), max = req->server->max_body;

        if (len <= max)
                return MHD_YES;
        if (request_expects_continue(req) || len - max > HTTP_DISCARD_MAX)
                return reply_too_large(req);
        req->too_large = true;
        return MHD_YES;
}

/* Headers are in: answer what can be answered without the body. */
static enum MHD_Result request_route(HttpRequest *req) {
        const char *message = NULL;
        int r;

        /* Who asks comes first: nothing else (routes, lengths) is told to a stranger. */
        if (req->server->auth && req->server->auth(req, req->server->auth_userdata, &message) < 0)
                return mhd_result(request_send_error(req, 401, "unauthorized",
                                                     message ?: "Unauthorized", NULL));
        r = request_parse(req);
        if (r == -EINVAL)
                return mhd_result(request_send_error(
                        req, 400, "bad-request",
                        "Malformed request target (not an absolute path, or a bad %-escape)",
                        NULL));
        if (r < 0)
                return MHD_NO;
        r = route_find(req);
        if (r == -ENOENT)
                return reply_not_found(req);
        if (r == -EOPNOTSUPP)
                return reply_method_not_allowed(req);
        return request_check_length(req);
}

static enum MHD_Result request_begin(HttpServer *s, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls) {
        HttpRequest *req;

        if (request_new(s, conn, url, method, &req) < 0)
                return MHD_NO;
        *con_cls = req;
        return request_route(req);
}

static int body_reserve(HttpRequest *req, size_t extra) {
        size_t need = req->body_len + extra + 1, size;
        uint8_t *b;

        if (need <= req->body_alloc)
                return 0;
        size = MAX(need, MAX(req->body_alloc * 2, (size_t) HTTP_BODY_START));
        size = MIN(size, MAX(need, (size_t) req->server->max_body + 1));
        b = realloc(req->body, size);
        if (!b)
                return -ENOMEM;
        req->body = b;
        req->body_alloc = size;
        return 0;
}

/* Over the limit: 413 once the request is complete (MHD cannot queue a response while a body
 * chunk is being processed). A client that keeps sending is cut off without an answer. */
static enum MHD_Result request_discard(HttpRequest *req, size_t n) {
        req->too_large = true;
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_alloc = 0;
        req->discarded += n;
        return req->discarded > HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
}

static enum MHD_Result request_upload(HttpRequest *req, const char *data, size_t *size) {
        size_t n = *size;

        *size = 0;
        if (req->too_large || n > req->server->max_body - req->body_len)
                return request_discard(req, n);
        if (body_reserve(req, n) < 0)
                return MHD_NO;
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return MHD_YES;
}

static int on_peer_hup(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpRequest *req = userdata;

        req->hup_source = sd_event_source_disable_unref(req->hup_source);
        request_abort(req);
        /* MHD closes the connection when it calls back for it (see on_access). */
        request_resume(req);
        return 0;
}

static enum MHD_Result request_suspend(HttpRequest *req) {
        int r;

        r = sd_event_add_io(req->server->event, &req->hup_source, req->fd, EPOLLRDHUP,
                            on_peer_hup, req);
        if (r < 0) {
                request_abort(req);
                return mhd_result(request_send_error(req, 500, "internal", strerror(-r), NULL));
        }
        (void) sd_event_source_set_description(req->hup_source, "http-peer-hup");
        MHD_suspend_connection(req->conn);
        req->suspended = true;
        return MHD_YES;
}

static enum MHD_Result request_handled(HttpRequest *req, int r) {
        if (req->replied)
                return MHD_YES;
        if (r < 0) {
                /* A kept request the handler then failed: its owner must forget it. */
                request_abort(req);
                return mhd_result(request_send_error(req, 500, "internal", strerror(-r), NULL));
        }
        if (req->kept)
                return request_suspend(req);
        return mhd_result(request_send_error(req, 500, "internal",
                                             "The handler neither replied nor kept the request",
                                             NULL));
}

static enum MHD_Result request_dispatch(HttpRequest *req) {
        int r;

        req->dispatched = true;
        if (req->too_large)
                return reply_too_large(req);
        req->in_handler = true;
        r = req->route->handler(req, req->server->userdata);
        req->in_handler = false;
        return request_handled(req, r);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        HttpServer *s = cls;
        HttpRequest *req = *con_cls;

        if (s->freeing)
                return MHD_NO;
        if (!req)
                return request_begin(s, conn, url, method, con_cls);
        if (*upload_data_size > 0)
                return request_upload(req, upload_data, upload_data_size);
        if (!req->dispatched)
                return request_dispatch(req);
        /* Resumed without a reply: the client went away. Close the connection. */
        return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        HttpRequest *req = *con_cls;

        if (!req)
                return;
        *con_cls = NULL;
        request_abort(req);
        request_free(req);
}

const char *http_request_method(const HttpRequest *req) {
        return req->method;
}

const char *http_request_path(const HttpRequest *req) {
        return req->path;
}

const char *http_request_param(const HttpRequest *req, const char *name) {
        size_t len = strlen(name);

        for (size_t i = 0; i < req->n_params; i++)
                if (req->params[i].name_len == len && memcmp(req->params[i].name, name, len) == 0)
                        return req->params[i].value;
        return NULL;
}

const char *http_request_query(const HttpRequest *req, const char *name) {
        for (size_t i = 0; i + 1 < req->n_query; i += 2)
                if (streq(req->query[i], name))
                        return req->query[i + 1];
        return NULL;
}

const uint8_t *http_request_body(const HttpRequest *req, size_t *ret_len) {
        if (ret_len)
                *ret_len = req->body_len;
        return req->body ?: (const uint8_t *) "";
}

int http_request_peer(const HttpRequest *req, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        int domain;
        socklen_t dlen = sizeof(domain);

        if (getsockopt(req->fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0)
                return negative_errno();
        if (domain != AF_UNIX)
                return -ENODATA;
        if (getsockopt(req->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return negative_errno();
        if (cred.pid <= 0)
                return -ENODATA;
        if (ret_uid)
                *ret_uid = cred.uid;
        if (ret_gid)
                *ret_gid = cred.gid;
        if (ret_pid)
                *ret_pid = cred.pid;
        return 0;
}

const char *http_request_header(const HttpRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void http_request_set_principal(HttpRequest *req, const void *principal) {
        req->principal = principal;
}

const void *http_request_principal(const HttpRequest *req) {
        return req->principal;
}

void http_server_set_auth(HttpServer *s, HttpAuthHook hook, void *userdata) {
        s->auth = hook;
        s->auth_userdata = userdata;
}

void http_request_keep(HttpRequest *req, HttpAbortHandler on_abort, void *userdata) {
        /* Inside the handler: keep it. Later, on a kept request: hand it to a new owner. */
        if ((!req->in_handler && !req->kept) || request_done(req))
                return;
        req->kept = true;
        req->on_abort = on_abort;
        req->abort_userdata = userdata;
}

/* ---- the server --------------------------------------------------------------------------- */

static int server_arm_timer(HttpServer *s) {
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t usec;
        int r;

        if (s->in_run || s->freeing || !s->timer_source)
                return 0;
        if (s->run_soon)
                usec = 0;
        else if (MHD_get_timeout(s->daemon, &ms) == MHD_YES)
                usec = ms >= UINT64_MAX / USEC_PER_MSEC ? UINT64_MAX - 1 : ms * USEC_PER_MSEC;
        else
                return sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);

        r = sd_event_source_set_time_relative(s->timer_source, usec);
        if (r < 0)
                return log_debug_errno(r, "Failed to arm the HTTP timer: %m");
        return sd_event_source_set_enabled(s->timer_source, SD_EVENT_ONESHOT);
}

static void server_run(HttpServer *s) {
        s->run_soon = false;
        s->in_run = true;
        if (MHD_run(s->daemon) != MHD_YES)
                log_debug("MHD_run() failed.");
        s->in_run = false;
        (void) server_arm_timer(s);
}

static int on_mhd_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        server_run(userdata);
        return 0;
}

static int on_mhd_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        server_run(userdata);
        return 0;
}

_printf_(2, 0) static void on_mhd_log(void *cls, const char *format, va_list ap) {
        (void) log_internalv(LOG_DEBUG, 0, NULL, __FILE__, __LINE__, __func__, format, ap);
}

static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
        return strlen(s);
}

/* MHD takes a dup of listen_fd. Whether MHD closes the fd it was given when
 * MHD_start_daemon() fails differs between versions; with a dup, the caller's fd is closed
 * exactly once either way (the dup is closed here only if it is still that socket). */
static int server_start_mhd(HttpServer *s, int listen_fd) {
        _cleanup_close_ int dup_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
        struct stat a, b;

        if (dup_fd < 0)
                return negative_errno();
        s->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                on_access, s,
                MHD_OPTION_LISTEN_SOCKET, dup_fd,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                MHD_OPTION_CONNECTION_TIMEOUT, HTTP_CONNECTION_TIMEOUT_SEC,
                MHD_OPTION_END);
        if (s->daemon) {
                TAKE_FD(dup_fd);
                return 0;
        }
        if (fstat(dup_fd, &a) < 0 || fstat(listen_fd, &b) < 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev)
                TAKE_FD(dup_fd);
        return -EIO;
}

static int server_add_sources(HttpServer *s) {
        const union MHD_DaemonInfo *info;
        int r;

        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return -EIO;
        r = sd_event_add_io(s->event, &s->io_source, info->epoll_fd, EPOLLIN, on_mhd_io, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->io_source, "http-mhd-io");
        r = sd_event_add_time_relative(s->event, &s->timer_source, CLOCK_MONOTONIC, 0, 1,
                                       on_mhd_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->timer_source, "http-mhd-timer");
        return 0;
}

static int server_set_routes(HttpServer *s, const HttpRoute *routes, size_t n_routes) {
        for (size_t i = 0; i < n_routes; i++)
                if (route_validate(&routes[i]) < 0)
                        return -EINVAL;
        s->routes = calloc(MAX(n_routes, (size_t) 1), sizeof(HttpRoute));
        if (!s->routes)
                return -ENOMEM;
        if (n_routes > 0)
                memcpy(s->routes, routes, n_routes * sizeof(HttpRoute));
        s->n_routes = n_routes;
        return 0;
}

int http_server_new(sd_event *e, int listen_fd, const HttpRoute *routes, size_t n_routes,
                    void *userdata, uint64_t max_body, HttpServer **ret) {
        _cleanup_close_ int fd = listen_fd;
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        int r;

        if (!e || fd < 0 || (!routes && n_routes > 0) || !ret)
                return -EINVAL;
        s = calloc(1, sizeof(HttpServer));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->userdata = userdata;
        s->max_body = MIN(max_body, (uint64_t) SIZE_MAX - 1);

        r = server_set_routes(s, routes, n_routes);
        if (r < 0)
                return r;
        r = server_start_mhd(s, fd);
        if (r < 0)
                return r;
        r = server_add_sources(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        s->freeing = true;
        /* Kept requests: owners learn they will get no answer; MHD_stop_daemon() requires
         * every connection resumed. */
        for (HttpRequest *req = s->requests; req; req = req->next) {
                request_abort(req);
                if (req->suspended)
                        request_resume(req);
        }
        /* The io source watches MHD's epoll fd: gone before MHD closes it. */
        s->io_source = sd_event_source_disable_unref(s->io_source);
        s->timer_source = sd_event_source_disable_unref(s->timer_source);
        if (s->daemon)
                MHD_stop_daemon(s->daemon);
        /* MHD reported every request completed; anything left was never handed to MHD. */
        while (s->requests)
                request_free(s->requests);
        sd_event_unref(s->event);
        free(s->routes);
        free(s);
        return NULL;
}
