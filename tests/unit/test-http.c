/* lib/http against the real server: an sd-event loop and the server on a Unix socket in a
 * temporary directory, driven by libcurl from client threads while the loop runs in the test
 * thread. Assertions happen in the test thread only, after the clients are joined. */
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "event-fixture.h"
#include "http.h"

#define MAX_BODY 64
#define MAX_CALLS 24
#define MAX_CLIENTS 2
#define LOOP_TIMEOUT_USEC (10 * USEC_PER_SEC)

/* One HTTP request made by a client thread, and what came back. */
typedef struct Call {
        const char *method;
        const char *target;
        const char *body;       /* NULL: no body */
        size_t body_len;
        bool chunked;
        const char *header;     /* one extra request header */
        long timeout_ms;
        int tcp_port;           /* > 0: over TCP to 127.0.0.1, else the Unix socket */
        /* Raw calls (raw != NULL): these bytes are sent as they are (a byte every trickle_ms
         * when set), then raw2 once the first reply head is in, and the reply is read until
         * EOF into response; errors in send_error and recv_error (0 at a clean EOF). */
        const char *raw;
        size_t raw_len;
        const char *raw2;
        long trickle_ms;
        int send_error;
        int recv_error;
        uint64_t start_usec;
        curl_off_t uploaded;
        CURLcode code;
        long status;
        char *content_type;
        char *allow;
        char *response;
        size_t response_len;
        uint64_t done_usec;     /* CLOCK_MONOTONIC when the call returned */
} Call;

typedef struct Client {
        pthread_t thread;
        Call calls[MAX_CALLS];
        size_t n_calls;
        bool started;
        bool joined;
} Client;

typedef struct Fixture {
        char dir[64];
        char sock[128];
        sd_event *event;
        HttpServer *server;
        Client clients[MAX_CLIENTS];
        int done_fd;            /* eventfd: a client thread finished */
        sd_event_source *done_source;
        unsigned clients_done;
        /* what the handlers saw */
        unsigned echo_calls;
        unsigned aborts;
        HttpRequest *kept;
        sd_event_source *reply_timer;
        int second_reply;
        int peer_r;
        HttpLimits limits;
} Fixture;

static Fixture F;

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

/* ---- handlers -------------------------------------------------------------------------- */

static json_t *json_string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static int route_item(HttpRequest *req, void *userdata) {
        return http_reply_json(req, 200, json_pack("{s:o, s:o, s:o, s:o, s:o, s:s, s:s}",
                "id", json_string_or_null(http_request_param(req, "id")),
                "part", json_string_or_null(http_request_param(req, "part")),
                "q", json_string_or_null(http_request_query(req, "q")),
                "flag", json_string_or_null(http_request_query(req, "flag")),
                "missing", json_string_or_null(http_request_query(req, "missing")),
                "path", http_request_path(req),
                "method", http_request_method(req)));
}

static int route_item_delete(HttpRequest *req, void *userdata) {
        return http_reply_bytes(req, 200, NULL, NULL, 0);
}

static int route_echo(HttpRequest *req, void *userdata) {
        json_error_t err;
        size_t len;
        const uint8_t *body = http_request_body(req, &len);
        json_t *j;

        F.echo_calls++;
        j = json_loadb((const char *) body, len, 0, &err);
        if (!j)
                return http_reply_error(req, 400, "bad-request", "not JSON: %s", err.text);
        return http_reply_json(req, 200, j);
}

static int on_wait_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpRequest *req = userdata;

        F.reply_timer = sd_event_source_unref(F.reply_timer);
        F.kept = NULL;
        return http_reply_json(req, 200, json_pack("{s:b}", "waited", 1));
}

static void on_abort(HttpRequest *req, void *userdata) {
        ck_assert_ptr_eq(req, F.kept);
        F.aborts++;
        F.kept = NULL;
        F.reply_timer = sd_event_source_disable_unref(F.reply_timer);
}

static int route_wait(HttpRequest *req, void *userdata) {
        int r;

        r = sd_event_add_time_relative(F.event, &F.reply_timer, CLOCK_MONOTONIC,
                                       200 * USEC_PER_MSEC, 1, on_wait_timer, req);
        if (r < 0)
                return r;
        F.kept = req;
        http_request_keep(req, on_abort, NULL);
        return 0;
}

static int route_hang(HttpRequest *req, void *userdata) {
        F.kept = req;
        http_request_keep(req, on_abort, NULL);
        return 0;
}

static int route_keep_fail(HttpRequest *req, void *userdata) {
        F.kept = req;
        http_request_keep(req, on_abort, NULL);
        return -EIO;
}

static int route_keep_reply(HttpRequest *req, void *userdata) {
        F.kept = req;
        http_request_keep(req, on_abort, NULL);
        return http_reply_json(req, 200, json_pack("{s:b}", "early", 1));
}

static int route_peer(HttpRequest *req, void *userdata) {
        uid_t uid;
        gid_t gid;
        pid_t pid;

        F.peer_r = http_request_peer(req, &uid, &gid, &pid);
        if (F.peer_r < 0)
                return F.peer_r;
        return http_reply_json(req, 200, json_pack("{s:I, s:I, s:I}", "uid", (json_int_t) uid,
                                                   "gid", (json_int_t) gid, "pid", (json_int_t) pid));
}

static int route_fail(HttpRequest *req, void *userdata) {
        return -EIO;
}

static int route_nothing(HttpRequest *req, void *userdata) {
        return 0;
}

static int route_twice(HttpRequest *req, void *userdata) {
        int r = http_reply_json(req, 200, json_pack("{s:i}", "n", 1));
        F.second_reply = http_reply_error(req, 500, "internal", "second");
        return r;
}

static int route_hang_many(HttpRequest *req, void *userdata);

/* A reply that cannot be made (json_pack() failed: a NULL body), from the handler. */
static int route_null_json(HttpRequest *req, void *userdata) {
        F.second_reply = http_reply_json(req, 200, NULL);
        return F.second_reply;
}

/* The same later, from a timer; then the owner frees what on_abort would have used. */
static int on_null_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpRequest *req = userdata;

        F.reply_timer = sd_event_source_unref(F.reply_timer);
        F.second_reply = http_reply_json(req, 200, NULL);
        F.kept = NULL;
        return 0;
}

static int route_keep_null(HttpRequest *req, void *userdata) {
        int r;

        r = sd_event_add_time_relative(F.event, &F.reply_timer, CLOCK_MONOTONIC,
                                       100 * USEC_PER_MSEC, 1, on_null_timer, req);
        if (r < 0)
                return r;
        F.kept = req;
        http_request_keep(req, on_abort, NULL);
        return 0;
}

static int route_ok(HttpRequest *req, void *userdata) {
        return http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static int route_bytes(HttpRequest *req, void *userdata) {
        return http_reply_bytes(req, 200, "text/plain", "hello\0world", 11);
}

static const HttpRoute routes[] = {
        { "GET", "/v1/items/{id}/parts/{part}", route_item },
        { "DELETE", "/v1/items/{id}/parts/{part}", route_item_delete },
        { "POST", "/v1/echo", route_echo, .takes_body = true },
        { "POST", "/v1/json", route_echo, .takes_body = true, .json_body = true },
        { "GET", "/v1/wait", route_wait },
        { "GET", "/v1/hang", route_hang },
        { "GET", "/v1/keep-fail", route_keep_fail },
        { "GET", "/v1/keep-reply", route_keep_reply },
        { "GET", "/v1/peer", route_peer },
        { "GET", "/v1/fail", route_fail },
        { "GET", "/v1/nothing", route_nothing },
        { "GET", "/v1/twice", route_twice },
        { "GET", "/v1/bytes", route_bytes },
        { "GET", "/v1/ok", route_ok },
        { "GET", "/v1/hang-many", route_hang_many },
        { "GET", "/v1/null-json", route_null_json },
        { "GET", "/v1/keep-null", route_keep_null },
        { "GET", "/", route_item },
        /* Methods whose Allow header is longer than any fixed buffer for headers would be. */
        { "X-EXTENSION-METHOD-NUMBER-ONE", "/v1/many", route_ok },
        { "X-EXTENSION-METHOD-NUMBER-TWO", "/v1/many", route_ok },
        { "X-EXTENSION-METHOD-NUMBER-THREE", "/v1/many", route_ok },
        { "X-EXTENSION-METHOD-NUMBER-FOUR", "/v1/many", route_ok },
        { "X-EXTENSION-METHOD-NUMBER-FIVE", "/v1/many", route_ok },
        { "X-EXTENSION-METHOD-NUMBER-SIX", "/v1/many", route_ok },
};

#define MANY_ALLOW "X-EXTENSION-METHOD-NUMBER-ONE, X-EXTENSION-METHOD-NUMBER-TWO, " \
        "X-EXTENSION-METHOD-NUMBER-THREE, X-EXTENSION-METHOD-NUMBER-FOUR, " \
        "X-EXTENSION-METHOD-NUMBER-FIVE, X-EXTENSION-METHOD-NUMBER-SIX"

/* ---- the client side ------------------------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        Call *c = userdata;
        char *p = realloc(c->response, c->response_len + size * n + 1);

        if (!p)
                return 0;
        memcpy(p + c->response_len, data, size * n);
        c->response = p;
        c->response_len += size * n;
        p[c->response_len] = '\0';
        return size * n;
}

/* Chunked upload: the whole body in one read, then EOF. */
static size_t on_read(char *buf, size_t size, size_t n, void *userdata) {
        Call *c = userdata;
        size_t len = MIN(size * n, c->body_len);

        memcpy(buf, c->body, len);
        c->body += len;
        c->body_len -= len;
        return len;
}

static char *header_dup(CURL *curl, const char *name) {
        struct curl_header *h;

        if (curl_easy_header(curl, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
                return NULL;
        return strdup(h->value);
}

static void call_setup(CURL *curl, Call *c, struct curl_slist **headers) {
        char url[512];

        if (c->tcp_port > 0) {
                snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", c->tcp_port, c->target);
                curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, NULL);
        } else {
                snprintf(url, sizeof(url), "http://localhost%s", c->target);
                curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, F.sock);
        }
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, c->method);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->timeout_ms ?: 5000L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        if (c->header)
                *headers = curl_slist_append(*headers, c->header);
        if (c->chunked) {
                *headers = curl_slist_append(*headers, "Transfer-Encoding: chunked");
                curl_easy_setopt(curl, CURLOPT_POST, 1L);
                curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(curl, CURLOPT_READDATA, c);
        } else if (c->body) {
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->body);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) c->body_len);
        }
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *headers);
}

