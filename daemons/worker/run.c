#include "run.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "jobuid.h"
#include "parse.h"
#include "policy.h"
#include "sandbox.h"
#include "spawn.h"
#include "strutil.h"

/* After the main process exited, how long to wait for the pipes to reach EOF (a descendant
 * that left the process group may hold them) before the result is taken as it is. */
#define PIPE_DRAIN_USEC (2 * USEC_PER_SEC)

typedef struct Capture {
        int fd;
        sd_event_source *source;
        uint8_t *data;
        size_t len, cap;
        bool truncated;
        bool eof;
} Capture;

struct JobRun {
        sd_event *event;
        pid_t pid;
        int pidfd;
        uid_t job_uid;                  /* its own account, or 0 */
        bool reaped;                    /* every process of job_uid was killed */
        sd_event_source *child_source, *timer, *notify_source;
        int listener;                   /* the job's seccomp listener, or -1 */
        SandboxViolation violation;     /* the first one (nr -1: none) */
        uint64_t limit_cpu_usec, limit_memory;
        const char *cwd;                /* the job's directory (the caller's, outlives the run) */
        uint64_t cwd_limit;             /* it is a tmpfs of this size (limit_work_dir), or 0 */
        Capture out, err;
        uint64_t max_output, kill_grace_usec;
        uint64_t start_mono, start_real, end_mono;
        bool exited, done_called, killed_hard;
        int wait_status;
        struct rusage rusage;
        const char *forced_outcome;   /* static string or NULL */
        JobRunDone done;
        void *userdata;
};

static void run_check_complete(JobRun *run);

static uint64_t clock_usec(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

bool job_run_reaped(const JobRun *run) {
        return run->job_uid == 0 || run->reaped;
}

bool outcome_is_retryable(const char *outcome) {
        static const char *const final[] = { "exit:0", "cancelled", "invalid",
                                             "sandbox-violation", "resource-limit" };
        for (size_t i = 0; i < ELEMENTSOF(final); i++)
                if (streq(outcome, final[i]))
                        return false;
        return true;
}

static void capture_close(Capture *c) {
        c->source = sd_event_source_disable_unref(c->source);
        c->fd = safe_close(c->fd);
        c->eof = true;
}

static int capture_append(Capture *c, const uint8_t *buf, size_t n, uint64_t max) {
        size_t room = c->len < max ? (size_t) (max - c->len) : 0;

        if (n > room) {
                c->truncated = true;
                n = room;
        }
        if (n == 0)
                return 0;
        if (c->len + n > c->cap) {
                size_t cap = MAX(c->cap * 2, c->len + n);
                uint8_t *d = realloc(c->data, MIN(cap, (size_t) max));
                if (!d)
                        return -ENOMEM;
                c->data = d;
                c->cap = MIN(cap, (size_t) max);
        }
        memcpy(c->data + c->len, buf, n);
        c->len += n;
        return 0;
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        JobRun *run = userdata;
        Capture *c = fd == run->out.fd ? &run->out : &run->err;
        uint8_t buf[16384];

        for (int i = 0; i < 16; i++) {   /* bounded, so one chatty job cannot starve the loop */
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n <= 0) {
                        capture_close(c);
                        run_check_complete(run);
                        return 0;
                }
                if (capture_append(c, buf, (size_t) n, run->max_output) < 0)
                        c->truncated = true;
        }
        return 0;
}

static void kill_group(JobRun *run, int sig) {
        /* The job leads its own session and process group (setsid in spawn). */
        (void) kill(-run->pid, sig);
}

/* Kills every process of the job's own account, also those that left its process group
 * (setsid, double fork): nothing a job started outlives it. */
static void kill_account(JobRun *run) {
        if (run->job_uid == 0)
                return;
        run->reaped = job_uid_reap(run->job_uid) >= 0;
}

static void notify_close(JobRun *run) {
        run->notify_source = sd_event_source_disable_unref(run->notify_source);
        run->listener = safe_close(run->listener);
}

/* A process of the job made a call its policy forbids: the call is held by the kernel until
 * we answer. Stop the whole job first, then refuse the call (a no-op once it is dead). */
