/* Starting a job process. The child is created with clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD),
 * as glibc's posix_spawn does: it shares the parent's memory until execve, so between clone and
 * exec it only reads the prepared plan and makes system calls (no allocation, no locks). The
 * parent is suspended until the child has exec'd or failed.
 *
 * In the child, in order: default signal mask and SIGPIPE disposition, a new session and
 * process group (so the whole tree can be killed with kill(-pid)), PR_SET_PDEATHSIG(SIGKILL),
 * stdin/stdout/stderr from the plan, every other fd closed, working directory,
 * then the sandbox's layers (sandbox.h: rlimits, namespaces, user, PR_SET_NO_NEW_PRIVS, the
 * seccomp filter last), execve. */
#pragma once

#include <sys/types.h>

typedef struct Sandbox Sandbox;

typedef struct SpawnPlan {
        char *const *argv;      /* argv[0] is an absolute path */
        char *const *envp;
        const char *cwd;        /* NULL: "/" */
        int stdin_fd;           /* each > 2 */
        int stdout_fd;
        int stderr_fd;
        const Sandbox *sandbox; /* NULL: no sandbox layers (PR_SET_NO_NEW_PRIVS still set) */
        uid_t job_uid;          /* the job's own account when sandbox_job_uids(sandbox) */
} SpawnPlan;

typedef struct SpawnChild {
        pid_t pid;
        int pidfd;              /* O_CLOEXEC */
        int listener_fd;        /* the job's seccomp listener (O_CLOEXEC), or -1 */
} SpawnChild;

/* Returns 0 with the child, or -errno: the error of a failed step in the child (e.g. -ENOENT
 * from execve), the child already reaped, and the step's name (static) in *ret_failed_step
 * when that is not NULL. */
int spawn_start(const SpawnPlan *plan, SpawnChild *ret, const char **ret_failed_step);