/* A connected socket (blocking), to the Unix socket or to 127.0.0.1:port. */
static int connect_to(int port) {
        int fd;

        if (port > 0) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        fd = safe_close(fd);
        } else {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                strcpy(sa.sun_path, F.sock);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        fd = safe_close(fd);
        }
        return fd;
}

static void raw_append(Call *c, const char *data, size_t n) {
        char *p = realloc(c->response, c->response_len + n + 1);

        if (!p)
                abort();
        memcpy(p + c->response_len, data, n);
        c->response = p;
        c->response_len += n;
        p[c->response_len] = '\0';
}

/* Sends every byte (a short send() is continued: the server closing early shows as an
 * error, EPIPE or ECONNRESET, not as a short count nobody looks at). */
static void raw_send(int fd, Call *c) {
        size_t step = c->trickle_ms > 0 ? 1 : c->raw_len;

        for (size_t done = 0; done < c->raw_len && c->send_error == 0;) {
                ssize_t n = send(fd, c->raw + done, MIN(step, c->raw_len - done), MSG_NOSIGNAL);

                if (n < 0) {
                        c->send_error = errno;
                        break;
                }
                done += (size_t) n;
                if (c->trickle_ms > 0)
                        usleep((useconds_t) c->trickle_ms * 1000);
        }
}

/* Reads until EOF (or an error, or the call's timeout); raw2 goes out once a head is in. */
static void raw_receive(int fd, Call *c) {
        bool sent2 = !c->raw2;
        char buf[65536];

        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);

                if (n <= 0) {
                        c->recv_error = n < 0 ? errno : 0;
                        return;
                }
                raw_append(c, buf, (size_t) n);
                if (!sent2 && strstr(c->response, "\r\n\r\n")) {
                        sent2 = true;
                        if (send(fd, c->raw2, strlen(c->raw2), MSG_NOSIGNAL) < 0)
                                c->send_error = errno;
                }
        }
}

static void raw_run(Call *c) {
        struct timeval tv = { .tv_sec = (c->timeout_ms ?: 5000L) / 1000,
                              .tv_usec = (c->timeout_ms ?: 5000L) % 1000 * 1000 };
        int fd;

        c->start_usec = now_usec();
        fd = connect_to(c->tcp_port);
        if (fd < 0) {
                c->send_error = errno;
                c->done_usec = now_usec();
                return;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        raw_send(fd, c);
        raw_receive(fd, c);
        c->done_usec = now_usec();
        close(fd);
}

static void call_run(CURL *curl, Call *c) {
        struct curl_slist *headers = NULL;
        char *ct = NULL;

        if (c->raw) {
                raw_run(c);
                return;
        }
        call_setup(curl, c, &headers);
        c->code = curl_easy_perform(curl);
        c->done_usec = now_usec();
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &c->status);
        curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
        curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &c->uploaded);
        c->content_type = ct ? strdup(ct) : NULL;
        c->allow = header_dup(curl, "Allow");
        curl_slist_free_all(headers);
}

static void *client_main(void *userdata) {
        Client *cl = userdata;
        CURL *curl = curl_easy_init();
        uint64_t one = 1;

        /* One handle for all calls: later calls reuse the connection (keep-alive). */
        for (size_t i = 0; curl && i < cl->n_calls; i++)
                call_run(curl, &cl->calls[i]);
        curl_easy_cleanup(curl);
        if (write(F.done_fd, &one, sizeof(one)) != sizeof(one))
                abort();
        return NULL;
}

static Call *call_add(size_t client, const char *method, const char *target) {
        Client *cl = &F.clients[client];
        Call *c;

        ck_assert_uint_lt(cl->n_calls, MAX_CALLS);
        c = &cl->calls[cl->n_calls++];
        *c = (Call) { .method = method, .target = target };
        return c;
}

static Call *call_add_body(size_t client, const char *method, const char *target,
                           const char *body, size_t len) {
        Call *c = call_add(client, method, target);
        c->body = body;
        c->body_len = len;
        return c;
}

static void client_start(size_t client) {
        ck_assert_int_eq(pthread_create(&F.clients[client].thread, NULL, client_main,
                                        &F.clients[client]), 0);
        F.clients[client].started = true;
}

static int on_client_done(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        uint64_t n;

        if (read(fd, &n, sizeof(n)) == sizeof(n))
                F.clients_done += (unsigned) n;
        return 0;
}

static unsigned clients_started(void) {
        unsigned n = 0;
        for (size_t i = 0; i < MAX_CLIENTS; i++)
                n += F.clients[i].started;
        return n;
}

static bool all_clients_done(void) {
        return F.clients_done == clients_started();
}

static void clients_join(void) {
        for (size_t i = 0; i < MAX_CLIENTS; i++)
                if (F.clients[i].started && !F.clients[i].joined) {
                        ck_assert_int_eq(pthread_join(F.clients[i].thread, NULL), 0);
                        F.clients[i].joined = true;
                }
}

/* Starts clients 0..n-1, runs the loop until every started client is done, joins them. */
static void run_clients_from(size_t n) {
        for (size_t i = 0; i < n; i++)
                client_start(i);
        ck_assert_msg(event_run_until(F.event, all_clients_done, LOOP_TIMEOUT_USEC), "clients timed out");
        clients_join();
}

static void run_clients(void) {
        run_clients_from(1);
}

static void calls_free(void) {
        for (size_t i = 0; i < MAX_CLIENTS; i++)
                for (size_t k = 0; k < F.clients[i].n_calls; k++) {
                        free(F.clients[i].calls[k].response);
                        free(F.clients[i].calls[k].content_type);
                        free(F.clients[i].calls[k].allow);
                }
}

/* Joins and forgets every client and call, for a test's next round. */
static void clients_reset(void) {
        clients_join();
        calls_free();
        memset(F.clients, 0, sizeof(F.clients));
        F.clients_done = 0;
}

static json_t *call_json(const Call *c) {
        json_error_t err;
        json_t *j = json_loadb(c->response ?: "", c->response_len, 0, &err);

        ck_assert_msg(j, "response to %s %s is not JSON: %s (%.*s)", c->method, c->target,
                      err.text, (int) c->response_len, c->response ?: "");
        return j;
}

/* The response is exactly {"error":{"code":code,"message":…}}; returns the message. */
static char *assert_error(const Call *c, long status, const char *code) {
        json_t *j;
        const char *got_code, *message;
        char *m;

        ck_assert_msg(c->code == CURLE_OK, "%s %s: %s", c->method, c->target,
                      curl_easy_strerror(c->code));
        ck_assert_int_eq(c->status, status);
        ck_assert_str_eq(c->content_type, "application/json");
        j = call_json(c);
        ck_assert_int_eq(json_unpack_ex(j, NULL, JSON_STRICT, "{s:{s:s, s:s}}", "error", "code",
                                        &got_code, "message", &message), 0);
        ck_assert_str_eq(got_code, code);
        m = strdup(message);
        json_decref(j);
        return m;
}

/* ---- fixture --------------------------------------------------------------------------- */

/* The test limits: the defaults but a body of MAX_BODY bytes. */
static HttpLimits test_limits(void) {
        HttpLimits l;

        http_limits_default(&l);
        l.max_body = MAX_BODY;
        return l;
}

/* A server with limits l on the listening socket fd. */
static HttpServer *server_on(int fd, const HttpLimits *l) {
        HttpServer *s = NULL;

        ck_assert_int_eq(http_server_new(F.event, routes, ELEMENTSOF(routes), NULL, l, &s), 0);
        ck_assert_int_eq(http_server_listen(s, fd, NULL, NULL), 0);
        return s;
}

static void server_start(const HttpLimits *l) {
        int fd = -EBADF;
        bool activated = true;

        ck_assert_int_eq(http_listen_fd("api", F.sock, &fd, &activated), 0);
        ck_assert(!activated);
        F.server = server_on(fd, l);
}

