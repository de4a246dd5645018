/* HTTP/1.1 + JSON API server on sd-event (see http.h).
 *
 * Why not libmicrohttpd (which this replaced): it could not be made to hold what an API facing
 * untrusted clients must. It answered its own errors (400, 414, 431, 505) with HTML pages, took
 * the first of conflicting Content-Length headers (a request-smuggling risk behind a proxy),
 * served a path cut short at a NUL, accepted HTTP/1.1 without Host, had no deadline for a
 * request head, reset the connection of a body somewhat above the limit instead of answering
 * 413, and counted connections only globally (no per-client limit, no priority for clients
 * that authenticated). The worker's control socket already ran on our own small server
 * (ctl.c); this one shares its head decoder (http-head.c) and adds keep-alive, bodies read
 * incrementally, TCP listeners with per-address limits and token checks, and long polls.
 *
 * A connection's life. Every step reads at most HTTP_READ_BURST bytes per wake-up, so one fast
 * client cannot hold the loop; the io source is level-triggered and comes back.
 *  HEAD    the head is read into conn->in (HTTP_HEAD_MAX bytes) and checked byte by byte as it
 *          arrives (http_head_scan), within head_timeout from the connection's start (or from
 *          the first byte of a request on a kept-alive connection, which may first be idle for
 *          idle_timeout). Once the blank line is in, the head is copied into the request and
 *          parsed; then, in this order: framing (Host, Transfer-Encoding vs Content-Length;
 *          400/501), the listener's auth hook (401, with WWW-Authenticate), the target (400),
 *          the route (404, 405), a JSON route's Content-Type (415),
 *          the body's size against the route's limit (max_body, or HTTP_NO_BODY_MAX for a
 *          route that takes no body; 413) and against what max_buffered has left (503 +
 *          Retry-After). "Expect: 100-continue" is answered only then.
 *  BODY    a Content-Length body is read straight into a buffer of its size; a chunked one is
 *          decoded (http_chunked_decode) and grown within the same limits. The client must
 *          make progress at least every io_timeout, and keep up HTTP_BODY_MIN_RATE on average
 *          after a grace of head_timeout (conn_body_deadline): the room a body holds in
 *          max_buffered, and its connection, are held for a bounded time only.
 *  HANDLER the route's handler runs once; a kept request waits here for its reply with only
 *          EPOLLRDHUP watched: a client that goes away gets the owner's on_abort, and so does
 *          a request still unanswered at handler_timeout (then 500). A reply that cannot be
 *          made still completes the request (a static 500, the connection ends), so on_abort
 *          never follows a reply or an attempt at one.
 *  WRITE   the reply (status line, headers, body in one buffer) is written without blocking,
 *          from the connection's own io source (also for replies made from other sources).
 *          Then the next request is read from what is left in conn->in (keep-alive), or:
 *  LINGER  the connection ends ("Connection: close", HTTP/1.0, or an error answered before the
 *          body was read): the write side is shut down and what the client still sends is
 *          read and dropped (bounded in bytes and time) before closing, so that a client still
 *          sending its body reads its 413 instead of a reset.
 * Every error answer is the JSON error body of docs/api.md.
 *
 * Admission: at most max_connections connections, and on TCP at most max_connections_per_peer
 * per client address. When a limit is reached, the oldest connection that has not yet had a
 * request head accepted (on TCP: authenticated) is closed to make room, else the oldest idle
 * keep-alive one; a connection that is busy with an accepted request is never pushed out. Only
 * when every slot is busy so is the new connection refused (503). */
#include "http.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "http-head.h"
#include "http-json.h"
#include "log.h"
#include "strutil.h"

#define HTTP_READ_BURST (256U * 1024U)
#define HTTP_ACCEPT_BURST 16U
#define HTTP_ACCEPT_RETRY_USEC (100 * USEC_PER_MSEC)
#define HTTP_TIMER_ACCURACY_USEC (10 * USEC_PER_MSEC)
/* Closing: how long and how much of what the client still sends is dropped. */
#define HTTP_LINGER_USEC (5 * USEC_PER_SEC)
#define HTTP_LINGER_MAX (16U * 1024U * 1024U)
#define HTTP_CHUNKED_START 16384U
#define HTTP_RETRY_AFTER_SEC 1U

_Static_assert(HTTP_HEAD_MAX == 8192 && HTTP_LINE_MAX == 4096, "update the 431 and 414 messages");

typedef enum ConnState {
        CONN_HEAD,
        CONN_BODY,
        CONN_HANDLER,
        CONN_WRITE,
        CONN_LINGER,
} ConnState;

/* What a connection step asks for next. */
enum {
        STEP_WAIT = 0,          /* for the socket (events set from the state) */
        STEP_NEXT = 1,          /* the state changed: go on at once */
        STEP_CLOSE = 2,         /* close it, nothing to report (client done, deadline) */
};

typedef struct HttpParam {
        const char *name;       /* points into the route's pattern, not NUL-terminated */
        size_t name_len;
        const char *value;      /* points into HttpRequest.segments */
} HttpParam;

/* A client address, for the per-peer limit (IPv4-mapped IPv6 as IPv4). */
typedef struct HttpPeer {
        int family;             /* AF_INET, AF_INET6; AF_UNSPEC for Unix sockets */
        uint8_t addr[16];
} HttpPeer;

typedef struct HttpListener {
        HttpServer *server;
        int fd;
        sd_event_source *source;
        bool is_unix;
        HttpAuthHook auth;
        void *auth_userdata;
} HttpListener;

typedef struct HttpConn HttpConn;

struct HttpConn {
        HttpServer *server;
        HttpListener *listener;
        HttpConn *prev, *next;  /* in accept order: the first is the oldest */
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        ConnState state;
        bool trusted;           /* a request head of it was accepted (and authenticated) */
        bool idle;              /* in HEAD, not a byte of the next request yet */
        bool close_after;       /* the reply being written ends the connection */
        bool has_cred;
        struct ucred cred;
        HttpPeer peer;
        uint64_t deadline;      /* CLOCK_MONOTONIC, of HEAD and LINGER */
        uint64_t last_io;       /* last progress in BODY and WRITE */
        uint64_t body_start;    /* when BODY began */
        uint64_t linger_left;   /* of CONN_LINGER, set with each reply (conn_linger_budget) */
        uint64_t body_left;     /* Content-Length bytes still to come, of this request */
        HttpHeadScan scan;
        HttpChunked chunked;
        HttpRequest *req;       /* the request being read, handled or answered */
        char *out;              /* the reply being written; fallback_reply when out_static */
        bool out_static;
        size_t out_len, out_done;
        size_t in_len;
        char in[HTTP_HEAD_MAX];
};

struct HttpServer {
        sd_event *event;
        HttpRoute *routes;
        size_t n_routes;
        void *userdata;
        HttpLimits limits;
        HttpListener *listeners[HTTP_LISTEN_MAX];
        size_t n_listeners;
        sd_event_source *retry_source;  /* accepting again after running out of fds */
        HttpConn *first, *last;
        size_t n_conns;
        uint64_t buffered;              /* bytes of bodies reserved, against max_buffered */
};

