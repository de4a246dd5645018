/* The job sandbox: see sandbox.h and docs/sandbox.md. */
#include "sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "config.h"
#include "fsutil.h"
#include "log.h"
#include "policy.h"
#include "strutil.h"

/* The host's descriptors are moved at least this high, so that placing them at the fixed
 * numbers 3..5 in the child never overwrites one not yet placed. */
#define SANDBOX_FD_MIN 16
#define MAX_RLIMITS 8

struct SandboxHost {
        bool privileged;        /* CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_CHOWN */
        int userns_fd;          /* unprivileged mode: the worker's own user namespace, or -1 */
        int netns_fd;           /* the empty network namespace (loopback up), or -1 */
        bool ns_ok;             /* IPC and mount namespaces can be made (privileged or userns) */
        bool own_mounts;        /* privileged: this process has a mount namespace of its own,
                                 * so the tmpfs it mounts on job directories vanish with it */
        bool notify_ok;         /* a seccomp listener can be installed */
        int channel[2];         /* [0]: the worker receives listeners, [1]: children send */
        int netns_error, ns_error, notify_error, mounts_error; /* why not, as positive errno */
        char *describe;
};

typedef struct SandboxRlimit {
        int resource;
        struct rlimit limit;
} SandboxRlimit;

struct Sandbox {
        const SandboxHost *host;
        Policy *policy;
        BpfProgram notify, kill;
        SandboxRlimit rlimits[MAX_RLIMITS];
        size_t n_rlimits;
        bool switch_user;
        bool job_uids;          /* every job its own account (the spawn says which) */
        uid_t uid;
        gid_t gid;
        bool join_userns, join_netns, private_ipc, private_tmp;
        char tmp_options[64];
        uint64_t work_dir_limit;   /* the worker mounts a tmpfs of this size on each job's
                                    * directory (0: none, or work_dir_in_child) */
        bool work_dir_in_child;    /* unprivileged: the child mounts it in its own namespace */
        char work_options[64];
        uint64_t limit_cpu_usec, limit_memory;
        char **warnings;
};

/* ---- probing the host ---- */

static bool has_capabilities(void) {
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {};
        static const int needed[] = { CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_CHOWN };

        if (syscall(SYS_capget, &hdr, data) < 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(needed); i++)
                if (!(data[needed[i] / 32].effective & (1U << (needed[i] % 32))))
                        return false;
        return true;
}

/* CAP_NET_ADMIN serves only to set up loopback in the network namespace made at start; the
 * worker gives it up afterwards (a root job would get it back at exec from the bounding set,
 * which only CAP_SETPCAP could shrink). */
static void drop_net_admin(void) {
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {};
        const uint32_t bit = 1U << (CAP_NET_ADMIN % 32);

        if (syscall(SYS_capget, &hdr, data) < 0 || !(data[CAP_NET_ADMIN / 32].permitted & bit))
                return;
        data[CAP_NET_ADMIN / 32].effective &= ~bit;
        data[CAP_NET_ADMIN / 32].permitted &= ~bit;
        data[CAP_NET_ADMIN / 32].inheritable &= ~bit;
        if (syscall(SYS_capset, &hdr, data) < 0)
                log_debug_errno(errno, "Could not give up CAP_NET_ADMIN: %m");
}

/* Sets "lo" up in the current network namespace. */
static int loopback_up(void) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = { .ifr_name = "lo" };

        if (fd < 0)
                return -errno;
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                return -errno;
        return 0;
}

static int fd_move_high(int fd) {
        int k;

        if (fd < 0)
                return -errno;
        k = fcntl(fd, F_DUPFD_CLOEXEC, SANDBOX_FD_MIN);
        if (k < 0)
                k = -errno;
        safe_close(fd);
        return k;
}

/* Privileged: an empty network namespace made by this process, which then returns to its own. */
static int netns_make_privileged(int *ret) {
        _cleanup_close_ int orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        int fd, r;

        if (orig < 0)
                return -errno;
        if (unshare(CLONE_NEWNET) < 0)
                return -errno;
        r = loopback_up();
        fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (fd < 0 && r >= 0)
                r = -errno;
        if (setns(orig, CLONE_NEWNET) < 0)
                abort(); /* we would talk to Redis from the wrong network: never go on */
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        *ret = fd;
        return 0;
}

