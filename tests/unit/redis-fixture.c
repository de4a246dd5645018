/* The redis-server fixture of the unit tests; the contract is in redis-fixture.h. */
#include "redis-fixture.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "macro.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define START_TIMEOUT_MSEC 10000
#define STOP_TIMEOUT_MSEC 10000
#define MAX_EXTRA_ARGS 16

static char base[PATH_MAX]; /* "" until redis_fixture_init() */
static pid_t runner;        /* the process that owns base */

static struct {
        char dir[PATH_MAX];
        char sock[PATH_MAX];
        pid_t pid; /* 0: not running */
        char *extra[MAX_EXTRA_ARGS + 1];
} srv;

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static uint64_t mono_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void sleep_msec(unsigned ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void path_in(char *buf, size_t size, const char *dir, const char *name) {
        int n = snprintf(buf, size, "%s/%s", dir, name);

        ck_assert_msg(n > 0 && (size_t) n < size, "path too long: %s/%s", dir, name);
}

/* Waits up to timeout_ms for our child pid to exit; 0 when reaped, -ETIMEDOUT, -ECHILD. */
static int reap(pid_t pid, unsigned timeout_ms, int *ret_status) {
        uint64_t deadline = mono_msec() + timeout_ms;

        for (;;) {
                int st;
                pid_t w = waitpid(pid, &st, WNOHANG);

                if (w == pid) {
                        if (ret_status)
                                *ret_status = st;
                        return 0;
                }
                if (w < 0 && errno != EINTR)
                        return -errno;
                if (mono_msec() >= deadline)
                        return -ETIMEDOUT;
                sleep_msec(10);
        }
}

static void dump_log(void) {
        char path[PATH_MAX], buf[4096];
        _cleanup_close_ int fd = -EBADF;
        off_t size;
        ssize_t n;

        if (snprintf(path, sizeof(path), "%s/redis.log", srv.dir) >= (int) sizeof(path))
                return;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        size = lseek(fd, 0, SEEK_END);
        (void) lseek(fd, size > (off_t) sizeof(buf) ? size - (off_t) sizeof(buf) : 0, SEEK_SET);
        n = read(fd, buf, sizeof(buf));
        if (n > 0)
                fprintf(stderr, "--- %s (end) ---\n%.*s--- end of log ---\n", path, (int) n, buf);
}

/* True when the server answers: PONG, or NOAUTH when it wants a password. */
static bool server_answers(void) {
        redisContext *c = redisConnectUnix(srv.sock);
        redisReply *r;
        bool ok;

        if (!c || c->err) {
                redisFree(c);
                return false;
        }
        r = redisCommand(c, "PING");
        ok = r && ((r->type == REDIS_REPLY_STATUS && streq(r->str, "PONG")) ||
                   (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0));
        freeReplyObject(r);
        redisFree(c);
        return ok;
}

static void write_pidfile(void) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;

        path_in(path, sizeof(path), srv.dir, "fixture.pid");
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
        ck_assert_int_gt(dprintf(fd, "%d\n", (int) srv.pid), 0);
}

static void spawn_server(void) {
        char log[PATH_MAX];
        const char *argv[24 + MAX_EXTRA_ARGS];
        size_t n = 0;
        pid_t parent = getpid(), pid;
        uint64_t deadline;

        path_in(log, sizeof(log), srv.dir, "redis.log");
        argv[n++] = REDIS_SERVER;
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--unixsocket";
        argv[n++] = srv.sock;
        argv[n++] = "--unixsocketperm";
        argv[n++] = "700";
        argv[n++] = "--dir";
        argv[n++] = srv.dir;
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "yes";
        argv[n++] = "--logfile";
        argv[n++] = log;
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        for (size_t i = 0; srv.extra[i]; i++)
                argv[n++] = srv.extra[i];
        argv[n] = NULL;

        pid = fork();
        ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
                sigset_t none;

                /* Dies with the test process, whichever way that ends. */
                sigemptyset(&none);
                if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 ||
                    prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(126);
                (void) close_range(3, ~0U, 0);
                execv(REDIS_SERVER, (char **) argv);
                _exit(127);
        }
        srv.pid = pid;
        write_pidfile();

        deadline = mono_msec() + START_TIMEOUT_MSEC;
        while (!server_answers()) {
                int st;

                if (waitpid(pid, &st, WNOHANG) == pid) {
                        srv.pid = 0;
                        dump_log();
                        ck_abort_msg("redis-server exited (wait status 0x%x) before answering", st);
                }
                if (mono_msec() >= deadline) {
                        dump_log();
                        ck_abort_msg("redis-server did not answer PING within %d ms",
                                     START_TIMEOUT_MSEC);
                }
                sleep_msec(10);
        }
}

static void forget_extra(void) {
        for (size_t i = 0; srv.extra[i]; i++)
                srv.extra[i] = mfree(srv.extra[i]);
}

void redis_fixture_start(const char *const *extra_args) {
        int n;

        ck_assert_msg(base[0], "redis_fixture_init() was not called");
        ck_assert_msg(srv.pid == 0, "a redis-server is already running");
        forget_extra();
        for (size_t i = 0; extra_args && extra_args[i]; i++) {
                ck_assert_uint_lt(i, MAX_EXTRA_ARGS);
                srv.extra[i] = strdup(extra_args[i]);
                ck_assert_ptr_nonnull(srv.extra[i]);
        }
        n = snprintf(srv.dir, sizeof(srv.dir), "%s/r-XXXXXX", base);
        ck_assert(n > 0 && (size_t) n < sizeof(srv.dir));
        ck_assert_msg(mkdtemp(srv.dir), "mkdtemp %s: %s", srv.dir, strerror(errno));
        path_in(srv.sock, sizeof(srv.sock), srv.dir, "redis.sock");
        ck_assert_uint_lt(strlen(srv.sock), sizeof(((struct sockaddr_un *) NULL)->sun_path));
        spawn_server();
}

