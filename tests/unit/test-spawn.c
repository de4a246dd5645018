/* lib/spawn.c: what a job process gets, observed from inside it through /proc: a new session and
 * process group, stdio from the plan, no other fds, exactly the plan's environment, the working
 * directory, NoNewPrivs, an empty signal mask and default SIGPIPE although this process blocks
 * and ignores them, PR_SET_PDEATHSIG; and the parent's side: errors from the child, no zombies,
 * the pidfd, nothing leaked. */
#include <check.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "macro.h"
#include "spawn.h"

#define LEAKED_FD 100 /* opened without O_CLOEXEC: the child must not see it */

static char *const env_default[] = { "A=1", "B=two words", "PATH=/usr/bin:/bin", NULL };

typedef struct Run {
        pid_t pid;
        int status; /* wait status */
        char out[16384];
        size_t out_len;
        char err[4096];
        size_t err_len;
} Run;

static uint64_t mono_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static int memfd_with(const char *content) {
        int fd = memfd_create("stdin", MFD_CLOEXEC);
        size_t n = strlen(content);

        ck_assert_int_ge(fd, 3);
        ck_assert_int_eq(write(fd, content, n), (ssize_t) n);
        ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

/* Reads both pipes to EOF. */
static void drain(int out, int err, Run *run) {
        struct pollfd p[2] = { { .fd = out, .events = POLLIN }, { .fd = err, .events = POLLIN } };
        uint64_t deadline = mono_msec() + 10000;

        while ((p[0].fd >= 0 || p[1].fd >= 0) && mono_msec() < deadline) {
                ck_assert_int_ge(poll(p, 2, 1000), 0);
                for (int i = 0; i < 2; i++) {
                        char *buf = i == 0 ? run->out : run->err;
                        size_t size = i == 0 ? sizeof(run->out) : sizeof(run->err);
                        size_t *len = i == 0 ? &run->out_len : &run->err_len;
                        ssize_t n;

                        if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
                                continue;
                        ck_assert_uint_lt(*len, size - 1);
                        n = read(p[i].fd, buf + *len, size - 1 - *len);
                        ck_assert_int_ge(n, 0);
                        if (n == 0)
                                p[i].fd = -1;
                        *len += (size_t) n;
                        buf[*len] = '\0';
                }
        }
        ck_assert_msg(p[0].fd < 0 && p[1].fd < 0, "child output did not end");
}

/* Runs argv with the plan's environment and cwd, stdin from a memfd holding `in`; collects
 * stdout and stderr and waits for the child. */
static void run_argv(char *const *argv, char *const *envp, const char *cwd, const char *in,
                     Run *run) {
        _cleanup_close_ int in_fd = memfd_with(in), pidfd = -EBADF;
        int out[2], err[2];
        SpawnChild child;
        SpawnPlan plan;

        memset(run, 0, sizeof(*run));
        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
        plan = (SpawnPlan){ .argv = argv, .envp = envp, .cwd = cwd, .stdin_fd = in_fd,
                            .stdout_fd = out[1], .stderr_fd = err[1] };
        ck_assert_int_eq(spawn_start(&plan, &child, NULL), 0);
        run->pid = child.pid;
        pidfd = child.pidfd;
        ck_assert_int_gt(run->pid, 0);
        ck_assert_int_ge(pidfd, 3);
        ck_assert_int_lt(child.listener_fd, 0);
        close(out[1]);
        close(err[1]);
        drain(out[0], err[0], run);
        close(out[0]);
        close(err[0]);
        ck_assert_int_eq(waitpid(run->pid, &run->status, 0), run->pid);
}

static void run_sh(const char *script, Run *run) {
        run_argv((char *const[]){ "/bin/sh", "-c", (char *) script, NULL }, env_default, NULL, "",
                 run);
        ck_assert_msg(WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0,
                      "sh -c '%s': status 0x%x, stderr: %s", script, run->status, run->err);
}

/* The value of "Name:\t…" in a /proc/<pid>/status text. */
static const char *status_field(const char *status, const char *name, char *buf, size_t size) {
        char key[64];
        const char *p, *nl;

        snprintf(key, sizeof(key), "\n%s:\t", name);
        p = strstr(status, key);
        ck_assert_msg(p, "no %s in status", name);
        p += strlen(key);
        nl = strchrnul(p, '\n');
        ck_assert_uint_lt((size_t) (nl - p), size);
        memcpy(buf, p, (size_t) (nl - p));
        buf[nl - p] = '\0';
        return buf;
}

/* No child of ours is left, dead or alive. */
static void assert_no_children(void) {
        siginfo_t si = {};

        ck_assert_int_eq(waitid(P_ALL, 0, &si, WEXITED | WNOHANG), -1);
        ck_assert_int_eq(errno, ECHILD);
}

static int count_fds(void) {
        char path[64];
        int n = 0;

        for (int fd = 0; fd < 1024; fd++) {
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n += access(path, F_OK) == 0;
        }
        return n;
}

/* The test process as a worker runs: SIGTERM and SIGCHLD blocked (sd-event), SIGPIPE ignored,
 * and a stray fd without O_CLOEXEC. */
static void setup(void) {
        sigset_t s;
        int fd;

        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigaddset(&s, SIGCHLD);
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &s, NULL), 0);
        ck_assert(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
        fd = open("/dev/null", O_RDONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(dup2(fd, LEAKED_FD), LEAKED_FD);
        close(fd);
}

/* --- inside the child ----------------------------------------------------------------------- */

START_TEST(test_session) {
        Run run;
        const char *p;
        int pid = 0, ppid = 0, pgrp = 0, sid = 0, tty = -1;
        char state;

        run_argv((char *const[]){ "/bin/cat", "/proc/self/stat", NULL }, env_default, NULL, "",
                 &run);
        ck_assert_int_eq(run.status, 0);
        ck_assert_int_eq(sscanf(run.out, "%d", &pid), 1);
        ck_assert_int_eq(pid, run.pid);
        p = strrchr(run.out, ')');
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(sscanf(p + 1, " %c %d %d %d %d", &state, &ppid, &pgrp, &sid, &tty), 5);
        ck_assert_int_eq(ppid, getpid());
        ck_assert_int_eq(pgrp, run.pid);
        ck_assert_int_eq(sid, run.pid);
        ck_assert_int_eq(tty, 0); /* no controlling terminal */
}
END_TEST

START_TEST(test_session_sh) {
        Run run;
        char expect[64];

        /* The same through the shell, with ps: sid and pgid are the shell's own pid. */
        run_sh("ps -o pid=,sid=,pgid= -p $$ | tr -s ' ' | sed 's/^ //'", &run);
        snprintf(expect, sizeof(expect), "%d %d %d\n", run.pid, run.pid, run.pid);
        ck_assert_str_eq(run.out, expect);
}
END_TEST

START_TEST(test_stdio) {
        Run run;

        run_argv((char *const[]){ "/bin/sh", "-c", "cat; echo to-stderr >&2; echo done", NULL },
                 env_default, NULL, "line one\nline two\n", &run);
        ck_assert_int_eq(run.status, 0);
        ck_assert_str_eq(run.out, "line one\nline two\ndone\n");
        ck_assert_str_eq(run.err, "to-stderr\n");
}
END_TEST

START_TEST(test_fds) {
        Run run;

        ck_assert_int_eq(fcntl(LEAKED_FD, F_GETFD), 0); /* open here, without O_CLOEXEC */
        run_sh("ls /proc/$$/fd", &run);
        ck_assert_str_eq(run.out, "0\n1\n2\n");
}
END_TEST

START_TEST(test_env) {
        Run run;
        static const char expect[] = "A=1\0B=two words\0PATH=/usr/bin:/bin";

        run_argv((char *const[]){ "/bin/cat", "/proc/self/environ", NULL }, env_default, NULL, "",
                 &run);
        ck_assert_int_eq(run.status, 0);
        ck_assert_uint_eq(run.out_len, sizeof(expect));
        ck_assert_mem_eq(run.out, expect, sizeof(expect));

        /* Through the shell too: nothing of ours (HOME, TASAD_*, …) gets in. */
        ck_assert_int_eq(setenv("TASAD_SECRET", "leak", 1), 0);
        run_sh("cat /proc/$$/environ | tr '\\0' '\\n'", &run);
        ck_assert_str_eq(run.out, "A=1\nB=two words\nPATH=/usr/bin:/bin\n");

        /* An empty environment. */
        run_argv((char *const[]){ "/bin/cat", "/proc/self/environ", NULL }, (char *const[]){ NULL },
                 NULL, "", &run);
        ck_assert_int_eq(run.status, 0);
        ck_assert_uint_eq(run.out_len, 0);
}
END_TEST

START_TEST(test_cwd) {
        Run run;
        char tmpl[] = "/tmp/tasad-spawn-XXXXXX", expect[PATH_MAX];

        ck_assert_int_eq(chdir("/tmp"), 0);
        run_sh("readlink /proc/$$/cwd", &run);
        ck_assert_str_eq(run.out, "/\n");

        ck_assert_ptr_nonnull(mkdtemp(tmpl));
        run_argv((char *const[]){ "/bin/sh", "-c", "readlink /proc/$$/cwd", NULL }, env_default,
                 tmpl, "", &run);
        ck_assert_int_eq(rmdir(tmpl), 0);
        ck_assert_int_eq(run.status, 0);
        snprintf(expect, sizeof(expect), "%s\n", tmpl);
        ck_assert_str_eq(run.out, expect);
}
END_TEST

START_TEST(test_status) {
        Run run;
        char buf[64];
        unsigned long long ign;

        run_argv((char *const[]){ "/bin/cat", "/proc/self/status", NULL }, env_default, NULL, "",
                 &run);
        ck_assert_int_eq(run.status, 0);
        ck_assert_str_eq(status_field(run.out, "NoNewPrivs", buf, sizeof(buf)), "1");
        ck_assert_str_eq(status_field(run.out, "SigBlk", buf, sizeof(buf)), "0000000000000000");
        ign = strtoull(status_field(run.out, "SigIgn", buf, sizeof(buf)), NULL, 16);
        ck_assert_uint_eq(ign & (1ULL << (SIGPIPE - 1)), 0);
        /* And this process still blocks and ignores what it did. */
        {
                sigset_t cur;
                struct sigaction sa;

                ck_assert_int_eq(sigprocmask(SIG_SETMASK, NULL, &cur), 0);
                ck_assert_int_eq(sigismember(&cur, SIGTERM), 1);
                ck_assert_int_eq(sigismember(&cur, SIGCHLD), 1);
                ck_assert_int_eq(sigismember(&cur, SIGUSR1), 0);
                ck_assert_int_eq(sigaction(SIGPIPE, NULL, &sa), 0);
                ck_assert_ptr_eq((void *) sa.sa_handler, (void *) SIG_IGN);
        }
}
END_TEST

START_TEST(test_sigpipe_default) {
        Run run;

        /* A pipeline whose reader is gone: the writer dies of SIGPIPE (status 128 + 13) as in
         * any shell, instead of getting EPIPE (`yes` would exit 1). */
        run_sh("exec 3>&1; (yes 2>/dev/null; echo $? >&3) | head -c 0", &run);
        ck_assert_str_eq(run.out, "141\n");
}
END_TEST

/* --- the parent's side ---------------------------------------------------------------------- */

START_TEST(test_enoent) {
        _cleanup_close_ int in = memfd_with("");
        int out[2], fds_before;
        SpawnChild child = { .pid = -42, .pidfd = -42, .listener_fd = -42 };
        const char *step = NULL;
        SpawnPlan plan;

        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        fds_before = count_fds();
        plan = (SpawnPlan){ .argv = (char *const[]){ "/nonexistent/prog", NULL },
                            .envp = env_default, .stdin_fd = in, .stdout_fd = out[1],
                            .stderr_fd = out[1] };
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -ENOENT);
        ck_assert_int_eq(child.pid, -42);
        ck_assert_int_eq(child.pidfd, -42);
        ck_assert_str_eq(step, "execve");
        assert_no_children();
        ck_assert_int_eq(count_fds(), fds_before);

        /* Not executable. */
        plan.argv = (char *const[]){ "/etc/passwd", NULL };
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EACCES);
        plan.argv = (char *const[]){ "/tmp", NULL };
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EACCES);
        /* A working directory that does not exist fails before exec. */
        plan.argv = (char *const[]){ "/bin/true", NULL };
        plan.cwd = "/nonexistent-dir";
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -ENOENT);
        ck_assert_int_eq(child.pid, -42);
        ck_assert_str_eq(step, "chdir to the working directory");
        assert_no_children();
        ck_assert_int_eq(count_fds(), fds_before);
        close(out[0]);
        close(out[1]);
}
END_TEST

