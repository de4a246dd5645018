/* An HTTP+JSON server on libmicrohttpd, driven by an sd-event loop (no threads): MHD's epoll fd
 * is an sd-event io source, its timeout an sd-event timer. Routes are a table; a handler either
 * replies at once or keeps the request (long poll) and replies later from any event source.
 * Peer credentials of Unix-socket clients are available to handlers for authorization. */
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
} HttpRoute;

/* listen_fd: an already listening socket (owned by the server from now on).
 * max_body: request bodies above it get 413 without reaching the handler. */
int http_server_new(sd_event *e, int listen_fd, const HttpRoute *routes, size_t n_routes,
                    void *userdata, uint64_t max_body, HttpServer **ret);
HttpServer *http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);

/* Returns 0 to let the request go on, or < 0 with a message (static) for the 401
 * `unauthorized` reply. It sees the headers only (http_request_header, http_request_peer). */
typedef int (*HttpAuthHook)(HttpRequest *req, void *userdata, const char **ret_message);
/* Called for every request of the server as soon as its headers are in. */
void http_server_set_auth(HttpServer *s, HttpAuthHook hook, void *userdata);

const char *http_request_method(const HttpRequest *req);
const char *http_request_path(const HttpRequest *req);
/* A {name} segment of the matched route, %-decoded; NULL if the route has none. */
const char *http_request_param(const HttpRequest *req, const char *name);
/* A query-string argument, %-decoded, or NULL. */
const char *http_request_query(const HttpRequest *req, const char *name);
const uint8_t *http_request_body(const HttpRequest *req, size_t *ret_len);
/* Peer credentials (SO_PEERCRED) of a Unix-socket client; -ENODATA on TCP. */
int http_request_peer(const HttpRequest *req, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid);
/* A request header's value, or NULL. */
const char *http_request_header(const HttpRequest *req, const char *name);
/* Who the auth hook found the client to be (an API token, say); NULL until it says. */
void http_request_set_principal(HttpRequest *req, const void *principal);
const void *http_request_principal(const HttpRequest *req);

/* Replies; each takes ownership of its body and completes the request (once). */
int http_reply_json(HttpRequest *req, unsigned status, json_t *body);
int http_reply_bytes(HttpRequest *req, unsigned status, const char *content_type,
                     const void *data, size_t len);
/* {"error": {"code": code, "message": "…"}} with the given status. */
int http_reply_error(HttpRequest *req, unsigned status, const char *code, const char *format, ...)
        _printf_(4, 5);

/* Keeps the request open after the handler returns (long poll). The reply comes later through
 * http_reply_*(); `on_abort` (may be NULL) is called if the client goes away first, after which
 * req must not be used. The server frees the request after the reply is sent. */
typedef void (*HttpAbortHandler)(HttpRequest *req, void *userdata);
void http_request_keep(HttpRequest *req, HttpAbortHandler on_abort, void *userdata);

/* Notes on the contract above, as implemented in http.c (additions, nothing above changed):
 * - http_request_path() is the path as received (still %-encoded, no query string); params
 *   and query values are %-decoded ('+' is a space in the query), a query key without '=' has
 *   the value "". A malformed escape or an encoded NUL is answered 400 `bad-request`.
 * - 405 answers carry an Allow header and the code `method-not-allowed`.
 * - http_request_body() never returns NULL and the body is NUL-terminated (not counted).
 * - http_reply_bytes() copies data; http_reply_json() consumes body also on failure. A second
 *   reply (or one after on_abort) returns -EALREADY and changes nothing. A reply can come from
 *   any event source of the same sd-event loop, never from another thread.
 * - http_request_keep() keeps a request only inside the handler; called again later on a kept
 *   request it hands the request to a new owner (replaces on_abort and its userdata). A handler that keeps the request and
 *   then returns -errno gets on_abort called (its owner must forget req) and a 500 sent.
 *   on_abort is also called by http_server_free() for requests still kept.
 * - http_server_free() must not be called from inside a handler or an on_abort callback.
 * - listen_fd is owned (closed) by http_server_new() also when it fails. */
