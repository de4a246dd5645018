/* Per-job accounts (docs/sandbox.md, "Every job its own account"). A privileged worker runs each
 * job of a queue without `user` under a UID (and a GID of the same number) of its own, taken
 * from the range reserved for tasad (tasad.conf job_uid_first, job_uid_count) while the job
 * runs: no job can read another's /proc files or memory, enter its directory or signal it, and
 * everything a job started can be found and killed by its UID when it ends.
 *
 * Several workers share the range: a UID is held through an exclusive flock on
 * <lock_dir>/<uid>, kept for the worker's life and reused by its next jobs. Every lock is
 * also passed to a guardian process forked at start, which holds it until the worker is gone
 * (exited or killed), then kills every process of every UID the worker held and exits, so no
 * UID goes to another worker while a process of the old one may live. UIDs that name an
 * account in the user database are skipped. The channel to the guardian is O_CLOEXEC: a
 * process forked without exec must close it (job spawns close every descriptor), or the
 * guardian waits for that process too. */
#pragma once

#include <sys/types.h>

#include "macro.h"

typedef struct JobUids JobUids;

/* Opens (creating it 0700) lock_dir and forks the guardian. */
int job_uids_new(const char *lock_dir, uid_t first, unsigned count, JobUids **ret);
/* Closes the guardian's channel (it reaps and exits) and waits for it. */
JobUids *job_uids_free(JobUids *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(JobUids *, job_uids_free);

/* A UID no running job of this worker uses: one it holds already, else the next free one of
 * the range (locked, handed to the guardian, and cleared of any process first). -EUSERS when
 * every UID of the range is taken. */
int job_uids_acquire(JobUids *u, uid_t *ret);
/* The job of uid ended and job_uid_reap() succeeded: the UID serves the next job. */
void job_uids_release(JobUids *u, uid_t uid);

/* SIGKILLs every process whose real or saved UID is uid: a short-lived child switches to uid
 * and calls kill(-1, SIGKILL), which reaches exactly those (no capabilities left) and is one
 * pass that a concurrent fork cannot escape. Returns 0 or -errno. Never call it with a UID
 * that is not a job's own (0 would be everything). */
int job_uid_reap(uid_t uid);

/* The world-writable directories every job shares unless private_tmp: /tmp, /var/tmp,
 * /dev/shm (NULL-terminated). */
extern char *const job_uid_shared_dirs[];
/* Removes what uid owns at the top of each of dirs and in the world-writable directories
 * directly under them (without following symbolic links or leaving their file systems), once
 * no process of uid is left (job_uid_reap). The count of entries removed in *ret_removed.
 * Returns 0 or the first error (-errno); what could be removed is. -EINVAL for uid 0. */
int job_uid_sweep(char *const *dirs, uid_t uid, unsigned *ret_removed);
