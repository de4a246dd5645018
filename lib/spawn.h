/* Starting a job process. The child is created with clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD),
 * as glibc's posix_spawn does: it shares the parent's memory until execve, so between clone and
 * exec it only reads the prepared plan and makes system calls (no allocation, no locks). The
 * parent is suspended until the child has exec'd or failed.
 *
 * In the child, in order: default signal mask and SIGPIPE disposition, a new session and
 * process group (so the whole tree can be killed with kill(-pid)), PR_SET_PDEATHSIG(SIGKILL),
 * stdin/stdout/stderr from the plan, every other fd closed, working directory,
 * PR_SET_NO_NEW_PRIVS, execve. The sandbox layers (rlimits, namespaces, seccomp) are inserted
 * here by the sandbox work, the filter last before execve. */
#pragma once

#include <sys/types.h>

typedef struct SpawnPlan {
        char *const *argv;      /* argv[0] is an absolute path */
        char *const *envp;
        const char *cwd;        /* NULL: "/" */
        int stdin_fd;           /* each > 2 */
        int stdout_fd;
        int stderr_fd;
} SpawnPlan;

/* Returns 0 with the child's pid and a pidfd (O_CLOEXEC), or -errno: the error of a failed
 * step in the child (e.g. -ENOENT from execve), already reaped. */
int spawn_start(const SpawnPlan *plan, pid_t *ret_pid, int *ret_pidfd);
