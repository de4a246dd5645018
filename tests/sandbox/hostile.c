/* A job that tries one forbidden thing, named by its first argument, for the `sandbox` test
 * suite (test_sandbox.py). What each mode does and what the sandbox should make of it:
 *
 *   ok          prints "ok": the worker still serves jobs after a hostile one
 *   ptrace      ptrace(PTRACE_TRACEME)                     -> sandbox-violation (ptrace)
 *   mount       mount a tmpfs on /mnt                      -> sandbox-violation (mount)
 *   unshare     unshare(CLONE_NEWUSER)                     -> sandbox-violation (unshare)
 *   clone-ns    clone(CLONE_NEWNET)                        -> sandbox-violation (clone)
 *   kexec       kexec_load                                 -> sandbox-violation (kexec_load)
 *   bpf         bpf(BPF_PROG_LOAD)                         -> sandbox-violation (bpf)
 *   keyctl      keyctl(KEYCTL_GET_KEYRING_ID)              -> sandbox-violation (keyctl)
 *   socket      socket(AF_INET, SOCK_STREAM)               -> sandbox-violation (socket) under
 *                                                             `default`
 *   connect P   TCP connect to 127.0.0.1:P; exit 0 when connected, 3 (printing the error) when not
 *   forkbomb    forks without end                          -> bounded by limit_processes
 *   alloc       allocates and touches 1 MiB at a time until refused; exit 1 -> resource-limit
 *   fsize       writes a file until stopped                -> resource-limit (RLIMIT_FSIZE)
 *   cpu         spins                                      -> resource-limit (RLIMIT_CPU)
 *   fds         lists descriptors above 2 it inherited; exit 1 if any
 *   env         prints its environment and whether it could read its parent's (the worker's)
 *   ns [S]      prints its uid, gid, cwd and namespace links (net, ipc, mnt, user), then
 *               sleeps S seconds (so that two jobs overlap)
 *   tmp F       creates /tmp/F and prints "created"
 *   victim S    reads its payload (stdin) into memory, sleeps S seconds, prints the payload
 *               as it is then in memory (a spy that wrote to /proc/PID/mem would show)
 *   spy PID     tries the victim's /proc/PID/{environ,fd/0,mem,cwd} and kill(PID, 0), then
 *               kill(-1, SIGKILL); prints one line per attempt: "NAME ok" or "NAME denied: E"
 *   orphan S W  leaves a grandchild (own session, named "tasad-orphan") that sleeps S seconds,
 *               then sleeps W seconds itself
 *   fill N M    prints its working directory's file system ("fs tmpfs|other SIZE_BYTES"), then
 *               writes N files of M MiB there; "wrote K" and exit 0, or exit 1 with the error
 *               at the first failure
 *   litter NAME [DIR...]  creates NAME in /tmp, /var/tmp, /dev/shm and each DIR, and
 *               /tmp/NAME.d/sub/file; prints "created PATH" or "failed PATH: ERROR" for each
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int report(const char *what, long r) {
        printf("%s returned %ld (%s)\n", what, r, r < 0 ? strerror(errno) : "success");
        return 2; /* reaching here means the call was not stopped */
}

static int do_ptrace(int argc, char **argv) {
        return report("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
}

static int do_mount(int argc, char **argv) {
        return report("mount", mount("none", "/mnt", "tmpfs", 0, NULL));
}

static int do_unshare(int argc, char **argv) {
        return report("unshare", unshare(CLONE_NEWUSER));
}

static int do_clone_ns(int argc, char **argv) {
        long r = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, 0);

        if (r == 0)
                _exit(0);
        return report("clone(CLONE_NEWNET)", r);
}

static int do_kexec(int argc, char **argv) {
        return report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
}

static int do_bpf(int argc, char **argv) {
        union bpf_attr attr;

        memset(&attr, 0, sizeof(attr));
        attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
        return report("bpf", syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr)));
}

static int do_keyctl(int argc, char **argv) {
        return report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID,
                                        KEY_SPEC_SESSION_KEYRING, 0));
}

static int do_socket(int argc, char **argv) {
        return report("socket(AF_INET)", socket(AF_INET, SOCK_STREAM, 0));
}

static int do_connect(int argc, char **argv) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd;

        if (argc < 3)
                return 64;
        a.sin_port = htons((uint16_t) atoi(argv[2]));
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
                printf("connect failed: %s\n", strerror(errno));
                return 3;
        }
        printf("connected\n");
        return 0;
}

