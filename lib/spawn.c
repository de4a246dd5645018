#include "spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "macro.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

#define CHILD_STACK_SIZE (64 * 1024)

typedef struct ChildArgs {
        const SpawnPlan *plan;
        pid_t parent;
        sigset_t mask;          /* the mask to restore in the child */
        volatile int error;     /* written by the child before _exit(127) */
} ChildArgs;

/* Runs in the child, on its own stack, sharing the parent's memory: system calls only. */
static int child_main(void *arg) {
        ChildArgs *a = arg;
        const SpawnPlan *p = a->plan;
        struct sigaction dfl = { .sa_handler = SIG_DFL };

        if (sigaction(SIGPIPE, &dfl, NULL) < 0 || sigprocmask(SIG_SETMASK, &a->mask, NULL) < 0)
                goto fail;
        if (setsid() < 0)
                goto fail;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                goto fail;
        if (getppid() != a->parent) { /* the worker died before PDEATHSIG was armed */
                errno = ESRCH;
                goto fail;
        }
        if (dup2(p->stdin_fd, STDIN_FILENO) < 0 || dup2(p->stdout_fd, STDOUT_FILENO) < 0 ||
            dup2(p->stderr_fd, STDERR_FILENO) < 0)
                goto fail;
        if (close_range(3, ~0U, 0) < 0)
                goto fail;
        if (chdir(p->cwd ? p->cwd : "/") < 0)
                goto fail;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                goto fail;
        execve(p->argv[0], p->argv, p->envp);
fail:
        a->error = errno ? errno : EINVAL;
        _exit(127);
}

static void *child_stack(void) {
        static void *stack = NULL;

        /* One stack serves every spawn: with CLONE_VFORK the parent waits until the child has
         * exec'd or exited, so two children never use it at once. */
        if (!stack) {
                void *s = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
                if (s == MAP_FAILED)
                        return NULL;
                stack = s;
        }
        return (char *) stack + CHILD_STACK_SIZE;
}

int spawn_start(const SpawnPlan *plan, pid_t *ret_pid, int *ret_pidfd) {
        ChildArgs a = { .plan = plan, .parent = getpid() };
        sigset_t all, saved;
        int pidfd = -EBADF, saved_errno;
        pid_t pid;
        void *stack;

        if (plan->stdin_fd <= 2 || plan->stdout_fd <= 2 || plan->stderr_fd <= 2 || !plan->argv ||
            !plan->argv[0] || plan->argv[0][0] != '/')
                return -EINVAL;
        stack = child_stack();
        if (!stack)
                return -ENOMEM;

        /* No signal handler may run in the child while it shares our memory; the job itself
         * starts with nothing blocked, whatever the worker blocks for sd-event. */
        sigfillset(&all);
        sigemptyset(&a.mask);
        sigprocmask(SIG_SETMASK, &all, &saved);
        pid = clone(child_main, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
        saved_errno = errno;
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (pid < 0)
                return -saved_errno;

        if (a.error != 0) {
                (void) waitpid(pid, NULL, 0);
                safe_close(pidfd);
                return -a.error;
        }
        *ret_pid = pid;
        *ret_pidfd = pidfd;
        return 0;
}
