/* What tasactl's verb files share: the parsed command line, the lazily connected client, the
 * exit statuses and the verbs themselves.
 *
 * A verb is `int verb_x(int argc, char *argv[])`, argv[0] being the verb's name and the rest
 * its positional arguments (their count is checked by the verb table in main.c, and so is
 * that only options the verb accepts were given). It returns the process exit status (>= 0),
 * or -errno after it (or the module it called) printed the one error line: exit 1. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct Client Client;
typedef struct json_t json_t;

/* Exit statuses (docs/tasactl.md "Exit status"). */
#define TASACTL_EXIT_OK 0
#define TASACTL_EXIT_FAILURE 1          /* runtime error; a job failed or was cancelled */
#define TASACTL_EXIT_USAGE 2            /* bad command line */
#define TASACTL_EXIT_WAIT_TIMEOUT 2     /* `wait`: a job was not final by --timeout */
#define TASACTL_EXIT_JOB_TIMEOUT 124    /* `submit --wait`: the job hit its timeout */
#define TASACTL_EXIT_JOB_SIGNAL 128     /* `submit --wait`: + the number of the killing signal */

/* Global options. */
extern bool arg_json;
/* Verb options; NULL/false/USEC_INFINITY when not given. */
extern bool arg_stdin;
extern bool arg_each;
extern bool arg_wait;
extern bool arg_stderr;
extern const char *arg_payload_file;
extern const char *arg_id;
extern const char *arg_batch_id;
extern const char *arg_queue;
extern const char *arg_timeout;         /* as written, for submit (the daemon parses it) */
extern uint64_t arg_timeout_usec;       /* parsed, for wait */

/* Prints "tasactl: MESSAGE (see 'tasactl --help')" and returns TASACTL_EXIT_USAGE. */
int tasactl_usage_error(const char *format, ...) _printf_(1, 2);

typedef struct TasadConfig TasadConfig;
/* Loads the configuration (-c, $TASAD_CONF, the default file or built-in defaults). Errors are
 * printed. */
int tasactl_config(TasadConfig **ret);

/* Loads the configuration and connects on first use (the client stays owned by main.c).
 * Errors are printed. */
int tasactl_client(Client **ret);
/* The configuration's max_request: the largest body the daemons accept. Valid after
 * tasactl_client() succeeded. */
uint64_t tasactl_max_request(void);
/* The configuration's worker_socket_dir; valid after tasactl_client() succeeded. */
const char *tasactl_worker_socket_dir(void);

/* verbs-jobs.c, also used by `submit --wait`. */
/* Long-polls GET /v1/jobs/ID/wait until the job is final or the CLOCK_MONOTONIC deadline
 * (USEC_INFINITY: none) passes; *ret is the last status object the daemon sent. */
int job_wait(Client *c, const char *id, const char *queue, uint64_t deadline, json_t **ret);
/* The status object's "state" is done, failed or cancelled. */
bool job_status_is_final(const json_t *status);
uint64_t now_usec(void);
typedef struct ClientReply ClientReply;
/* GET /v1/jobs/ID/STREAM ("stdout" or "stderr"). With missing_ok, a 404 (no attempt has
 * finished, e.g. a job cancelled while queued) is an empty reply, not an error. */
int job_output(Client *c, const char *id, const char *queue, const char *stream, bool missing_ok,
               ClientReply *ret);

/* A state change on the scheduler (cancel, requeue): METHOD PATH, then prints the reply (--json)
 * or "ID STATE". Returns the exit status or -errno (error printed). */
int job_state_change(Client *c, const char *method, const char *path, const char *what,
                     const char *id);

int verb_submit(int argc, char *argv[]);
int verb_status(int argc, char *argv[]);
int verb_result(int argc, char *argv[]);
int verb_wait(int argc, char *argv[]);
int verb_cancel(int argc, char *argv[]);
int verb_queues(int argc, char *argv[]);
int verb_dead(int argc, char *argv[]);
int verb_requeue(int argc, char *argv[]);
int verb_policy(int argc, char *argv[]);
int verb_worker(int argc, char *argv[]);
