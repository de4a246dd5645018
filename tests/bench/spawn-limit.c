/* The physical reference of the benchmark (tests/bench/bench.py): how many `/bin/true N` this
 * machine can run per second, N = 1..jobs, with exactly `concurrency` children in flight, started
 * with fork()+execve() or with posix_spawn(). Nothing else is measured: no pipes, no sandbox, no
 * Redis; stdin, stdout and stderr are /dev/null. tasad's end-to-end throughput is reported as a
 * share of this, measured in the same run on the same machine.
 *
 * Usage: spawn-limit fork|posix_spawn JOBS CONCURRENCY [PROGRAM]
 * Prints one JSON object: {"mode", "jobs", "concurrency", "seconds", "jobs_per_sec"}.
 * Exits 1 when a child could not be started or did not exit with 0. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The environment a tasad job gets, in size at least (worker.c builds PATH and three TASAD_*). */
static char *job_env[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TASAD_JOB_ID=00000000000000000000",
        "TASAD_QUEUE=bench",
        "TASAD_ATTEMPT=1",
        NULL,
};

static int devnull = -1;

static pid_t start_fork(char *const argv[]) {
        pid_t pid = fork();

        if (pid == 0) {
                (void) dup2(devnull, STDIN_FILENO);
                (void) dup2(devnull, STDOUT_FILENO);
                (void) dup2(devnull, STDERR_FILENO);
                execve(argv[0], argv, job_env);
                _exit(127);
        }
        return pid;
}

static pid_t start_posix_spawn(char *const argv[]) {
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int r;

        if (posix_spawn_file_actions_init(&fa) != 0)
                return -1;
        (void) posix_spawn_file_actions_adddup2(&fa, devnull, STDIN_FILENO);
        (void) posix_spawn_file_actions_adddup2(&fa, devnull, STDOUT_FILENO);
        (void) posix_spawn_file_actions_adddup2(&fa, devnull, STDERR_FILENO);
        r = posix_spawn(&pid, argv[0], &fa, NULL, argv, job_env);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0) {
                errno = r;
                return -1;
        }
        return pid;
}

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static bool parse_count(const char *s, long max, long *ret) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end || v < 1 || v > max)
                return false;
        *ret = v;
        return true;
}

int main(int argc, char *argv[]) {
        pid_t (*start)(char *const argv[]);
        long jobs, conc, started = 0, running = 0, failed = 0;
        char arg[24], *child_argv[3];
        double t0, dt;

        if (argc < 4 || argc > 5 || !parse_count(argv[2], 100000000, &jobs) ||
            !parse_count(argv[3], 4096, &conc)) {
                fprintf(stderr, "usage: %s fork|posix_spawn JOBS CONCURRENCY [PROGRAM]\n", argv[0]);
                return 2;
        }
        if (strcmp(argv[1], "fork") == 0)
                start = start_fork;
        else if (strcmp(argv[1], "posix_spawn") == 0)
                start = start_posix_spawn;
        else {
                fprintf(stderr, "%s: unknown mode '%s' (fork or posix_spawn)\n", argv[0], argv[1]);
                return 2;
        }
        child_argv[0] = argc == 5 ? argv[4] : "/bin/true";
        child_argv[1] = arg;
        child_argv[2] = NULL;
        if (access(child_argv[0], X_OK) < 0) {
                fprintf(stderr, "%s: %s: %s\n", argv[0], child_argv[0], strerror(errno));
                return 2;
        }
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0) {
                perror("/dev/null");
                return 1;
        }

        t0 = now_sec();
        while (started < jobs || running > 0) {
                int status;

                while (running < conc && started < jobs) {
                        snprintf(arg, sizeof(arg), "%ld", started + 1);
                        if (start(child_argv) < 0) {
                                fprintf(stderr, "%s: starting job %ld: %s\n", argv[0], started + 1,
                                        strerror(errno));
                                return 1;
                        }
                        started++;
                        running++;
                }
                if (wait(&status) < 0) {
                        perror("wait");
                        return 1;
                }
                running--;
                failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        }
        dt = now_sec() - t0;
        printf("{\"mode\": \"%s\", \"jobs\": %ld, \"concurrency\": %ld, \"seconds\": %.6f, "
               "\"jobs_per_sec\": %.1f, \"failed\": %ld}\n",
               argv[1], jobs, conc, dt, (double) jobs / dt, failed);
        return failed ? 1 : 0;
}
