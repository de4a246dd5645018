/* tasad's HTTP/1.1 + JSON API server (tasad-scheduler, tasad-results), on sd-event: no threads,
 * nothing blocks, no HTTP library (http.c says why). Routes are a table; a handler either
 * replies at once or keeps the request (long poll, a Redis round trip) and replies later from
 * any event source of the loop. One server serves any number of listening sockets (Unix ones,
 * whose clients' credentials handlers may read, and TCP ones with an auth hook) under one set
 * of limits. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http-listen.h"
#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_t json_t;
typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

/* Returns 0 when it replied or kept the request (see http_request_keep), or -errno for an
 * internal failure (the server then replies 500 with the error's text). */
typedef int (*HttpHandler)(HttpRequest *req, void *userdata);

typedef struct HttpRoute {
        const char *method;     /* "GET", "POST", "DELETE" */
        const char *pattern;    /* "/v1/jobs/{id}/stdout": {name} matches one non-empty segment */
        HttpHandler handler;
        bool takes_body;        /* a body of up to max_body; false: one of up to HTTP_NO_BODY_MAX
                                 * bytes is read and ignored, a larger one gets 413 */
        bool json_body;         /* a non-empty body must come with Content-Type
                                 * application/json (charset, if given, utf-8), else 415 before
                                 * it is read */
} HttpRoute;

/* What a server lets requests and clients cost; http_limits_default() fills in the defaults
 * (documented in docs/api.md; service.c sets them from tasad.conf). */
typedef struct HttpLimits {
        uint64_t max_body;              /* a larger request body: 413 `too-large` */
        uint64_t max_buffered;          /* request bodies held at once over all connections: a
                                         * body that does not fit gets 503 `unavailable` */
        unsigned max_connections;       /* open connections, all listeners together */
        unsigned max_connections_per_peer; /* open connections per client address (TCP) */
        uint64_t head_timeout_usec;     /* for a complete request head, from the connection's
                                         * start or a request's first byte; then 408, closed */
        uint64_t io_timeout_usec;       /* longest pause inside a body, or while the client
                                         * does not take its reply: then closed (a body also
                                         * has its rate, HTTP_BODY_MIN_RATE) */
        uint64_t idle_timeout_usec;     /* an idle keep-alive connection is closed after it */
        uint64_t handler_timeout_usec;  /* a kept request still unanswered this long after its
                                         * handler ran: on_abort, then 500 `internal`, closed.
                                         * A backstop only: every route bounds its own wait
                                         * (a long poll, redis_timeout) well below it. */
} HttpLimits;

#define HTTP_MAX_BODY_DEFAULT (UINT64_C(64) << 20)
#define HTTP_MAX_BUFFERED_DEFAULT (UINT64_C(256) << 20)
#define HTTP_MAX_CONNECTIONS_DEFAULT 512U
#define HTTP_MAX_CONNECTIONS_PER_PEER_DEFAULT 64U
#define HTTP_TIMEOUT_DEFAULT_USEC (10 * USEC_PER_SEC)
#define HTTP_IDLE_TIMEOUT_DEFAULT_USEC (60 * USEC_PER_SEC)
/* Above the longest wait of any route: a results wait (3600 s) and its Redis round trips
 * (each at most redis_timeout, 10 min at most). */
#define HTTP_HANDLER_TIMEOUT_DEFAULT_USEC (2 * 3600 * USEC_PER_SEC)
/* The body of a request to a route that takes none (GET, DELETE, …): at most this many bytes,
 * read and ignored (a client that sends "{}" anyway is served). */
#define HTTP_NO_BODY_MAX 4096U
/* A body must arrive at an average of at least this many bytes a second, after a grace of
 * head_timeout from its head: n bytes of it by head_timeout + n / HTTP_BODY_MIN_RATE, else
 * the connection is closed unanswered. Bounds how long a body holds its room in max_buffered
 * (and its connection) however it trickles. */
#define HTTP_BODY_MIN_RATE (UINT64_C(64) * 1024)
/* A request head is at most HTTP_HEAD_MAX bytes (431), its request line at most HTTP_LINE_MAX
 * (414). */
#define HTTP_HEAD_MAX 8192U
#define HTTP_LINE_MAX 4096U

void http_limits_default(HttpLimits *ret);

/* Returns 0 to let the request go on, or < 0 with a message (static) for the 401
 * `unauthorized` reply. It sees the head only (http_request_header, http_request_peer). */
typedef int (*HttpAuthHook)(HttpRequest *req, void *userdata, const char **ret_message);

