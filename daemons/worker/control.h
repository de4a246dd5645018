/* The worker's control socket, <worker_socket_dir>/<queue>.sock (or the fd systemd passes as
 * "control"): HTTP+JSON, see docs/api.md "Worker control".
 *   GET  /v1/worker          state, slots, counters, running jobs
 *   POST /v1/worker/pause    stop taking jobs; running ones go on
 *   POST /v1/worker/resume   take jobs again
 *   POST /v1/worker/drain    as SIGTERM: let running jobs finish, give back the rest, exit
 * Reading needs membership of the queue's read_groups; the three changes need root or the
 * worker's own user (peer credentials). */
#pragma once

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct Worker Worker;
typedef struct CtlServer CtlServer;

/* Opens the socket and serves it for w. Logs what fails. */
int worker_control_start(sd_event *e, Worker *w, const char *path, CtlServer **ret);