struct HttpRequest {
        HttpServer *server;
        HttpConn *conn;         /* its connection: the request never outlives it */
        char *head;             /* a copy of the head, parsed in place into h */
        HttpHead h;
        char **segments;        /* the path's segments, %-decoded */
        char **query;           /* decoded name, value, name, value, …, NULL */
        size_t n_query;
        const HttpRoute *route;
        HttpParam *params;
        size_t n_params;
        uint8_t *body;          /* NUL-terminated for convenience; the NUL is not counted */
        size_t body_len;
        size_t body_alloc;
        uint64_t reserved;      /* of server->buffered */
        uint64_t max_body;      /* of its route, known once the route is */
        bool in_handler;
        bool kept;
        bool replied;
        bool aborted;           /* on_abort was called (or is being called) */
        HttpAbortHandler on_abort;
        void *abort_userdata;
        const void *principal;
};

static void conn_free(HttpConn *c);
static void conn_update(HttpConn *c);

void http_limits_default(HttpLimits *ret) {
        *ret = (HttpLimits) {
                .max_body = HTTP_MAX_BODY_DEFAULT,
                .max_buffered = HTTP_MAX_BUFFERED_DEFAULT,
                .max_connections = HTTP_MAX_CONNECTIONS_DEFAULT,
                .max_connections_per_peer = HTTP_MAX_CONNECTIONS_PER_PEER_DEFAULT,
                .head_timeout_usec = HTTP_TIMEOUT_DEFAULT_USEC,
                .io_timeout_usec = HTTP_TIMEOUT_DEFAULT_USEC,
                .idle_timeout_usec = HTTP_IDLE_TIMEOUT_DEFAULT_USEC,
                .handler_timeout_usec = HTTP_HANDLER_TIMEOUT_DEFAULT_USEC,
        };
}

