/* Decoding a submission body in bounded steps: POST /v1/queues/{queue}/jobs (one job object)
 * and …/batches ({"jobs": [job, …]}), against the queue's limits, on an sd-event loop.
 *
 * Nothing about a body is given to jansson before json-scan.c has checked it: its syntax, its
 * nesting (a batch is at most 4 levels deep, a job 2), the elements of every array and object
 * (at most the queue's max_args + 16, a batch at most SUBMISSION_BATCH_MAX jobs), and the bytes
 * of each job object (at most submission_job_json_max(): what the queue's largest job can take
 * as JSON text, escapes included). Then each job object is decoded on its own
 * (job_spec_from_json()). Both phases run in steps of SUBMISSION_STEP_USEC (at least one job
 * per step) from a timer of the loop, with the loop's I/O polled between steps, so no callback
 * of the daemon runs long and every other client is served meanwhile, whatever the body; memory is the body, one JsonSpan (8 bytes) per job and the decoded jobs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct QueueConfig QueueConfig;
typedef struct JobSpec JobSpec;
typedef struct Submission Submission;

#define SUBMISSION_BATCH_MAX 1000000U
#define SUBMISSION_STEP_USEC (2 * USEC_PER_MSEC)

/* Called once, from the loop: r = 0 when every job is decoded (submission_take_specs()), else
 * the refusal with its message: -EBADMSG (400 bad-request: not JSON, wrong shape, nested too
 * deep), -EINVAL (400 invalid-argument: a job breaks the queue's rules), -E2BIG (413
 * too-large: too many jobs or elements, a job too large), or another -errno (500). A message
 * about one job of a batch starts with "jobs[N]: ". The submission may be freed inside. */
typedef void (*SubmissionDone)(Submission *sub, int r, const char *message, void *userdata);

/* Starts decoding body[0..len) (which must stay valid until done or submission_free()) as a
 * batch or a single job of queue q. */
int submission_new(sd_event *e, const void *body, size_t len, const QueueConfig *q, bool batch,
                   SubmissionDone done, void *userdata, Submission **ret);
/* Stops a submission that is not done; NULL is fine. */
Submission *submission_free(Submission *sub);
DEFINE_TRIVIAL_CLEANUP_FUNC(Submission *, submission_free);

/* After a successful done: the jobs in order (*ret_n of them, at least one), the caller's to
 * free (job_spec_free() each, then free() the array). */
JobSpec **submission_take_specs(Submission *sub, size_t *ret_n);

/* How the work was cut: the loop iterations it took and its longest one. */
void submission_stats(const Submission *sub, unsigned *ret_steps, uint64_t *ret_longest_usec);

/* The most bytes of JSON a job object of q may have: 8 × max_payload (base64 with escapes) +
 * max_args × (6 × max_arg_len + 4) (every byte escaped) + 64 KiB (keys, id, timeout,
 * whitespace). */
uint64_t submission_job_json_max(const QueueConfig *q);
