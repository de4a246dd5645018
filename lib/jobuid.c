/* Per-job accounts: see jobuid.h. */
#include "jobuid.h"

#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "fsutil.h"

#define REAP_STACK_SIZE (16 * 1024)

typedef struct HeldUid {
        uid_t uid;
        bool busy;
        int lock_fd;
} HeldUid;

struct JobUids {
        int dir_fd;
        uid_t first;
        unsigned count;
        unsigned next;          /* where the next scan of the range starts (offset) */
        HeldUid *held;
        size_t n_held, cap;
        int guardian_fd;        /* our end of the channel to the guardian */
        pid_t guardian;
};

/* ---- what a UID left in the shared temporary directories ---- */

char *const job_uid_shared_dirs[] = { "/tmp", "/var/tmp", "/dev/shm", NULL };

typedef struct Sweep {
        uid_t uid;
        bool descend;
        unsigned removed;
} Sweep;

/* Removes the entry name of dirfd when the UID owns it; descends once into world-writable
 * directories others own (such as /tmp/.X11-unix), where the UID may have written too. */
static int sweep_entry(int dirfd, const char *name, void *userdata) {
        Sweep *w = userdata;
        struct stat st;
        int r, fd;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* gone meanwhile */
        if (st.st_uid == w->uid) {
                r = rm_rf_at(dirfd, name);
                if (r >= 0)
                        w->removed++;
                return r == -ENOENT ? 0 : r;
        }
        if (!w->descend || !S_ISDIR(st.st_mode) || !(st.st_mode & S_IWOTH))
                return 0;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        w->descend = false;
        r = dir_for_each(fd, sweep_entry, w);
        w->descend = true;
        return r;
}

int job_uid_sweep(char *const *dirs, uid_t uid, unsigned *ret_removed) {
        Sweep w = { .uid = uid, .descend = true };
        int r = 0;

        if (uid == 0)
                return -EINVAL;
        for (char *const *p = dirs; *p; p++) {
                int fd = open(*p, O_RDONLY | O_DIRECTORY | O_CLOEXEC), k;

                if (fd < 0)
                        k = errno == ENOENT ? 0 : -errno;
                else
                        k = dir_for_each(fd, sweep_entry, &w);
                if (k < 0 && r >= 0)
                        r = k;
        }
        if (ret_removed)
                *ret_removed = w.removed;
        return r;
}

/* ---- killing every process of a UID ---- */

static int reap_child(void *arg) {
        uid_t uid = *(const uid_t *) arg;

        /* Raw system calls: this child shares the caller's memory (CLONE_VM), glibc's set*id
         * wrappers would synchronise the caller's threads. */
        if (syscall(SYS_setresgid, uid, uid, uid) < 0 || syscall(SYS_setgroups, 0, NULL) < 0 ||
            syscall(SYS_setresuid, uid, uid, uid) < 0)
                _exit(1);
        /* Everything uid may signal, which without capabilities is exactly its own processes
         * (real or saved UID uid). The kernel sends it under the task list lock that fork
         * takes too: a process forking meanwhile either has its child signalled or its fork
         * fails on the pending SIGKILL. */
        if (kill(-1, SIGKILL) < 0 && errno != ESRCH)
                _exit(2);
        _exit(0);
}

int job_uid_reap(uid_t uid) {
        static void *stack = NULL;
        sigset_t all, saved;
        int status;
        pid_t pid;

        if (uid == 0)
                return -EINVAL;
        if (!stack) {
                void *s = mmap(NULL, REAP_STACK_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
                if (s == MAP_FAILED)
                        return -errno;
                stack = s;
        }
        /* No signal handler may run in a child that shares our memory. */
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, &saved);
        pid = clone(reap_child, (char *) stack + REAP_STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD,
                    &uid);
        status = errno;
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (pid < 0)
                return -status;
        if (waitpid(pid, &status, __WALL) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

/* ---- the guardian ---- */

static int recv_uid(int fd, uid_t *ret_uid, int *ret_fd) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = ret_uid, .iov_len = sizeof(uid_t) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *c;
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

        if (n <= 0)
                return n == 0 ? -EPIPE : -errno;
        c = CMSG_FIRSTHDR(&mh);
        *ret_fd = -EBADF;
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
        return n == sizeof(uid_t) ? 0 : -EBADMSG;
}

/* Holds every lock the worker got until the worker is gone, then clears each UID and exits
 * (the locks go with it). Runs in a forked child of the worker. */
static _Noreturn void guardian_main(int fd, unsigned max) {
        uid_t *uids = calloc(max, sizeof(uid_t));
        size_t n = 0;

        (void) prctl(PR_SET_NAME, "tasad-guardian");
        /* Signals the worker blocks for sd-event stay blocked: a SIGTERM or a Ctrl-C meant for
         * the worker does not end the guardian before it has done its work. */
        for (;;) {
                uid_t uid;
                int lock = -EBADF, r = recv_uid(fd, &uid, &lock);

                if (r == -EINTR)
                        continue;
                if (r < 0 && r != -EBADMSG)
                        break; /* the worker is gone */
                if (r >= 0 && uids && n < max)
                        uids[n++] = uid; /* its lock stays open in this process */
        }
        for (size_t i = 0; i < n; i++)
                (void) job_uid_reap(uids[i]);
        _exit(0);
}

static int guardian_start(JobUids *u) {
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                safe_close(sv[0]);
                safe_close(sv[1]);
                return r;
        }
        if (pid == 0) {
                if (sv[1] != 3 ? dup3(sv[1], 3, 0) < 0 : fcntl(3, F_SETFD, 0) < 0)
                        _exit(1);
                (void) close_range(4, ~0U, 0);
                guardian_main(3, u->count);
        }
        safe_close(sv[1]);
        u->guardian_fd = sv[0];
        u->guardian = pid;
        return 0;
}