void redis_fixture_stop(void) {
        char path[PATH_MAX];
        int st = 0, r;
        pid_t pid = srv.pid;

        ck_assert_msg(pid > 0, "no redis-server running");
        ck_assert_int_eq(kill(pid, SIGTERM), 0);
        r = reap(pid, STOP_TIMEOUT_MSEC, &st);
        if (r == -ETIMEDOUT) {
                (void) kill(pid, SIGKILL);
                r = reap(pid, STOP_TIMEOUT_MSEC, &st);
                ck_abort_msg("redis-server ignored SIGTERM for %d ms", STOP_TIMEOUT_MSEC);
        }
        srv.pid = 0;
        path_in(path, sizeof(path), srv.dir, "fixture.pid");
        (void) unlink(path);
        ck_assert_int_eq(r, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                dump_log();
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "redis-server ended with wait status 0x%x", st);
}

void redis_fixture_restart(void) {
        ck_assert_msg(srv.dir[0] && srv.pid == 0, "restart needs a stopped server");
        spawn_server();
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (remove(path) < 0 && errno != ENOENT)
                fprintf(stderr, "redis-fixture: cannot remove %s: %m\n", path);
        return 0;
}

static void remove_tree(const char *dir) {
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void redis_fixture_teardown(void) {
        if (srv.pid > 0)
                redis_fixture_stop();
        if (srv.dir[0])
                remove_tree(srv.dir);
        srv.dir[0] = srv.sock[0] = '\0';
        forget_extra();
}

const char *redis_fixture_socket(void) {
        return srv.sock;
}

const char *redis_fixture_dir(void) {
        return srv.dir;
}

pid_t redis_fixture_pid(void) {
        return srv.pid;
}

redisContext *redis_fixture_connect(void) {
        struct timeval tv = { .tv_sec = 10 };
        redisContext *c;

        ck_assert_msg(srv.pid > 0, "no redis-server running");
        c = redisConnectUnixWithTimeout(srv.sock, tv);
        ck_assert_ptr_nonnull(c);
        ck_assert_msg(!c->err, "connect %s: %s", srv.sock, c->errstr);
        ck_assert_int_eq(redisSetTimeout(c, tv), REDIS_OK);
        return c;
}

/* --- the runner's side ---------------------------------------------------------------------- */

static bool cmdline_mentions(pid_t pid, const char *s) {
        char path[64], buf[4096];
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '\0')
                        buf[i] = ' ';
        buf[n] = '\0';
        return strstr(buf, s) != NULL;
}

/* A server recorded in dir/fixture.pid whose test never stopped it (the test failed). */
static void end_stray(const char *dir) {
        char path[PATH_MAX];
        _cleanup_fclose_ FILE *f = NULL;
        int pid = 0;
        pid_t w;

        if (snprintf(path, sizeof(path), "%s/fixture.pid", dir) >= (int) sizeof(path))
                return;
        f = fopen(path, "re");
        if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 1)
                return;
        w = waitpid(pid, NULL, WNOHANG);
        if (w == pid)
                return; /* it had died with its test (PDEATHSIG): reaped now */
        if (w == 0) {   /* reparented to us, still running */
                (void) kill(pid, SIGTERM);
                if (reap(pid, STOP_TIMEOUT_MSEC, NULL) == -ETIMEDOUT) {
                        (void) kill(pid, SIGKILL);
                        (void) reap(pid, STOP_TIMEOUT_MSEC, NULL);
                }
                return;
        }
        /* Not our child: signal it only if it is really that server. */
        if (cmdline_mentions(pid, dir)) {
                uint64_t deadline = mono_msec() + STOP_TIMEOUT_MSEC;

                (void) kill(pid, SIGKILL);
                while (cmdline_mentions(pid, dir) && mono_msec() < deadline)
                        sleep_msec(10);
        }
}

void redis_fixture_cleanup(void) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;

        /* CK_NOFORK: the tests ran in this very process. */
        if (srv.pid > 0) {
                (void) kill(srv.pid, SIGTERM);
                if (reap(srv.pid, STOP_TIMEOUT_MSEC, NULL) == -ETIMEDOUT) {
                        (void) kill(srv.pid, SIGKILL);
                        (void) reap(srv.pid, STOP_TIMEOUT_MSEC, NULL);
                }
                srv.pid = 0;
        }
        if (!base[0] || getpid() != runner)
                return;
        d = opendir(base);
        while (d && (de = readdir(d))) {
                char dir[PATH_MAX];

                if (strncmp(de->d_name, "r-", 2) != 0 ||
                    snprintf(dir, sizeof(dir), "%s/%s", base, de->d_name) >= (int) sizeof(dir))
                        continue;
                end_stray(dir);
        }
        remove_tree(base);
        base[0] = '\0';
        srv.dir[0] = srv.sock[0] = '\0';
}

static void cleanup_at_exit(void) {
        /* Test processes forked by check inherit this handler; only the runner cleans up. */
        if (getpid() == runner)
                redis_fixture_cleanup();
}

void redis_fixture_init(void) {
        static bool registered = false;

        if (!base[0]) {
                snprintf(base, sizeof(base), "/tmp/tasad-ut-XXXXXX");
                ck_assert_msg(mkdtemp(base), "mkdtemp: %s", strerror(errno));
        }
        runner = getpid();
        ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        if (!registered) {
                ck_assert_int_eq(atexit(cleanup_at_exit), 0);
                registered = true;
        }
}
