/* tasactl's HTTP client for the tasad API (docs/api.md, version 1): libcurl over the daemons'
 * Unix sockets, one easy handle reused for every request (connections are kept per socket).
 *
 * Error contract: every function that fails has already printed exactly one line
 * "tasactl: …" on stderr and returns -errno: the connect errno when a socket cannot be reached
 * (-ENOENT, -ECONNREFUSED, -EACCES, …), -ETIMEDOUT, -EIO for a broken exchange, -EPROTO for a
 * reply that does not follow the API, and for HTTP errors an errno derived from the status
 * (400 -EINVAL, 401 and 403 -EACCES, 404 -ENOENT, 409 -EBUSY, 413 -E2BIG, 503 -EAGAIN, else -EPROTO). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef struct json_t json_t;
typedef struct Client Client;

typedef enum ClientService {
        CLIENT_SCHEDULER,       /* tasad-scheduler: submit, cancel, requeue */
        CLIENT_RESULTS,         /* tasad-results: status, output, waits, queue statistics */
        CLIENT_WORKER,          /* one tasad-worker@QUEUE's control socket (client_set_worker) */
        _CLIENT_SERVICE_MAX,
} ClientService;

/* Whole-request limit of ordinary requests; long polls pass their own. */
#define CLIENT_TIMEOUT_USEC (60 * USEC_PER_SEC)

typedef struct ClientReply {
        long status;            /* HTTP status */
        char *body;             /* body_len bytes, plus a NUL not counted in body_len */
        size_t body_len;
} ClientReply;

void client_reply_done(ClientReply *r);

/* Socket paths, or base URLs "http://HOST:PORT" of TCP listeners (then requests need a token,
 * client_set_token), are copied. */
int client_new(const char *scheduler_socket, const char *results_socket, Client **ret);
Client *client_free(Client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Client *, client_free);

/* Sends "Authorization: Bearer TOKEN" with every request (API tokens, for TCP listeners). */
int client_set_token(Client *c, const char *token);

/* The control socket of the worker of queue (at path) for CLIENT_WORKER requests. Copied. */
int client_set_worker(Client *c, const char *queue, const char *path);

/* A note appended as "; NOTE" to every error line the client prints until it is cleared
 * (NULL), for facts the user must not lose ("job 'X' was submitted to queue 'q'"). Copied. */
int client_set_note(Client *c, const char *note);

/* "/v1/SEG/SEG…" from a NULL-terminated list of segments, each %-encoded. */
int client_path(Client *c, char **ret, ...) __attribute__((sentinel));
/* Appends "?name=value" (or "&name=value"), value %-encoded; a NULL value appends nothing. */
int client_path_query(Client *c, char **path, const char *name, const char *value);

/* One request; body (may be NULL) is sent as JSON. Any HTTP status is a success here: the
 * caller decides. timeout_usec: whole request (connecting is limited to 10s on its own).
 * A socket that cannot be reached is reported as "cannot reach tasad-results at PATH: ERROR
 * (is tasad-results.socket running?)"; other failures as "WHAT: …". */
int client_request(Client *c, ClientService s, const char *method, const char *path,
                   const json_t *body, uint64_t timeout_usec, const char *what, ClientReply *ret);

/* For a reply that is not 2xx: prints "tasactl: WHAT: MESSAGE", MESSAGE being the daemon's
 * error.message (docs/api.md "Errors"), and returns the errno for the status. 0 for 2xx. */
int client_reply_check(Client *c, const ClientReply *r, const char *what);
/* The daemon's error.message of a non-2xx reply, or a description of the status. Owned. */
int client_reply_message(const ClientReply *r, char **ret);
/* The errno for an HTTP status (see the header comment). */
int client_errno_from_status(long status);

/* Request, status check and decoding of a JSON object reply, in one call. WHAT names the
 * operation in error lines ("submit to queue 'x' refused", "cannot get status of job 'y'"). */
int client_call_json(Client *c, ClientService s, const char *method, const char *path,
                     const json_t *body, uint64_t timeout_usec, const char *what, json_t **ret);
/* The same for a reply of raw bytes (job output). */
int client_call_bytes(Client *c, ClientService s, const char *path, const char *what,
                      ClientReply *ret);