static int write_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return write_all(fd, text, strlen(text));
}

/* In a forked child: a new mount and IPC namespace with a tmpfs on /tmp. 0 or an errno. */
static int probe_private_namespaces(void) {
        if (unshare(CLONE_NEWIPC | CLONE_NEWNS) < 0)
                return errno;
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
                return errno;
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=1777") < 0)
                return errno;
        return 0;
}

/* Runs f in a forked child; its result (0 or an errno) as -errno. */
static int probe_in_child(int (*f)(void)) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(f() & 0xff);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (!WIFEXITED(status))
                return -EIO;
        return -WEXITSTATUS(status);
}

/* The unprivileged child: a user namespace mapping only our own ids, an empty network
 * namespace owned by it, a probe of the other namespaces; then waits for the parent to open
 * /proc/<pid>/ns/{user,net}. */
static _Noreturn void userns_child(int sync_fd, uid_t uid, gid_t gid) {
        char map[64];
        uint8_t status = 0;
        int r;

        /* The worker is not dumpable, so its /proc/<pid> files are root's: this child must be,
         * to write its own id maps and to let the worker open its namespaces. */
        (void) prctl(PR_SET_DUMPABLE, 1);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
                status = (uint8_t) errno;
        if (status == 0) {
                snprintf(map, sizeof(map), "%u %u 1\n", (unsigned) uid, (unsigned) uid);
                r = write_file("/proc/self/setgroups", "deny");
                if (r >= 0)
                        r = write_file("/proc/self/uid_map", map);
                snprintf(map, sizeof(map), "%u %u 1\n", (unsigned) gid, (unsigned) gid);
                if (r >= 0)
                        r = write_file("/proc/self/gid_map", map);
                if (r >= 0)
                        r = loopback_up();
                if (r >= 0)
                        r = -probe_in_child(probe_private_namespaces);
                status = (uint8_t) -r;
        }
        if (write(sync_fd, &status, 1) == 1)
                (void) read(sync_fd, &status, 1); /* EOF: the parent is done */
        _exit(0);
}

static int ns_open(pid_t pid, const char *ns) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int) pid, ns);
        return fd_move_high(open(path, O_RDONLY | O_CLOEXEC));
}

static int userns_open(SandboxHost *h, pid_t pid) {
        h->userns_fd = ns_open(pid, "user");
        if (h->userns_fd < 0)
                return h->userns_fd;
        h->netns_fd = ns_open(pid, "net");
        return h->netns_fd < 0 ? h->netns_fd : 0;
}

static int userns_make(SandboxHost *h) {
        int sv[2], r;
        uint8_t status;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                r = -errno;
                safe_close(sv[0]);
                safe_close(sv[1]);
                return r;
        }
        if (pid == 0) {
                safe_close(sv[0]);
                userns_child(sv[1], getuid(), getgid());
        }
        safe_close(sv[1]);
        r = read(sv[0], &status, 1) == 1 ? -(int) status : -EIO;
        if (r >= 0)
                r = userns_open(h, pid);
        safe_close(sv[0]);
        (void) waitpid(pid, NULL, 0);
        return r;
}

static int notify_probe(void) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = { .len = 1, .filter = &allow };

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return errno;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &prog) < 0)
                return errno;
        return 0;
}

/* This process (the worker) moves into a mount namespace of its own, every mount a slave of
 * the host's: what it mounts on job directories is seen by nobody else and vanishes with it,
 * however it ends. */
static int own_mount_namespace(void) {
        if (unshare(CLONE_NEWNS) < 0)
                return -errno;
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
                return -errno;
        return 0;
}

static void host_probe_namespaces(SandboxHost *h) {
        int r;

        h->privileged = has_capabilities();
        if (h->privileged) {
                r = netns_make_privileged(&h->netns_fd);
                if (r >= 0)
                        r = h->netns_fd = fd_move_high(h->netns_fd);
                if (r < 0)
                        h->netns_error = -r;
                drop_net_admin();
                r = probe_in_child(probe_private_namespaces);
                h->ns_ok = r >= 0;
                h->ns_error = r < 0 ? -r : 0;
                r = own_mount_namespace();
                h->own_mounts = r >= 0;
                h->mounts_error = r < 0 ? -r : 0;
                return;
        }
        r = userns_make(h);
        h->ns_ok = r >= 0;
        if (r < 0) {
                h->userns_fd = safe_close(h->userns_fd);
                h->netns_fd = safe_close(h->netns_fd);
                h->netns_error = -r;
                h->ns_error = -r;
        }
}