static void setup(void) {
        memset(&F, 0, sizeof(F));
        strcpy(F.dir, "/tmp/test-http-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(F.dir));
        snprintf(F.sock, sizeof(F.sock), "%s/run/api.sock", F.dir);
        ck_assert_int_ge(sd_event_new(&F.event), 0);
        F.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        ck_assert_int_ge(F.done_fd, 0);
        ck_assert_int_ge(sd_event_add_io(F.event, &F.done_source, F.done_fd, EPOLLIN,
                                         on_client_done, NULL), 0);
        F.limits = test_limits();
        server_start(&F.limits);
        /* sd-event opens its timerfd with the first timer: before any test counts fds. */
        event_run_until(F.event, event_never, USEC_PER_MSEC);
}

static void teardown(void) {
        char cmd[128];

        clients_join();
        F.reply_timer = sd_event_source_disable_unref(F.reply_timer);
        F.server = http_server_free(F.server);
        sd_event_source_disable_unref(F.done_source);
        close(F.done_fd);
        F.event = sd_event_unref(F.event);
        calls_free();
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* ---- tests ----------------------------------------------------------------------------- */

START_TEST(test_route_params_and_query) {
        Call *c = call_add(0, "GET", "/v1/items/a%2Fb%20c/parts/%E2%9C%93?q=x%20y+z%2B&flag&x=1");
        json_t *j;

        run_clients();
        ck_assert_int_eq(c->code, CURLE_OK);
        ck_assert_int_eq(c->status, 200);
        ck_assert_str_eq(c->content_type, "application/json");
        j = call_json(c);
        ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "a/b c");
        ck_assert_str_eq(json_string_value(json_object_get(j, "part")), "\xe2\x9c\x93");
        ck_assert_str_eq(json_string_value(json_object_get(j, "q")), "x y z+");
        ck_assert_str_eq(json_string_value(json_object_get(j, "flag")), "");
        ck_assert(json_is_null(json_object_get(j, "missing")));
        ck_assert_str_eq(json_string_value(json_object_get(j, "path")),
                         "/v1/items/a%2Fb%20c/parts/%E2%9C%93");
        ck_assert_str_eq(json_string_value(json_object_get(j, "method")), "GET");
        json_decref(j);
}
END_TEST

START_TEST(test_root_and_keepalive) {
        Call *a = call_add(0, "GET", "/");
        Call *b = call_add(0, "GET", "/?q=1");
        json_t *j;

        run_clients();
        ck_assert_int_eq(a->status, 200);
        ck_assert_int_eq(b->status, 200);
        j = call_json(b);
        ck_assert_str_eq(json_string_value(json_object_get(j, "q")), "1");
        ck_assert(json_is_null(json_object_get(j, "id")));
        json_decref(j);
}
END_TEST

START_TEST(test_bad_escapes) {
        Call *a = call_add(0, "GET", "/v1/items/%zz/parts/x");
        Call *b = call_add(0, "GET", "/v1/items/a%00b/parts/x");
        Call *c = call_add(0, "GET", "/v1/items/a/parts/x?q=%2");

        run_clients();
        free(assert_error(a, 400, "bad-request"));
        free(assert_error(b, 400, "bad-request"));
        free(assert_error(c, 400, "bad-request"));
}
END_TEST

START_TEST(test_not_found) {
        Call *a = call_add(0, "GET", "/v1/nope");
        Call *b = call_add(0, "GET", "/v1/items//parts/x");
        Call *c = call_add(0, "GET", "/v1/items/a/parts/x/");
        Call *d = call_add(0, "GET", "/v1/echo/more");
        char *m;

        run_clients();
        m = assert_error(a, 404, "not-found");
        ck_assert_str_eq(m, "No such path: /v1/nope");
        free(m);
        free(assert_error(b, 404, "not-found"));
        free(assert_error(c, 404, "not-found"));
        free(assert_error(d, 404, "not-found"));
}
END_TEST

START_TEST(test_method_not_allowed) {
        Call *a = call_add(0, "GET", "/v1/echo");
        Call *b = call_add(0, "POST", "/v1/items/a/parts/b");
        Call *c = call_add(0, "DELETE", "/v1/items/a/parts/b");

        run_clients();
        free(assert_error(a, 405, "method-not-allowed"));
        ck_assert_str_eq(a->allow, "POST");
        free(assert_error(b, 405, "method-not-allowed"));
        ck_assert_str_eq(b->allow, "GET, DELETE");
        ck_assert_int_eq(c->status, 200);
        ck_assert_uint_eq(c->response_len, 0);
        ck_assert_str_eq(c->content_type, "application/octet-stream");
}
END_TEST

START_TEST(test_json_echo) {
        static const char body[] = "{\"a\": [1, 2.5, \"x\\u00e9\"], \"b\": {\"c\": null}}";
        Call *a = call_add_body(0, "POST", "/v1/echo", body, strlen(body));
        Call *b = call_add_body(0, "POST", "/v1/echo", "{oops", 5);
        json_t *got, *want;

        run_clients();
        ck_assert_int_eq(a->status, 200);
        got = call_json(a);
        want = json_loads(body, 0, NULL);
        ck_assert(json_equal(got, want));
        json_decref(got);
        json_decref(want);
        free(assert_error(b, 400, "bad-request"));
        ck_assert_uint_eq(F.echo_calls, 2);
}
END_TEST

START_TEST(test_too_large) {
        static char big[100000];
        char exact[MAX_BODY + 1];
        Call *small, *large, *expect, *chunked, *fits, *after;
        char *m;

        memset(big, ' ', sizeof(big));
        memset(exact, ' ', sizeof(exact));
        memcpy(exact, "[1]", 3);
        /* 413 as soon as the head is in; what the client still sends is read and dropped
         * while the connection closes, so it reads its 413 instead of a reset. */
        small = call_add_body(0, "POST", "/v1/echo", big, MAX_BODY + 1);
        large = call_add_body(0, "POST", "/v1/echo", big, sizeof(big));
        large->header = "Expect:";
        chunked = call_add_body(0, "POST", "/v1/echo", big, 1000);
        chunked->chunked = true;
        /* A client waiting for "100 Continue" is answered before it sends anything. */
        expect = call_add_body(0, "POST", "/v1/echo", big, sizeof(big));
        expect->header = "Expect: 100-continue";
        fits = call_add_body(0, "POST", "/v1/echo", exact, MAX_BODY);
        after = call_add(0, "GET", "/v1/bytes");

        run_clients();
        m = assert_error(small, 413, "too-large");
        ck_assert_str_eq(m, "Request body is larger than 64 bytes");
        free(m);
        free(assert_error(large, 413, "too-large"));
        ck_assert_int_le(large->uploaded, sizeof(big));
        free(assert_error(chunked, 413, "too-large"));
        free(assert_error(expect, 413, "too-large"));
        ck_assert_int_eq(expect->uploaded, 0);
        ck_assert_int_eq(fits->status, 200);
        ck_assert_str_eq(fits->response, "[1]");
        ck_assert_uint_eq(F.echo_calls, 1);
        ck_assert_int_eq(after->status, 200);
}
END_TEST

/* A chunked body that grows past max_body gets its 413 at that point, however much more the
 * client still sends (17 MiB here: more than the server drops while closing). */
START_TEST(test_too_large_chunked_answered) {
        size_t len = 17 * 1024 * 1024;
        char *huge = malloc(len);
        Call *c, *after;

        ck_assert_ptr_nonnull(huge);
        memset(huge, ' ', len);
        c = call_add_body(0, "POST", "/v1/echo", huge, len);
        c->chunked = true;
        after = call_add(0, "GET", "/v1/bytes");
        run_clients();
        free(assert_error(c, 413, "too-large"));
        ck_assert_uint_lt(c->uploaded, len);
        ck_assert_uint_eq(F.echo_calls, 0);
        ck_assert_int_eq(after->status, 200);
        free(huge);
}
END_TEST

START_TEST(test_chunked_within_limit) {
        static const char body[] = "[\"chunked\"]";
        Call *c = call_add_body(0, "POST", "/v1/echo", body, strlen(body));

        c->chunked = true;
        run_clients();
        ck_assert_int_eq(c->status, 200);
        ck_assert_str_eq(c->response, "[\"chunked\"]");
}
END_TEST

static bool request_kept(void) {
        return F.kept != NULL;
}

START_TEST(test_long_poll) {
        Call *w = call_add(0, "GET", "/v1/wait");
        Call *quick = call_add(1, "GET", "/v1/bytes");
        uint64_t start = now_usec();
        json_t *j;

        /* The quick client starts once the first request is parked. */
        client_start(0);
        ck_assert(event_run_until(F.event, request_kept, LOOP_TIMEOUT_USEC));
        client_start(1);
        ck_assert(event_run_until(F.event, all_clients_done, LOOP_TIMEOUT_USEC));
        clients_join();
        ck_assert_int_eq(w->code, CURLE_OK);
        ck_assert_int_eq(w->status, 200);
        j = call_json(w);
        ck_assert(json_is_true(json_object_get(j, "waited")));
        json_decref(j);
        ck_assert_uint_ge(w->done_usec - start, 200 * USEC_PER_MSEC);
        /* The loop served another client while the first one waited. */
        ck_assert_int_eq(quick->status, 200);
        ck_assert_uint_lt(quick->done_usec, w->done_usec);
        ck_assert_uint_eq(F.aborts, 0);
}
END_TEST

static bool one_abort(void) {
        return all_clients_done() && F.aborts > 0;
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

START_TEST(test_client_disconnect) {
        Call *h = call_add(0, "GET", "/v1/hang");
        unsigned fds = count_fds();

        h->timeout_ms = 300;
        run_clients();
        ck_assert_int_eq(h->code, CURLE_OPERATION_TIMEDOUT);
        ck_assert(event_run_until(F.event, one_abort, LOOP_TIMEOUT_USEC));
        ck_assert_ptr_null(F.kept);
        /* Nothing more happens to it: still exactly one abort a while later, and the server
         * closed its end of the connection. */
        event_run_until(F.event, event_never, 300 * USEC_PER_MSEC);
        ck_assert_uint_eq(F.aborts, 1);
        ck_assert_uint_eq(count_fds(), fds);

        /* And the server still serves. */
        free(h->response);
        free(h->content_type);
        free(h->allow);
        F.clients_done = 0;
        F.clients[0] = (Client) {};
        h = call_add(0, "GET", "/v1/bytes");
        run_clients();
        ck_assert_int_eq(h->status, 200);
}
END_TEST

START_TEST(test_wait_disconnect_cancels_reply) {
        Call *w = call_add(0, "GET", "/v1/wait");

        w->timeout_ms = 50;
        run_clients();
        ck_assert_int_eq(w->code, CURLE_OPERATION_TIMEDOUT);
        ck_assert(event_run_until(F.event, one_abort, LOOP_TIMEOUT_USEC));
        ck_assert_ptr_null(F.reply_timer);
        event_run_until(F.event, event_never, 400 * USEC_PER_MSEC);
        ck_assert_uint_eq(F.aborts, 1);
}
END_TEST

START_TEST(test_free_with_kept_request) {
        Call *h = call_add(0, "GET", "/v1/hang");

        client_start(0);
        ck_assert(event_run_until(F.event, request_kept, LOOP_TIMEOUT_USEC));
        F.server = http_server_free(F.server);
        ck_assert_uint_eq(F.aborts, 1);
        ck_assert(event_run_until(F.event, all_clients_done, LOOP_TIMEOUT_USEC));
        clients_join();
        ck_assert_int_ne(h->code, CURLE_OK);
        ck_assert_int_ne(h->code, CURLE_OPERATION_TIMEDOUT);
}
END_TEST

START_TEST(test_keep_then_fail) {
        Call *a = call_add(0, "GET", "/v1/keep-fail");
        Call *b = call_add(0, "GET", "/v1/keep-reply");
        char *m;

        run_clients();
        m = assert_error(a, 500, "internal");
        ck_assert_str_eq(m, strerror(EIO));
        free(m);
        ck_assert_int_eq(b->status, 200);
        ck_assert_str_eq(b->response, "{\"early\":true}");
        /* keep-fail: the owner was told to forget the request; keep-reply: nothing to tell. */
        ck_assert_uint_eq(F.aborts, 1);
}
END_TEST

START_TEST(test_peer_credentials) {
        Call *c = call_add(0, "GET", "/v1/peer");
        json_t *j;
        json_int_t uid, gid, pid;

        run_clients();
        ck_assert_int_eq(F.peer_r, 0);
        ck_assert_int_eq(c->status, 200);
        j = call_json(c);
        ck_assert_int_eq(json_unpack(j, "{s:I, s:I, s:I}", "uid", &uid, "gid", &gid, "pid", &pid), 0);
        ck_assert_int_eq(uid, getuid());
        ck_assert_int_eq(gid, getgid());
        ck_assert_int_eq(pid, getpid());
        json_decref(j);
}
END_TEST

START_TEST(test_handler_errors) {
        Call *fail = call_add(0, "GET", "/v1/fail");
        Call *nothing = call_add(0, "GET", "/v1/nothing");
        Call *twice = call_add(0, "GET", "/v1/twice");
        Call *bytes = call_add(0, "GET", "/v1/bytes");
        char *m;

        run_clients();
        m = assert_error(fail, 500, "internal");
        ck_assert_str_eq(m, "Input/output error");
        free(m);
        free(assert_error(nothing, 500, "internal"));
        ck_assert_int_eq(twice->status, 200);
        ck_assert_str_eq(twice->response, "{\"n\":1}");
        ck_assert_int_eq(F.second_reply, -EALREADY);
        ck_assert_int_eq(bytes->status, 200);
        ck_assert_str_eq(bytes->content_type, "text/plain");
        ck_assert_uint_eq(bytes->response_len, 11);
        ck_assert_mem_eq(bytes->response, "hello\0world", 11);
}
END_TEST

/* ---- raw requests: what curl would never send ------------------------------------------- */

static Call *raw_add_bytes(size_t client, const void *bytes, size_t len) {
        Call *c = call_add(client, "RAW", "-");

        c->raw = bytes;
        c->raw_len = len;
        return c;
}

static Call *raw_add(size_t client, const char *bytes) {
        return raw_add_bytes(client, bytes, strlen(bytes));
}

/* The response is exactly one reply with this status line and body, "Connection: close" iff
 * closes, and the connection then ended cleanly (no reset), or stayed open when !closes.
 * extra: a header it must carry. */
static void assert_raw_reply(const Call *c, const char *status, const char *body, bool closes,
                             const char *extra) {
        char prefix[128], length[64];
        const char *end;

        ck_assert_msg(c->response, "no reply at all (send %d, recv %d)", c->send_error,
                      c->recv_error);
        snprintf(prefix, sizeof(prefix), "HTTP/1.1 %s\r\n", status);
        ck_assert_msg(strncmp(c->response, prefix, strlen(prefix)) == 0, "reply: %.300s",
                      c->response);
        end = strstr(c->response, "\r\n\r\n");
        ck_assert_ptr_nonnull(end);
        ck_assert_str_eq(end + 4, body);
        snprintf(length, sizeof(length), "\r\nContent-Length: %zu\r\n", strlen(body));
        ck_assert_ptr_nonnull(strstr(c->response, length));
        ck_assert_ptr_nonnull(strstr(c->response, "\r\nContent-Type: application/json\r\n"));
        ck_assert_int_eq(strstr(c->response, "\r\nConnection: close\r\n") != NULL, closes);
        if (extra)
                ck_assert_ptr_nonnull(strstr(c->response, extra));
        /* Closed cleanly after a reply that says so; else kept open (the read timed out). */
        ck_assert_msg(c->recv_error == (closes ? 0 : EAGAIN), "%s: recv error %d after the reply",
                      body, c->recv_error);
}

static void assert_raw_error(const Call *c, const char *status, const char *code,
                             const char *message) {
        char body[512];

        snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                 message);
        assert_raw_reply(c, status, body, true, NULL);
}

/* A route with json_body takes a non-empty body declared application/json only (charset, if
 * any, utf-8), chunked or not; anything else is 415 before the body is read. */
START_TEST(test_json_media_type) {
        static const char *const good[] = {
                "application/json", "Application/JSON", "application/json; charset=utf-8",
                "application/json;charset=\"UTF-8\"", "application/json ; q=1",
        };
        static const char *const bad[] = {
                "text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                "application/json; charset=latin1", "application/json, text/plain",
        };
        Call *g[ELEMENTSOF(good)], *b[ELEMENTSOF(bad)], *none, *chunked, *empty, *other;
        char *raw[ELEMENTSOF(good) + ELEMENTSOF(bad)];
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ck_assert_int_ge(asprintf(&raw[n], "POST /v1/json HTTP/1.1\r\nHost: x\r\n"
                                          "Content-Type: %s\r\nContent-Length: 3\r\n"
                                          "Connection: close\r\n\r\n[1]", good[i]), 0);
                g[i] = raw_add(i % 2, raw[n++]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert_int_ge(asprintf(&raw[n], "POST /v1/json HTTP/1.1\r\nHost: x\r\n"
                                          "Content-Type: %s\r\nContent-Length: 3\r\n\r\n[1]",
                                          bad[i]), 0);
                b[i] = raw_add(i % 2, raw[n++]);
        }
        none = raw_add(0, "POST /v1/json HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n[1]");
        chunked = raw_add(1, "POST /v1/json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                             "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                             "3\r\n[1]\r\n0\r\n\r\n");
        /* No body: nothing to declare (the route says what an empty body is). */
        empty = raw_add(0, "POST /v1/json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n");
        /* A route without json_body reads what it gets. */
        other = raw_add(1, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                           "Content-Length: 3\r\nConnection: close\r\n\r\n[1]");
        run_clients_from(2);
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_raw_reply(g[i], "200 OK", "[1]", true, NULL);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char message[256];

                snprintf(message, sizeof(message), "POST /v1/json needs a JSON body (Content-Type: "
                         "application/json), not '%s'", bad[i]);
                assert_raw_error(b[i], "415 Unsupported Media Type", "unsupported-media-type",
                                 message);
        }
        assert_raw_error(none, "415 Unsupported Media Type", "unsupported-media-type",
                         "POST /v1/json needs a JSON body (Content-Type: application/json), this "
                         "one has no Content-Type");
        assert_raw_reply(chunked, "200 OK", "[1]", true, NULL);
        assert_raw_error(empty, "400 Bad Request", "bad-request",
                         "not JSON: '[' or '{' expected near end of file");
        assert_raw_reply(other, "200 OK", "[1]", true, NULL);
        for (size_t i = 0; i < n; i++)
                free(raw[i]);
}
END_TEST

