/* The listening sockets of tasad's HTTP servers (http.h for the scheduler and tasad-results,
 * ctl.h for the worker's control socket): passed by systemd (socket activation,
 * named fds) or bound by hand. No dependency on the HTTP implementation. */
#include "http-listen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "fsutil.h"
#include "log.h"
#include "macro.h"
#include "strutil.h"

/* systemd's names for an fd nobody named: no LISTEN_FDNAMES, the fd store, or the default
 * FileDescriptorName= (the socket unit's name). */
static bool fdname_is_default(const char *name) {
        size_t len = strlen(name);

        return streq(name, "unknown") || streq(name, "stored") ||
               (len > 7 && streq(name + len - 7, ".socket"));
}

/* Listening stream sockets: Unix ones (requests are authorized by the peer's credentials) and,
 * when allow_inet, TCP ones (authorized by the server's auth hook, tokens). */
static int listen_fd_check(int fd, bool allow_inet) {
        int flags;

        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
                return -ENOTSOCK;
        if (sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 1) <= 0 &&
            !(allow_inet && (sd_is_socket(fd, AF_INET, SOCK_STREAM, 1) > 0 ||
                             sd_is_socket(fd, AF_INET6, SOCK_STREAM, 1) > 0)))
                return -EAFNOSUPPORT;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return negative_errno();
        return 0;
}

/* The number of fds systemd passed under `fdname` (or one fd under a default name), at most
 * HTTP_LISTEN_MAX, in ret_fds; 0 when it passed none that fits. */
static int listen_fds_passed(const char *fdname, bool allow_inet, int ret_fds[HTTP_LISTEN_MAX]) {
        _cleanup_strv_free_ char **names = NULL;
        int n, k = 0, r;

        n = sd_listen_fds_with_names(0, &names);
        if (n <= 0)
                return n;
        for (int i = 0; i < n; i++)
                if (fdname && names && streq_ptr(names[i], fdname)) {
                        if (k == HTTP_LISTEN_MAX)
                                return -E2BIG;
                        ret_fds[k++] = SD_LISTEN_FDS_START + i;
                }
        if (k == 0 && n == 1 && names && names[0] && fdname_is_default(names[0]))
                ret_fds[k++] = SD_LISTEN_FDS_START;
        for (int i = 0; i < k; i++) {
                r = listen_fd_check(ret_fds[i], allow_inet);
                if (r == -EAFNOSUPPORT)
                        log_error("The socket systemd passed as '%s' is not a Unix socket, and TCP "
                                  "listeners need api_tokens_credential: requests are authorized "
                                  "by peer credentials, which only Unix sockets carry, or by API "
                                  "tokens.", fdname ? fdname : names[0]);
                if (r < 0)
                        return r;
        }
        return k;
}

/* The directories above path (not path itself). */
static int mkdir_parents_of(const char *path, mode_t mode) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;

        if (!dir)
                return -ENOMEM;
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        return mkdir_parents(dir, mode);
}

/* Whether a process accepts connections on the socket at sa (a daemon started twice). */
static bool socket_in_use(const struct sockaddr_un *sa, socklen_t len) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return false;
        /* EAGAIN: its backlog is full, it is alive all the same. */
        return connect(fd, (const struct sockaddr *) sa, len) == 0 || errno == EAGAIN;
}

/* A socket left at path by an earlier run is removed; one that a running process serves is
 * -EADDRINUSE (never taken over); anything else there is an error. */
static int unlink_stale_socket(const char *path, const struct sockaddr_un *sa, socklen_t len) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        if (socket_in_use(sa, len))
                return -EADDRINUSE;
        if (unlink(path) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

static int listen_fd_bind(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        size_t len = strlen(path);
        int r;

        if (len == 0 || len >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, path, len);
        r = mkdir_parents_of(path, 0755);
        if (r >= 0)
                r = unlink_stale_socket(path, &sa, offsetof(struct sockaddr_un, sun_path) + len + 1);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + len + 1) < 0)
                return negative_errno();
        if (chmod(path, 0666) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = negative_errno();
                (void) unlink(path);
                return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int http_listen_fds(const char *fdname, const char *path, bool allow_inet,
                    int ret_fds[HTTP_LISTEN_MAX], size_t *ret_n, bool *ret_activated) {
        int r;

        if (!ret_fds || !ret_n)
                return -EINVAL;
        r = listen_fds_passed(fdname, allow_inet, ret_fds);
        if (r < 0)
                return r;
        if (ret_activated)
                *ret_activated = r > 0;
        if (r > 0) {
                *ret_n = (size_t) r;
                return 0;
        }
        if (!path)
                return -ENOENT;
        r = listen_fd_bind(path, &ret_fds[0]);
        if (r < 0)
                return r;
        *ret_n = 1;
        return 0;
}

int http_listen_fd(const char *fdname, const char *path, int *ret_fd, bool *ret_activated) {
        int fds[HTTP_LISTEN_MAX];
        size_t n;
        int r;

        if (!ret_fd)
                return -EINVAL;
        r = http_listen_fds(fdname, path, false, fds, &n, ret_activated);
        if (r < 0)
                return r;
        if (n != 1)
                return -E2BIG;
        *ret_fd = fds[0];
        return 0;
}

void http_listen_describe(int fd, char *buf, size_t size) {
        struct sockaddr_storage ss = {};
        socklen_t len = sizeof(ss);
        char a[INET6_ADDRSTRLEN];

        snprintf(buf, size, "fd %d", fd);
        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                return;
        if (ss.ss_family == AF_UNIX) {
                const struct sockaddr_un *un = (const struct sockaddr_un *) &ss;
                size_t n = len > offsetof(struct sockaddr_un, sun_path)
                                   ? len - offsetof(struct sockaddr_un, sun_path) : 0;

                if (n > 0 && un->sun_path[0] != '\0') /* not an abstract or unnamed socket */
                        snprintf(buf, size, "unix:%.*s", (int) strnlen(un->sun_path, n),
                                 un->sun_path);
        } else if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) &ss;

                if (inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a)))
                        snprintf(buf, size, "%s:%u", a, (unsigned) ntohs(in->sin_port));
        } else if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &ss;

                if (inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a)))
                        snprintf(buf, size, "[%s]:%u", a, (unsigned) ntohs(in6->sin6_port));
        }
}