static int do_forkbomb(int argc, char **argv) {
        unsigned long failures = 0;

        for (;;)
                if (fork() < 0 && ++failures == 1)
                        fprintf(stderr, "fork refused: %s\n", strerror(errno));
        return 0;
}

static int do_alloc(int argc, char **argv) {
        size_t mib = 0;

        for (;;) {
                char *p = malloc(1 << 20);
                if (!p) {
                        printf("malloc refused after %zu MiB\n", mib);
                        return 1;
                }
                memset(p, 1, 1 << 20);
                mib++;
        }
}

static int do_fsize(int argc, char **argv) {
        static char block[65536];
        int fd = open("big", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd < 0)
                return report("open", fd);
        for (;;)
                if (write(fd, block, sizeof(block)) < 0)
                        return report("write", -1);
}

static int do_cpu(int argc, char **argv) {
        for (volatile unsigned long i = 0;; i++)
                ;
        return 0;
}

static int do_fds(int argc, char **argv) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int found = 0;

        if (!d)
                return report("opendir", -1);
        while ((de = readdir(d)))
                if (atoi(de->d_name) > 2 && atoi(de->d_name) != dirfd(d)) {
                        char target[256] = "", link[300];
                        snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
                        if (readlink(link, target, sizeof(target) - 1) < 0)
                                strcpy(target, "?");
                        printf("inherited fd %s -> %s\n", de->d_name, target);
                        found = 1;
                }
        closedir(d);
        if (!found)
                printf("no inherited descriptors\n");
        return found;
}

static int do_env(int argc, char **argv) {
        char path[64], buf[4096];
        int fd;
        ssize_t n;

        for (char **e = environ; *e; e++)
                printf("env %s\n", *e);
        snprintf(path, sizeof(path), "/proc/%d/environ", (int) getppid());
        fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd < 0 ? -1 : read(fd, buf, sizeof(buf));
        if (n > 0)
                printf("parent environment readable (%zd bytes)\n", n);
        else
                printf("parent environment not readable: %s\n", strerror(errno));
        return 0;
}

static int do_ns(int argc, char **argv) {
        static const char *const ns[] = { "net", "ipc", "mnt", "user" };
        char cwd[4096], link[64], target[128];

        printf("uid %d\ngid %d\n", (int) getuid(), (int) getgid());
        printf("cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
        for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
                ssize_t n;
                snprintf(link, sizeof(link), "/proc/self/ns/%s", ns[i]);
                n = readlink(link, target, sizeof(target) - 1);
                target[n < 0 ? 0 : n] = '\0';
                printf("ns %s %s\n", ns[i], target);
        }
        if (argc > 2)
                sleep((unsigned) atoi(argv[2]));
        return 0;
}

static int do_tmp(int argc, char **argv) {
        char path[256];
        int fd;

        if (argc < 3)
                return 64;
        snprintf(path, sizeof(path), "/tmp/%s", argv[2]);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return report("open /tmp", -1);
        printf("created\n");
        return 0;
}

static int do_fill(int argc, char **argv) {
        static char block[1 << 20];
        struct statfs sf;
        int n, mib;

        if (argc < 4 || statfs(".", &sf) < 0)
                return 64;
        n = atoi(argv[2]);
        mib = atoi(argv[3]);
        printf("fs %s %llu\n", sf.f_type == 0x01021994 ? "tmpfs" : "other",
               (unsigned long long) sf.f_blocks * (unsigned long long) sf.f_bsize);
        memset(block, 'x', sizeof(block));
        for (int i = 0; i < n; i++) {
                char name[32];
                int fd;

                snprintf(name, sizeof(name), "f%d", i);
                fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0) {
                        printf("wrote %d\nerror: %s\n", i, strerror(errno));
                        return 1;
                }
                for (int k = 0; k < mib; k++)
                        if (write(fd, block, sizeof(block)) != (ssize_t) sizeof(block)) {
                                printf("wrote %d\nerror: %s\n", i, strerror(errno));
                                return 1;
                        }
                close(fd);
        }
        printf("wrote %d\n", n);
        return 0;
}

static void litter_one(const char *path, bool dir) {
        int r = dir ? mkdir(path, 0700) : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (r < 0)
                printf("failed %s: %s\n", path, strerror(errno));
        else
                printf("created %s\n", path);
}