START_TEST(test_einval) {
        _cleanup_close_ int in = memfd_with("");
        SpawnChild child = { .pid = -42, .pidfd = -42, .listener_fd = -42 };
        const char *step = NULL;
        SpawnPlan plan = { .argv = (char *const[]){ "bin/sh", "-c", "true", NULL },
                           .envp = env_default, .stdin_fd = in, .stdout_fd = in,
                           .stderr_fd = in };

        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        plan.argv = (char *const[]){ "sh", NULL };
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        plan.argv = (char *const[]){ "", NULL };
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        plan.argv = (char *const[]){ NULL };
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        plan.argv = NULL;
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        /* stdio must not be 0..2. */
        plan.argv = (char *const[]){ "/bin/true", NULL };
        plan.stdin_fd = STDIN_FILENO;
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        plan.stdin_fd = in;
        plan.stdout_fd = STDERR_FILENO;
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        plan.stdout_fd = in;
        plan.stderr_fd = STDOUT_FILENO;
        ck_assert_int_eq(spawn_start(&plan, &child, &step), -EINVAL);
        ck_assert_int_eq(child.pid, -42);
        ck_assert_int_eq(child.pidfd, -42);
        ck_assert_ptr_null(step);
        assert_no_children();
}
END_TEST

START_TEST(test_pidfd) {
        _cleanup_close_ int pidfd = -EBADF, sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
        int in[2], status;
        pid_t pid;
        struct pollfd p;
        SpawnChild child;
        SpawnPlan plan;

        ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
        plan = (SpawnPlan){ .argv = (char *const[]){ "/bin/sh", "-c", "read x; exit 7", NULL },
                            .envp = env_default, .stdin_fd = in[0], .stdout_fd = sink,
                            .stderr_fd = sink };
        ck_assert_int_eq(spawn_start(&plan, &child, NULL), 0);
        pid = child.pid;
        pidfd = child.pidfd;
        close(in[0]);
        ck_assert_int_eq(fcntl(pidfd, F_GETFD), FD_CLOEXEC);
        /* Running: not readable. */
        p = (struct pollfd){ .fd = pidfd, .events = POLLIN };
        ck_assert_int_eq(poll(&p, 1, 100), 0);
        /* EOF on its stdin ends it. */
        close(in[1]);
        ck_assert_int_eq(poll(&p, 1, 5000), 1);
        ck_assert(p.revents & POLLIN);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 7);
        assert_no_children();
}
END_TEST

