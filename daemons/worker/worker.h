/* tasad-worker's manager: takes jobs of one queue from Redis and runs up to `concurrency` of
 * them at once, holding a lease on each (DESIGN.md §3). */
#pragma once

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct TasadConfig TasadConfig;
typedef struct QueueConfig QueueConfig;
typedef struct Worker Worker;
typedef struct SandboxHost SandboxHost;
typedef struct Sandbox Sandbox;

/* Takes ownership of config and queue. queue_path is re-read on SIGHUP. */
int worker_new(sd_event *e, TasadConfig *config, QueueConfig *queue, Worker **ret);
Worker *worker_free(Worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(Worker *, worker_free);

/* Opens the control socket, connects and starts taking jobs; READY=1 follows the first Redis
 * round trip. */
int worker_start(Worker *w);

/* What the control socket does (control.h). */
typedef struct json_t json_t;
const QueueConfig *worker_queue(const Worker *w);
/* {queue, worker, state: running|paused|draining, concurrency, jobs_running, done, failed,
 * redis_up, jobs: [{id, attempt, state, pid}]}; NULL when out of memory. */
json_t *worker_status_json(const Worker *w);
/* Stops taking jobs (running ones go on) until worker_resume(); no-op while draining. */
void worker_pause(Worker *w);
/* -ESHUTDOWN while draining. */
int worker_resume(Worker *w);
/* As SIGTERM: no new jobs, running ones finish within drain_timeout, the rest go back to the
 * queue, then the event loop exits with 0. */
void worker_drain(Worker *w);

/* Loads <queues_dir>/<queue>.conf for the worker of `queue`. Logs what is wrong. */
int worker_load_queue(const TasadConfig *config, const char *queue, QueueConfig **ret);
/* One sentence for --check-config and the log: which accounts the queue's jobs run under and
 * what that means for their isolation. NULL when out of memory. */
char *worker_describe_accounts(const TasadConfig *config, const QueueConfig *queue,
                               const Sandbox *sandbox);
/* Loads and compiles the queue's sandbox (policy, limits, namespaces). Logs what is wrong and
 * the layers dropped under allow_degraded. */
int worker_load_sandbox(SandboxHost *host, const TasadConfig *config, const QueueConfig *queue,
                        Sandbox **ret);
