/* One attempt of one job: the process started through spawn_start(), its stdout and stderr
 * captured up to max_output each, its deadline (TERM, grace, KILL to the whole process group),
 * and on completion a classified JobResult. Everything is an sd-event source; nothing blocks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "job.h"
#include "macro.h"

typedef struct sd_event sd_event;
typedef struct JobRun JobRun;
typedef struct Sandbox Sandbox;

/* Called once, when the process has exited and both pipes are closed (or drained for a while).
 * `result` is owned by the callee. The callee may free the run from inside the callback. */
typedef void (*JobRunDone)(JobRun *run, JobResult *result, void *userdata);

typedef struct JobRunParams {
        char *const *argv;
        char *const *envp;
        const uint8_t *payload;
        size_t payload_len;
        uint64_t timeout_usec;
        uint64_t kill_grace_usec;
        uint64_t max_output;
        int devnull_fd;          /* stdin when there is no payload */
        const char *cwd;         /* the job's working directory (NULL: "/"); it must outlive
                                  * the run */
        uint64_t cwd_limit;      /* cwd is a tmpfs of this size (limit_work_dir), or 0 */
        const Sandbox *sandbox;  /* read only while starting; NULL: none */
        uid_t job_uid;           /* the job's own account (jobuid.h), or 0: every process of
                                  * it is killed when the job's main process has exited */
} JobRunParams;

/* Starts the process. -errno when it could not be started (ret untouched), with the failed
 * step of the child's set-up (static) in *ret_step when not NULL. */
int job_run_start(sd_event *e, const JobRunParams *p, JobRunDone done, void *userdata,
                  JobRun **ret, const char **ret_step);
/* Stops the job early: TERM to its process group, KILL after the grace (at once when
 * `immediately`). The result's outcome is `outcome` ("cancelled", "lease-lost", "released"). */
void job_run_stop(JobRun *run, const char *outcome, bool immediately);
pid_t job_run_pid(const JobRun *run);
/* Whether no process of the job's own account is left (true when it has none). */
bool job_run_reaped(const JobRun *run);
JobRun *job_run_free(JobRun *run);
DEFINE_TRIVIAL_CLEANUP_FUNC(JobRun *, job_run_free);

/* Whether a failed attempt with this outcome may be retried under the queue's policy. */
bool outcome_is_retryable(const char *outcome);