/* An Allow header of any length (here 190 bytes) is sent whole, with the headers after it. */
START_TEST(test_method_not_allowed_long_allow) {
        static const char message[] = "Method GET is not allowed here (allowed: " MANY_ALLOW ")";
        Call *keep, *close;
        char body[512];

        keep = raw_add(0, "GET /v1/many HTTP/1.1\r\nHost: x\r\n\r\n");
        keep->timeout_ms = 300;
        close = raw_add(1, "GET /v1/many HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        run_clients_from(2);
        snprintf(body, sizeof(body), "{\"error\":{\"code\":\"method-not-allowed\",\"message\":"
                 "\"%s\"}}", message);
        assert_raw_reply(keep, "405 Method Not Allowed", body, false,
                         "\r\nAllow: " MANY_ALLOW "\r\n");
        assert_raw_reply(close, "405 Method Not Allowed", body, true,
                         "\r\nAllow: " MANY_ALLOW "\r\nConnection: close\r\n\r\n");
}
END_TEST

/* A head of exactly len bytes: "GET /v1/bytes HTTP/1.1\r\nHost: x\r\nX-Pad: aaa…\r\n\r\n". */
static char *head_of_size(size_t len) {
        static const char prefix[] = "GET /v1/ok HTTP/1.1\r\nHost: x\r\nX-Pad: ";
        char *h = malloc(len + 1);

        ck_assert_ptr_nonnull(h);
        memset(h, 'a', len);
        memcpy(h, prefix, strlen(prefix));
        memcpy(h + len - 4, "\r\n\r\n", 4);
        h[len] = '\0';
        return h;
}

START_TEST(test_hostile_heads) {
        static const char nul_target[] = "GET /v1/bytes\0/x HTTP/1.1\r\nHost: x\r\n\r\n";
        char *long_target = NULL, *fits = head_of_size(HTTP_HEAD_MAX), *over;
        Call *c[20];
        size_t n = 0;

        over = head_of_size(HTTP_HEAD_MAX + 1);
        ck_assert_int_ge(asprintf(&long_target, "GET /v1/%05000d HTTP/1.1\r\nHost: x\r\n\r\n", 0),
                         0);
        c[n++] = raw_add_bytes(0, nul_target, sizeof(nul_target) - 1);
        c[n++] = raw_add(0, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                            "Content-Length: 30\r\n\r\n[1]");
        c[n++] = raw_add(0, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n3\r\n[1]\r\n0\r\n\r\n");
        c[n++] = raw_add(0, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked"
                            "\r\n\r\n");
        c[n++] = raw_add(0, "GET /v1/bytes HTTP/1.1\r\n\r\n");
        c[n++] = raw_add(0, "GET /v1/bytes HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        c[n++] = raw_add(0, "GET /v1/bytes HTTP/1.1\nHost: x\n\n");
        c[n++] = raw_add(0, "GET /v1/bytes HTTP/1.1\r\nHost: x\r\r\n\r\n");
        c[n++] = raw_add(0, "GET /v1/bytes HTTP/2.0\r\nHost: x\r\n\r\n");
        c[n++] = raw_add(1, long_target);
        c[n++] = raw_add(1, over);
        c[n++] = raw_add(1, "POST /v1/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        c[n++] = raw_add(1, "GET http://x/v1/bytes HTTP/1.1\r\nHost: x\r\n\r\n");
        c[n++] = raw_add(1, "GET /v1/bytes HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n");
        c[n++] = raw_add(1, "GET /v1/%00 HTTP/1.1\r\nHost: x\r\n\r\n");
        c[n++] = raw_add(1, fits);
        c[n - 1]->timeout_ms = 300;
        c[n++] = raw_add(1, "GET /v1/ok HTTP/1.0\r\n\r\n");
        run_clients_from(2);

        assert_raw_error(c[0], "400 Bad Request", "bad-request", "Control byte in the request head");
        assert_raw_error(c[1], "400 Bad Request", "bad-request", "Conflicting Content-Length headers");
        assert_raw_error(c[2], "400 Bad Request", "bad-request",
                         "Both Transfer-Encoding and Content-Length");
        assert_raw_error(c[3], "501 Not Implemented", "not-implemented",
                         "Transfer-Encoding other than chunked is not supported");
        assert_raw_error(c[4], "400 Bad Request", "bad-request",
                         "HTTP/1.1 request without a Host header");
        assert_raw_error(c[5], "400 Bad Request", "bad-request", "Several Host headers");
        assert_raw_error(c[6], "400 Bad Request", "bad-request",
                         "Bare LF in the request head (lines end in CRLF)");
        assert_raw_error(c[7], "400 Bad Request", "bad-request", "Bare CR in the request head");
        assert_raw_error(c[8], "505 HTTP Version Not Supported", "version-not-supported",
                         "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)");
        assert_raw_error(c[9], "414 URI Too Long", "too-large",
                         "Request line (method, target, version) is longer than 4096 bytes");
        assert_raw_error(c[10], "431 Request Header Fields Too Large", "too-large",
                         "Request head is larger than 8192 bytes");
        assert_raw_error(c[11], "400 Bad Request", "bad-request",
                         "Transfer-Encoding in an HTTP/1.0 request");
        assert_raw_error(c[12], "400 Bad Request", "bad-request", "Malformed request line");
        assert_raw_error(c[13], "400 Bad Request", "bad-request",
                         "Obsolete line folding in the request head");
        /* About the target only, with no body: the connection goes on. */
        c[14]->timeout_ms = 300;
        assert_raw_reply(c[14], "400 Bad Request",
                         "{\"error\":{\"code\":\"bad-request\",\"message\":\"Malformed request "
                         "target (a bad %-escape or an encoded NUL)\"}}", false, NULL);
        /* A head of exactly HTTP_HEAD_MAX bytes, and HTTP/1.0 without Host, are served. */
        assert_raw_reply(c[15], "200 OK", "{\"ok\":true}", false, NULL);
        assert_raw_reply(c[16], "200 OK", "{\"ok\":true}", true, NULL);
        ck_assert_uint_eq(F.echo_calls, 0);
        free(long_target);
        free(fits);
        free(over);
}
END_TEST

/* Bodies just above max_body, sent whole before the client reads: the client reads its 413
 * JSON, never a reset, also when the body is far larger than the socket buffers. */
START_TEST(test_body_above_limit_answered) {
        size_t big = 4 * 1024 * 1024;
        char *just = NULL, *large = malloc(big + 200);
        Call *a, *b;
        int n;

        ck_assert_ptr_nonnull(large);
        ck_assert_int_ge(asprintf(&just, "POST /v1/echo HTTP/1.1\r\nHost: x\r\n"
                                  "Content-Length: %d\r\n\r\n%0*d", MAX_BODY + 1, MAX_BODY + 1, 0),
                         0);
        n = snprintf(large, 200, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                     big);
        memset(large + n, ' ', big);
        a = raw_add(0, just);
        b = raw_add_bytes(1, large, (size_t) n + big);
        run_clients_from(2);
        assert_raw_error(a, "413 Content Too Large", "too-large",
                         "Request body is larger than 64 bytes");
        assert_raw_error(b, "413 Content Too Large", "too-large",
                         "Request body is larger than 64 bytes");
        ck_assert_int_eq(b->send_error, 0);
        ck_assert_uint_eq(F.echo_calls, 0);
        free(just);
        free(large);
}
END_TEST

static size_t count_substr(const char *s, const char *needle) {
        size_t n = 0;

        for (const char *p = s; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

START_TEST(test_keepalive_pipelined) {
        static const char four[] = "GET /v1/ok HTTP/1.1\r\nHost: x\r\n\r\n"
                                   "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n[7]"
                                   "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                   "\r\n\r\n2\r\n[8\r\n1\r\n]\r\n0\r\n\r\n"
                                   "GET /v1/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        Call *c = raw_add(0, four);
        const char *last;

        run_clients_from(1);
        ck_assert_int_eq(c->recv_error, 0);
        /* Four replies in order on one connection; only the last says it closes. */
        ck_assert_uint_eq(count_substr(c->response, "HTTP/1.1 200 OK\r\n"), 4);
        ck_assert(strncmp(c->response, "HTTP/1.1 200 OK\r\n", 17) == 0);
        ck_assert_ptr_nonnull(strstr(c->response, "\r\n\r\n{\"ok\":true}HTTP/1.1 200 OK\r\n"));
        ck_assert_ptr_nonnull(strstr(c->response, "\r\n\r\n[7]HTTP/1.1 200 OK\r\n"));
        ck_assert_ptr_nonnull(strstr(c->response, "\r\n\r\n[8]HTTP/1.1 200 OK\r\n"));
        ck_assert_uint_eq(count_substr(c->response, "Connection: close"), 1);
        last = strstr(strstr(c->response, "[8]"), "HTTP/1.1");
        ck_assert_ptr_nonnull(strstr(last, "\r\nConnection: close\r\n"));
        ck_assert_str_eq(strstr(last, "\r\n\r\n"), "\r\n\r\n{\"ok\":true}");
        ck_assert_uint_eq(F.echo_calls, 2);
}
END_TEST

/* ---- deadlines and limits ------------------------------------------------------------- */

static void server_restart(const HttpLimits *l) {
        F.server = http_server_free(F.server);
        F.limits = *l;
        server_start(&F.limits);
}

/* A TCP listener on 127.0.0.1 for F.server, with test_auth; returns its port. */
static int test_auth(HttpRequest *req, void *userdata, const char **ret_message) {
        const char *a = http_request_header(req, "Authorization");

        if (!a || !streq(a, "Bearer good")) {
                *ret_message = "no good token";
                return -EACCES;
        }
        return 0;
}

static int tcp_listen(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 128), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        ck_assert_int_eq(http_server_listen(F.server, fd, test_auth, NULL), 0);
        return ntohs(sa.sin_port);
}

/* 1: the server closed it (EOF or reset), 0: still open, nothing to read. */
static int peer_closed(int fd) {
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);

        if (n == 0 || (n < 0 && errno == ECONNRESET))
                return 1;
        ck_assert_msg(n < 0 && errno == EAGAIN, "unexpected bytes or error on an idle client");
        return 0;
}

static void settle(uint64_t usec) {
        event_run_until(F.event, event_never, usec);
}

START_TEST(test_head_deadline) {
        HttpLimits l = test_limits();
        Call *partial, *idle, *trickle, *alive;

        l.head_timeout_usec = 300 * USEC_PER_MSEC;
        l.idle_timeout_usec = 400 * USEC_PER_MSEC;
        server_restart(&l);
        partial = raw_add(0, "GET /v1/ok HTTP/1.1\r\nHost:");
        idle = raw_add(0, "");
        alive = raw_add(0, "GET /v1/ok HTTP/1.1\r\nHost: x\r\n\r\n");
        alive->timeout_ms = 3000;
        /* 33 bytes, a byte every 40 ms: 1.3 s for a head that has 300 ms. */
        trickle = raw_add(1, "GET /v1/ok HTTP/1.1\r\nHost: x\r\n\r\n");
        trickle->trickle_ms = 40;
        run_clients_from(2);

        assert_raw_error(partial, "408 Request Timeout", "timeout",
                         "The request head did not arrive in time");
        ck_assert_uint_ge(partial->done_usec - partial->start_usec, 300 * USEC_PER_MSEC);
        ck_assert_uint_lt(partial->done_usec - partial->start_usec, 1500 * USEC_PER_MSEC);
        /* Nothing sent: closed without a word at the head deadline. */
        ck_assert_ptr_null(idle->response);
        ck_assert_int_eq(idle->recv_error, 0);
        ck_assert_uint_ge(idle->done_usec - idle->start_usec, 300 * USEC_PER_MSEC);
        ck_assert_uint_lt(idle->done_usec - idle->start_usec, 1500 * USEC_PER_MSEC);
        /* Trickling does not move the deadline. */
        ck_assert(strncmp(trickle->response ?: "", "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
        ck_assert_uint_lt(trickle->done_usec - trickle->start_usec, 1200 * USEC_PER_MSEC);
        /* Served, then idle: closed after idle_timeout, not the head deadline. */
        ck_assert(strncmp(alive->response ?: "", "HTTP/1.1 200 OK\r\n", 17) == 0);
        ck_assert_int_eq(alive->recv_error, 0);
        ck_assert_uint_ge(alive->done_usec - alive->start_usec, 400 * USEC_PER_MSEC);
        ck_assert_uint_lt(alive->done_usec - alive->start_usec, 2000 * USEC_PER_MSEC);
}
END_TEST

#define FALLBACK_500 "{\"error\":{\"code\":\"internal\",\"message\":\"The reply could not be made\"}}"

/* A reply that fails (here a NULL JSON body, as when json_pack() fails) still completes the
 * request: the static 500, the connection closed; a kept request's owner, who tried to reply
 * and then freed its state, is never called back when the client hangs up. */
START_TEST(test_failed_reply_completes) {
        Call *now = raw_add(0, "GET /v1/null-json HTTP/1.1\r\nHost: x\r\n\r\n");
        Call *later = raw_add(1, "GET /v1/keep-null HTTP/1.1\r\nHost: x\r\n\r\n");

        now->timeout_ms = later->timeout_ms = 1000;
        run_clients_from(2);
        assert_raw_reply(later, "500 Internal Server Error", FALLBACK_500, true, NULL);
        assert_raw_reply(now, "500 Internal Server Error", FALLBACK_500, true, NULL);
        ck_assert_int_eq(F.second_reply, -EINVAL);
        ck_assert_ptr_null(F.kept);
        settle(200 * USEC_PER_MSEC);
        ck_assert_uint_eq(F.aborts, 0);
}
END_TEST

/* A kept request its owner never answers ends at handler_timeout: the owner hears on_abort,
 * the client a 500; other requests are not affected. */
START_TEST(test_handler_timeout) {
        HttpLimits l = test_limits();
        Call *hang, *ok;

        l.handler_timeout_usec = 300 * USEC_PER_MSEC;
        server_restart(&l);
        hang = raw_add(0, "GET /v1/hang HTTP/1.1\r\nHost: x\r\n\r\n");
        ok = call_add(1, "GET", "/v1/ok");
        run_clients_from(2);
        assert_raw_reply(hang, "500 Internal Server Error",
                         "{\"error\":{\"code\":\"internal\",\"message\":\"No reply within "
                         "300 ms\"}}", true, NULL);
        ck_assert_uint_ge(hang->done_usec - hang->start_usec, 300 * USEC_PER_MSEC);
        ck_assert_uint_lt(hang->done_usec - hang->start_usec, 2000 * USEC_PER_MSEC);
        ck_assert_uint_eq(F.aborts, 1);
        ck_assert_ptr_null(F.kept);
        ck_assert_int_eq(ok->status, 200);
}
END_TEST

/* head + a body of n spaces, as one raw call's bytes (freed by the caller). */
static char *with_body(const char *head, size_t n, size_t *ret_len) {
        size_t h = strlen(head);
        char *b = malloc(h + n + 1);

        ck_assert_ptr_nonnull(b);
        memcpy(b, head, h);
        memset(b + h, ' ', n);
        b[h + n] = '\0';
        *ret_len = h + n;
        return b;
}

/* Errors answered before the body is read, with the body sent whole behind the head (1 MiB;
 * 8 MiB over TCP, more than loopback's buffers take): the client sends all of it and reads
 * its whole JSON error and a clean end, never a reset, whatever the refusal (here 401, 404,
 * 413 of a Content-Length that saturates), and also when an earlier refusal on the same
 * connection had no body (its budget does not carry over). */
START_TEST(test_error_reply_drained) {
        size_t mib = 1024 * 1024, len[4];
        char *raw[4];
        Call *c[4];
        int port;

        port = tcp_listen();
        raw[0] = with_body("POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bad\r\n"
                           "Content-Length: 8388608\r\n\r\n", 8 * mib, &len[0]);
        raw[1] = with_body("POST /v1/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
                           mib, &len[1]);
        raw[2] = with_body("POST /v1/echo HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 99999999999999999999999\r\n\r\n", mib, &len[2]);
        /* A 404 that keeps the connection, then a close with 1 MiB more from the client. */
        raw[3] = with_body("GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /v1/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", mib,
                           &len[3]);
        for (size_t i = 0; i < 4; i++)
                c[i] = raw_add_bytes(i % 2, raw[i], len[i]);
        c[0]->tcp_port = port;
        run_clients_from(2);
        assert_raw_error(c[0], "401 Unauthorized", "unauthorized", "no good token");
        /* RFC 9110: a 401 says how to authenticate. */
        ck_assert_ptr_nonnull(strstr(c[0]->response,
                                     "\r\nWWW-Authenticate: Bearer realm=\"tasad\"\r\n"));
        assert_raw_error(c[1], "404 Not Found", "not-found", "No such path: /v1/nope");
        assert_raw_error(c[2], "413 Content Too Large", "too-large",
                         "Request body is larger than 64 bytes");
        ck_assert_msg(strncmp(c[3]->response ?: "", "HTTP/1.1 404 Not Found\r\n", 24) == 0,
                      "reply: %.200s", c[3]->response ?: "");
        ck_assert_ptr_nonnull(strstr(c[3]->response, "}HTTP/1.1 200 OK\r\n"));
        ck_assert_int_eq(c[3]->recv_error, 0);
        for (size_t i = 0; i < 4; i++) {
                ck_assert_msg(c[i]->send_error == 0, "call %zu: send error %d", i,
                              c[i]->send_error);
                free(raw[i]);
        }
        ck_assert_uint_eq(F.echo_calls, 0);
}
END_TEST

/* A body that trickles (a byte every 50 ms, well within io_timeout) is dropped at its rate
 * deadline, a grace of head_timeout (300 ms) after its head with nearly nothing earned by
 * then, Content-Length and chunked alike; the room it held in max_buffered is free again. */
START_TEST(test_body_rate) {
        static const char length[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
        static const char chunked[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n";
        HttpLimits l = test_limits();
        int fd[2];
        uint64_t t0, closed[2] = {};
        char *full = NULL;
        Call *later;

        l.max_body = 1000;
        l.max_buffered = 1001 + 16384; /* the Content-Length body and the chunked one's start */
        l.head_timeout_usec = 300 * USEC_PER_MSEC;
        l.io_timeout_usec = 300 * USEC_PER_MSEC;
        server_restart(&l);
        fd[0] = connect_to(0);
        fd[1] = connect_to(0);
        ck_assert_int_ge(fd[0], 0);
        ck_assert_int_ge(fd[1], 0);
        ck_assert_int_eq(send(fd[0], length, strlen(length), MSG_NOSIGNAL), (ssize_t) strlen(length));
        ck_assert_int_eq(send(fd[1], chunked, strlen(chunked), MSG_NOSIGNAL), (ssize_t) strlen(chunked));
        t0 = now_usec();
        while ((!closed[0] || !closed[1]) && now_usec() - t0 < 3 * USEC_PER_SEC) {
                for (size_t i = 0; i < 2; i++)
                        if (!closed[i] && peer_closed(fd[i]))
                                closed[i] = now_usec();
                        else if (!closed[i])
                                (void) send(fd[i], i == 0 ? " " : "1\r\n \r\n", i == 0 ? 1 : 6,
                                            MSG_NOSIGNAL);
                settle(50 * USEC_PER_MSEC);
        }
        for (size_t i = 0; i < 2; i++) {
                ck_assert_msg(closed[i], "body %zu still taken after 3 s of trickling", i);
                ck_assert_uint_ge(closed[i] - t0, 250 * USEC_PER_MSEC);
                ck_assert_uint_lt(closed[i] - t0, 1500 * USEC_PER_MSEC);
                close(fd[i]);
        }
        ck_assert_uint_eq(F.echo_calls, 0);
        ck_assert_int_ge(asprintf(&full, "%s[1%997s]", length, ""), 0);
        later = raw_add(0, full);
        run_clients_from(1);
        ck_assert(strncmp(later->response ?: "", "HTTP/1.1 200 OK\r\n", 17) == 0);
        ck_assert_uint_eq(F.echo_calls, 1);
        free(full);
}
END_TEST

/* A route that takes no body ignores a small one and refuses a larger one with 413 before it
 * is read, whatever its framing; a route that takes one gets up to max_body. */
START_TEST(test_no_body_routes) {
        HttpLimits l = test_limits();
        static char big[5000];
        Call *small, *large, *chunked, *echo;
        char *m;

        l.max_body = 100000;
        server_restart(&l);
        memset(big, ' ', sizeof(big));
        memcpy(big, "[2]", 3);
        small = call_add_body(0, "GET", "/v1/ok", "{}", 2);
        large = call_add_body(0, "GET", "/v1/ok", big, HTTP_NO_BODY_MAX + 1);
        large->header = "Expect:";
        chunked = call_add_body(0, "DELETE", "/v1/items/a/parts/b", big, sizeof(big));
        chunked->chunked = true;
        echo = call_add_body(0, "POST", "/v1/echo", big, sizeof(big));
        echo->header = "Expect:";
        run_clients();
        ck_assert_int_eq(small->status, 200);
        ck_assert_str_eq(small->response, "{\"ok\":true}");
        m = assert_error(large, 413, "too-large");
        ck_assert_str_eq(m, "GET /v1/ok takes no request body (one of at most 4096 bytes is "
                         "ignored)");
        free(m);
        m = assert_error(chunked, 413, "too-large");
        ck_assert_str_eq(m, "DELETE /v1/items/{id}/parts/{part} takes no request body (one of at "
                         "most 4096 bytes is ignored)");
        free(m);
        ck_assert_int_eq(echo->status, 200);
        ck_assert_str_eq(echo->response, "[2]");
}
END_TEST

static unsigned hangs;

static void on_hang_abort(HttpRequest *req, void *userdata) {
        hangs--;
}

static int route_hang_many(HttpRequest *req, void *userdata) {
        hangs++;
        http_request_keep(req, on_hang_abort, NULL);
        return 0;
}

static unsigned hangs_target;

static bool hangs_reached(void) {
        return hangs == hangs_target;
}

static bool hangs_none(void) {
        return hangs == 0;
}

/* n connections each with a kept request; the fds in ret. */
static void open_hanging(int port, const char *auth, int *ret, size_t n) {
        char req[256];

        snprintf(req, sizeof(req), "GET /v1/hang-many HTTP/1.1\r\nHost: x\r\n%s\r\n", auth ?: "");
        for (size_t i = 0; i < n; i++) {
                ret[i] = connect_to(port);
                ck_assert_int_ge(ret[i], 0);
                ck_assert_int_eq(send(ret[i], req, strlen(req), MSG_NOSIGNAL), (ssize_t) strlen(req));
        }
        hangs_target = hangs + (unsigned) n;
        ck_assert(event_run_until(F.event, hangs_reached, LOOP_TIMEOUT_USEC));
}

/* Unix socket: idle connections are pushed out for new ones, oldest first; when every slot is
 * busy with a request, a new connection gets 503. */
START_TEST(test_connection_limit) {
        HttpLimits l = test_limits();
        int idle[6], busy[4];
        Call *ok, *refused;

        l.max_connections = 4;
        server_restart(&l);
        hangs = 0;
        for (size_t i = 0; i < ELEMENTSOF(idle); i++) {
                idle[i] = connect_to(0);
                ck_assert_int_ge(idle[i], 0);
                settle(20 * USEC_PER_MSEC); /* accepted one by one, in order */
        }
        for (size_t i = 0; i < ELEMENTSOF(idle); i++)
                ck_assert_int_eq(peer_closed(idle[i]), i < 2);
        ok = raw_add(0, "GET /v1/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        run_clients_from(1);
        assert_raw_reply(ok, "200 OK", "{\"ok\":true}", true, NULL);
        ck_assert_int_eq(peer_closed(idle[2]), 1);
        for (size_t i = 0; i < ELEMENTSOF(idle); i++)
                close(idle[i]);

        open_hanging(0, NULL, busy, ELEMENTSOF(busy));
        clients_reset();
        refused = raw_add(0, "GET /v1/ok HTTP/1.1\r\nHost: x\r\n\r\n");
        run_clients_from(1);
        assert_raw_reply(refused, "503 Service Unavailable",
                         "{\"error\":{\"code\":\"unavailable\",\"message\":\"Too many connections; "
                         "try again later\"}}", true, "\r\nRetry-After: 1\r\n");
        ck_assert_uint_eq(hangs, 4);
        for (size_t i = 0; i < ELEMENTSOF(busy); i++)
                close(busy[i]);
        ck_assert(event_run_until(F.event, hangs_none, LOOP_TIMEOUT_USEC));
}
END_TEST

/* TCP: one address's connections are capped; those that never authenticated are pushed out
 * for new ones, an authenticated idle one is not; a client with a good token is served while
 * strangers keep connecting; wrong or missing tokens get 401. */
START_TEST(test_tcp_per_peer_and_auth) {
        HttpLimits l = test_limits();
        int strangers[20], trusted, busy[4], port;
        static const char good[] = "GET /v1/ok HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n";
        Call *ok, *bad, *none, *refused;
        char buf[512];
        ssize_t n = 0;
        size_t open_n = 0;

        l.max_connections_per_peer = 4;
        server_restart(&l);
        port = tcp_listen();
        hangs = 0;
        /* An authenticated keep-alive connection, idle after its first request. */
        trusted = connect_to(port);
        ck_assert_int_eq(send(trusted, good, strlen(good), MSG_NOSIGNAL), (ssize_t) strlen(good));
        for (unsigned i = 0; i < 200 && n <= 0; i++) {
                settle(5 * USEC_PER_MSEC);
                n = recv(trusted, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        }
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        ck_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
        for (size_t i = 0; i < ELEMENTSOF(strangers); i++) {
                strangers[i] = connect_to(port);
                ck_assert_int_ge(strangers[i], 0);
                ck_assert_int_eq(send(strangers[i], "G", 1, MSG_NOSIGNAL), 1);
                settle(5 * USEC_PER_MSEC);
        }
        ck_assert_int_eq(peer_closed(trusted), 0);
        for (size_t i = 0; i < ELEMENTSOF(strangers); i++)
                open_n += !peer_closed(strangers[i]);
        ck_assert_uint_eq(open_n, 3);
        for (size_t i = ELEMENTSOF(strangers) - 3; i < ELEMENTSOF(strangers); i++)
                ck_assert_int_eq(peer_closed(strangers[i]), 0);

        ok = raw_add(0, "GET /v1/ok HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                        "Connection: close\r\n\r\n");
        bad = raw_add(1, "GET /v1/ok HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bad\r\n\r\n");
        none = raw_add(1, "GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n");
        ok->tcp_port = bad->tcp_port = none->tcp_port = port;
        run_clients_from(2);
        assert_raw_reply(ok, "200 OK", "{\"ok\":true}", true, NULL);
        assert_raw_error(bad, "401 Unauthorized", "unauthorized", "no good token");
        assert_raw_error(none, "401 Unauthorized", "unauthorized", "no good token");
        /* The idle authenticated connection still works. */
        ck_assert_int_eq(peer_closed(trusted), 0);
        for (size_t i = 0; i < ELEMENTSOF(strangers); i++)
                close(strangers[i]);
        close(trusted);

        /* Every slot of this address busy with an authenticated request: 503. */
        open_hanging(port, "Authorization: Bearer good\r\n", busy, ELEMENTSOF(busy));
        clients_reset();
        refused = raw_add(0, good);
        refused->tcp_port = port;
        run_clients_from(1);
        ck_assert(strncmp(refused->response ?: "", "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
        for (size_t i = 0; i < ELEMENTSOF(busy); i++)
                close(busy[i]);
        ck_assert(event_run_until(F.event, hangs_none, LOOP_TIMEOUT_USEC));
}
END_TEST

/* max_buffered: bodies that would not fit get 503 before they are sent; a stalled body is
 * closed after io_timeout, and its room is free again. */
START_TEST(test_buffered_limit) {
        HttpLimits l = test_limits();
        static const char head[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
        char *full = NULL;
        int stalled[2];
        Call *busy, *later;
        uint64_t t0;

        l.max_body = 1000;
        l.max_buffered = 2500;
        l.io_timeout_usec = 300 * USEC_PER_MSEC;
        server_restart(&l);
        ck_assert_int_ge(asprintf(&full, "%s[1%997s]", head, ""), 0);
        for (size_t i = 0; i < ELEMENTSOF(stalled); i++) {
                stalled[i] = connect_to(0);
                ck_assert_int_ge(stalled[i], 0);
                ck_assert_int_eq(send(stalled[i], head, strlen(head), MSG_NOSIGNAL),
                                 (ssize_t) strlen(head));
                ck_assert_int_eq(send(stalled[i], "[1   ", 5, MSG_NOSIGNAL), 5);
        }
        settle(50 * USEC_PER_MSEC);
        t0 = now_usec();
        busy = raw_add(0, full);
        run_clients_from(1);
        assert_raw_reply(busy, "503 Service Unavailable",
                         "{\"error\":{\"code\":\"unavailable\",\"message\":\"The request bodies "
                         "being received fill max_request_buffered (2500 bytes); try again "
                         "later\"}}", true, "\r\nRetry-After: 1\r\n");
        ck_assert_uint_eq(F.echo_calls, 0);
        /* The stalled ones are closed unanswered once they made no progress for 300 ms. */
        for (unsigned i = 0; i < 300 && !(peer_closed(stalled[0]) && peer_closed(stalled[1])); i++)
                settle(10 * USEC_PER_MSEC);
        ck_assert_int_eq(peer_closed(stalled[0]) && peer_closed(stalled[1]), 1);
        ck_assert_uint_ge(now_usec() - t0, 200 * USEC_PER_MSEC);
        ck_assert_int_eq(recv(stalled[0], full, 1, MSG_DONTWAIT), 0);
        clients_reset();
        later = raw_add(0, full);
        run_clients_from(1);
        ck_assert(strncmp(later->response ?: "", "HTTP/1.1 200 OK\r\n", 17) == 0);
        ck_assert_ptr_nonnull(strstr(later->response, "\r\n\r\n[1]"));
        ck_assert_uint_eq(F.echo_calls, 1);
        for (size_t i = 0; i < ELEMENTSOF(stalled); i++)
                close(stalled[i]);
        free(full);
}
END_TEST

START_TEST(test_expect_continue) {
        Call *c = raw_add(0, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                             "Content-Length: 3\r\nConnection: close\r\n\r\n");
        Call *big = raw_add(0, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                               "Content-Length: 65\r\n\r\n");

        c->raw2 = "[5]";
        run_clients_from(1);
        ck_assert(strncmp(c->response, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 42) == 0);
        ck_assert_str_eq(strstr(c->response + 25, "\r\n\r\n"), "\r\n\r\n[5]");
        /* Too large: the final answer at once, no 100. */
        assert_raw_error(big, "413 Content Too Large", "too-large",
                         "Request body is larger than 64 bytes");
}
END_TEST

/* ---- http_listen_fd -------------------------------------------------------------------- */

static int make_listener(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        strcpy(sa.sun_path, path);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 8), 0);
        return fd;
}

static void listen_env(unsigned n, const char *names) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%u", n);
        setenv("LISTEN_FDS", buf, 1);
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        if (names)
                setenv("LISTEN_FDNAMES", names, 1);
        else
                unsetenv("LISTEN_FDNAMES");
}

static void listen_env_clear(void) {
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
}

typedef struct Passed {
        int r;
        int fd;
        bool activated;
        int moved;              /* the passed fd, moved away from 3/4 */
        bool env_kept;          /* LISTEN_FDS still set afterwards */
} Passed;

/* Places `sock` at fd 3 + slot (saving what was there: check's own files may live at 3 and
 * 4), calls http_listen_fd("api", fallback, …), and restores fds 3 and 4 before anything can
 * assert. */
static Passed listen_passed(int sock, unsigned slot, unsigned n, const char *names,
                            const char *fallback) {
        int saved[2], target = SD_LISTEN_FDS_START + (int) slot;
        Passed p = { .fd = -EBADF, .moved = -EBADF };

        for (int i = 0; i < 2; i++)
                saved[i] = fcntl(SD_LISTEN_FDS_START + i, F_DUPFD_CLOEXEC, 20);
        if (slot == 1)
                dup2(sock, SD_LISTEN_FDS_START); /* a placeholder fd in slot 0 */
        dup2(sock, target);
        listen_env(n, names);
        p.r = http_listen_fd("api", fallback, &p.fd, &p.activated);
        p.env_kept = getenv("LISTEN_FDS") != NULL;
        listen_env_clear();
        if (p.r >= 0 && p.fd == target)
                p.moved = fcntl(target, F_DUPFD_CLOEXEC, 20);
        for (int i = 0; i < 2; i++) {
                if (saved[i] >= 0)
                        dup2(saved[i], SD_LISTEN_FDS_START + i);
                else
                        close(SD_LISTEN_FDS_START + i);
                close(saved[i]);
        }
        return p;
}

START_TEST(test_listen_fd_activated) {
        char path[160], fallback[160];
        struct stat st;
        int sock;
        Passed p;
        Call *c;

        F.server = http_server_free(F.server);
        snprintf(path, sizeof(path), "%s/passed.sock", F.dir);
        snprintf(fallback, sizeof(fallback), "%s/fallback.sock", F.dir);
        sock = make_listener(path);

        p = listen_passed(sock, 1, 2, "other:api", fallback);
        ck_assert_int_eq(p.r, 0);
        ck_assert_int_eq(p.fd, SD_LISTEN_FDS_START + 1);
        ck_assert(p.activated);
        ck_assert_int_ge(p.moved, 0);
        ck_assert_int_lt(stat(fallback, &st), 0);
        ck_assert(p.env_kept);
        ck_assert_int_eq(fcntl(p.moved, F_GETFL) & O_NONBLOCK, O_NONBLOCK);

        /* A real request through the passed socket. */
        F.server = server_on(p.moved, &F.limits);
        strcpy(F.sock, path);
        c = call_add(0, "GET", "/v1/bytes");
        run_clients();
        ck_assert_int_eq(c->status, 200);
        close(sock);
}
END_TEST

START_TEST(test_listen_fd_names) {
        char path[160], fallback[160];
        struct stat st;
        int sock, fd = -EBADF;
        bool activated = false;
        Passed p;

        snprintf(path, sizeof(path), "%s/passed.sock", F.dir);
        snprintf(fallback, sizeof(fallback), "%s/fallback.sock", F.dir);
        sock = make_listener(path);

        /* One fd without a name: accepted. */
        p = listen_passed(sock, 0, 1, NULL, fallback);
        ck_assert_int_eq(p.r, 0);
        ck_assert_int_eq(p.fd, SD_LISTEN_FDS_START);
        ck_assert(p.activated);
        close(p.moved);
        /* The default name (the socket unit's): accepted. */
        p = listen_passed(sock, 0, 1, "tasad-scheduler.socket", fallback);
        ck_assert(p.r == 0 && p.activated && p.fd == SD_LISTEN_FDS_START);
        close(p.moved);
        /* One fd named for something else: not ours, the socket is made at the path. */
        p = listen_passed(sock, 0, 1, "results", fallback);
        ck_assert_int_eq(p.r, 0);
        ck_assert(!p.activated);
        ck_assert_int_eq(stat(fallback, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        close(p.fd);

        /* Ours by name but not a listening socket: refused. */
        fd = open(fallback, O_RDONLY | O_CLOEXEC | O_PATH);
        ck_assert_int_ge(fd, 0);
        p = listen_passed(fd, 0, 1, "api", fallback);
        ck_assert_int_eq(p.r, -ENOTSOCK);
        close(fd);
        fd = -EBADF;

        /* LISTEN_PID of another process: ignored. */
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_PID", "1", 1);
        ck_assert_int_eq(http_listen_fd("api", fallback, &fd, &activated), 0);
        ck_assert(!activated);
        listen_env_clear();
        close(fd);
        close(sock);
}
END_TEST

START_TEST(test_listen_fd_path) {
        char path[160], file[160];
        struct stat st;
        int fd = -EBADF, fd2 = -EBADF;
        bool activated = true;

        /* Parents created 0755, socket 0666, a stale socket replaced. */
        snprintf(path, sizeof(path), "%s/a/b/c/x.sock", F.dir);
        ck_assert_int_eq(http_listen_fd("api", path, &fd, &activated), 0);
        ck_assert(!activated);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_int_eq(st.st_mode & 07777, 0666);
        snprintf(file, sizeof(file), "%s/a/b", F.dir);
        ck_assert_int_eq(stat(file, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0755);
        ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
        ck_assert_int_gt(sd_is_socket_unix(fd, SOCK_STREAM, 1, path, 0), 0);
        close(fd);
        ck_assert_int_eq(http_listen_fd("api", path, &fd2, NULL), 0);
        close(fd2);

        /* Not a socket: left alone. */
        snprintf(file, sizeof(file), "%s/a/file", F.dir);
        close(open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
        fd = -EBADF;
        ck_assert_int_eq(http_listen_fd("api", file, &fd, NULL), -EEXIST);
        ck_assert_int_eq(fd, -EBADF);
        ck_assert_int_eq(http_listen_fd("api", NULL, &fd, NULL), -ENOENT);
}
END_TEST

static Suite *http_suite(void) {
        Suite *s = suite_create("http");
        TCase *tc = tcase_create("server");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_route_params_and_query);
        tcase_add_test(tc, test_root_and_keepalive);
        tcase_add_test(tc, test_bad_escapes);
        tcase_add_test(tc, test_not_found);
        tcase_add_test(tc, test_method_not_allowed);
        tcase_add_test(tc, test_method_not_allowed_long_allow);
        tcase_add_test(tc, test_json_echo);
        tcase_add_test(tc, test_too_large);
        tcase_add_test(tc, test_too_large_chunked_answered);
        tcase_add_test(tc, test_chunked_within_limit);
        tcase_add_test(tc, test_json_media_type);
        tcase_add_test(tc, test_long_poll);
        tcase_add_test(tc, test_client_disconnect);
        tcase_add_test(tc, test_wait_disconnect_cancels_reply);
        tcase_add_test(tc, test_free_with_kept_request);
        tcase_add_test(tc, test_keep_then_fail);
        tcase_add_test(tc, test_peer_credentials);
        tcase_add_test(tc, test_handler_errors);
        tcase_add_test(tc, test_failed_reply_completes);
        tcase_add_test(tc, test_hostile_heads);
        tcase_add_test(tc, test_body_above_limit_answered);
        tcase_add_test(tc, test_error_reply_drained);
        tcase_add_test(tc, test_keepalive_pipelined);
        tcase_add_test(tc, test_head_deadline);
        tcase_add_test(tc, test_handler_timeout);
        tcase_add_test(tc, test_connection_limit);
        tcase_add_test(tc, test_tcp_per_peer_and_auth);
        tcase_add_test(tc, test_buffered_limit);
        tcase_add_test(tc, test_body_rate);
        tcase_add_test(tc, test_no_body_routes);
        tcase_add_test(tc, test_expect_continue);
        tcase_add_test(tc, test_listen_fd_activated);
        tcase_add_test(tc, test_listen_fd_names);
        tcase_add_test(tc, test_listen_fd_path);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr;
        int failed;

        curl_global_init(CURL_GLOBAL_DEFAULT);
        sr = srunner_create(http_suite());
        srunner_run_all(sr, CK_VERBOSE);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        curl_global_cleanup();
        return failed == 0 ? 0 : 1;
}
