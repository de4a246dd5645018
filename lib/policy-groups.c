/* The tables of policies (policy-internal.h): syscall groups, the calls tasad always denies, the
 * symbolic constants of conditions and the errno names.
 *
 * Groups name calls of every Linux architecture Debian builds for (mmap2, _llseek, the *_time64
 * calls of 32-bit systems, …); a name that is not a system call on the running architecture is
 * ignored when a group is expanded. No group may contain an always-denied call (the unit suite
 * checks this). docs/policy.md explains each group; keep it in step. */
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "macro.h"
#include "policy-internal.h"
#include "policy.h"

/* ---- groups ---- */

/* Reading and writing descriptors the process already holds; no call here names a path. */
static const char *const basic_io[] = {
        "read", "readv", "pread64", "preadv", "preadv2",
        "write", "writev", "pwrite64", "pwritev", "pwritev2",
        "close", "close_range", "lseek", "_llseek",
        "dup", "dup2", "dup3", "fcntl", "fcntl64",
        "pipe", "pipe2",
        "poll", "ppoll", "ppoll_time64", "select", "_newselect", "pselect6", "pselect6_time64",
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
        "eventfd", "eventfd2",
        "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range",
        "fsync", "fdatasync", "sync_file_range", "sync_file_range2",
        NULL,
};

/* Looking up and opening files. open/openat can also create and truncate (the flags decide);
 * a read-only profile restricts their flags with allow_if (see strict.policy). */
static const char *const file_read[] = {
        "open", "openat", "openat2",
        "stat", "lstat", "fstat", "newfstatat", "stat64", "lstat64", "fstat64", "fstatat64",
        "statx", "statfs", "fstatfs", "statfs64", "fstatfs64",
        "access", "faccessat", "faccessat2",
        "readlink", "readlinkat",
        "getdents", "getdents64", "getcwd", "chdir", "fchdir",
        "fadvise64", "fadvise64_64", "arm_fadvise64_64", "readahead",
        "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
        "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
        NULL,
};

/* Changing the file system: names, links, modes, owners, sizes, times, extended attributes. */
static const char *const file_write[] = {
        "creat", "mkdir", "mkdirat", "mknod", "mknodat", "rmdir", "unlink", "unlinkat",
        "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
        "chmod", "fchmod", "fchmodat",
        "chown", "fchown", "lchown", "fchownat", "chown32", "fchown32", "lchown32",
        "truncate", "ftruncate", "truncate64", "ftruncate64", "fallocate",
        "utime", "utimes", "futimesat", "utimensat", "utimensat_time64",
        "umask", "flock",
        "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
        "sync", "syncfs",
        NULL,
};

/* The process's own memory. */
static const char *const memory[] = {
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect",
        "pkey_mprotect", "pkey_alloc", "pkey_free",
        "madvise", "msync", "mincore",
        "mlock", "mlock2", "munlock", "mlockall", "munlockall",
        "membarrier", "get_mempolicy", "set_mempolicy", "mbind",
        NULL,
};

/* Creating, running, waiting for and signalling processes and threads; the process's own
 * scheduling and limits. tasad's built-in rules restrict clone, clone3 and personality. */
static const char *const process[] = {
        "fork", "vfork", "clone", "clone3", "execve", "execveat",
        "exit", "exit_group", "wait4", "waitid", "waitpid",
        "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal",
        "getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "setsid", "getsid",
        "prctl", "arch_prctl", "personality", "set_thread_area", "get_thread_area",
        "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
        "futex", "futex_time64", "futex_waitv",
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
        "sched_getscheduler", "sched_getattr", "sched_get_priority_max",
        "sched_get_priority_min", "sched_rr_get_interval", "sched_rr_get_interval_time64",
        "getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage", "times",
        "setpriority", "nice", "capget",
        NULL,
};

/* Signal handling, timers that signal, and restarting interrupted calls. */
static const char *const signal_[] = {
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
        "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
        "sigaction", "sigprocmask", "sigreturn", "sigsuspend", "sigpending", "signal",
        "sigaltstack", "signalfd", "signalfd4", "pause", "restart_syscall",
        "alarm", "getitimer", "setitimer",
        "timer_create", "timer_settime", "timer_settime64", "timer_gettime", "timer_gettime64",
        "timer_getoverrun", "timer_delete",
        NULL,
};

/* Reading clocks and sleeping (setting clocks is always denied). */
static const char *const time_[] = {
        "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
        "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "gettimeofday", "time",
        "timerfd_create", "timerfd_settime", "timerfd_settime64", "timerfd_gettime",
        "timerfd_gettime64",
        NULL,
};

/* Facts about the system and the process's identity, and random numbers. */
static const char *const system_info[] = {
        "uname", "sysinfo", "getrandom", "getcpu", "getpriority",
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
        "getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32", "getresgid32",
        "getgroups32",
        NULL,
};