static int host_describe(SandboxHost *h) {
        int k = asprintf(&h->describe,
                         "%s; network namespace: %s%s; IPC and mount namespaces: %s%s; "
                         "job directories: %s%s; seccomp violations: %s%s",
                         h->privileged ? "privileged (jobs switch to their queue's user)"
                                       : "unprivileged (jobs run as the worker's user)",
                         h->netns_fd >= 0 ? (h->userns_fd >= 0 ? "yes (in a user namespace)" : "yes")
                                          : "unavailable: ",
                         h->netns_fd >= 0 ? "" : strerror(h->netns_error),
                         h->ns_ok ? "yes" : "unavailable: ", h->ns_ok ? "" : strerror(h->ns_error),
                         h->own_mounts ? "bounded (a tmpfs mounted by the worker)"
                         : h->ns_ok    ? "bounded (a tmpfs in each job's mount namespace)"
                                       : "unbounded: ",
                         h->own_mounts || h->ns_ok ? ""
                         : strerror(h->privileged ? h->mounts_error : h->ns_error),
                         h->notify_ok ? "reported with the call's name"
                                      : "killed by the kernel, call unknown: ",
                         h->notify_ok ? "" : strerror(h->notify_error));
        return k < 0 ? -ENOMEM : 0;
}

int sandbox_host_new(SandboxHost **ret) {
        _cleanup_(sandbox_host_freep) SandboxHost *h = calloc(1, sizeof(SandboxHost));
        int r;

        if (!h)
                return -ENOMEM;
        *h = (SandboxHost){ .userns_fd = -EBADF, .netns_fd = -EBADF,
                            .channel = { -EBADF, -EBADF } };
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, h->channel) < 0)
                return -errno;
        h->channel[1] = fd_move_high(h->channel[1]);
        if (h->channel[1] < 0)
                return h->channel[1];
        if (fcntl(h->channel[0], F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        host_probe_namespaces(h);
        r = probe_in_child(notify_probe);
        h->notify_ok = r >= 0;
        h->notify_error = r < 0 ? -r : 0;
        r = host_describe(h);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(h);
        return 0;
}

SandboxHost *sandbox_host_free(SandboxHost *h) {
        if (!h)
                return NULL;
        safe_close(h->userns_fd);
        safe_close(h->netns_fd);
        safe_close(h->channel[0]);
        safe_close(h->channel[1]);
        free(h->describe);
        free(h);
        return NULL;
}

const char *sandbox_host_describe(const SandboxHost *h) {
        return h->describe;
}

/* ---- per queue ---- */

static int strv_push(char ***l, char *s) {
        size_t n = strv_length(*l);
        char **k;

        if (!s)
                return -ENOMEM;
        k = realloc(*l, (n + 2) * sizeof(char *));
        if (!k) {
                free(s);
                return -ENOMEM;
        }
        k[n] = s;
        k[n + 1] = NULL;
        *l = k;
        return 0;
}

/* A requested layer the host cannot give: an error, or a warning under allow_degraded. */
static int layer_unavailable(Sandbox *s, const QueueConfig *q, const char *layer,
                             const char *why, char **ret_error) {
        char *w = NULL;

        if (!q->allow_degraded)
                return error_setf(ret_error, -EOPNOTSUPP,
                                  "%s: %s is requested but unavailable on this host (%s); "
                                  "refusing to run the queue (set allow_degraded = true to run "
                                  "without it)",
                                  q->path, layer, why);
        if (asprintf(&w, "%s is unavailable (%s): running without it (allow_degraded)", layer,
                     why) < 0)
                w = NULL;
        return strv_push(&s->warnings, w);
}

/* limit_work_dir: a tmpfs of that size is each job's directory, mounted by a privileged worker
 * in its own mount namespace, else by the child in a mount namespace of its own. */
static int sandbox_work_dir(Sandbox *s, const QueueConfig *q, char **ret_error) {
        const SandboxHost *h = s->host;

        if (q->limit_work_dir == UINT64_MAX)
                return 0;
        if (h->own_mounts)
                s->work_dir_limit = q->limit_work_dir;
        else if (h->ns_ok && !h->privileged)
                s->work_dir_in_child = true;
        else
                return layer_unavailable(s, q, "limit_work_dir (a tmpfs as the job's directory)",
                                         strerror(h->privileged ? h->mounts_error : h->ns_error),
                                         ret_error);
        snprintf(s->work_options, sizeof(s->work_options), "size=%" PRIu64 ",mode=0700",
                 q->limit_work_dir);
        return 0;
}

static int sandbox_namespaces(Sandbox *s, const QueueConfig *q, char **ret_error) {
        const SandboxHost *h = s->host;
        int r = 0;

        if (!q->network) {
                s->join_netns = h->netns_fd >= 0;
                if (!s->join_netns)
                        r = layer_unavailable(s, q, "network = false (an empty network namespace)",
                                              strerror(h->netns_error), ret_error);
        }
        if (r >= 0 && (q->private_ipc || q->private_tmp) && !h->ns_ok)
                r = layer_unavailable(s, q, q->private_ipc ? "private_ipc" : "private_tmp",
                                      strerror(h->ns_error), ret_error);
        if (r < 0)
                return r;
        s->private_ipc = q->private_ipc && h->ns_ok;
        s->private_tmp = q->private_tmp && h->ns_ok;
        snprintf(s->tmp_options, sizeof(s->tmp_options), "size=%" PRIu64 ",mode=1777",
                 q->private_tmp_size);
        r = sandbox_work_dir(s, q, ret_error);
        if (r < 0)
                return r;
        s->join_userns = h->userns_fd >= 0 && (s->join_netns || s->private_ipc || s->private_tmp ||
                                               s->work_dir_in_child);
        return 0;
}

static int lookup_user(const char *name, uid_t *ret_uid, gid_t *ret_gid) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        int r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

        if (r != 0)
                return -r;
        if (!res)
                return -ESRCH;
        *ret_uid = pw.pw_uid;
        *ret_gid = pw.pw_gid;
        return 0;
}