static int do_litter(int argc, char **argv) {
        static const char *const tops[] = { "/tmp", "/var/tmp", "/dev/shm" };
        char path[512];

        if (argc < 3)
                return 64;
        for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", tops[i], argv[2]);
                litter_one(path, false);
        }
        for (int i = 3; i < argc; i++) {
                snprintf(path, sizeof(path), "%s/%s", argv[i], argv[2]);
                litter_one(path, false);
        }
        snprintf(path, sizeof(path), "/tmp/%s.d", argv[2]);
        litter_one(path, true);
        snprintf(path, sizeof(path), "/tmp/%s.d/sub", argv[2]);
        litter_one(path, true);
        snprintf(path, sizeof(path), "/tmp/%s.d/sub/file", argv[2]);
        litter_one(path, false);
        return 0;
}

static int do_victim(int argc, char **argv) {
        static char payload[256];
        ssize_t n = read(0, payload, sizeof(payload) - 1);

        payload[n < 0 ? 0 : n] = '\0';
        sleep(argc > 2 ? (unsigned) atoi(argv[2]) : 10);
        printf("%s\n", payload);
        return 0;
}

static void attempt(const char *name, int r) {
        if (r >= 0)
                printf("%s ok\n", name);
        else
                printf("%s denied: %s\n", name, strerror(errno));
}

static int try_open(const char *pid, const char *file, int flags) {
        char path[128];
        int fd;

        snprintf(path, sizeof(path), "/proc/%s/%s", pid, file);
        fd = open(path, flags | O_CLOEXEC);
        if (fd >= 0 && (flags & O_DIRECTORY) == 0) {
                char c;
                if (read(fd, &c, 1) < 0 && (flags & O_ACCMODE) == O_RDONLY) {
                        close(fd);
                        return -1;
                }
        }
        if (fd >= 0)
                close(fd);
        return fd < 0 ? -1 : 0;
}

static int do_spy(int argc, char **argv) {
        if (argc < 3)
                return 64;
        attempt("environ", try_open(argv[2], "environ", O_RDONLY));
        attempt("stdin", try_open(argv[2], "fd/0", O_RDONLY));
        attempt("mem", try_open(argv[2], "mem", O_RDWR));
        attempt("cwd", try_open(argv[2], "cwd/", O_RDONLY | O_DIRECTORY));
        attempt("signal", kill((pid_t) atoi(argv[2]), 0));
        attempt("kill-all", kill(-1, SIGKILL));
        return 0;
}

static int do_orphan(int argc, char **argv) {
        pid_t pid = fork();

        if (pid < 0)
                return report("fork", -1);
        if (pid == 0) {
                setsid();
                if (fork() == 0) {
                        prctl(PR_SET_NAME, "tasad-orphan");
                        sleep(argc > 2 ? (unsigned) atoi(argv[2]) : 60);
                        _exit(0);
                }
                _exit(0);
        }
        waitpid(pid, NULL, 0);
        printf("left an orphan\n");
        sleep(argc > 3 ? (unsigned) atoi(argv[3]) : 0);
        return 0;
}

static int do_ok(int argc, char **argv) {
        printf("ok\n");
        return 0;
}

static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
} modes[] = {
        { "ok", do_ok },           { "ptrace", do_ptrace }, { "mount", do_mount },
        { "unshare", do_unshare }, { "clone-ns", do_clone_ns }, { "kexec", do_kexec },
        { "bpf", do_bpf },         { "keyctl", do_keyctl }, { "socket", do_socket },
        { "connect", do_connect }, { "forkbomb", do_forkbomb }, { "alloc", do_alloc },
        { "fsize", do_fsize },     { "cpu", do_cpu },       { "fds", do_fds },
        { "env", do_env },         { "ns", do_ns },         { "tmp", do_tmp },
        { "victim", do_victim },   { "spy", do_spy },       { "orphan", do_orphan },
        { "fill", do_fill },       { "litter", do_litter },
};

int main(int argc, char **argv) {
        setvbuf(stdout, NULL, _IONBF, 0);
        for (size_t i = 0; argc > 1 && i < sizeof(modes) / sizeof(modes[0]); i++)
                if (strcmp(argv[1], modes[i].name) == 0)
                        return modes[i].run(argc, argv);
        fprintf(stderr, "usage: hostile MODE [ARG]\n");
        return 64;
}