/* Shared memory, semaphores and message queues (SysV and POSIX) and memfds. */
static const char *const ipc[] = {
        "memfd_create",
        "shmget", "shmat", "shmdt", "shmctl",
        "semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
        "msgget", "msgsnd", "msgrcv", "msgctl",
        "mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
        "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
        "ipc",
        NULL,
};

/* Making sockets, connecting them and moving data over them. Any address family: profiles
 * restrict socket's first argument with allow_if. */
static const char *const network_client[] = {
        "socket", "socketpair", "connect", "shutdown",
        "getsockname", "getpeername", "getsockopt", "setsockopt",
        "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "recvmmsg_time64",
        "send", "recv",
        NULL,
};

/* Accepting connections: binding a local address, listening, accepting. */
static const char *const network_server[] = {
        "bind", "listen", "accept", "accept4",
        NULL,
};

const PolicyGroup policy_groups[] = {
        { "@basic-io", "reading and writing open descriptors, pipes, polling, syncing", basic_io },
        { "@file-read", "opening and looking up files, directories and attributes", file_read },
        { "@file-write", "creating, removing, renaming and changing files", file_write },
        { "@memory", "the process's own memory", memory },
        { "@process", "processes, threads, waiting, signalling, own limits and scheduling",
          process },
        { "@signal", "signal handlers and masks, interval timers", signal_ },
        { "@time", "reading clocks, sleeping, timer descriptors", time_ },
        { "@system-info", "system and identity information, random numbers", system_info },
        { "@ipc", "SysV and POSIX IPC, memfds", ipc },
        { "@network-client", "sockets of any family: connect, send, receive", network_client },
        { "@network-server", "bind, listen, accept", network_server },
};
const size_t policy_n_groups = ELEMENTSOF(policy_groups);

const PolicyGroup *policy_group_find(const char *name) {
        for (size_t i = 0; i < policy_n_groups; i++)
                if (streq(policy_groups[i].name, name))
                        return &policy_groups[i];
        return NULL;
}

/* ---- always denied ---- */

#define R_OTHER_PROC "reads or writes other processes' memory"
#define R_KERNEL_CODE "loads code into the kernel"
#define R_MOUNT "changes the mount table"
#define R_NS "namespaces are set up by tasad, not by jobs"
#define R_CLOCK "sets the system clock"
#define R_URING "io_uring operations bypass seccomp"
#define R_KEYS "the kernel keyrings are shared with the host"
#define R_HANDLE "opens files by handle, around directory permissions"

const PolicyDenied policy_always_denied[] = {
        { "ptrace", "traces and controls other processes" },
        { "process_vm_readv", R_OTHER_PROC },
        { "process_vm_writev", R_OTHER_PROC },
        { "kexec_load", "replaces the running kernel" },
        { "kexec_file_load", "replaces the running kernel" },
        { "init_module", R_KERNEL_CODE },
        { "finit_module", R_KERNEL_CODE },
        { "delete_module", "unloads kernel modules" },
        { "mount", R_MOUNT },
        { "umount2", R_MOUNT },
        { "pivot_root", R_MOUNT },
        { "chroot", "changes the root directory" },
        { "open_tree", R_MOUNT },
        { "move_mount", R_MOUNT },
        { "fsopen", R_MOUNT },
        { "fsconfig", R_MOUNT },
        { "fsmount", R_MOUNT },
        { "fspick", R_MOUNT },
        { "mount_setattr", R_MOUNT },
        { "swapon", "changes the system's swap" },
        { "swapoff", "changes the system's swap" },
        { "reboot", "reboots or halts the system" },
        { "bpf", R_KERNEL_CODE },
        { "perf_event_open", "kernel attack surface and side channels on other processes" },
        { "keyctl", R_KEYS },
        { "add_key", R_KEYS },
        { "request_key", R_KEYS },
        { "userfaultfd", "stalls the kernel at will, a staple of kernel exploits" },
        { "unshare", R_NS },
        { "setns", R_NS },
        { "io_uring_setup", R_URING },
        { "io_uring_enter", R_URING },
        { "io_uring_register", R_URING },
        { "acct", "switches process accounting for the system" },
        { "quotactl", "changes disk quotas" },
        { "lookup_dcookie", "kernel profiling interface" },
        { "iopl", "raw access to I/O ports" },
        { "ioperm", "raw access to I/O ports" },
        { "vhangup", "hangs up the terminal of other processes" },
        { "syslog", "reads and clears the kernel log" },
        { "settimeofday", R_CLOCK },
        { "clock_settime", R_CLOCK },
        { "clock_adjtime", R_CLOCK },
        { "adjtimex", R_CLOCK },
        { "sethostname", "changes the host name" },
        { "setdomainname", "changes the domain name" },
        { "name_to_handle_at", R_HANDLE },
        { "open_by_handle_at", R_HANDLE },
};
const size_t policy_n_always_denied = ELEMENTSOF(policy_always_denied);

