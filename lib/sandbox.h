/* The job sandbox (docs/sandbox.md): the isolation layers of every job process. The worker
 * prepares them once per queue (at start and on reload: the profile compiled to BPF, limits,
 * the account, namespaces); the child process only applies them, between clone and execve,
 * without allocating or parsing (lib/spawn.c runs it on a vfork-style shared stack).
 *
 * Order in the child, after spawn.c's own steps (session, PDEATHSIG, fds, working directory):
 *   2. rlimits (core size always 0),
 *   3. namespaces: join the worker's empty network namespace (network = false), a new IPC
 *      namespace (private_ipc), a new mount namespace (private_tmp, or limit_work_dir in the
 *      unprivileged mode) with a tmpfs on the working directory (unprivileged mode) and on
 *      /tmp, /var/tmp and /dev/shm (private_tmp), then the job's group and user,
 *   4. PR_SET_NO_NEW_PRIVS,
 *   5. the seccomp filter, last, immediately before execve.
 *
 * Violations: the filter's "kill" action is a seccomp user notification. The child sends the
 * filter's listener to the worker over a socket pair (SANDBOX_CHANNEL_FD in the child); the
 * worker watches it, and when a job makes a forbidden call it learns the call and the pid from
 * the kernel, stops the job and records `sandbox-violation` with the call's name. Where the
 * kernel refuses a second listener (the worker itself runs under a notifying filter) the
 * kernel kills the process instead (SIGSYS) and the call's name is not known.
 *
 * Privileges: a worker with CAP_SYS_ADMIN (root) makes the network namespace itself and
 * switches jobs to `user`. Without it, the namespaces are made inside an unprivileged user
 * namespace owned by the worker (one per worker, joined by each job), and jobs run as the
 * worker's own user. Where neither works, a queue asking for a namespace is refused unless it
 * sets allow_degraded. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

typedef struct QueueConfig QueueConfig;
typedef struct Policy Policy;
typedef struct SandboxHost SandboxHost;
typedef struct Sandbox Sandbox;

/* Descriptors the child keeps at fixed numbers between its fd step and execve (O_CLOEXEC, so
 * the job never sees them); every other descriptor above 2 is closed. */
#define SANDBOX_FD_CHANNEL 3   /* the child's end of the listener channel */
#define SANDBOX_FD_USERNS 4    /* the worker's user namespace (unprivileged mode) */
#define SANDBOX_FD_NETNS 5     /* the empty network namespace */
#define SANDBOX_N_FDS 3

/* ---- per worker ---- */

/* Probes what this process may do (namespaces, user switching, seccomp listeners) and makes
 * the empty network namespace when it can. Only out-of-memory and descriptor exhaustion fail;
 * what is unavailable is recorded and reported through sandbox_host_describe(). */
int sandbox_host_new(SandboxHost **ret);
SandboxHost *sandbox_host_free(SandboxHost *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(SandboxHost *, sandbox_host_free);
/* One line for the log: the mode and which layers are available. Owned by h. */
const char *sandbox_host_describe(const SandboxHost *h);

/* ---- per queue ---- */

/* Loads and compiles q's policy from policy_dirs, resolves the account and checks every
 * requested layer against h. A layer that is requested but unavailable fails with a message
 * naming it, unless q->allow_degraded: then it is dropped and described in
 * sandbox_warnings(). */
int sandbox_new(SandboxHost *h, const QueueConfig *q, char *const *policy_dirs, Sandbox **ret,
                char **ret_error);
Sandbox *sandbox_free(Sandbox *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Sandbox *, sandbox_free);

/* The compiled profile; NULL for policy = "unconfined" (no seccomp filter). */
const Policy *sandbox_policy(const Sandbox *s);
/* NULL-terminated list of the layers dropped under allow_degraded (may be empty). */
char *const *sandbox_warnings(const Sandbox *s);
/* Whether every job runs under an account of its own (privileged worker, queue without
 * `user`): the spawn passes it (jobuid.h), and sandbox_job_user() does not apply. */
bool sandbox_job_uids(const Sandbox *s);
/* The account jobs run as (when not sandbox_job_uids()). */
void sandbox_job_user(const Sandbox *s, uid_t *ret_uid, gid_t *ret_gid);
/* The limits the worker needs to classify a job's end (UINT64_MAX: none). */
uint64_t sandbox_limit_cpu_usec(const Sandbox *s);
uint64_t sandbox_limit_memory(const Sandbox *s);
/* limit_work_dir when the worker bounds job directories itself (0: it does not; the child
 * may, in its own mount namespace, in the unprivileged mode). */
uint64_t sandbox_work_dir_limit(const Sandbox *s);
/* Mounts a tmpfs of sandbox_work_dir_limit() bytes, owned by uid:gid, mode 0700, on the
 * directory name in dirfd (just made for a job). 1 when mounted, 0 when the worker does not
 * bound job directories, or -errno. */
int sandbox_work_dir_mount(const Sandbox *s, int dirfd, const char *name, uid_t uid, gid_t gid);
/* Detaches what sandbox_work_dir_mount() mounted at path (its contents go with it). */
int sandbox_work_dir_unmount(const char *path);

/* ---- in the child (no allocation) ---- */

/* The descriptors to place at SANDBOX_FD_CHANNEL.. (index 0..SANDBOX_N_FDS-1), -1 for none. */
void sandbox_child_fds(const Sandbox *s, int ret_fds[SANDBOX_N_FDS]);
/* Applies layers 2-5. seq identifies this spawn on the channel; job_uid is the job's own
 * account (also its GID) when sandbox_job_uids(), else ignored; parent is the worker's pid (the
 * parent-death signal is armed again after the user switch). On failure returns -errno
 * and the failed step's name (a static string) in *ret_step. *ret_listener_sent tells whether
 * a listener was sent (false: the filter kills by itself). */
int sandbox_child_apply(const Sandbox *s, const char *cwd, uint64_t seq, uid_t job_uid,
                        pid_t parent, bool *ret_listener_sent, const char **ret_step);

/* ---- in the worker, after the child has exec'd ---- */

/* Receives the listener the child sent for spawn seq (O_CLOEXEC, non-blocking). */
int sandbox_receive_listener(const Sandbox *s, uint64_t seq, int *ret_fd);

typedef struct SandboxViolation {
        int nr;         /* system call number (native) */
        pid_t pid;      /* the calling process, in the worker's pid namespace */
        uint64_t id;    /* the notification's id */
} SandboxViolation;

/* Reads one pending notification from a listener. -EAGAIN when none; -ENOENT when the caller
 * died meanwhile (the notification vanished). */
int sandbox_violation_receive(int listener_fd, SandboxViolation *ret);
/* SIGKILLs the calling process if its call is still held (so the pid is still its own). */
void sandbox_violation_kill(int listener_fd, const SandboxViolation *v);
/* Answers a held call with EPERM (after the job was killed this is a no-op). */
void sandbox_violation_refuse(int listener_fd, const SandboxViolation *v);