static int on_notify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        JobRun *run = userdata;
        SandboxViolation v;
        int r = 0;

        /* One notification per call: the source is level-triggered. */
        if (revents & EPOLLIN) {
                r = sandbox_violation_receive(fd, &v);
                if (r >= 0) {
                        if (run->violation.nr < 0)
                                run->violation = v;
                        if (!run->forced_outcome)
                                run->forced_outcome = "sandbox-violation";
                        run->killed_hard = true;
                        sandbox_violation_kill(fd, &v); /* it may have left the group */
                        kill_group(run, SIGKILL);
                        sandbox_violation_refuse(fd, &v);
                        return 0;
                }
        }
        /* -ENOENT: the caller died meanwhile. EPOLLHUP: no process uses the filter any more;
         * any other error: nothing more will come from this listener. */
        if ((revents & (EPOLLHUP | EPOLLERR)) ||
            (r < 0 && r != -ENOENT && r != -EINTR && r != -EAGAIN))
                notify_close(run);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void timer_arm(JobRun *run, uint64_t usec_from_now) {
        uint64_t when = clock_usec(CLOCK_MONOTONIC) + usec_from_now;

        if (!run->timer) {
                if (sd_event_add_time(run->event, &run->timer, CLOCK_MONOTONIC, when, 0, on_timer,
                                      run) < 0)
                        return;
                return;
        }
        (void) sd_event_source_set_time(run->timer, when);
        (void) sd_event_source_set_enabled(run->timer, SD_EVENT_ONESHOT);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        JobRun *run = userdata;

        if (run->exited) {
                /* Pipes did not close after the exit: take what we have. */
                capture_close(&run->out);
                capture_close(&run->err);
                run_check_complete(run);
                return 0;
        }
        if (!run->forced_outcome) {
                run->forced_outcome = "timeout";
                kill_group(run, SIGTERM);
                timer_arm(run, run->kill_grace_usec);
                return 0;
        }
        run->killed_hard = true;
        kill_group(run, SIGKILL);
        return 0;
}

void job_run_stop(JobRun *run, const char *outcome, bool immediately) {
        if (run->exited)
                return;
        if (!run->forced_outcome)
                run->forced_outcome = outcome;
        if (immediately) {
                run->killed_hard = true;
                kill_group(run, SIGKILL);
                kill_account(run); /* now, not only once the main process has been reaped */
                return;
        }
        kill_group(run, SIGTERM);
        timer_arm(run, run->kill_grace_usec);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        JobRun *run = userdata;
        int status = 0;

        /* sd-event reaps after this callback; reap here to get the rusage of the tree. */
        if (wait4(run->pid, &status, WNOHANG, &run->rusage) <= 0)
                status = si->si_code == CLD_EXITED ? W_EXITCODE(si->si_status, 0) : si->si_status;
        run->wait_status = status;
        run->exited = true;
        run->end_mono = clock_usec(CLOCK_MONOTONIC);
        run->child_source = sd_event_source_disable_unref(run->child_source);
        /* Whatever the job left behind in its process group, or anywhere under its account,
         * dies with it. */
        kill_group(run, SIGKILL);
        kill_account(run);
        timer_arm(run, PIPE_DRAIN_USEC);
        run_check_complete(run);
        return 0;
}

static uint64_t run_cpu_usec(const JobRun *run) {
        return (uint64_t) run->rusage.ru_utime.tv_sec * USEC_PER_SEC +
               (uint64_t) run->rusage.ru_utime.tv_usec +
               (uint64_t) run->rusage.ru_stime.tv_sec * USEC_PER_SEC +
               (uint64_t) run->rusage.ru_stime.tv_usec;
}

static char *violation_detail(const JobRun *run) {
        _cleanup_free_ char *name = NULL;
        char *s;

        if (run->violation.nr < 0)
                return NULL;
        name = policy_syscall_name(run->violation.nr);
        if (!name || asprintf(&s, "system call %s (%d) by pid %d, not allowed by the policy",
                              name, run->violation.nr, (int) run->violation.pid) < 0)
                return NULL;
        return s;
}

/* A non-zero exit or a signal. */
static bool run_failed(const JobRun *run) {
        return WIFEXITED(run->wait_status) ? WEXITSTATUS(run->wait_status) != 0 : true;
}

/* Memory: the kernel refuses allocations past RLIMIT_DATA (ENOMEM) without a signal; a job
 * that then failed with its peak RSS within a quarter of the limit is taken as stopped by it. */
static bool hit_memory_limit(const JobRun *run) {
        uint64_t rss = (uint64_t) run->rusage.ru_maxrss * 1024;

        return run_failed(run) && run->limit_memory != UINT64_MAX &&
               rss >= run->limit_memory / 4 * 3;
}

