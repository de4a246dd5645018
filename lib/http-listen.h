/* Listening sockets for tasad's HTTP servers: systemd's (socket activation) or bound by hand. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HTTP_LISTEN_MAX 8

/* The listening sockets: every fd systemd passed under fd name `fdname`
 * (sd_listen_fds_with_names; or the only one, under a default name), else one Unix socket
 * bound at `path` (parent directories created, a stale socket replaced, mode 0666:
 * authorization is by peer credentials). *ret_activated tells which. A passed fd that is not a
 * listening stream socket is -ENOTSOCK; one that is neither AF_UNIX nor, when allow_inet,
 * AF_INET/AF_INET6, -EAFNOSUPPORT (logged with the reason); more than HTTP_LISTEN_MAX, -E2BIG. */
int http_listen_fds(const char *fdname, const char *path, bool allow_inet,
                    int ret_fds[HTTP_LISTEN_MAX], size_t *ret_n, bool *ret_activated);
/* The same for exactly one Unix socket. */
int http_listen_fd(const char *fdname, const char *path, int *ret_fd, bool *ret_activated);
/* What a listening socket listens on, for the log: "unix:/run/tasad/scheduler.sock",
 * "127.0.0.1:8470", "[::1]:8470" (from getsockname(), so it is the socket's own address, not
 * a configured path); "fd N" when it cannot be told. Always NUL-terminates buf. */
void http_listen_describe(int fd, char *buf, size_t size);
