/* lib/ctl against a real sd-event loop: the server listens on a Unix socket in a temporary
 * directory; the clients are sockets of this same process whose replies are read by io sources
 * of the same loop, so nothing runs concurrently, every assertion is made here, and the peer
 * credentials the server sees are this process's. Replies are compared byte for byte. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "ctl.h"
#include "event-fixture.h"

#define MAX_CLIENTS 48
#define LOOP_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define BIG_LEN (1024 * 1024)

typedef struct Client {
        int fd;
        sd_event_source *source;
        char *response;         /* NUL-terminated */
        size_t len;
        bool done;              /* EOF or an error */
        int error;              /* 0 at a clean EOF, else -errno */
        bool may_reset;         /* it left bytes unread by the server: ECONNRESET after the reply */
        uint64_t done_usec;
} Client;

typedef struct Fixture {
        char dir[64];
        char sock[128];
        sd_event *event;
        CtlServer *server;
        Client clients[MAX_CLIENTS];
        size_t n_clients;
        unsigned fd_target;
        /* what the handlers saw */
        unsigned pause_calls;
        unsigned big_calls;
        int second_error;
        int second_json;
        int peer_r;
        uid_t uid;
        gid_t gid;
        pid_t pid;
} Fixture;

static Fixture F;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

/* ---- handlers -------------------------------------------------------------------------- */

static int route_status(CtlRequest *req, void *userdata) {
        return ctl_reply_json(req, 200, json_pack("{s:s, s:s}", "method", ctl_request_method(req),
                                                  "path", ctl_request_path(req)));
}

static int route_delete(CtlRequest *req, void *userdata) {
        return ctl_reply_json(req, 200, json_pack("{s:b}", "deleted", 1));
}

static int route_pause(CtlRequest *req, void *userdata) {
        F.pause_calls++;
        return ctl_reply_json(req, 200, json_pack("{s:b}", "paused", 1));
}

static int route_fail(CtlRequest *req, void *userdata) {
        return -EIO;
}

static int route_nothing(CtlRequest *req, void *userdata) {
        return 0;
}

static int route_twice(CtlRequest *req, void *userdata) {
        int r = ctl_reply_json(req, 200, json_pack("{s:i}", "n", 1));

        F.second_error = ctl_reply_error(req, 409, "conflict", "second %d", 2);
        F.second_json = ctl_reply_json(req, 200, json_pack("{s:i}", "n", 2));
        return r;
}

static int route_reply_then_fail(CtlRequest *req, void *userdata) {
        (void) ctl_reply_error(req, 409, "conflict", "the worker is %s", "draining");
        return -EIO;
}

static int route_bad_status(CtlRequest *req, void *userdata) {
        return ctl_reply_json(req, 299, json_object());
}

static int route_peer(CtlRequest *req, void *userdata) {
        F.peer_r = ctl_request_peer(req, &F.uid, &F.gid, &F.pid);
        if (F.peer_r < 0)
                return F.peer_r;
        return ctl_reply_json(req, 200, json_pack("{s:I, s:I, s:I}", "uid", (json_int_t) F.uid,
                                                  "gid", (json_int_t) F.gid,
                                                  "pid", (json_int_t) F.pid));
}

static int route_big(CtlRequest *req, void *userdata) {
        char *s = malloc(BIG_LEN);
        json_t *a;

        F.big_calls++;
        if (!s)
                return -ENOMEM;
        memset(s, 'x', BIG_LEN);
        a = json_pack("[s%]", s, (size_t) BIG_LEN);
        free(s);
        return ctl_reply_json(req, 200, a);
}

static const CtlRoute routes[] = {
        { "GET", "/v1/worker", route_status },
        { "DELETE", "/v1/worker", route_delete },
        { "POST", "/v1/worker/pause", route_pause },
        { "GET", "/v1/fail", route_fail },
        { "GET", "/v1/nothing", route_nothing },
        { "GET", "/v1/twice", route_twice },
        { "GET", "/v1/reply-then-fail", route_reply_then_fail },
        { "GET", "/v1/bad-status", route_bad_status },
        { "GET", "/v1/peer", route_peer },
        { "GET", "/v1/big", route_big },
};

/* ---- the loop and the clients ---------------------------------------------------------- */