static char *limit_detail(const char *what, const char *limit, uint64_t v,
                          const char *(*fmt)(char *, size_t, uint64_t)) {
        char buf[32], *s;

        return asprintf(&s, "%s: the %s limit (%s) was reached", what, limit,
                        fmt(buf, sizeof(buf), v) ?: "?") < 0 ? NULL : s;
}

/* The job failed with its directory (a tmpfs of limit_work_dir, still mounted) full. */
static bool hit_work_dir_limit(const JobRun *run) {
        struct statfs sf;

        return run->cwd_limit > 0 && run_failed(run) && statfs(run->cwd, &sf) == 0 &&
               sf.f_bavail == 0;
}

/* resource-limit with which limit, or NULL when no limit explains the end. */
static char *classify_limit(const JobRun *run) {
        int st = run->wait_status;
        bool sig = WIFSIGNALED(st);

        if (sig && (WTERMSIG(st) == SIGXCPU ||
                    (WTERMSIG(st) == SIGKILL && run->limit_cpu_usec != UINT64_MAX &&
                     run_cpu_usec(run) >= run->limit_cpu_usec)))
                return limit_detail("RLIMIT_CPU", "CPU time", run->limit_cpu_usec,
                                    format_duration);
        if (sig && WTERMSIG(st) == SIGXFSZ)
                return strdup("RLIMIT_FSIZE: the file size limit was reached");
        if (hit_memory_limit(run))
                return limit_detail("RLIMIT_DATA", "memory", run->limit_memory, format_size);
        if (hit_work_dir_limit(run))
                return limit_detail("limit_work_dir", "working directory size", run->cwd_limit,
                                    format_size);
        return NULL;
}

static char *classify(JobRun *run, int *ret_exit, char **ret_detail) {
        int st = run->wait_status;
        char buf[16], *s = NULL;

        *ret_exit = -1;
        *ret_detail = NULL;
        if (run->forced_outcome) {
                if (streq(run->forced_outcome, "sandbox-violation"))
                        *ret_detail = violation_detail(run);
                return strdup(run->forced_outcome);
        }
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) {
                *ret_detail = strdup("killed by the kernel's seccomp filter (SIGSYS); the system "
                                     "call is not known");
                return strdup("sandbox-violation");
        }
        *ret_detail = classify_limit(run);
        if (*ret_detail)
                return strdup("resource-limit");
        if (WIFEXITED(st)) {
                *ret_exit = WEXITSTATUS(st);
                return asprintf(&s, "exit:%d", WEXITSTATUS(st)) < 0 ? NULL : s;
        }
        return asprintf(&s, "signal:%s", signal_name(WTERMSIG(st), buf)) < 0 ? NULL : s;
}

static JobResult *build_result(JobRun *run) {
        _cleanup_(job_result_freep) JobResult *r = calloc(1, sizeof(JobResult));

        if (!r)
                return NULL;
        r->outcome = classify(run, &r->exit_code, &r->detail);
        if (!r->outcome)
                return NULL;
        r->out = TAKE_PTR(run->out.data);
        r->out_len = run->out.len;
        r->out_truncated = run->out.truncated;
        r->err = TAKE_PTR(run->err.data);
        r->err_len = run->err.len;
        r->err_truncated = run->err.truncated;
        r->started_usec = run->start_real;
        r->wall_usec = run->end_mono - run->start_mono;
        r->finished_usec = run->start_real + r->wall_usec;
        r->cpu_usec = run_cpu_usec(run);
        r->max_rss_kib = (uint64_t) run->rusage.ru_maxrss;
        return TAKE_PTR(r);
}

static void run_check_complete(JobRun *run) {
        JobResult *result;

        if (!run->exited || !run->out.eof || !run->err.eof || run->done_called)
                return;
        run->done_called = true;
        run->timer = sd_event_source_disable_unref(run->timer);
        notify_close(run);
        result = build_result(run);
        if (!result) { /* out of memory: still report, with what we can */
                result = calloc(1, sizeof(JobResult));
                if (result)
                        result->outcome = strdup("exit:127");
        }
        run->done(run, result, run->userdata);
}