static int sandbox_user(Sandbox *s, const QueueConfig *q, char **ret_error) {
        const char *name = q->user ? q->user : "nobody";
        uid_t uid;
        gid_t gid;
        int r;

        s->uid = geteuid();
        s->gid = getegid();
        if (!s->host->privileged && !q->user)
                return 0;
        if (!q->user) { /* every job its own account: jobuid.h */
                s->switch_user = s->job_uids = true;
                return 0;
        }
        r = lookup_user(name, &uid, &gid);
        if (r < 0)
                return error_setf(ret_error, r, "%s: user: \"%s\": %s", q->path, name,
                                  r == -ESRCH ? "no such user on this host" : strerror(-r));
        if (!s->host->privileged && uid != s->uid)
                return error_setf(ret_error, -EPERM,
                                  "%s: user: \"%s\": the worker runs as uid %u without the "
                                  "capabilities to switch users; remove the key or run the "
                                  "worker as root",
                                  q->path, name, (unsigned) s->uid);
        s->switch_user = s->host->privileged;
        s->uid = uid;
        s->gid = gid;
        return 0;
}

static void add_rlimit(Sandbox *s, int resource, uint64_t soft, uint64_t hard) {
        struct rlimit cur;

        /* Never above what the worker itself may have: raising a hard limit needs a
         * capability, and the job must not get more than its worker anyway. */
        if (getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY) {
                soft = MIN(soft, (uint64_t) cur.rlim_max);
                hard = MIN(hard, (uint64_t) cur.rlim_max);
        }
        s->rlimits[s->n_rlimits++] = (SandboxRlimit){
                resource,
                { soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t) soft,
                  hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t) hard },
        };
}