START_TEST(test_no_leaks) {
        int before = count_fds();
        Run run;

        for (int i = 0; i < 100; i++) {
                run_argv((char *const[]){ "/bin/true", NULL }, env_default, NULL, "", &run);
                ck_assert_int_eq(run.status, 0);
        }
        ck_assert_int_eq(count_fds(), before);
        assert_no_children();
}
END_TEST

/* The job dies with the process that spawned it (PR_SET_PDEATHSIG(SIGKILL)). */
START_TEST(test_pdeathsig) {
        int p[2], status;
        pid_t helper, sleeper = 0;
        uint64_t deadline;

        /* Orphans are reparented to us, so the dead sleep can be reaped and seen as killed. */
        ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        helper = fork();
        ck_assert_int_ge(helper, 0);
        if (helper == 0) {
                int in = memfd_with(""), sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
                SpawnPlan plan = { .argv = (char *const[]){ "/bin/sleep", "30", NULL },
                                   .envp = env_default, .stdin_fd = in, .stdout_fd = sink,
                                   .stderr_fd = sink };
                SpawnChild child;
                pid_t pid = 0;

                if (spawn_start(&plan, &child, NULL) >= 0)
                        pid = child.pid;
                (void) !write(p[1], &pid, sizeof(pid));
                _exit(0);
        }
        close(p[1]);
        ck_assert_int_eq(read(p[0], &sleeper, sizeof(sleeper)), sizeof(sleeper));
        close(p[0]);
        ck_assert_int_gt(sleeper, 0);
        ck_assert_int_eq(waitpid(helper, &status, 0), helper);
        ck_assert_int_eq(status, 0);

        deadline = mono_msec() + 5000;
        for (;;) {
                pid_t w = waitpid(sleeper, &status, WNOHANG);

                if (w == sleeper)
                        break;
                ck_assert_int_eq(w, 0);
                ck_assert_msg(mono_msec() < deadline, "sleep %d survived its parent for 5 s",
                              (int) sleeper);
                usleep(10000);
        }
        ck_assert(WIFSIGNALED(status));
        ck_assert_int_eq(WTERMSIG(status), SIGKILL);
        ck_assert_int_eq(kill(sleeper, 0), -1);
        ck_assert_int_eq(errno, ESRCH);
}
END_TEST

static Suite *spawn_suite(void) {
        Suite *s = suite_create("spawn");
        TCase *tc;

        tc = tcase_create("child");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_session);
        tcase_add_test(tc, test_session_sh);
        tcase_add_test(tc, test_stdio);
        tcase_add_test(tc, test_fds);
        tcase_add_test(tc, test_env);
        tcase_add_test(tc, test_cwd);
        tcase_add_test(tc, test_status);
        tcase_add_test(tc, test_sigpipe_default);
        suite_add_tcase(s, tc);

        tc = tcase_create("parent");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_enoent);
        tcase_add_test(tc, test_einval);
        tcase_add_test(tc, test_pidfd);
        tcase_add_test(tc, test_no_leaks);
        tcase_add_test(tc, test_pdeathsig);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(spawn_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