static bool all_clients_done(void) {
        for (size_t i = 0; i < F.n_clients; i++)
                if (F.clients[i].fd >= 0 && !F.clients[i].done)
                        return false;
        return true;
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        ck_assert_ptr_nonnull(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static bool fds_at_target(void) {
        return count_fds() == F.fd_target;
}

/* Runs the loop until this process has exactly n fds open (the server's included). */
static void loop_until_fds(unsigned n, uint64_t timeout_usec) {
        F.fd_target = n;
        ck_assert_msg(event_run_until(F.event, fds_at_target, timeout_usec), "%u fds open, expected %u",
                      count_fds(), n);
}

static void client_append(Client *c, const char *data, size_t n) {
        char *p = realloc(c->response, c->len + n + 1);

        ck_assert_ptr_nonnull(p);
        memcpy(p + c->len, data, n);
        c->response = p;
        c->len += n;
        p[c->len] = '\0';
}

static int on_client_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Client *c = userdata;
        char buf[65536];

        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (n > 0) {
                        client_append(c, buf, (size_t) n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                c->error = n < 0 ? -errno : 0;
                c->done = true;
                c->done_usec = now_usec();
                c->source = sd_event_source_disable_unref(c->source);
                return 0;
        }
}

static int raw_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        strcpy(sa.sun_path, F.sock);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

static void raw_send(int fd, const void *data, size_t len) {
        ck_assert_int_eq(send(fd, data, len, MSG_NOSIGNAL), (ssize_t) len);
}

static void client_send(Client *c, const void *data, size_t len) {
        raw_send(c->fd, data, len);
}

/* A connected client that has sent len bytes of data (none if NULL). */
static Client *client_new_bytes(const void *data, size_t len) {
        Client *c;

        ck_assert_uint_lt(F.n_clients, MAX_CLIENTS);
        c = &F.clients[F.n_clients++];
        *c = (Client) { .fd = raw_connect() };
        ck_assert_int_ge(sd_event_add_io(F.event, &c->source, c->fd, EPOLLIN, on_client_io, c), 0);
        if (data)
                client_send(c, data, len);
        return c;
}

static Client *client_new(const char *request) {
        return client_new_bytes(request, request ? strlen(request) : 0);
}

static void client_close(Client *c) {
        c->source = sd_event_source_disable_unref(c->source);
        c->fd = safe_close(c->fd);
}

static Client *watch_first;
static size_t watch_n;

static bool watched_done(void) {
        for (size_t i = 0; i < watch_n; i++)
                if (!watch_first[i].done)
                        return false;
        return true;
}

/* Runs the loop until the n clients from first on are done. */
static void loop_until_done(Client *first, size_t n) {
        watch_first = first;
        watch_n = n;
        ck_assert_msg(event_run_until(F.event, watched_done, LOOP_TIMEOUT_USEC), "clients timed out");
}

static void run_clients(void) {
        ck_assert_msg(event_run_until(F.event, all_clients_done, LOOP_TIMEOUT_USEC), "clients timed out");
}

/* The reply is exactly this, and the connection then ended cleanly. */
static void assert_reply(const Client *c, const char *status, const char *extra_headers,
                         const char *body) {
        char *expected = NULL;

        ck_assert(c->done);
        ck_assert_int_ge(asprintf(&expected,
                                  "HTTP/1.1 %s\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Content-Length: %zu\r\n"
                                  "Connection: close\r\n"
                                  "%s"
                                  "\r\n%s",
                                  status, strlen(body), extra_headers ?: "", body), 0);
        ck_assert_str_eq(c->response ?: "", expected);
        free(expected);
        if (c->may_reset)
                ck_assert(c->error == 0 || c->error == -ECONNRESET);
        else
                ck_assert_int_eq(c->error, 0);
}

static void assert_error(const Client *c, const char *status, const char *extra_headers,
                         const char *code, const char *message) {
        char body[512];

        snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                 message);
        assert_reply(c, status, extra_headers, body);
}

/* Closed by the server without a byte of reply. */
static void assert_closed_unanswered(const Client *c) {
        ck_assert(c->done);
        ck_assert_uint_eq(c->len, 0);
        if (c->may_reset)
                ck_assert(c->error == 0 || c->error == -ECONNRESET);
        else
                ck_assert_int_eq(c->error, 0);
}

/* ---- fixture --------------------------------------------------------------------------- */

/* A listening socket left blocking on purpose: the server must cope. */
static int make_listener(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        strcpy(sa.sun_path, path);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 64), 0);
        return fd;
}

