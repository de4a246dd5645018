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
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "event-fixture.h"
#include "http.h"

#define MAX_BODY 64
#define MAX_CALLS 8
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

static int route_bytes(HttpRequest *req, void *userdata) {
        return http_reply_bytes(req, 200, "text/plain", "hello\0world", 11);
}

static const HttpRoute routes[] = {
        { "GET", "/v1/items/{id}/parts/{part}", route_item },
        { "DELETE", "/v1/items/{id}/parts/{part}", route_item_delete },
        { "POST", "/v1/echo", route_echo },
        { "GET", "/v1/wait", route_wait },
        { "GET", "/v1/hang", route_hang },
        { "GET", "/v1/keep-fail", route_keep_fail },
        { "GET", "/v1/keep-reply", route_keep_reply },
        { "GET", "/v1/peer", route_peer },
        { "GET", "/v1/fail", route_fail },
        { "GET", "/v1/nothing", route_nothing },
        { "GET", "/v1/twice", route_twice },
        { "GET", "/v1/bytes", route_bytes },
        { "GET", "/", route_item },
};

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

        snprintf(url, sizeof(url), "http://localhost%s", c->target);
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, F.sock);
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

static void call_run(CURL *curl, Call *c) {
        struct curl_slist *headers = NULL;
        char *ct = NULL;

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

/* Starts client 0, runs the loop until every started client is done, joins them. */
static void run_clients(void) {
        client_start(0);
        ck_assert_msg(event_run_until(F.event, all_clients_done, LOOP_TIMEOUT_USEC), "clients timed out");
        clients_join();
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

static void server_start(uint64_t max_body) {
        int fd = -EBADF;
        bool activated = true;

        ck_assert_int_eq(http_listen_fd("api", F.sock, &fd, &activated), 0);
        ck_assert(!activated);
        ck_assert_int_eq(http_server_new(F.event, fd, routes, ELEMENTSOF(routes), NULL, max_body,
                                         &F.server), 0);
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
        server_start(MAX_BODY);
}

static void teardown(void) {
        char cmd[128];

        clients_join();
        F.reply_timer = sd_event_source_disable_unref(F.reply_timer);
        F.server = http_server_free(F.server);
        sd_event_source_disable_unref(F.done_source);
        close(F.done_fd);
        F.event = sd_event_unref(F.event);
        for (size_t i = 0; i < MAX_CLIENTS; i++)
                for (size_t k = 0; k < F.clients[i].n_calls; k++) {
                        free(F.clients[i].calls[k].response);
                        free(F.clients[i].calls[k].content_type);
                        free(F.clients[i].calls[k].allow);
                }
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
        /* Bodies on their way are read and discarded, so the client reads its 413. */
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
        ck_assert_int_eq(large->uploaded, sizeof(big));
        free(assert_error(chunked, 413, "too-large"));
        free(assert_error(expect, 413, "too-large"));
        ck_assert_int_eq(expect->uploaded, 0);
        ck_assert_int_eq(fits->status, 200);
        ck_assert_str_eq(fits->response, "[1]");
        ck_assert_uint_eq(F.echo_calls, 1);
        ck_assert_int_eq(after->status, 200);
}
END_TEST

START_TEST(test_too_large_cut_off) {
        size_t len = 17 * 1024 * 1024;
        char *huge = malloc(len);
        Call *c, *after;

        ck_assert_ptr_nonnull(huge);
        memset(huge, ' ', len);
        c = call_add_body(0, "POST", "/v1/echo", huge, len);
        c->chunked = true;
        after = call_add(0, "GET", "/v1/bytes");
        run_clients();
        /* Past the discard limit the connection is closed without an answer. */
        ck_assert_int_ne(c->code, CURLE_OK);
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
        ck_assert_int_eq(http_server_new(F.event, p.moved, routes, ELEMENTSOF(routes), NULL,
                                         MAX_BODY, &F.server), 0);
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
        tcase_add_test(tc, test_json_echo);
        tcase_add_test(tc, test_too_large);
        tcase_add_test(tc, test_too_large_cut_off);
        tcase_add_test(tc, test_chunked_within_limit);
        tcase_add_test(tc, test_long_poll);
        tcase_add_test(tc, test_client_disconnect);
        tcase_add_test(tc, test_wait_disconnect_cancels_reply);
        tcase_add_test(tc, test_free_with_kept_request);
        tcase_add_test(tc, test_keep_then_fail);
        tcase_add_test(tc, test_peer_credentials);
        tcase_add_test(tc, test_handler_errors);
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