/* A server without listeners yet; limits NULL: the defaults. The routes array is copied (its
 * strings must outlive the server); userdata goes to every handler. -EINVAL for a malformed
 * route or limits of 0. */
int http_server_new(sd_event *e, const HttpRoute *routes, size_t n_routes, void *userdata,
                    const HttpLimits *limits, HttpServer **ret);
/* Serves the listening stream socket listen_fd (owned by the server from now on, also when
 * this fails; made non-blocking). auth (may be NULL) is called for every request of this
 * listener as soon as its head is in, before anything else about it is looked at. */
int http_server_listen(HttpServer *s, int listen_fd, HttpAuthHook auth, void *auth_userdata);
HttpServer *http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);

const char *http_request_method(const HttpRequest *req);
const char *http_request_path(const HttpRequest *req);
/* A {name} segment of the matched route, %-decoded; NULL if the route has none. */
const char *http_request_param(const HttpRequest *req, const char *name);
/* A query-string argument, %-decoded, or NULL. */
const char *http_request_query(const HttpRequest *req, const char *name);
const uint8_t *http_request_body(const HttpRequest *req, size_t *ret_len);
/* Frees the body before the reply (it counts against max_buffered until then); afterwards
 * http_request_body() is empty. */
void http_request_drop_body(HttpRequest *req);
/* Peer credentials (SO_PEERCRED) of a Unix-socket client; -ENODATA on TCP. */
int http_request_peer(const HttpRequest *req, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid);
/* A request header's value (the first of that name), or NULL. */
const char *http_request_header(const HttpRequest *req, const char *name);
/* Who the auth hook found the client to be (an API token, say); NULL until it says. */
void http_request_set_principal(HttpRequest *req, const void *principal);
const void *http_request_principal(const HttpRequest *req);

/* Replies; each takes ownership of its body and completes the request (once). 0 when the
 * reply is made; -EALREADY when the request was complete before (nothing changes); -EINVAL
 * for req NULL. Any other -errno (-ENOMEM, or -EINVAL for a NULL body or format) means the
 * reply asked for could not be made: the request is complete all the same (a static 500
 * `internal` is sent and the connection ends), so its owner is never called back for it. */
int http_reply_json(HttpRequest *req, unsigned status, json_t *body);
int http_reply_bytes(HttpRequest *req, unsigned status, const char *content_type,
                     const void *data, size_t len);
/* {"error": {"code": code, "message": "…"}} with the given status. */
int http_reply_error(HttpRequest *req, unsigned status, const char *code, const char *format, ...)
        _printf_(4, 5);

/* Keeps the request open after the handler returns (long poll). The reply comes later through
 * http_reply_*(); `on_abort` (may be NULL) is called if the client goes away first, or at
 * handler_timeout, after which req must not be used. on_abort is never called once a reply was
 * made or attempted. The server frees the request after the reply is sent. */
typedef void (*HttpAbortHandler)(HttpRequest *req, void *userdata);
void http_request_keep(HttpRequest *req, HttpAbortHandler on_abort, void *userdata);

/* Notes on the contract above, as implemented in http.c:
 * - http_request_path() is the path as received (still %-encoded, no query string); params
 *   and query values are %-decoded ('+' is a space in the query), a query key without '=' has
 *   the value "". A malformed escape or an encoded NUL is answered 400 `bad-request`.
 * - 405 answers carry an Allow header and the code `method-not-allowed`.
 * - http_request_body() never returns NULL and the body is NUL-terminated (not counted).
 * - http_reply_bytes() copies data; http_reply_json() consumes body also on failure. A second
 *   reply (or one after on_abort) returns -EALREADY and changes nothing. A reply can come from
 *   any event source of the same sd-event loop, never from another thread; it is written from
 *   the connection's own event source, so no callback runs inside http_reply_*().
 * - http_request_keep() keeps a request only inside the handler; called again later on a kept
 *   request it hands the request to a new owner (replaces on_abort and its userdata). A
 *   handler that keeps the request and then returns -errno gets on_abort called (its owner
 *   must forget req) and a 500 sent. on_abort is also called by http_server_free() for
 *   requests still kept.
 * - The connection of a request in its handler or kept has no other deadline than
 *   handler_timeout: a request neither kept nor answered when its handler returns gets a 500
 *   at once.
 * - A kept request's client is gone when it hangs up or shuts down its sending side.
 * - http_server_free() must not be called from inside a handler or an on_abort callback. */