static void sandbox_rlimits(Sandbox *s, const QueueConfig *q) {
        uint64_t cpu = q->limit_cpu_usec == UINT64_MAX ? UINT64_MAX
                                                       : q->limit_cpu_usec / USEC_PER_SEC;

        add_rlimit(s, RLIMIT_CORE, 0, 0);
        /* SIGXCPU at the soft limit, SIGKILL a second later. */
        if (cpu != UINT64_MAX)
                add_rlimit(s, RLIMIT_CPU, cpu, cpu + 1);
        if (q->limit_memory != UINT64_MAX)
                add_rlimit(s, RLIMIT_DATA, q->limit_memory, q->limit_memory);
        if (q->limit_address_space != UINT64_MAX)
                add_rlimit(s, RLIMIT_AS, q->limit_address_space, q->limit_address_space);
        if (q->limit_processes != UINT64_MAX)
                add_rlimit(s, RLIMIT_NPROC, q->limit_processes, q->limit_processes);
        add_rlimit(s, RLIMIT_NOFILE, q->limit_open_files, q->limit_open_files);
        if (q->limit_file_size != UINT64_MAX)
                add_rlimit(s, RLIMIT_FSIZE, q->limit_file_size, q->limit_file_size);
        s->limit_cpu_usec = q->limit_cpu_usec;
        s->limit_memory = q->limit_memory;
}

static const char *const needed_calls[] = { "execve", "exit_group" };

static int sandbox_policy_compile(Sandbox *s, const QueueConfig *q, char *const *policy_dirs,
                                  char **ret_error) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (streq(q->policy, POLICY_UNCONFINED)) /* said once per load, as a degraded layer */
                return strv_push(&s->warnings, strdup("policy \"" POLICY_UNCONFINED "\": jobs run "
                                                      "without a seccomp filter"));
        r = policy_load(policy_dirs, q->policy, &s->policy, &error);
        if (r == -ENOENT)
                return error_setf(ret_error, r, "%s: policy: no profile \"%s\" (%s.policy) in "
                                  "the policy directories", q->path, q->policy, q->policy);
        if (r < 0)
                return error_setf(ret_error, r, "%s", error ? error : strerror(-r));
        /* Between installing the filter and execve the child may only call sendmsg (allowed
         * on the channel by policy_compile), execve and, when execve fails, exit_group: a
         * forbidden call there would wait for a listener nobody reads yet. */
        for (size_t i = 0; i < ELEMENTSOF(needed_calls); i++) {
                size_t n = 0;
                const PolicyRule *rule = policy_find(s->policy, needed_calls[i], &n);

                if (!rule || n != 1 || rule->action != POLICY_ALLOW || rule->n_conditions > 0)
                        return error_setf(ret_error, -EINVAL,
                                          "%s: policy \"%s\" (%s) does not allow %s without "
                                          "conditions: no job could start or end",
                                          q->path, q->policy, s->policy->path, needed_calls[i]);
        }
        r = policy_compile(s->policy, POLICY_KILL_NOTIFY, SANDBOX_FD_CHANNEL, &s->notify);
        if (r >= 0)
                r = policy_compile(s->policy, POLICY_KILL_PROCESS, -1, &s->kill);
        if (r < 0)
                return error_setf(ret_error, r, "%s: policy \"%s\": cannot compile: %s", q->path,
                                  q->policy, strerror(-r));
        if (MAX(s->notify.len, s->kill.len) > BPF_MAXINSNS)
                return error_setf(ret_error, -E2BIG, "%s: policy \"%s\" compiles to %zu BPF "
                                  "instructions, more than the kernel's limit of %d",
                                  q->path, q->policy, MAX(s->notify.len, s->kill.len),
                                  BPF_MAXINSNS);
        return 0;
}

int sandbox_new(SandboxHost *h, const QueueConfig *q, char *const *policy_dirs, Sandbox **ret,
                char **ret_error) {
        _cleanup_(sandbox_freep) Sandbox *s = calloc(1, sizeof(Sandbox));
        int r;

        if (!s)
                return error_setf(ret_error, -ENOMEM, "Out of memory");
        s->host = h;
        s->warnings = calloc(1, sizeof(char *));
        if (!s->warnings)
                return error_setf(ret_error, -ENOMEM, "Out of memory");
        r = sandbox_policy_compile(s, q, policy_dirs, ret_error);
        if (r >= 0)
                r = sandbox_user(s, q, ret_error);
        if (r >= 0)
                r = sandbox_namespaces(s, q, ret_error);
        if (r < 0)
                return r;
        sandbox_rlimits(s, q);
        *ret = TAKE_PTR(s);
        return 0;
}