const char *policy_always_denied_reason(const char *name) {
        for (size_t i = 0; i < policy_n_always_denied; i++)
                if (streq(policy_always_denied[i].name, name))
                        return policy_always_denied[i].reason;
        return NULL;
}

/* ---- constants ---- */

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define C(x) { #x, (uint64_t) (x) }

const PolicyConstant policy_clone_ns_flags[] = {
        C(CLONE_NEWNS), C(CLONE_NEWCGROUP), C(CLONE_NEWUTS), C(CLONE_NEWIPC),
        C(CLONE_NEWUSER), C(CLONE_NEWPID), C(CLONE_NEWNET), C(CLONE_NEWTIME),
};
const size_t policy_n_clone_ns_flags = ELEMENTSOF(policy_clone_ns_flags);

static const PolicyConstant constants[] = {
        /* socket(2), socketpair(2): domain, type (its low 4 bits; SOCK_TYPE_MASK is the
         * kernel's name for them) and protocol */
        C(AF_UNIX), C(AF_LOCAL), C(AF_INET), C(AF_INET6), C(AF_NETLINK), C(AF_PACKET),
        C(SOCK_STREAM), C(SOCK_DGRAM), C(SOCK_RAW), C(SOCK_SEQPACKET),
        C(SOCK_NONBLOCK), C(SOCK_CLOEXEC), { "SOCK_TYPE_MASK", 0xf },
        C(IPPROTO_IP), C(IPPROTO_TCP), C(IPPROTO_UDP), C(IPPROTO_ICMP), C(IPPROTO_ICMPV6),
        C(NETLINK_ROUTE),
        /* open(2), openat(2): flags */
        C(O_RDONLY), C(O_WRONLY), C(O_RDWR), C(O_ACCMODE), C(O_CREAT), C(O_EXCL), C(O_TRUNC),
        C(O_APPEND), C(O_NONBLOCK), C(O_DIRECTORY), C(O_NOFOLLOW), C(O_CLOEXEC), C(O_PATH),
        C(O_TMPFILE),
        /* clone(2): flags */
        C(CLONE_VM), C(CLONE_FS), C(CLONE_FILES), C(CLONE_SIGHAND), C(CLONE_VFORK),
        C(CLONE_THREAD), C(CLONE_NEWNS), C(CLONE_NEWCGROUP), C(CLONE_NEWUTS), C(CLONE_NEWIPC),
        C(CLONE_NEWUSER), C(CLONE_NEWPID), C(CLONE_NEWNET), C(CLONE_NEWTIME),
        /* prctl(2): the option */
        C(PR_CAPBSET_READ), C(PR_GET_NAME), C(PR_SET_NAME), C(PR_GET_DUMPABLE),
        C(PR_SET_PDEATHSIG), C(PR_SET_NO_NEW_PRIVS),
        /* personality(2) */
        C(ADDR_NO_RANDOMIZE), C(PER_LINUX),
        /* ioctl(2) requests */
        C(TIOCSTI), C(TIOCLINUX), C(TCGETS), C(TIOCGWINSZ), C(FIONREAD), C(FIONBIO), C(FIOCLEX),
        /* mmap(2), mprotect(2) */
        C(PROT_NONE), C(PROT_READ), C(PROT_WRITE), C(PROT_EXEC),
        C(MAP_SHARED), C(MAP_PRIVATE), C(MAP_ANONYMOUS), C(MAP_FIXED),
};

int policy_constant_find(const char *name, uint64_t *ret) {
        for (size_t i = 0; i < ELEMENTSOF(constants); i++)
                if (streq(constants[i].name, name)) {
                        *ret = constants[i].value;
                        return 0;
                }
        return -EINVAL;
}

/* ---- errno names ---- */

#define E(x) { #x, x }

static const struct {
        const char *name;
        int value;
} errnos[] = {
        E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG), E(ENOEXEC),
        E(EBADF), E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(EBUSY), E(EEXIST),
        E(EXDEV), E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ENOTTY),
        E(ETXTBSY), E(EFBIG), E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK), E(EPIPE), E(ERANGE),
        E(ENOSYS), E(ENOTSUP), E(ENOTSOCK), E(EPROTONOSUPPORT), E(EAFNOSUPPORT),
        E(EADDRINUSE), E(EADDRNOTAVAIL), E(ENETUNREACH), E(ECONNREFUSED), E(ETIMEDOUT),
        E(EHOSTUNREACH), E(ENODATA), E(ENOTCONN), E(EDQUOT),
};

int policy_errno_from_name(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(errnos); i++)
                if (streq(errnos[i].name, name))
                        return errnos[i].value;
        return -EINVAL;
}

const char *policy_errno_to_name(int e) {
        for (size_t i = 0; i < ELEMENTSOF(errnos); i++)
                if (errnos[i].value == e)
                        return errnos[i].name;
        return NULL;
}