static void setup(void) {
        memset(&F, 0, sizeof(F));
        strcpy(F.dir, "/tmp/test-ctl-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(F.dir));
        snprintf(F.sock, sizeof(F.sock), "%s/ctl.sock", F.dir);
        ck_assert_int_ge(sd_event_new(&F.event), 0);
        ck_assert_int_eq(ctl_server_new(F.event, make_listener(F.sock), routes, ELEMENTSOF(routes),
                                        NULL, &F.server), 0);
        /* sd-event opens its timerfd with the first timer: before any test counts fds. */
        event_run_until(F.event, event_never, USEC_PER_MSEC);
}

static void teardown(void) {
        char cmd[128];

        for (size_t i = 0; i < F.n_clients; i++) {
                client_close(&F.clients[i]);
                free(F.clients[i].response);
        }
        F.server = ctl_server_free(F.server);
        F.event = sd_event_unref(F.event);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* ---- routes and handlers --------------------------------------------------------------- */

START_TEST(test_get) {
        Client *c = client_new("GET /v1/worker?verbose=1&x=%20 HTTP/1.1\r\nHost: localhost\r\n"
                               "Accept: */*\r\n\r\n");

        run_clients();
        assert_reply(c, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
}
END_TEST

START_TEST(test_post) {
        Client *a = client_new("POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        Client *b = client_new("POST /v1/worker/pause HTTP/1.0\r\n\r\n");
        Client *d = client_new("DELETE /v1/worker HTTP/1.1\r\n\r\n");

        run_clients();
        assert_reply(a, "200 OK", NULL, "{\"paused\":true}");
        assert_reply(b, "200 OK", NULL, "{\"paused\":true}");
        assert_reply(d, "200 OK", NULL, "{\"deleted\":true}");
        ck_assert_uint_eq(F.pause_calls, 2);
}
END_TEST

START_TEST(test_handler_errors) {
        Client *fail = client_new("GET /v1/fail HTTP/1.1\r\n\r\n");
        Client *nothing = client_new("GET /v1/nothing HTTP/1.1\r\n\r\n");
        Client *twice = client_new("GET /v1/twice HTTP/1.1\r\n\r\n");
        Client *late = client_new("GET /v1/reply-then-fail HTTP/1.1\r\n\r\n");
        Client *bad = client_new("GET /v1/bad-status HTTP/1.1\r\n\r\n");

        F.second_error = F.second_json = 1;
        run_clients();
        assert_error(fail, "500 Internal Server Error", NULL, "internal", "Input/output error");
        assert_error(nothing, "500 Internal Server Error", NULL, "internal",
                     "The handler did not reply");
        assert_reply(twice, "200 OK", NULL, "{\"n\":1}");
        ck_assert_int_eq(F.second_error, -EALREADY);
        ck_assert_int_eq(F.second_json, -EALREADY);
        /* A handler that replied keeps its reply even if it then fails. */
        assert_error(late, "409 Conflict", NULL, "conflict", "the worker is draining");
        /* A status without a reason phrase is refused: the handler's -EINVAL becomes a 500. */
        assert_error(bad, "500 Internal Server Error", NULL, "internal", "Invalid argument");
}
END_TEST

START_TEST(test_not_found) {
        Client *a = client_new("GET /nope HTTP/1.1\r\n\r\n");
        Client *b = client_new("GET /v1/worker/ HTTP/1.1\r\n\r\n");
        Client *c = client_new("GET /V1/worker HTTP/1.1\r\n\r\n");
        Client *d = client_new("GET /v1/%77orker HTTP/1.1\r\n\r\n");

        run_clients();
        assert_error(a, "404 Not Found", NULL, "not-found", "No such path: /nope");
        assert_error(b, "404 Not Found", NULL, "not-found", "No such path: /v1/worker/");
        assert_error(c, "404 Not Found", NULL, "not-found", "No such path: /V1/worker");
        assert_error(d, "404 Not Found", NULL, "not-found", "No such path: /v1/%77orker");
}
END_TEST

START_TEST(test_method_not_allowed) {
        Client *a = client_new("PUT /v1/worker HTTP/1.1\r\n\r\n");
        Client *b = client_new("GET /v1/worker/pause?x HTTP/1.1\r\n\r\n");
        /* 16 letters: the longest method accepted. */
        Client *c = client_new("ABCDEFGHIJKLMNOP /v1/worker HTTP/1.1\r\n\r\n");

        run_clients();
        assert_error(a, "405 Method Not Allowed", "Allow: GET, DELETE\r\n", "method-not-allowed",
                     "Method PUT is not allowed here (allowed: GET, DELETE)");
        assert_error(b, "405 Method Not Allowed", "Allow: POST\r\n", "method-not-allowed",
                     "Method GET is not allowed here (allowed: POST)");
        assert_error(c, "405 Method Not Allowed", "Allow: GET, DELETE\r\n", "method-not-allowed",
                     "Method ABCDEFGHIJKLMNOP is not allowed here (allowed: GET, DELETE)");
}
END_TEST

START_TEST(test_peer_credentials) {
        Client *c = client_new("GET /v1/peer HTTP/1.1\r\n\r\n");
        char body[128];

        F.peer_r = 1;
        run_clients();
        ck_assert_int_eq(F.peer_r, 0);
        ck_assert_int_eq(F.uid, getuid());
        ck_assert_int_eq(F.gid, getgid());
        ck_assert_int_eq(F.pid, getpid());
        snprintf(body, sizeof(body), "{\"uid\":%u,\"gid\":%u,\"pid\":%d}", (unsigned) getuid(),
                 (unsigned) getgid(), (int) getpid());
        assert_reply(c, "200 OK", NULL, body);
}
END_TEST

/* More than a socket buffer: the server has to wait for EPOLLOUT. */
START_TEST(test_large_reply) {
        static const char head[] = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: 1048580\r\n"
                                   "Connection: close\r\n"
                                   "\r\n[\"";
        size_t head_len = sizeof(head) - 1;
        Client *c = client_new("GET /v1/big HTTP/1.1\r\n\r\n");

        run_clients();
        /* Compared piecewise: check cannot print a failed comparison of a MiB. */
        ck_assert_int_eq(c->error, 0);
        ck_assert_uint_eq(c->len, head_len + BIG_LEN + 2);
        ck_assert_mem_eq(c->response, head, head_len);
        for (size_t i = 0; i < BIG_LEN; i++)
                if (c->response[head_len + i] != 'x')
                        ck_abort_msg("byte %zu of the string is 0x%02x", i,
                                     (unsigned char) c->response[head_len + i]);
        ck_assert_str_eq(c->response + head_len + BIG_LEN, "\"]");
}
END_TEST

/* ---- malformed requests ---------------------------------------------------------------- */

static void assert_all_bad(const char *const *requests, size_t n, const char *message) {
        Client *c[16];

        ck_assert_uint_le(n, ELEMENTSOF(c));
        for (size_t i = 0; i < n; i++)
                c[i] = client_new(requests[i]);
        run_clients();
        for (size_t i = 0; i < n; i++) {
                ck_assert_msg(c[i]->done, "request %zu", i);
                assert_error(c[i], "400 Bad Request", NULL, "bad-request", message);
        }
}

START_TEST(test_bad_request_line) {
        static const char *const bad[] = {
                "get /v1/worker HTTP/1.1\r\n\r\n",
                "GET v1/worker HTTP/1.1\r\n\r\n",
                "GET  /v1/worker HTTP/1.1\r\n\r\n",
                "GET /v1/worker\r\n\r\n",
                "GET /v1/worker HTTP/1.1 \r\n\r\n",
                "GET /v1/worker  HTTP/1.1\r\n\r\n",
                "ABCDEFGHIJKLMNOPQ /v1/worker HTTP/1.1\r\n\r\n",
                " GET /v1/worker HTTP/1.1\r\n\r\n",
                "GET /v1/wo rker HTTP/1.1\r\n\r\n",
                "GET /v1/w\xc3\xb6rker HTTP/1.1\r\n\r\n",
                "GET /v1/worker http/1.1\r\n\r\n",
                "GET /v1/worker HTTP/1\r\n\r\n",
                "GET /v1/worker HTTP/1.10\r\n\r\n",
                "G3T /v1/worker HTTP/1.1\r\n\r\n",
                "\r\n",
                "\r\nGET /v1/worker HTTP/1.1\r\n\r\n",
        };

        assert_all_bad(bad, ELEMENTSOF(bad), "Malformed request line");
}
END_TEST

START_TEST(test_bad_headers) {
        static const char *const bad[] = {
                "GET /v1/worker HTTP/1.1\r\nNoColon\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\nName : value\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\nBad Name: value\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\n: value\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\nN\xc3\xa4me: value\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n",
        };
        static const char *const folded[] = {
                "GET /v1/worker HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\n Host: x\r\n\r\n",
        };

        assert_all_bad(bad, ELEMENTSOF(bad), "Malformed header line");
        assert_all_bad(folded, ELEMENTSOF(folded), "Obsolete line folding in the request head");
}
END_TEST

START_TEST(test_version) {
        Client *c[] = {
                client_new("GET /v1/worker HTTP/2.0\r\n\r\n"),
                client_new("GET /v1/worker HTTP/1.2\r\n\r\n"),
                client_new("GET /v1/worker HTTP/0.9\r\n\r\n"),
        };
        Client *ok = client_new("GET /v1/worker HTTP/1.0\r\n\r\n");

        run_clients();
        for (size_t i = 0; i < ELEMENTSOF(c); i++)
                assert_error(c[i], "505 HTTP Version Not Supported", NULL,
                             "version-not-supported",
                             "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)");
        assert_reply(ok, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
}
END_TEST

/* "GET /v1/worker HTTP/1.1\r\nX-Pad: aaa…\r\n\r\n" of exactly len bytes. */
static char *head_of_size(size_t len, bool terminated) {
        static const char prefix[] = "GET /v1/worker HTTP/1.1\r\nX-Pad: ";
        char *h = malloc(len + 1);

        ck_assert_ptr_nonnull(h);
        ck_assert_uint_gt(len, strlen(prefix) + 4);
        memset(h, 'a', len);
        memcpy(h, prefix, strlen(prefix));
        if (terminated)
                memcpy(h + len - 4, "\r\n\r\n", 4);
        h[len] = '\0';
        return h;
}

START_TEST(test_head_too_large) {
        char *fits = head_of_size(CTL_HEAD_MAX, true);
        char *over = head_of_size(CTL_HEAD_MAX + 1, true);
        char *endless = head_of_size(3 * CTL_HEAD_MAX, false);
        Client *a = client_new(fits), *b = client_new(over), *c = client_new(endless);

        b->may_reset = c->may_reset = true;
        run_clients();
        assert_reply(a, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
        assert_error(b, "431 Request Header Fields Too Large", NULL, "header-too-large",
                     "Request head is larger than 8192 bytes");
        assert_error(c, "431 Request Header Fields Too Large", NULL, "header-too-large",
                     "Request head is larger than 8192 bytes");
        free(fits);
        free(over);
        free(endless);
}
END_TEST

START_TEST(test_control_bytes) {
        static const char nul_value[] = "GET /v1/worker HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
        static const char nul_line[] = "GET /v1/wor\0ker HTTP/1.1\r\n\r\n";
        static const char *const ctl[] = {
                "GET /v1/worker HTTP/1.1\r\nX-A: a\x01z\r\n\r\n",
                "GET /v1/worker HTTP/1.1\r\nX-A: a\x7fz\r\n\r\n",
                "GET /v1/worker\x1b HTTP/1.1\r\n\r\n",
        };
        Client *a = client_new_bytes(nul_value, sizeof(nul_value) - 1);
        Client *b = client_new_bytes(nul_line, sizeof(nul_line) - 1);
        Client *tab = client_new("GET /v1/worker HTTP/1.1\r\nX-A:\ta\tb \t\r\n\r\n");

        run_clients();
        assert_error(a, "400 Bad Request", NULL, "bad-request", "Control byte in the request head");
        assert_error(b, "400 Bad Request", NULL, "bad-request", "Control byte in the request head");
        assert_reply(tab, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
        assert_all_bad(ctl, ELEMENTSOF(ctl), "Control byte in the request head");
}
END_TEST

/* Lines end in CRLF only; a bare LF or CR is refused as soon as it arrives, without waiting for
 * a blank line. */
START_TEST(test_line_ends) {
        static const char *const lf[] = {
                "GET /v1/worker HTTP/1.1\n\n",
                "GET /v1/worker HTTP/1.1\r\nHost: x\n\r\n",
                "GET /v1/worker HTTP/1.1\n",
                "GET /v1/worker HTTP/1.1\r\n\n",
        };
        static const char *const cr[] = {
                "GET /v1/worker HTTP/1.1\r\r\n\r\n",
                "GET /v1/worker HTTP/1.1\rX",
                "GET /v1/worker HTTP/1.1\r\nHost: x\r\r\n\r\n",
        };
        uint64_t start = now_usec();

        assert_all_bad(lf, ELEMENTSOF(lf), "Bare LF in the request head (lines end in CRLF)");
        assert_all_bad(cr, ELEMENTSOF(cr), "Bare CR in the request head");
        for (size_t i = 0; i < F.n_clients; i++)
                ck_assert_uint_lt(F.clients[i].done_usec - start, CTL_DEADLINE_USEC / 2);
}
END_TEST

/* ---- bodies ---------------------------------------------------------------------------- */

/* The body is read (a clean EOF for the client proves nothing was left unread) before the
 * handler runs; the handler runs once it is all in. */
START_TEST(test_content_length_discarded) {
        static const char head[] = "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 10\r\n"
                                   "\r\n0123";
        char *max = NULL;
        Client *slow = client_new(head), *whole, *lower, *same, *unrouted;

        ck_assert_int_ge(asprintf(&max, "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: %u\r\n"
                                  "\r\n%0*d", CTL_BODY_MAX, (int) CTL_BODY_MAX, 0), 0);
        whole = client_new(max);
        lower = client_new("POST /v1/worker/pause HTTP/1.1\r\ncontent-LENGTH:  3 \r\n\r\nabc");
        same = client_new("POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 2\r\n"
                          "Content-Length: 02\r\n\r\nab");
        unrouted = client_new("POST /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        free(max);

        event_run_until(F.event, event_never, 200 * USEC_PER_MSEC);
        ck_assert(!slow->done);
        ck_assert_uint_eq(F.pause_calls, 3);
        client_send(slow, "45678", 5);
        event_run_until(F.event, event_never, 100 * USEC_PER_MSEC);
        ck_assert(!slow->done);
        ck_assert_uint_eq(F.pause_calls, 3);
        client_send(slow, "9", 1);
        run_clients();
        ck_assert_uint_eq(F.pause_calls, 4);
        assert_reply(slow, "200 OK", NULL, "{\"paused\":true}");
        assert_reply(whole, "200 OK", NULL, "{\"paused\":true}");
        assert_reply(lower, "200 OK", NULL, "{\"paused\":true}");
        assert_reply(same, "200 OK", NULL, "{\"paused\":true}");
        assert_error(unrouted, "404 Not Found", NULL, "not-found", "No such path: /nope");
}
END_TEST

START_TEST(test_content_length_refused) {
        static const char *const malformed[] = {
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 12a\r\n\r\n",
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length:\r\n\r\n",
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        };
        static const char *const conflicting[] = {
                "POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        };
        Client *big = client_new("POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 4097\r\n\r\n");
        Client *huge = client_new("POST /v1/worker/pause HTTP/1.1\r\n"
                                  "Content-Length: 99999999999999999999999999\r\n\r\n");
        Client *te = client_new("POST /v1/worker/pause HTTP/1.1\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n");
        Client *te_cl = client_new("POST /v1/worker/pause HTTP/1.1\r\nContent-Length: 3\r\n"
                                   "transfer-encoding: identity\r\n\r\nabc");

        te_cl->may_reset = true;
        run_clients();
        assert_error(big, "413 Content Too Large", NULL, "too-large",
                     "Request body is larger than 4096 bytes");
        assert_error(huge, "413 Content Too Large", NULL, "too-large",
                     "Request body is larger than 4096 bytes");
        assert_error(te, "501 Not Implemented", NULL, "not-implemented",
                     "Transfer-Encoding is not supported");
        assert_error(te_cl, "501 Not Implemented", NULL, "not-implemented",
                     "Transfer-Encoding is not supported");
        assert_all_bad(malformed, ELEMENTSOF(malformed), "Malformed Content-Length");
        assert_all_bad(conflicting, ELEMENTSOF(conflicting), "Conflicting Content-Length headers");
        ck_assert_uint_eq(F.pause_calls, 0);
}
END_TEST

/* ---- connections ----------------------------------------------------------------------- */

START_TEST(test_deadline) {
        uint64_t start = now_usec();
        Client *idle, *slow, *ok;

        ctl_server_set_deadline(F.server, 200 * USEC_PER_MSEC);
        idle = client_new(NULL);
        slow = client_new("GET /v1/worker HTTP/1.1\r\nHost:");
        run_clients();
        assert_closed_unanswered(idle);
        assert_closed_unanswered(slow);
        ck_assert_uint_ge(idle->done_usec - start, 200 * USEC_PER_MSEC);
        ck_assert_uint_ge(slow->done_usec - start, 200 * USEC_PER_MSEC);
        ck_assert_uint_lt(idle->done_usec - start, 2 * USEC_PER_SEC);
        ck_assert_uint_lt(slow->done_usec - start, 2 * USEC_PER_SEC);

        ok = client_new("GET /v1/worker HTTP/1.1\r\n\r\n");
        run_clients();
        assert_reply(ok, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
}
END_TEST

static bool big_called_and_fds_back(void) {
        return F.big_calls == 1 && fds_at_target();
}

/* Clients that go away before the reply (mid-head, at once, while a big reply is being
 * written) are cleaned up at once, long before the deadline; the server still serves. */
START_TEST(test_client_goes_away) {
        unsigned fds = count_fds();
        int mid = raw_connect(), gone = raw_connect(), reader = raw_connect();
        Client *ok;

        raw_send(mid, "GET /v1/wor", 11);
        raw_send(reader, "GET /v1/big HTTP/1.1\r\n\r\n", 24);
        safe_close(mid);
        safe_close(gone);
        safe_close(reader);
        /* The three were accepted together (they were queued before the loop ran): once the
         * big reply was attempted, all of them are the server's, and then all are closed. */
        F.fd_target = fds;
        ck_assert(event_run_until(F.event, big_called_and_fds_back, CTL_DEADLINE_USEC / 2));
        ck_assert_uint_eq(F.big_calls, 1);

        ok = client_new("GET /v1/worker HTTP/1.1\r\n\r\n");
        run_clients();
        assert_reply(ok, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
}
END_TEST

START_TEST(test_connection_limit) {
        unsigned fds = count_fds();
        Client *kept[CTL_CONNECTIONS_MAX], *extra[8], *ok;

        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                kept[i] = client_new(NULL);
        /* Both ends of each connection are in this process. */
        loop_until_fds(fds + 2 * CTL_CONNECTIONS_MAX, LOOP_TIMEOUT_USEC);
        for (size_t i = 0; i < ELEMENTSOF(extra); i++)
                extra[i] = client_new(NULL);
        loop_until_done(extra[0], ELEMENTSOF(extra));
        for (size_t i = 0; i < ELEMENTSOF(extra); i++)
                assert_closed_unanswered(extra[i]);
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                ck_assert(!kept[i]->done);

        /* The connections that were let in are still served. */
        client_send(kept[0], "GET /v1/worker HTTP/1.1\r\n\r\n", 28);
        loop_until_done(kept[0], 1);
        assert_reply(kept[0], "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");

        /* Once they are gone, new ones are let in again. */
        for (size_t i = 0; i < F.n_clients; i++)
                client_close(&F.clients[i]);
        loop_until_fds(fds, CTL_DEADLINE_USEC / 2);
        ok = client_new("GET /v1/worker HTTP/1.1\r\n\r\n");
        run_clients();
        assert_reply(ok, "200 OK", NULL, "{\"method\":\"GET\",\"path\":\"/v1/worker\"}");
}
END_TEST

START_TEST(test_free_with_connections) {
        unsigned fds = count_fds();
        Client *c[3];

        for (size_t i = 0; i < ELEMENTSOF(c); i++)
                c[i] = client_new(NULL);
        /* The server may not have read these bytes yet when it is freed. */
        client_send(c[1], "GET /v1/wor", 11);
        c[1]->may_reset = true;
        loop_until_fds(fds + 2 * ELEMENTSOF(c), LOOP_TIMEOUT_USEC);
        F.server = ctl_server_free(F.server);
        /* Every connection and the listening socket are closed. */
        ck_assert_uint_eq(count_fds(), fds + ELEMENTSOF(c) - 1);
        run_clients();
        for (size_t i = 0; i < ELEMENTSOF(c); i++)
                assert_closed_unanswered(c[i]);
}
END_TEST

/* ---- ctl_server_new ------------------------------------------------------------------- */

static bool fd_is_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

/* ctl_server_new() with these routes fails with -EINVAL and closes the listening socket. */
static void assert_new_refused(int fd, const CtlRoute *rt, size_t n) {
        CtlServer *s = NULL;

        ck_assert(fd_is_open(fd));
        ck_assert_int_eq(ctl_server_new(F.event, fd, rt, n, NULL, &s), -EINVAL);
        ck_assert_ptr_null(s);
        ck_assert(!fd_is_open(fd));
}

START_TEST(test_server_new_refused) {
        static const CtlRoute lower[] = { { "get", "/x", route_status } };
        static const CtlRoute long_method[] = { { "ABCDEFGHIJKLMNOPQ", "/x", route_status } };
        static const CtlRoute relative[] = { { "GET", "x", route_status } };
        static const CtlRoute query[] = { { "GET", "/x?y", route_status } };
        static const CtlRoute space[] = { { "GET", "/x y", route_status } };
        static const CtlRoute no_handler[] = { { "GET", "/x", NULL } };
        static const CtlRoute no_path[] = { { "GET", NULL, route_status } };
        static const CtlRoute twice[] = { { "GET", "/x", route_status },
                                          { "POST", "/x", route_status },
                                          { "GET", "/x", route_delete } };
        const struct {
                const CtlRoute *routes;
                size_t n;
        } cases[] = {
                { lower, 1 }, { long_method, 1 }, { relative, 1 }, { query, 1 }, { space, 1 },
                { no_handler, 1 }, { no_path, 1 }, { twice, 3 }, { NULL, 1 },
        };
        char path[160];
        CtlServer *s = NULL;
        int fd;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                snprintf(path, sizeof(path), "%s/refused-%zu.sock", F.dir, i);
                assert_new_refused(make_listener(path), cases[i].routes, cases[i].n);
        }
        /* Not listening. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_new_refused(fd, routes, ELEMENTSOF(routes));
        /* No routes at all is a server that answers 404 to everything. */
        snprintf(path, sizeof(path), "%s/empty.sock", F.dir);
        ck_assert_int_eq(ctl_server_new(F.event, make_listener(path), NULL, 0, NULL, &s), 0);
        s = ctl_server_free(s);
        ck_assert_ptr_null(ctl_server_free(NULL));
}
END_TEST

static Suite *ctl_suite(void) {
        Suite *s = suite_create("ctl");
        TCase *tc = tcase_create("server");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_get);
        tcase_add_test(tc, test_post);
        tcase_add_test(tc, test_handler_errors);
        tcase_add_test(tc, test_not_found);
        tcase_add_test(tc, test_method_not_allowed);
        tcase_add_test(tc, test_peer_credentials);
        tcase_add_test(tc, test_large_reply);
        tcase_add_test(tc, test_bad_request_line);
        tcase_add_test(tc, test_bad_headers);
        tcase_add_test(tc, test_version);
        tcase_add_test(tc, test_head_too_large);
        tcase_add_test(tc, test_control_bytes);
        tcase_add_test(tc, test_line_ends);
        tcase_add_test(tc, test_content_length_discarded);
        tcase_add_test(tc, test_content_length_refused);
        tcase_add_test(tc, test_deadline);
        tcase_add_test(tc, test_client_goes_away);
        tcase_add_test(tc, test_connection_limit);
        tcase_add_test(tc, test_free_with_connections);
        tcase_add_test(tc, test_server_new_refused);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(ctl_suite());
        int failed;

        srunner_run_all(sr, CK_VERBOSE);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