Sandbox *sandbox_free(Sandbox *s) {
        if (!s)
                return NULL;
        policy_free(s->policy);
        bpf_program_done(&s->notify);
        bpf_program_done(&s->kill);
        strv_free(s->warnings);
        free(s);
        return NULL;
}

const Policy *sandbox_policy(const Sandbox *s) {
        return s->policy;
}

char *const *sandbox_warnings(const Sandbox *s) {
        return s->warnings;
}

bool sandbox_job_uids(const Sandbox *s) {
        return s->job_uids;
}

void sandbox_job_user(const Sandbox *s, uid_t *ret_uid, gid_t *ret_gid) {
        *ret_uid = s->uid;
        *ret_gid = s->gid;
}

uint64_t sandbox_limit_cpu_usec(const Sandbox *s) {
        return s->limit_cpu_usec;
}

uint64_t sandbox_limit_memory(const Sandbox *s) {
        return s->limit_memory;
}

uint64_t sandbox_work_dir_limit(const Sandbox *s) {
        return s->work_dir_limit;
}

int sandbox_work_dir_mount(const Sandbox *s, int dirfd, const char *name, uid_t uid, gid_t gid) {
        char options[96], path[32];
        _cleanup_close_ int fd = -EBADF;

        if (s->work_dir_limit == 0)
                return 0;
        /* By descriptor: the mount lands on the directory just made, whatever its path. */
        fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        snprintf(options, sizeof(options), "size=%" PRIu64 ",mode=0700,uid=%u,gid=%u",
                 s->work_dir_limit, (unsigned) uid, (unsigned) gid);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0)
                return -errno;
        return 1;
}

int sandbox_work_dir_unmount(const char *path) {
        return umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 ? -errno : 0;
}

/* ---- in the child: system calls only ---- */

void sandbox_child_fds(const Sandbox *s, int ret_fds[SANDBOX_N_FDS]) {
        const SandboxHost *h = s->host;

        ret_fds[SANDBOX_FD_CHANNEL - 3] = h->notify_ok && s->policy ? h->channel[1] : -1;
        ret_fds[SANDBOX_FD_USERNS - 3] = s->join_userns ? h->userns_fd : -1;
        ret_fds[SANDBOX_FD_NETNS - 3] = s->join_netns ? h->netns_fd : -1;
}

#define STEP(name, call)                \
        do {                            \
                *ret_step = (name);     \
                if ((call) < 0)         \
                        return -errno;  \
        } while (0)

/* A private tmpfs on path; a path this host does not have is left alone. */
static int mount_tmp(const Sandbox *s, const char *path) {
        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, s->tmp_options) < 0 &&
            errno != ENOENT)
                return -1;
        return 0;
}

static int child_mounts(const Sandbox *s, const char *cwd, const char **ret_step) {
        if (!s->private_tmp && !s->work_dir_in_child)
                return 0;
        STEP("unshare(mount namespace)", unshare(CLONE_NEWNS));
        STEP("make mounts private", mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL));
        /* The job's directory first: it may be under /tmp, which the next step hides. */
        if (s->work_dir_in_child && cwd) {
                STEP("mount a tmpfs on the job's directory (limit_work_dir)",
                     mount("tmpfs", cwd, "tmpfs", MS_NOSUID | MS_NODEV, s->work_options));
                STEP("chdir to the working directory", chdir(cwd));
        }
        if (s->private_tmp) {
                STEP("mount a private /tmp", mount("tmpfs", "/tmp", "tmpfs",
                                                   MS_NOSUID | MS_NODEV, s->tmp_options));
                STEP("mount a private /var/tmp", mount_tmp(s, "/var/tmp"));
                STEP("mount a private /dev/shm", mount_tmp(s, "/dev/shm"));
        }
        return 0;
}