static int make_stdin(const JobRunParams *p, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (p->payload_len == 0) {
                fd = fcntl(p->devnull_fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return -errno;
                *ret_fd = TAKE_FD(fd);
                return 0;
        }
        /* The payload as a sealed in-memory file: no writer to schedule, seekable for the job. */
        fd = memfd_create("tasad-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        r = write_all(fd, p->payload, p->payload_len);
        if (r < 0)
                return r;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        (void) fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* A pipe whose read end is non-blocking for us and whose write end stays blocking for the job. */
static int make_pipe(int ret[2]) {
        if (pipe2(ret, O_CLOEXEC) < 0)
                return -errno;
        if (fcntl(ret[0], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                safe_close(ret[0]);
                safe_close(ret[1]);
                return r;
        }
        return 0;
}

static int run_watch(JobRun *run) {
        int r;

        r = sd_event_add_child_pidfd(run->event, &run->child_source, run->pidfd,
                                     WEXITED, on_child, run);
        if (r < 0)
                return r;
        r = sd_event_add_io(run->event, &run->out.source, run->out.fd, EPOLLIN, on_output, run);
        if (r < 0)
                return r;
        r = sd_event_add_io(run->event, &run->err.source, run->err.fd, EPOLLIN, on_output, run);
        if (r < 0)
                return r;
        if (run->listener >= 0) {
                r = sd_event_add_io(run->event, &run->notify_source, run->listener, EPOLLIN,
                                    on_notify, run);
                if (r < 0)
                        return r;
                /* Before the output: a violation is recorded before the pipes' EOF. */
                (void) sd_event_source_set_priority(run->notify_source, SD_EVENT_PRIORITY_IMPORTANT);
        }
        return 0;
}

int job_run_start(sd_event *e, const JobRunParams *p, JobRunDone done, void *userdata,
                  JobRun **ret, const char **ret_step) {
        _cleanup_(job_run_freep) JobRun *run = NULL;
        _cleanup_close_ int in_fd = -EBADF;
        int out[2] = { -EBADF, -EBADF }, err[2] = { -EBADF, -EBADF };
        SpawnChild child;
        int r;

        run = calloc(1, sizeof(*run));
        if (!run)
                return -ENOMEM;
        *run = (JobRun){ .event = sd_event_ref(e), .pid = 0, .pidfd = -EBADF,
                         .out.fd = -EBADF, .err.fd = -EBADF, .max_output = p->max_output,
                         .kill_grace_usec = p->kill_grace_usec, .done = done,
                         .userdata = userdata, .listener = -EBADF, .violation.nr = -1,
                         .limit_cpu_usec = p->sandbox ? sandbox_limit_cpu_usec(p->sandbox)
                                                      : UINT64_MAX,
                         .limit_memory = p->sandbox ? sandbox_limit_memory(p->sandbox)
                                                    : UINT64_MAX,
                         .cwd = p->cwd, .cwd_limit = p->cwd ? p->cwd_limit : 0 };
        r = make_stdin(p, &in_fd);
        if (r < 0)
                return r;
        r = make_pipe(out);
        if (r < 0)
                return r;
        run->out.fd = out[0];
        r = make_pipe(err);
        if (r < 0) {
                safe_close(out[1]);
                return r;
        }
        run->err.fd = err[0];

        run->start_mono = clock_usec(CLOCK_MONOTONIC);
        run->start_real = clock_usec(CLOCK_REALTIME);
        r = spawn_start(&(SpawnPlan){ .argv = p->argv, .envp = p->envp, .cwd = p->cwd,
                                      .stdin_fd = in_fd, .stdout_fd = out[1], .stderr_fd = err[1],
                                      .sandbox = p->sandbox, .job_uid = p->job_uid },
                        &child, ret_step);
        safe_close(out[1]);
        safe_close(err[1]);
        if (r < 0)
                return r;
        run->pid = child.pid;
        run->pidfd = child.pidfd;
        run->job_uid = p->job_uid;
        run->listener = child.listener_fd;
        r = run_watch(run);
        if (r < 0) {
                kill_group(run, SIGKILL);
                return r;
        }
        timer_arm(run, p->timeout_usec);
        *ret = TAKE_PTR(run);
        return 0;
}

pid_t job_run_pid(const JobRun *run) {
        return run->pid;
}

JobRun *job_run_free(JobRun *run) {
        if (!run)
                return NULL;
        if (run->pid > 0 && !run->exited) {
                /* Never leave a job behind: kill and reap it. */
                kill_group(run, SIGKILL);
                (void) waitpid(run->pid, NULL, 0);
        }
        if (run->pid > 0 && !run->reaped)
                kill_account(run);
        run->child_source = sd_event_source_disable_unref(run->child_source);
        run->timer = sd_event_source_disable_unref(run->timer);
        notify_close(run);
        capture_close(&run->out);
        capture_close(&run->err);
        free(run->out.data);
        free(run->err.data);
        safe_close(run->pidfd);
        sd_event_unref(run->event);
        free(run);
        return NULL;
}