static int guardian_send(JobUids *u, uid_t uid, int lock_fd) {
        return fd_send(u->guardian_fd, lock_fd, &uid, sizeof(uid));
}

/* ---- the range ---- */

int job_uids_new(const char *lock_dir, uid_t first, unsigned count, JobUids **ret) {
        _cleanup_(job_uids_freep) JobUids *u = calloc(1, sizeof(JobUids));
        int r;

        if (!u)
                return -ENOMEM;
        *u = (JobUids){ .dir_fd = -EBADF, .guardian_fd = -EBADF, .first = first, .count = count };
        if (count == 0 || first == 0 || (uint64_t) first + count > (uint64_t) INT32_MAX)
                return -ERANGE;
        r = mkdir_parents(lock_dir, 0700);
        if (r < 0)
                return r;
        u->dir_fd = open(lock_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (u->dir_fd < 0)
                return -errno;
        r = guardian_start(u);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(u);
        return 0;
}

JobUids *job_uids_free(JobUids *u) {
        if (!u)
                return NULL;
        for (size_t i = 0; i < u->n_held; i++)
                safe_close(u->held[i].lock_fd);
        free(u->held);
        safe_close(u->dir_fd);
        if (u->guardian > 0) {
                safe_close(u->guardian_fd);
                (void) waitpid(u->guardian, NULL, 0);
        }
        free(u);
        return NULL;
}

/* Locks uid's file; -EBUSY when another worker holds it. */
static int lock_uid(JobUids *u, uid_t uid, int *ret_fd) {
        char name[16];
        _cleanup_close_ int fd = -EBADF;

        snprintf(name, sizeof(name), "%u", (unsigned) uid);
        fd = openat(u->dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static bool held_by_us(const JobUids *u, uid_t uid) {
        for (size_t i = 0; i < u->n_held; i++)
                if (u->held[i].uid == uid)
                        return true;
        return false;
}

/* Takes one more UID of the range. */
static int grow(JobUids *u, uid_t *ret) {
        if (u->n_held == u->cap) {
                size_t cap = MAX(u->cap * 2, (size_t) 8);
                HeldUid *h = realloc(u->held, cap * sizeof(HeldUid));
                if (!h)
                        return -ENOMEM;
                u->held = h;
                u->cap = cap;
        }
        for (unsigned k = 0; k < u->count; k++) {
                uid_t uid = u->first + (u->next + k) % u->count;
                int fd = -EBADF, r;

                if (held_by_us(u, uid) || getpwuid(uid))
                        continue;
                r = lock_uid(u, uid, &fd);
                if (r == -EBUSY)
                        continue;
                if (r < 0)
                        return r;
                /* Whatever a previous holder left (its guardian killed too) dies first, and
                 * what it left in the temporary directories is removed. */
                r = job_uid_reap(uid);
                if (r >= 0)
                        (void) job_uid_sweep(job_uid_shared_dirs, uid, NULL);
                if (r >= 0)
                        r = guardian_send(u, uid, fd);
                if (r < 0) {
                        safe_close(fd);
                        return r;
                }
                u->next = (u->next + k + 1) % u->count;
                u->held[u->n_held++] = (HeldUid){ .uid = uid, .busy = true, .lock_fd = fd };
                *ret = uid;
                return 0;
        }
        return -EUSERS;
}

int job_uids_acquire(JobUids *u, uid_t *ret) {
        for (size_t i = 0; i < u->n_held; i++)
                if (!u->held[i].busy) {
                        u->held[i].busy = true;
                        *ret = u->held[i].uid;
                        return 0;
                }
        return grow(u, ret);
}

void job_uids_release(JobUids *u, uid_t uid) {
        for (size_t i = 0; i < u->n_held; i++)
                if (u->held[i].uid == uid)
                        u->held[i].busy = false;
}