static uint64_t now_usec(HttpServer *s) {
        uint64_t t = 0;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &t);
        return t;
}

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
                if (streq(rt->method, req->h.method)) {
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

static int query_append(HttpRequest *req, const char *arg, size_t len) {
        const char *eq = memchr(arg, '=', len);
        size_t klen = eq ? (size_t) (eq - arg) : len;
        _cleanup_free_ char *k = NULL, *v = NULL;
        char **q;
        int r;

        r = pct_decode(arg, klen, true, &k);
        if (r >= 0)
                r = pct_decode(eq ? eq + 1 : "", eq ? len - klen - 1 : 0, true, &v);
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

/* The path's segments and the query ("a=1&b" → a: "1", b: ""); -EINVAL for a bad %-escape. */
static int target_parse(HttpRequest *req) {
        int r;

        r = path_split(req->h.path, &req->segments);
        if (r < 0)
                return r;
        req->params = calloc(strv_length(req->segments), sizeof(HttpParam));
        if (!req->params)
                return -ENOMEM;
        for (const char *p = req->h.query; p && *p;) {
                size_t len = strcspn(p, "&");

                if (len > 0) {
                        r = query_append(req, p, len);
                        if (r < 0)
                                return r;
                }
                p += len + (p[len] == '&');
        }
        return 0;
}

/* ---- rendering replies ------------------------------------------------------------------ */

static const struct {
        unsigned status;
        const char *reason;
} reasons[] = {
        { 200, "OK" },
        { 201, "Created" },
        { 400, "Bad Request" },
        { 401, "Unauthorized" },
        { 403, "Forbidden" },
        { 404, "Not Found" },
        { 405, "Method Not Allowed" },
        { 408, "Request Timeout" },
        { 409, "Conflict" },
        { 413, "Content Too Large" },
        { 414, "URI Too Long" },
        { 415, "Unsupported Media Type" },
        { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" },
        { 501, "Not Implemented" },
        { 503, "Service Unavailable" },
        { 505, "HTTP Version Not Supported" },
};

/* The reason phrase, or "" (which HTTP/1.1 allows) for a status not in the table. */
static const char *status_reason(unsigned status) {
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                if (reasons[i].status == status)
                        return reasons[i].reason;
        return "";
}

typedef struct Reply {
        unsigned status;
        const char *content_type;
        const void *body;
        size_t len;
        bool omit_body;         /* a HEAD request: the length is told, the body not sent */
        bool close;
        const char *allow;      /* an Allow header (405), or NULL */
        unsigned retry_after;   /* a Retry-After header in seconds (503), or 0 */
        bool challenge;         /* a WWW-Authenticate: Bearer header (401) */
} Reply;

/* The whole reply, status line to body, in one new buffer. The optional headers are pieces of
 * the one format (an Allow header has no length limit: it lists whatever methods the routes
 * of a path have). */
static int reply_render(const Reply *rp, char **ret, size_t *ret_len) {
        char date[64], retry[32] = "";
        struct tm tm;
        time_t now = time(NULL);
        size_t blen = rp->omit_body ? 0 : rp->len;
        char *out;
        int h;

        if (!gmtime_r(&now, &tm) ||
            strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
                return -EINVAL;
        if (rp->retry_after > 0)
                (void) snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", rp->retry_after);
        h = asprintf(&out, "HTTP/1.1 %u %s\r\nDate: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s%s%s%s%s%s\r\n", rp->status,
                     status_reason(rp->status), date, rp->content_type, rp->len,
                     rp->allow ? "Allow: " : "", rp->allow ?: "", rp->allow ? "\r\n" : "", retry,
                     rp->challenge ? "WWW-Authenticate: Bearer realm=\"tasad\"\r\n" : "",
                     rp->close ? "Connection: close\r\n" : "");
        if (h < 0)
                return -ENOMEM;
        if (blen > 0) {
                char *o = realloc(out, (size_t) h + blen);
                if (!o) {
                        free(out);
                        return -ENOMEM;
                }
                out = o;
                memcpy(out + h, rp->body, blen);
        }
        *ret = out;
        *ret_len = (size_t) h + blen;
        return 0;
}

/* An error body (docs/api.md) as text; NULL when out of memory. */
static char *error_text(const char *code, const char *message) {
        _cleanup_(json_decrefp) json_t *j = http_error_body(code, message);

        return j ? json_dumps(j, HTTP_JSON_FLAGS) : NULL;
}

/* The reply of last resort, for a request whose reply could not be made (out of memory, a
 * body that could not be rendered): static, so that sending it needs no memory, and ending
 * the connection. RFC 9110 lets a 500 go without Date. */
#define FALLBACK_BODY "{\"error\":{\"code\":\"internal\"," \
                      "\"message\":\"The reply could not be made\"}}"
#define FALLBACK_HEAD "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n" \
                      "Content-Length: 69\r\nConnection: close\r\n\r\n"
_Static_assert(sizeof(FALLBACK_BODY) - 1 == 69, "update FALLBACK_HEAD's Content-Length");
/* Not const only because c->out is the writable buffer of every other reply: never written. */
static char fallback_reply[] = FALLBACK_HEAD FALLBACK_BODY;

static void conn_out_free(HttpConn *c) {
        if (!c->out_static)
                free(c->out);
        c->out = NULL;
        c->out_static = false;
        c->out_len = c->out_done = 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

static bool request_done(const HttpRequest *req) {
        return req->replied || req->aborted;
}

static void request_release(HttpRequest *req) {
        req->server->buffered -= req->reserved;
        req->reserved = 0;
        req->body = mfree(req->body);
        req->body_len = req->body_alloc = 0;
}

/* Takes n bytes of max_buffered for req's body: -ENOBUFS when they are not there. */
static int request_reserve(HttpRequest *req, uint64_t n) {
        HttpServer *s = req->server;

        if (n > s->limits.max_buffered - s->buffered)
                return -ENOBUFS;
        s->buffered += n;
        req->reserved += n;
        return 0;
}

static HttpRequest *request_free(HttpRequest *req) {
        if (!req)
                return NULL;
        request_release(req);
        free(req->head);
        strv_free(req->segments);
        strv_free(req->query);
        free(req->params);
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

/* A request of the head in c->in[0..len), copied and parsed. */
static int request_new(HttpConn *c, size_t len, HttpRequest **ret, const char **ret_why) {
        HttpRequest *req;
        int r;

        req = calloc(1, sizeof(HttpRequest));
        if (!req)
                return -ENOMEM;
        *req = (HttpRequest) { .server = c->server, .conn = c };
        req->head = malloc(len);
        if (!req->head) {
                free(req);
                return -ENOMEM;
        }
        memcpy(req->head, c->in, len);
        r = http_head_parse(req->head, len, &req->h, ret_why);
        if (r < 0) {
                request_free(req);
                return r;
        }
        *ret = req;
        return 0;
}

/* How much of what the client still sends is read and dropped if the connection ends after
 * the reply being made now: the rest of c->req's declared body (of a Content-Length not yet
 * read; at most max_body, a larger body is not awaited whole), plus HTTP_LINGER_MAX for what
 * else may come (pipelined requests, a chunked body, a body of a head that did not parse).
 * From each request's own framing, never from an earlier one's. */
static uint64_t conn_linger_budget(const HttpConn *c) {
        const HttpRequest *req = c->req;
        uint64_t rest = 0;

        if (req && !req->h.chunked)
                rest = c->state == CONN_HEAD ? req->h.content_length   /* saturated: no wrap */
                       : c->state == CONN_BODY ? c->body_left : 0;
        rest = MIN(rest, c->server->limits.max_body);
        return rest > UINT64_MAX - HTTP_LINGER_MAX ? UINT64_MAX : rest + HTTP_LINGER_MAX;
}

/* The request is answered: its reply is in c->out. */
static void request_replied(HttpRequest *req) {
        HttpConn *c = req->conn;

        c->linger_left = conn_linger_budget(c);
        c->out_done = 0;
        req->replied = true;
        request_release(req);
        c->state = CONN_WRITE;
        c->last_io = now_usec(c->server);
        if (!req->in_handler)
                conn_update(c);
}

/* The reply asked for could not be made (error r): the request is completed all the same, with
 * the static 500 and the end of the connection, so that its owner, who replied or tried to, is
 * never called back (on_abort) for it. Returns r. */
static int request_reply_fallback(HttpRequest *req, int r) {
        HttpConn *c = req->conn;

        conn_out_free(c);
        c->out = fallback_reply;
        c->out_static = true;
        c->out_len = streq(req->h.method, "HEAD") ? sizeof(FALLBACK_HEAD) - 1
                                                  : sizeof(fallback_reply) - 1;
        c->close_after = true;
        request_replied(req);
        return r;
}

/* Makes the reply; it is written from the connection's own io source. Callers check that req
 * may still reply. Completes the request also when it fails (see request_reply_fallback). */
static int request_reply(HttpRequest *req, Reply *rp) {
        HttpConn *c = req->conn;
        int r;

        rp->omit_body = streq(req->h.method, "HEAD");
        rp->close = c->close_after;
        r = reply_render(rp, &c->out, &c->out_len);
        if (r < 0)
                return request_reply_fallback(req, r);
        request_replied(req);
        return 0;
}

static int request_reply_error(HttpRequest *req, unsigned status, const char *code,
                               const char *message) {
        _cleanup_free_ char *text = error_text(code, message);
        Reply rp = { .status = status, .content_type = "application/json" };

        if (!text)
                return request_reply_fallback(req, -ENOMEM);
        rp.body = text;
        rp.len = strlen(text);
        return request_reply(req, &rp);
}

/* Past the request_done() check every failure still completes the request. */
int http_reply_bytes(HttpRequest *req, unsigned status, const char *content_type,
                     const void *data, size_t len) {
        Reply rp = { .status = status, .content_type = content_type ?: "application/octet-stream",
                     .body = data, .len = len };

        if (!req)
                return -EINVAL;
        if (request_done(req))
                return -EALREADY;
        if (!data && len > 0)
                return request_reply_fallback(req, -EINVAL);
        return request_reply(req, &rp);
}

int http_reply_json(HttpRequest *req, unsigned status, json_t *body) {
        _cleanup_(json_decrefp) json_t *b = body;
        _cleanup_free_ char *text = NULL;

        if (!req)
                return -EINVAL;
        if (request_done(req))
                return -EALREADY;
        if (!b) /* the caller's json_pack() failed */
                return request_reply_fallback(req, -EINVAL);
        text = json_dumps(b, HTTP_JSON_FLAGS);
        if (!text)
                return request_reply_fallback(req, -ENOMEM);
        return http_reply_bytes(req, status, "application/json", text, strlen(text));
}

int http_reply_error(HttpRequest *req, unsigned status, const char *code, const char *format,
                     ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int r;

        if (!req)
                return -EINVAL;
        if (request_done(req))
                return -EALREADY;
        if (!code || !format)
                return request_reply_fallback(req, -EINVAL);
        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        if (r < 0)
                return request_reply_fallback(req, -ENOMEM);
        return request_reply_error(req, status, code, message);
}

/* ---- errors the server answers itself ------------------------------------------------------ */

typedef struct Refusal {
        unsigned status;
        const char *code;
        const char *message;
        const char *allow;
        unsigned retry_after;
        bool keep_alive;        /* the connection may go on if the request has no body */
} Refusal;

/* Whether the connection can go on after refusing its request (nothing of it left to read). */
static bool conn_may_go_on(const HttpConn *c, const Refusal *rf) {
        return rf->keep_alive && c->req && !c->close_after && !c->req->h.chunked &&
               c->req->h.content_length == 0;
}

/* Answers rf; the request, if any, is dropped. Unless the request had no body and rf allows
 * it, the connection ends after the reply, and what the client still sends is dropped (see
 * conn_linger_budget). */
static int conn_refuse(HttpConn *c, const Refusal *rf) {
        _cleanup_free_ char *text = error_text(rf->code, rf->message);
        bool go_on = conn_may_go_on(c, rf);
        Reply rp = { .status = rf->status, .content_type = "application/json", .close = !go_on,
                     .allow = rf->allow, .retry_after = rf->retry_after,
                     .challenge = rf->status == 401 };
        int r;

        if (!text)
                return -ENOMEM;
        rp.body = text;
        rp.len = strlen(text);
        if (c->req && streq(c->req->h.method, "HEAD"))
                rp.omit_body = true;
        c->linger_left = conn_linger_budget(c);
        c->req = request_free(c->req);
        c->close_after = !go_on;
        c->body_left = 0;
        r = reply_render(&rp, &c->out, &c->out_len);
        if (r < 0)
                return r;
        c->out_done = 0;
        c->state = CONN_WRITE;
        c->last_io = now_usec(c->server);
        return STEP_NEXT;
}

static int conn_refusef(HttpConn *c, unsigned status, const char *code, const char *fmt, ...)
        _printf_(4, 5);
static int conn_refusef(HttpConn *c, unsigned status, const char *code, const char *fmt, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&message, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return conn_refuse(c, &(Refusal) { status, code, message, NULL, 0, false });
}

/* Maps http_head_scan() and http_head_parse() errors to their answers. */
static int conn_refuse_head(HttpConn *c, int error, const char *why) {
        static const struct {
                int error;
                unsigned status;
                const char *code;
        } table[] = {
                { -EBADMSG, 400, "bad-request" },
                { -ENAMETOOLONG, 414, "too-large" },
                { -E2BIG, 431, "too-large" },
                { -EPROTONOSUPPORT, 505, "version-not-supported" },
        };

        if (error == -ENAMETOOLONG)
                why = "Request line (method, target, version) is longer than 4096 bytes";
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].error == error)
                        return conn_refuse(c, &(Refusal) { table[i].status, table[i].code, why,
                                                           NULL, 0 });
        return error;
}

/* ---- the connection's steps -------------------------------------------------------------- */

/* Bytes read (> 0), or -errno: -EAGAIN when there are none yet, -ECONNRESET at EOF. */
static int conn_recv(HttpConn *c, void *buf, size_t size) {
        for (;;) {
                ssize_t n = recv(c->fd, buf, size, 0);

                if (n > 0)
                        return (int) n;
                if (n == 0)
                        return -ECONNRESET;
                if (errno != EINTR)
                        return negative_errno();
        }
}

/* A recv() result that ends the step: STEP_WAIT for more, STEP_CLOSE at EOF, or -errno. */
static int recv_end(int n) {
        if (n == -EAGAIN)
                return STEP_WAIT;
        return n == -ECONNRESET ? STEP_CLOSE : n;
}

static void conn_take_in(HttpConn *c, size_t n) {
        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
}

static int conn_dispatch(HttpConn *c);

/* Framing that http-head.c leaves to the server: 400 for what would let two parties read two
 * different messages, 501 for codings other than chunked. */
static int conn_check_framing(HttpConn *c) {
        const HttpHead *h = &c->req->h;
        const char *why = NULL;

        if (h->minor == 1 && h->n_host == 0)
                why = "HTTP/1.1 request without a Host header";
        else if (h->n_host > 1)
                why = "Several Host headers";
        else if (h->n_transfer_encoding > 0 && h->minor == 0)
                why = "Transfer-Encoding in an HTTP/1.0 request";
        else if (h->n_transfer_encoding > 0 && h->has_content_length)
                why = "Both Transfer-Encoding and Content-Length";
        if (why)
                return conn_refuse(c, &(Refusal) { 400, "bad-request", why, NULL, 0 });
        if (h->n_transfer_encoding > 0 && !h->chunked)
                return conn_refuse(c, &(Refusal) { 501, "not-implemented",
                                                   "Transfer-Encoding other than chunked is "
                                                   "not supported", NULL, 0 });
        return 0;
}

static int conn_check_auth(HttpConn *c) {
        HttpListener *l = c->listener;
        const char *message = NULL;

        /* Who asks comes first: nothing else (routes, lengths) is told to a stranger. */
        if (l->auth && l->auth(c->req, l->auth_userdata, &message) < 0)
                return conn_refuse(c, &(Refusal) { 401, "unauthorized",
                                                   message ?: "Unauthorized", NULL, 0 });
        c->trusted = true;
        return 0;
}

static int conn_check_route(HttpConn *c) {
        HttpRequest *req = c->req;
        _cleanup_free_ char *allow = NULL, *message = NULL;
        int r;

        /* Answers about the target leave a connection without a body usable. */
        r = target_parse(req);
        if (r == -EINVAL)
                return conn_refuse(c, &(Refusal) { 400, "bad-request",
                                                   "Malformed request target (a bad %-escape or "
                                                   "an encoded NUL)", NULL, 0, true });
        if (r < 0)
                return r;
        r = route_find(req);
        if (r == 0)
                req->max_body = MIN(c->server->limits.max_body,
                                    req->route->takes_body ? UINT64_MAX : HTTP_NO_BODY_MAX);
        if (r == -ENOENT) {
                if (asprintf(&message, "No such path: %s", req->h.path) < 0)
                        return -ENOMEM;
                return conn_refuse(c, &(Refusal) { 404, "not-found", message, NULL, 0, true });
        }
        if (r != -EOPNOTSUPP)
                return r; /* 0: the route is found */
        if (route_allow(req, &allow) < 0 ||
            asprintf(&message, "Method %s is not allowed here (allowed: %s)", req->h.method,
                     allow) < 0)
                return -ENOMEM;
        return conn_refuse(c, &(Refusal) { 405, "method-not-allowed", message, allow, 0, true });
}

/* Whether a Content-Type value is application/json, with no charset or charset utf-8 (RFC
 * 8259: JSON is UTF-8); other parameters are ignored. Type, subtype and parameter names are
 * case-insensitive, the charset's value too; whitespace around ';' and '=' is allowed. */
static bool media_type_is_json(const char *v) {
        static const char json[] = "application/json";
        const char *p;

        v += strspn(v, " \t");
        if (strncasecmp(v, json, sizeof(json) - 1) != 0)
                return false;
        for (p = v + sizeof(json) - 1;;) {
                size_t n;

                p += strspn(p, " \t");
                if (*p == '\0')
                        return true;
                if (*p++ != ';')
                        return false;
                p += strspn(p, " \t");
                n = strcspn(p, "=; \t");
                if (n == 7 && strncasecmp(p, "charset", 7) == 0) {
                        p += n + strspn(p + n, " \t");
                        if (*p++ != '=')
                                return false;
                        p += strspn(p, " \t");
                        if (strncasecmp(p, "utf-8", 5) != 0 && strncasecmp(p, "\"utf-8\"", 7) != 0)
                                return false;
                        p += p[0] == '"' ? 7 : 5;
                } else
                        p += strcspn(p, ";");
        }
}

/* A route that reads JSON refuses a body declared as anything else before it is sent. */
static int conn_check_media_type(HttpConn *c) {
        const HttpRequest *req = c->req;
        const char *v = http_head_header(&req->h, "Content-Type");

        if (!req->route->json_body || (req->h.content_length == 0 && !req->h.chunked) ||
            (v && media_type_is_json(v)))
                return 0;
        if (!v)
                return conn_refusef(c, 415, "unsupported-media-type", "%s %s needs a JSON body "
                                    "(Content-Type: application/json), this one has no "
                                    "Content-Type", req->h.method, req->route->pattern);
        return conn_refusef(c, 415, "unsupported-media-type", "%s %s needs a JSON body "
                            "(Content-Type: application/json), not '%.100s'", req->h.method,
                            req->route->pattern, v);
}

static int conn_refuse_too_large(HttpConn *c) {
        if (!c->req->route->takes_body)
                return conn_refusef(c, 413, "too-large", "%s %s takes no request body (one of at "
                                    "most %" PRIu64 " bytes is ignored)", c->req->h.method,
                                    c->req->route->pattern, c->req->max_body);
        return conn_refusef(c, 413, "too-large", "Request body is larger than %" PRIu64 " bytes",
                            c->req->max_body);
}

static int conn_refuse_busy(HttpConn *c) {
        _cleanup_free_ char *message = NULL;

        if (asprintf(&message, "The request bodies being received fill max_request_buffered "
                     "(%" PRIu64 " bytes); try again later", c->server->limits.max_buffered) < 0)
                return -ENOMEM;
        return conn_refuse(c, &(Refusal) { 503, "unavailable", message, NULL,
                                           HTTP_RETRY_AFTER_SEC });
}

/* A Content-Length body: its whole buffer, reserved at once (a body that does not fit in
 * max_buffered is refused before the client sends it). */
static int conn_body_begin(HttpConn *c) {
        HttpRequest *req = c->req;
        uint64_t len = req->h.content_length;

        if (req->h.chunked) {
                c->chunked = (HttpChunked) {};
                return 0;
        }
        /* Known before the refusal: what is still to come is dropped while closing. */
        c->body_left = len;
        if (len > req->max_body)
                return conn_refuse_too_large(c);
        if (len == 0)
                return 0;
        if (request_reserve(req, len + 1) < 0)
                return conn_refuse_busy(c);
        req->body = malloc((size_t) len + 1);
        if (!req->body)
                return -ENOMEM;
        req->body_alloc = (size_t) len + 1;
        return 0;
}

/* "100 Continue" for a client that waits for it before sending its body. The socket's buffer
 * is empty here (the last reply was written before this head was read): a short write means
 * the client is not reading at all. */
static int conn_send_continue(HttpConn *c) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        ssize_t n = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0)
                return negative_errno();
        return n == (ssize_t) sizeof(cont) - 1 ? 0 : -EAGAIN;
}

/* The head in c->in[0..len) is complete. */
static int conn_head_complete(HttpConn *c, size_t len) {
        const char *why = NULL;
        int r;

        c->scan = (HttpHeadScan) {};
        c->body_left = 0;
        r = request_new(c, len, &c->req, &why);
        conn_take_in(c, len);
        if (r < 0)
                return r == -ENOMEM ? r : conn_refuse_head(c, r, why);
        c->close_after = c->req->h.connection_close || c->req->h.minor == 0;
        r = conn_check_framing(c);
        if (r == 0)
                r = conn_check_auth(c);
        if (r == 0)
                r = conn_check_route(c);
        if (r == 0)
                r = conn_check_media_type(c);
        if (r == 0)
                r = conn_body_begin(c);
        if (r != 0)
                return r;
        if (c->req->h.expect_continue && c->req->h.minor == 1 &&
            (c->body_left > 0 || c->req->h.chunked)) {
                r = conn_send_continue(c);
                if (r < 0)
                        return r;
        }
        c->state = CONN_BODY;
        c->body_start = c->last_io = now_usec(c->server);
        return STEP_NEXT;
}

static void conn_head_started(HttpConn *c) {
        c->idle = false;
        c->deadline = now_usec(c->server) + c->server->limits.head_timeout_usec;
        conn_update(c);
}

static int conn_read_head(HttpConn *c) {
        const char *why = NULL;
        size_t got = 0;

        for (;;) {
                int r = http_head_scan(c->in, c->in_len, HTTP_LINE_MAX, &c->scan, &why);

                if (r > 0)
                        return conn_head_complete(c, (size_t) r);
                if (r < 0)
                        return conn_refuse_head(c, r, why);
                if (c->in_len == sizeof(c->in))
                        return conn_refuse(c, &(Refusal) { 431, "too-large",
                                                           "Request head is larger than 8192 "
                                                           "bytes", NULL, 0 });
                if (got >= HTTP_READ_BURST)
                        return STEP_WAIT;
                r = conn_recv(c, c->in + c->in_len, sizeof(c->in) - c->in_len);
                if (r < 0)
                        return recv_end(r);
                if (c->idle)
                        conn_head_started(c);
                c->in_len += (size_t) r;
                got += (size_t) r;
        }
}

static int conn_read_length(HttpConn *c) {
        HttpRequest *req = c->req;
        size_t got = 0, n;

        n = (size_t) MIN((uint64_t) c->in_len, c->body_left);
        if (n > 0) {
                memcpy(req->body + req->body_len, c->in, n);
                req->body_len += n;
                c->body_left -= n;
                conn_take_in(c, n);
        }
        while (c->body_left > 0) {
                int r;

                if (got >= HTTP_READ_BURST)
                        return STEP_WAIT;
                r = conn_recv(c, req->body + req->body_len,
                              (size_t) MIN(c->body_left, (uint64_t) (HTTP_READ_BURST - got)));
                if (r < 0)
                        return recv_end(r);
                req->body_len += (size_t) r;
                c->body_left -= (uint64_t) r;
                got += (size_t) r;
                c->last_io = now_usec(c->server);
        }
        if (req->body)
                req->body[req->body_len] = '\0';
        return conn_dispatch(c);
}

/* Appends n decoded bytes of a chunked body: -EFBIG above the route's limit, -ENOBUFS beyond
 * max_buffered. */
static int body_append(HttpRequest *req, const char *data, size_t n) {
        uint64_t max = req->max_body;
        size_t need = req->body_len + n + 1, size;
        uint8_t *b;

        if (req->body_len + n > max)
                return -EFBIG;
        if (need > req->body_alloc) {
                size = MAX(need, MAX(req->body_alloc * 2, (size_t) HTTP_CHUNKED_START));
                size = (size_t) MIN((uint64_t) size, max + 1);
                if (request_reserve(req, size - req->body_alloc) < 0)
                        return -ENOBUFS;
                b = realloc(req->body, size);
                if (!b)
                        return -ENOMEM;
                req->body = b;
                req->body_alloc = size;
        }
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return 0;
}

/* Decodes what c->in holds: 1 when the body is complete, 0 for more, or an answer/-errno
 * (returned as *ret_step). */
static int conn_decode_chunked(HttpConn *c, int *ret_step) {
        const char *why = NULL;
        size_t used = 0, out = 0;
        int r, k;

        r = http_chunked_decode(&c->chunked, c->in, c->in_len, &used, &out, &why);
        if (r < 0)
                return *ret_step = conn_refuse(c, &(Refusal) { 400, "bad-request", why, NULL, 0 }),
                       -1;
        k = out > 0 ? body_append(c->req, c->in, out) : 0;
        conn_take_in(c, used);
        if (k == -EFBIG)
                return *ret_step = conn_refuse_too_large(c), -1;
        if (k == -ENOBUFS)
                return *ret_step = conn_refuse_busy(c), -1;
        if (k < 0)
                return *ret_step = k, -1;
        return r;
}

static int conn_read_chunked(HttpConn *c) {
        size_t got = 0;

        for (;;) {
                int step = 0, r = conn_decode_chunked(c, &step);

                if (r < 0)
                        return step;
                if (r == 1)
                        return conn_dispatch(c);
                if (got >= HTTP_READ_BURST)
                        return STEP_WAIT;
                r = conn_recv(c, c->in + c->in_len, sizeof(c->in) - c->in_len);
                if (r < 0)
                        return recv_end(r);
                c->in_len += (size_t) r;
                got += (size_t) r;
                c->last_io = now_usec(c->server);
        }
}

static int conn_handled(HttpConn *c, int r) {
        HttpRequest *req = c->req;

        if (req->replied) {
                if (r < 0)
                        log_debug_errno(r, "HTTP handler for %s %s failed after replying: %m",
                                        req->h.method, req->h.path);
                return STEP_NEXT;
        }
        if (r < 0) {
                /* A kept request the handler then failed: its owner must forget it. */
                request_abort(req);
                (void) request_reply_error(req, 500, "internal", strerror(-r));
                return STEP_NEXT;
        }
        if (req->kept) {
                /* Its owner answers (every route bounds its own wait); should it never, the
                 * request ends at handler_timeout (on_conn_timer). */
                c->deadline = now_usec(c->server) + c->server->limits.handler_timeout_usec;
                return STEP_WAIT;
        }
        (void) request_reply_error(req, 500, "internal",
                                   "The handler neither replied nor kept the request");
        return STEP_NEXT;
}

static int conn_dispatch(HttpConn *c) {
        HttpRequest *req = c->req;
        int r;

        c->state = CONN_HANDLER;
        req->in_handler = true;
        r = req->route->handler(req, c->server->userdata);
        req->in_handler = false;
        return conn_handled(c, r);
}

/* The reply is written: the next request on this connection, or the end of it. */
static int conn_reply_done(HttpConn *c) {
        HttpServer *s = c->server;

        conn_out_free(c);
        c->req = request_free(c->req);
        if (c->close_after) {
                (void) shutdown(c->fd, SHUT_WR);
                c->state = CONN_LINGER;
                c->deadline = now_usec(s) + HTTP_LINGER_USEC;
                return STEP_NEXT;
        }
        c->state = CONN_HEAD;
        c->idle = c->in_len == 0;
        c->deadline = now_usec(s) + (c->idle ? s->limits.idle_timeout_usec
                                             : s->limits.head_timeout_usec);
        return STEP_NEXT;
}

static int conn_write(HttpConn *c) {
        while (c->out_done < c->out_len) {
                /* MSG_NOSIGNAL: a client gone away is EPIPE, not SIGPIPE for the daemon. */
                ssize_t n = send(c->fd, c->out + c->out_done, c->out_len - c->out_done,
                                 MSG_NOSIGNAL);

                if (n >= 0) {
                        c->out_done += (size_t) n;
                        c->last_io = now_usec(c->server);
                        continue;
                }
                if (errno == EINTR)
                        continue;
                return errno == EAGAIN ? STEP_WAIT : negative_errno();
        }
        return conn_reply_done(c);
}

/* Drops what the client still sends until it closes, up to linger_left bytes. */
static int conn_linger(HttpConn *c) {
        size_t got = 0;

        while (got < HTTP_READ_BURST) {
                int r = conn_recv(c, c->in, sizeof(c->in));

                if (r < 0)
                        return recv_end(r);
                if ((uint64_t) r >= c->linger_left)
                        return STEP_CLOSE;
                c->linger_left -= (uint64_t) r;
                got += (size_t) r;
        }
        return STEP_WAIT;
}

/* Moves the connection on as far as the bytes that are there allow. */
static int conn_process(HttpConn *c) {
        for (;;) {
                int r;

                switch (c->state) {
                case CONN_HEAD:
                        r = conn_read_head(c);
                        break;
                case CONN_BODY:
                        r = c->req->h.chunked ? conn_read_chunked(c) : conn_read_length(c);
                        break;
                case CONN_WRITE:
                        r = conn_write(c);
                        break;
                case CONN_LINGER:
                        r = conn_linger(c);
                        break;
                default:
                        r = STEP_WAIT;
                }
                if (r != STEP_NEXT)
                        return r;
        }
}

/* ---- events ------------------------------------------------------------------------------ */

/* When a body must be in as far as it is: after a grace of head_timeout from its start, at
 * least HTTP_BODY_MIN_RATE bytes a second on average (decoded bytes, for chunked). So a body
 * of n bytes is in by head_timeout + n / HTTP_BODY_MIN_RATE after its head, or dropped; a
 * client trickling it (a byte every io_timeout) loses its connection after the grace. */
static uint64_t conn_body_deadline(const HttpConn *c) {
        uint64_t n = c->req->body_len, allowed;

        if (n / HTTP_BODY_MIN_RATE > UINT64_MAX / USEC_PER_SEC / 4)
                return UINT64_MAX;
        allowed = n / HTTP_BODY_MIN_RATE * USEC_PER_SEC +
                  n % HTTP_BODY_MIN_RATE * USEC_PER_SEC / HTTP_BODY_MIN_RATE;
        return c->body_start + c->server->limits.head_timeout_usec + allowed;
}

/* BODY and WRITE: the next pause that is too long, or (BODY) the body's rate deadline. */
static uint64_t conn_progress_deadline(const HttpConn *c) {
        uint64_t d = c->last_io + c->server->limits.io_timeout_usec;

        return c->state == CONN_BODY ? MIN(d, conn_body_deadline(c)) : d;
}

/* The io events and the deadline of the connection's state. */
static void conn_update(HttpConn *c) {
        uint32_t events = EPOLLIN;
        uint64_t deadline = c->deadline;

        switch (c->state) {
        case CONN_HANDLER:
                events = EPOLLRDHUP;
                break;
        case CONN_WRITE:
                events = EPOLLOUT;
                deadline = conn_progress_deadline(c);
                break;
        case CONN_BODY:
                deadline = conn_progress_deadline(c);
                break;
        default:
                break;
        }
        (void) sd_event_source_set_io_events(c->io, events);
        if (deadline == 0) {
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(c->timer, deadline);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

/* Runs the connection as far as it goes, then closes it or waits for its events. */
static void conn_run(HttpConn *c) {
        int r = conn_process(c);

        if (r < 0)
                log_debug_errno(r, "Closing an HTTP connection: %m");
        if (r < 0 || r == STEP_CLOSE)
                conn_free(c);
        else
                conn_update(c);
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpConn *c = userdata;

        if (c->state == CONN_HANDLER) {
                /* Only EPOLLRDHUP is watched here: the client of a kept request went away. */
                log_debug("HTTP client of %s %s went away before its reply.", c->req->h.method,
                          c->req->h.path);
                conn_free(c);
                return 0;
        }
        conn_run(c);
        return 0;
}

/* A last word for a client whose head did not come in time, if its socket takes it at once. */
static void conn_send_timeout(HttpConn *c) {
        _cleanup_free_ char *text = error_text("timeout", "The request head did not arrive in time");
        _cleanup_free_ char *out = NULL;
        Reply rp = { .status = 408, .content_type = "application/json", .close = true };
        size_t len;

        if (!text)
                return;
        rp.body = text;
        rp.len = strlen(text);
        if (reply_render(&rp, &out, &len) >= 0)
                (void) send(c->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* A kept request its owner did not answer within handler_timeout: the owner is told to
 * forget it (on_abort), the client gets a 500 and the connection ends. */
static void conn_handler_timeout(HttpConn *c) {
        HttpRequest *req = c->req;
        _cleanup_free_ char *message = NULL;

        log_debug("HTTP request %s %s got no reply in time, answering 500.", req->h.method,
                  req->h.path);
        request_abort(req);
        c->close_after = true;
        if (asprintf(&message, "No reply within %" PRIu64 " ms",
                     c->server->limits.handler_timeout_usec / USEC_PER_MSEC) < 0)
                (void) request_reply_fallback(req, -ENOMEM);
        else
                (void) request_reply_error(req, 500, "internal", message);
}

static int on_conn_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpConn *c = userdata;
        const HttpLimits *l = &c->server->limits;

        if (c->state == CONN_HANDLER) {
                if (c->deadline > now_usec(c->server)) {
                        conn_update(c);
                        return 0;
                }
                conn_handler_timeout(c);
                conn_run(c);
                return 0;
        }
        /* Progress deadlines are moved lazily: a step only notes the time of its progress. */
        if ((c->state == CONN_BODY || c->state == CONN_WRITE) &&
            conn_progress_deadline(c) > now_usec(c->server)) {
                conn_update(c);
                return 0;
        }
        if (c->state == CONN_HEAD && !c->idle && c->in_len > 0)
                conn_send_timeout(c);
        log_debug("HTTP connection timed out (%s), closing it.",
                  c->state == CONN_HEAD ? (c->idle ? "idle" : "request head")
                  : c->state == CONN_LINGER ? "closing"
                  : c->state == CONN_BODY && c->last_io + l->io_timeout_usec > now_usec(c->server)
                          ? "body slower than the minimum rate" : "no progress");
        conn_free(c);
        return 0;
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_free(HttpConn *c) {
        HttpServer *s = c->server;

        if (c->req) {
                request_abort(c->req);
                c->req = request_free(c->req);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                s->first = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                s->last = c->prev;
        s->n_conns--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        conn_out_free(c);
        free(c);
}

static void peer_from_sockaddr(const struct sockaddr_storage *sa, HttpPeer *ret) {
        static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        HttpPeer p = { .family = AF_UNSPEC };

        if (sa->ss_family == AF_INET) {
                p.family = AF_INET;
                memcpy(p.addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (sa->ss_family == AF_INET6) {
                const uint8_t *a = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;

                if (memcmp(a, v4mapped, 12) == 0) {
                        p.family = AF_INET;
                        memcpy(p.addr, a + 12, 4);
                } else {
                        p.family = AF_INET6;
                        memcpy(p.addr, a, 16);
                }
        }
        *ret = p;
}

static bool peer_eq(const HttpPeer *a, const HttpPeer *b) {
        return a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Whom to close for room: the oldest connection without an accepted request head (or one
 * closing anyway), else the oldest idle keep-alive one; only among peer's when peer is set.
 * NULL when every connection is busy with a request. */
static HttpConn *server_pick_victim(HttpServer *s, const HttpPeer *peer) {
        HttpConn *idle = NULL;

        for (HttpConn *c = s->first; c; c = c->next) {
                if (peer && !peer_eq(&c->peer, peer))
                        continue;
                if (c->state == CONN_LINGER || (!c->trusted && c->state == CONN_HEAD))
                        return c;
                if (!idle && c->state == CONN_HEAD && c->idle)
                        idle = c;
        }
        return idle;
}

static size_t server_count_peer(HttpServer *s, const HttpPeer *peer) {
        size_t n = 0;

        for (HttpConn *c = s->first; c; c = c->next)
                n += peer_eq(&c->peer, peer);
        return n;
}

/* Room for one more connection from peer: 0, or -EBUSY when every slot it may have is busy. */
static int server_make_room(HttpServer *s, HttpListener *l, const HttpPeer *peer) {
        HttpConn *victim;

        if (!l->is_unix && server_count_peer(s, peer) >= s->limits.max_connections_per_peer) {
                victim = server_pick_victim(s, peer);
                if (!victim)
                        return -EBUSY;
                log_debug("Connections per client address at their limit (%u), closing the "
                          "oldest waiting one.", s->limits.max_connections_per_peer);
                conn_free(victim);
        }
        if (s->n_conns >= s->limits.max_connections) {
                victim = server_pick_victim(s, NULL);
                if (!victim)
                        return -EBUSY;
                log_debug("Connections at their limit (%u), closing the oldest waiting one.",
                          s->limits.max_connections);
                conn_free(victim);
        }
        return 0;
}

/* Every slot is busy with a request: the new client hears so, if its socket takes it. What it
 * already sent is read and dropped first, so that closing does not reset the connection. */
static void refuse_busy(int fd) {
        _cleanup_free_ char *text = error_text("unavailable", "Too many connections; try again "
                                               "later");
        _cleanup_free_ char *out = NULL;
        Reply rp = { .status = 503, .content_type = "application/json", .close = true,
                     .retry_after = HTTP_RETRY_AFTER_SEC };
        size_t len;

        if (!text)
                return;
        rp.body = text;
        rp.len = strlen(text);
        if (reply_render(&rp, &out, &len) < 0)
                return;
        (void) send(fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) shutdown(fd, SHUT_WR);
        for (unsigned i = 0; i < 4; i++) {
                char buf[HTTP_HEAD_MAX];

                if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
                        break;
        }
}

static int conn_add_sources(HttpConn *c) {
        HttpServer *s = c->server;
        int r;

        r = sd_event_add_io(s->event, &c->io, c->fd, EPOLLIN, on_conn_io, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->io, "http-connection");
        r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC, c->deadline,
                              HTTP_TIMER_ACCURACY_USEC, on_conn_timer, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->timer, "http-deadline");
        return 0;
}

/* Takes fd (an accepted connection), also on failure. */
static int conn_new(HttpListener *l, int fd, const HttpPeer *peer) {
        HttpServer *s = l->server;
        socklen_t len = sizeof(struct ucred);
        HttpConn *c;
        int r;

        c = calloc(1, sizeof(HttpConn));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        *c = (HttpConn) { .server = s, .listener = l, .fd = fd, .peer = *peer,
                          .prev = s->last, .state = CONN_HEAD,
                          .deadline = now_usec(s) + s->limits.head_timeout_usec };
        if (s->last)
                s->last->next = c;
        else
                s->first = c;
        s->last = c;
        s->n_conns++;
        c->has_cred = l->is_unix &&
                      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) >= 0 &&
                      len == sizeof(c->cred) && c->cred.pid > 0;
        r = conn_add_sources(c);
        if (r < 0) {
                conn_free(c);
                return r;
        }
        /* A request that is already there is read at once: a connection with an accepted head
         * is no longer the first to be pushed out when others crowd in after it. */
        conn_run(c);
        return 0;
}

/* ---- listening --------------------------------------------------------------------------- */

/* -EAGAIN when no connection is waiting; 0 when one was taken (or refused). */
static int listener_accept_one(HttpListener *l) {
        struct sockaddr_storage sa = {};
        socklen_t salen = sizeof(sa);
        HttpPeer peer;
        int fd, r;

        fd = accept4(l->fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        peer_from_sockaddr(&sa, &peer);
        if (server_make_room(l->server, l, &peer) < 0) {
                log_debug("Every HTTP connection is busy with a request, refusing a new one.");
                refuse_busy(fd);
                safe_close(fd);
                return 0;
        }
        r = conn_new(l, fd, &peer);
        if (r < 0)
                log_debug_errno(r, "Failed to set up an HTTP connection, closing it: %m");
        return 0;
}

static bool accept_error_transient(int r) {
        return r == -ECONNABORTED || r == -EINTR || r == -EPROTO || r == -EPERM;
}

static bool accept_error_resources(int r) {
        return r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM;
}

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;

        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_enabled(s->listeners[i]->source, SD_EVENT_ON);
        return 0;
}

/* Out of fds or memory: stop accepting for a while instead of spinning on a listening socket
 * that stays readable. */
static int server_pause_accepting(HttpServer *s) {
        int r;

        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_enabled(s->listeners[i]->source, SD_EVENT_OFF);
        if (!s->retry_source) {
                r = sd_event_add_time_relative(s->event, &s->retry_source, CLOCK_MONOTONIC,
                                               HTTP_ACCEPT_RETRY_USEC, 0, on_accept_retry, s);
                if (r >= 0)
                        (void) sd_event_source_set_description(s->retry_source, "http-retry");
                return r;
        }
        r = sd_event_source_set_time_relative(s->retry_source, HTTP_ACCEPT_RETRY_USEC);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s->retry_source, SD_EVENT_ONESHOT);
}

static int on_listen_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpListener *l = userdata;

        for (unsigned i = 0; i < HTTP_ACCEPT_BURST; i++) {
                int r = listener_accept_one(l);

                if (r == -EAGAIN)
                        return 0;
                if (r >= 0 || accept_error_transient(r))
                        continue;
                if (accept_error_resources(r)) {
                        log_debug_errno(r, "Failed to accept an HTTP connection, pausing for "
                                        "%" PRIu64 " ms: %m",
                                        HTTP_ACCEPT_RETRY_USEC / USEC_PER_MSEC);
                        return server_pause_accepting(l->server);
                }
                /* Anything else will not go away: sd-event disables this source. */
                return log_debug_errno(r, "Failed to accept an HTTP connection, no longer "
                                       "accepting: %m");
        }
        return 0;
}

static HttpListener *listener_free(HttpListener *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->source);
        safe_close(l->fd);
        free(l);
        return NULL;
}

/* A listening stream socket, made non-blocking (accept4() is called until EAGAIN). */
static int listen_fd_prepare(int fd, bool *ret_is_unix) {
        int accepting = 0, domain = AF_UNSPEC, flags;
        socklen_t len = sizeof(accepting), dlen = sizeof(domain);

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0)
                return negative_errno();
        if (!accepting)
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return negative_errno();
        *ret_is_unix = domain == AF_UNIX;
        return 0;
}

int http_server_listen(HttpServer *s, int listen_fd, HttpAuthHook auth, void *auth_userdata) {
        _cleanup_close_ int fd = listen_fd;
        HttpListener *l;
        bool is_unix = false;
        int r;

        if (!s || fd < 0)
                return -EINVAL;
        if (s->n_listeners == HTTP_LISTEN_MAX)
                return -E2BIG;
        r = listen_fd_prepare(fd, &is_unix);
        if (r < 0)
                return r;
        l = calloc(1, sizeof(HttpListener));
        if (!l)
                return -ENOMEM;
        *l = (HttpListener) { .server = s, .fd = TAKE_FD(fd), .is_unix = is_unix, .auth = auth,
                              .auth_userdata = auth_userdata };
        r = sd_event_add_io(s->event, &l->source, l->fd, EPOLLIN, on_listen_io, l);
        if (r < 0) {
                listener_free(l);
                return r;
        }
        (void) sd_event_source_set_description(l->source, "http-listen");
        s->listeners[s->n_listeners++] = l;
        return 0;
}

/* ---- the server -------------------------------------------------------------------------- */

static bool limits_valid(const HttpLimits *l) {
        return l->max_body > 0 && l->max_body < SIZE_MAX - 1 && l->max_buffered > 0 &&
               l->max_connections > 0 && l->max_connections_per_peer > 0 &&
               l->head_timeout_usec > 0 && l->io_timeout_usec > 0 && l->idle_timeout_usec > 0 &&
               l->handler_timeout_usec > 0;
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

int http_server_new(sd_event *e, const HttpRoute *routes, size_t n_routes, void *userdata,
                    const HttpLimits *limits, HttpServer **ret) {
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        int r;

        if (!e || (!routes && n_routes > 0) || !ret || (limits && !limits_valid(limits)))
                return -EINVAL;
        s = calloc(1, sizeof(HttpServer));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->userdata = userdata;
        if (limits)
                s->limits = *limits;
        else
                http_limits_default(&s->limits);
        r = server_set_routes(s, routes, n_routes);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        /* Kept requests: owners learn they will get no answer. */
        while (s->first)
                conn_free(s->first);
        for (size_t i = 0; i < s->n_listeners; i++)
                listener_free(s->listeners[i]);
        sd_event_source_disable_unref(s->retry_source);
        sd_event_unref(s->event);
        free(s->routes);
        free(s);
        return NULL;
}

/* ---- the request's accessors ------------------------------------------------------------- */

const char *http_request_method(const HttpRequest *req) {
        return req->h.method;
}

const char *http_request_path(const HttpRequest *req) {
        return req->h.path;
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

void http_request_drop_body(HttpRequest *req) {
        request_release(req);
}

int http_request_peer(const HttpRequest *req, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid) {
        const HttpConn *c = req->conn;

        if (!c->has_cred)
                return -ENODATA;
        if (ret_uid)
                *ret_uid = c->cred.uid;
        if (ret_gid)
                *ret_gid = c->cred.gid;
        if (ret_pid)
                *ret_pid = c->cred.pid;
        return 0;
}

const char *http_request_header(const HttpRequest *req, const char *name) {
        return http_head_header(&req->h, name);
}

void http_request_set_principal(HttpRequest *req, const void *principal) {
        req->principal = principal;
}

const void *http_request_principal(const HttpRequest *req) {
        return req->principal;
}

void http_request_keep(HttpRequest *req, HttpAbortHandler on_abort, void *userdata) {
        /* Inside the handler: keep it. Later, on a kept request: hand it to a new owner. */
        if ((!req->in_handler && !req->kept) || request_done(req))
                return;
        req->kept = true;
        req->on_abort = on_abort;
        req->abort_userdata = userdata;
}
