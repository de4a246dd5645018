/* A small HTTP/1.1 + JSON server for local control sockets (the worker's), driven by sd-event:
 * no threads, nothing blocks, no HTTP library. One request per connection, answered with
 * `Connection: close`; no request bodies are passed on (a Content-Length body of at most
 * CTL_BODY_MAX bytes is read and thrown away), no chunked encoding, no keep-alive.
 *
 * Limits: a request head (request line and headers, up to and including the blank line) of
 * CTL_HEAD_MAX bytes, CTL_CONNECTIONS_MAX connections at once (more are closed at once,
 * unanswered), and CTL_DEADLINE_USEC from accept for the whole exchange (then the connection
 * is closed unanswered). Lines end in CRLF: a bare LF or CR is a 400. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define CTL_HEAD_MAX 8192U
#define CTL_BODY_MAX 4096U
#define CTL_CONNECTIONS_MAX 32U
#define CTL_DEADLINE_USEC (5 * USEC_PER_SEC)

typedef struct sd_event sd_event;
typedef struct json_t json_t;
typedef struct CtlServer CtlServer;
typedef struct CtlRequest CtlRequest;

/* Returns 0 after replying, or -errno for an internal failure (the server then replies 500
 * `internal` with the error's text). Handlers always reply synchronously, before returning;
 * returning 0 without a reply is a bug, answered with 500 as well. req is valid only inside
 * the handler. */
typedef int (*CtlHandler)(CtlRequest *req, void *userdata);

/* method: 1-16 uppercase letters; path: starts with '/', matched exactly (no %-decoding). */
typedef struct CtlRoute {
        const char *method;
        const char *path;
        CtlHandler handler;
} CtlRoute;

/* listen_fd: an already listening stream socket, owned by the server from now on, also when
 * this fails (it is made non-blocking). The routes array is copied; the strings it points to
 * must outlive the server (string literals, typically). userdata is passed to every handler.
 * -EINVAL for a malformed route. */
int ctl_server_new(sd_event *e, int listen_fd, const CtlRoute *routes, size_t n_routes,
                   void *userdata, CtlServer **ret);
/* Closes every connection (unanswered) and the listening socket. NULL is fine. Must not be
 * called from inside a handler. */
CtlServer *ctl_server_free(CtlServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlServer *, ctl_server_free);

/* For tests only: the deadline of connections accepted from now on (CTL_DEADLINE_USEC). */
void ctl_server_set_deadline(CtlServer *s, uint64_t usec);

const char *ctl_request_method(const CtlRequest *req);
/* The request target up to '?', as received (still %-encoded). */
const char *ctl_request_path(const CtlRequest *req);
/* The client's credentials (SO_PEERCRED, taken at accept); -ENODATA when there are none (not
 * a Unix socket). Outputs may be NULL. */
int ctl_request_peer(const CtlRequest *req, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid);

/* Replies; each consumes body (a JSON object or array), also on failure. -EALREADY on a
 * second reply (nothing changes), -EINVAL for another body (NULL included) or a status without
 * a reason phrase here (200, 400, 403, 404, 405, 409, 411, 413, 431, 500, 501, 505). The reply
 * is written after the handler returns. */
int ctl_reply_json(CtlRequest *req, unsigned status, json_t *body);
/* {"error": {"code": code, "message": …}} (http_error_body()) with the given status. */
int ctl_reply_error(CtlRequest *req, unsigned status, const char *code, const char *format, ...)
        _printf_(4, 5);
