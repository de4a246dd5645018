#include "spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "macro.h"
#include "sandbox.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

#define CHILD_STACK_SIZE (64 * 1024)

typedef struct ChildArgs {
        const SpawnPlan *plan;
        pid_t parent;
        uint64_t seq;                   /* identifies this spawn on the sandbox's channel */
        sigset_t mask;                  /* the mask to restore in the child */
        /* Written by the child before it execs or _exit(127)s; read once the parent resumes. */
        volatile int error;
        const char *volatile step;
        volatile bool listener_sent;
} ChildArgs;

#define STEP(name, call)                \
        do {                            \
                a->step = (name);       \
                if ((call) < 0)         \
                        goto fail;      \
        } while (0)

/* stdin/stdout/stderr from the plan, the sandbox's descriptors at their fixed numbers
 * (O_CLOEXEC), every other descriptor closed. */
static int child_fds(const SpawnPlan *p) {
        int keep[SANDBOX_N_FDS];

        if (dup2(p->stdin_fd, STDIN_FILENO) < 0 || dup2(p->stdout_fd, STDOUT_FILENO) < 0 ||
            dup2(p->stderr_fd, STDERR_FILENO) < 0)
                return -1;
        if (!p->sandbox)
                return close_range(3, ~0U, 0);
        /* The sandbox's descriptors are all above SANDBOX_FD_NETNS: none is overwritten
         * before it has been placed. */
        sandbox_child_fds(p->sandbox, keep);
        for (int i = 0; i < SANDBOX_N_FDS; i++)
                if (keep[i] >= 0 && dup3(keep[i], SANDBOX_FD_CHANNEL + i, O_CLOEXEC) < 0)
                        return -1;
        for (int i = 0; i < SANDBOX_N_FDS; i++)
                if (keep[i] < 0)
                        (void) close(SANDBOX_FD_CHANNEL + i);
        return close_range(SANDBOX_FD_CHANNEL + SANDBOX_N_FDS, ~0U, 0);
}

/* Runs in the child, on its own stack, sharing the parent's memory: system calls only. */
static int child_main(void *arg) {
        ChildArgs *a = arg;
        const SpawnPlan *p = a->plan;
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        bool sent = false;
        int r;

        STEP("signal mask", sigaction(SIGPIPE, &dfl, NULL));
        STEP("signal mask", sigprocmask(SIG_SETMASK, &a->mask, NULL));
        STEP("setsid", setsid());
        STEP("PR_SET_PDEATHSIG", prctl(PR_SET_PDEATHSIG, SIGKILL));
        a->step = "PR_SET_PDEATHSIG";
        if (getppid() != a->parent) { /* the worker died before PDEATHSIG was armed */
                errno = ESRCH;
                goto fail;
        }
        STEP("set up descriptors", child_fds(p));
        STEP("chdir to the working directory", chdir(p->cwd ? p->cwd : "/"));
        if (p->sandbox) {
                r = sandbox_child_apply(p->sandbox, p->cwd, a->seq, p->job_uid, a->parent, &sent,
                                        (const char **) &a->step);
                a->listener_sent = sent;
                if (r < 0) {
                        errno = -r;
                        goto fail;
                }
        } else
                STEP("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        a->step = "execve";
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

static int spawn_clone(ChildArgs *a, pid_t *ret_pid, int *ret_pidfd) {
        sigset_t all, saved;
        int pidfd = -EBADF, saved_errno;
        void *stack = child_stack();
        pid_t pid;

        if (!stack)
                return -ENOMEM;
        /* No signal handler may run in the child while it shares our memory; the job itself
         * starts with nothing blocked, whatever the worker blocks for sd-event. */
        sigfillset(&all);
        sigemptyset(&a->mask);
        sigprocmask(SIG_SETMASK, &all, &saved);
        pid = clone(child_main, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, a, &pidfd);
        saved_errno = errno;
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (pid < 0)
                return -saved_errno;
        *ret_pid = pid;
        *ret_pidfd = pidfd;
        return 0;
}

int spawn_start(const SpawnPlan *plan, SpawnChild *ret, const char **ret_failed_step) {
        static uint64_t seq = 0;
        ChildArgs a = { .plan = plan, .parent = getpid(), .seq = ++seq };
        int pidfd = -EBADF, listener = -EBADF, r;
        pid_t pid = 0;

        if (plan->stdin_fd <= 2 || plan->stdout_fd <= 2 || plan->stderr_fd <= 2 || !plan->argv ||
            !plan->argv[0] || plan->argv[0][0] != '/')
                return -EINVAL;
        r = spawn_clone(&a, &pid, &pidfd);
        if (r < 0)
                return r;
        if (a.error == 0 && a.listener_sent) {
                r = sandbox_receive_listener(plan->sandbox, a.seq, &listener);
                if (r < 0) { /* a job we could not supervise must not run */
                        (void) kill(pid, SIGKILL);
                        a.error = -r;
                        a.step = "receive the seccomp listener";
                }
        }
        if (a.error != 0) {
                (void) waitpid(pid, NULL, 0);
                safe_close(pidfd);
                if (ret_failed_step)
                        *ret_failed_step = a.step;
                return -a.error;
        }
        *ret = (SpawnChild){ .pid = pid, .pidfd = pidfd, .listener_fd = listener };
        return 0;
}