static int child_namespaces(const Sandbox *s, const char *cwd, uid_t uid, gid_t gid,
                            pid_t parent, const char **ret_step) {
        int r;

        if (s->join_userns)
                STEP("setns(user namespace)", setns(SANDBOX_FD_USERNS, CLONE_NEWUSER));
        if (s->join_netns)
                STEP("setns(network namespace)", setns(SANDBOX_FD_NETNS, CLONE_NEWNET));
        if (s->private_ipc)
                STEP("unshare(IPC namespace)", unshare(CLONE_NEWIPC));
        r = child_mounts(s, cwd, ret_step);
        if (r < 0)
                return r;
        if (s->switch_user) {
                STEP("setgroups", setgroups(1, &gid));
                STEP("setresgid", setresgid(gid, gid, gid));
                STEP("setresuid", setresuid(uid, uid, uid));
                /* A change of credentials clears the parent-death signal: arm it again, so the
                 * job dies with its worker. */
                STEP("PR_SET_PDEATHSIG", prctl(PR_SET_PDEATHSIG, SIGKILL));
                *ret_step = "PR_SET_PDEATHSIG";
                if (getppid() != parent) {
                        errno = ESRCH;
                        return -errno;
                }
        }
        return 0;
}

int sandbox_child_apply(const Sandbox *s, const char *cwd, uint64_t seq, uid_t job_uid,
                        pid_t parent, bool *ret_listener_sent, const char **ret_step) {
        struct sock_fprog prog;
        int listener, r;

        if (s->job_uids && job_uid == 0) {
                *ret_step = "the job's own account";
                return -EINVAL;
        }
        for (size_t i = 0; i < s->n_rlimits; i++)
                STEP("setrlimit", setrlimit(s->rlimits[i].resource, &s->rlimits[i].limit));
        r = child_namespaces(s, cwd, s->job_uids ? job_uid : s->uid,
                             s->job_uids ? (gid_t) job_uid : s->gid, parent, ret_step);
        if (r < 0)
                return r;
        STEP("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        *ret_listener_sent = false;
        if (!s->policy) /* unconfined */
                return 0;
        /* Last: after this only sendmsg (allowed on the channel by policy_compile), execve and
         * exit_group (required by sandbox_new) may run, or the child would wait on its own
         * listener forever. */
        if (!s->host->notify_ok) {
                prog = (struct sock_fprog){ .len = (unsigned short) s->kill.len,
                                            .filter = s->kill.insns };
                STEP("seccomp", prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog));
                return 0;
        }
        prog = (struct sock_fprog){ .len = (unsigned short) s->notify.len,
                                    .filter = s->notify.insns };
        *ret_step = "seccomp";
        listener = (int) syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                 SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (listener < 0)
                return -errno;
        *ret_step = "send the seccomp listener";
        r = fd_send(SANDBOX_FD_CHANNEL, listener, &seq, sizeof(seq));
        if (r < 0)
                return r;
        *ret_listener_sent = true;
        return 0;
}

/* ---- in the worker ---- */

int sandbox_receive_listener(const Sandbox *s, uint64_t seq, int *ret_fd) {
        for (;;) {
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int))];
                } control;
                uint64_t got = 0;
                struct iovec iov = { .iov_base = &got, .iov_len = sizeof(got) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                                     .msg_control = control.buf,
                                     .msg_controllen = sizeof(control.buf) };
                struct cmsghdr *c;
                int fd = -EBADF;

                if (recvmsg(s->host->channel[0], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
                        return errno == EAGAIN ? -ENOMSG : -errno;
                c = CMSG_FIRSTHDR(&mh);
                if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                    c->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&fd, CMSG_DATA(c), sizeof(int));
                if (got == seq && fd >= 0) {
                        *ret_fd = fd;
                        return 0;
                }
                safe_close(fd); /* from a spawn that failed after sending: stale */
        }
}

int sandbox_violation_receive(int listener_fd, SandboxViolation *ret) {
        struct seccomp_notif n;

        memset(&n, 0, sizeof(n)); /* the kernel insists */
        if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0)
                return -errno;
        *ret = (SandboxViolation){ .nr = n.data.nr, .pid = (pid_t) n.pid, .id = n.id };
        return 0;
}

void sandbox_violation_kill(int listener_fd, const SandboxViolation *v) {
        _cleanup_close_ int pidfd = (int) syscall(SYS_pidfd_open, v->pid, 0);
        uint64_t id = v->id;

        /* The pid is the caller's only while its call is held: check that after taking a
         * pidfd, so that a reused pid is never signalled. */
        if (pidfd >= 0 && ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0)
                (void) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
}

void sandbox_violation_refuse(int listener_fd, const SandboxViolation *v) {
        struct seccomp_notif_resp resp = { .id = v->id, .error = -EPERM };

        (void) ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}
