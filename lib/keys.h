/* Redis key names (docs/protocol.md): the one place they are built. All keys of a queue share
 * the hash tag {queue}. */
#pragma once

#include "macro.h"

typedef struct QueueKeys {
        char *ready, *leases, *workers, *delayed, *dead, *done, *stats;
        char *gather_failed;  /* "P:{q}:gather-failed": results tasad-results set aside */
        char *job_prefix;     /* "P:{q}:job:" */
        char *proc_prefix;    /* "P:{q}:proc:" */
        char *batch_prefix;   /* "P:{q}:batch:" */
        char *staged_prefix;  /* "P:{q}:staged:": a batch's staged job ids, in order */
        char *staging;        /* "P:{q}:staging": batches being staged, by their last step */
        char *delivering;     /* "P:{q}:delivering": committed batches not yet all in ready */
} QueueKeys;

/* A worker waiting for jobs blocks in BLMOVE at most this long and then issues it again, so a
 * blocked fetch of a worker that vanished (its connection never reset) is over by then, and
 * Redis moves nothing into that worker's proc list afterwards. reap keeps sweeping a dead
 * worker's proc list for REAP_WORKER_GRACE_MS after its liveness expired (docs/protocol.md). */
#define FETCH_BLOCK_SEC 5
#define REAP_WORKER_GRACE_MS 15000 /* 3 * FETCH_BLOCK_SEC, as a literal: it is sent as text */

int queue_keys_new(const char *prefix, const char *queue, QueueKeys **ret);
QueueKeys *queue_keys_free(QueueKeys *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(QueueKeys *, queue_keys_free);

/* "<prefix-of-kind><id>"; NULL on allocation failure. */
char *queue_key_job(const QueueKeys *k, const char *id);
char *queue_key_proc(const QueueKeys *k, const char *worker_id);
char *queue_key_batch(const QueueKeys *k, const char *batch_id);
char *queue_key_staged(const QueueKeys *k, const char *batch_id);
/* The job key of an id of len bytes as Redis holds it (it may contain NUL: the key is
 * NUL-terminated for convenience and *ret_len is its length). */
char *queue_key_job_n(const QueueKeys *k, const char *id, size_t len, size_t *ret_len);
