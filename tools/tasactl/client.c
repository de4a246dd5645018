#include "client.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>

#include "output.h"
#include "strutil.h"
#include "tasad-build.h"

#define CLIENT_CONNECT_TIMEOUT_MS 10000L
/* Job output is bounded by the queue's max_output; anything near this is not a tasad reply. */
#define CLIENT_REPLY_MAX (UINT64_C(1) << 30)

struct Client {
        CURL *curl;
        struct curl_slist *headers_json;        /* for requests with a JSON body */
        struct curl_slist *headers_none;        /* for requests without */
        char *sockets[_CLIENT_SERVICE_MAX];
        char *worker_name;      /* "tasad-worker@QUEUE" */
        char *note;
        char errbuf[CURL_ERROR_SIZE];
};

static const char *const service_names[_CLIENT_SERVICE_MAX] = {
        [CLIENT_SCHEDULER] = "tasad-scheduler",
        [CLIENT_RESULTS] = "tasad-results",
        [CLIENT_WORKER] = "tasad-worker",
};

static const char *service_name(const Client *c, ClientService s) {
        return s == CLIENT_WORKER && c->worker_name ? c->worker_name : service_names[s];
}

int client_set_worker(Client *c, const char *queue, const char *path) {
        char *p = strdup(path), *n = NULL;

        if (!p || asprintf(&n, "tasad-worker@%s", queue) < 0) {
                free(p);
                return -ENOMEM;
        }
        free(c->sockets[CLIENT_WORKER]);
        free(c->worker_name);
        c->sockets[CLIENT_WORKER] = p;
        c->worker_name = n;
        return 0;
}

/* A reply body being received. */
typedef struct Buffer {
        char *data;
        size_t len, alloc;
        bool too_large;
} Buffer;

void client_reply_done(ClientReply *r) {
        free(r->body);
        *r = (ClientReply){};
}

Client *client_free(Client *c) {
        if (!c)
                return NULL;
        curl_easy_cleanup(c->curl);
        curl_slist_free_all(c->headers_json);
        curl_slist_free_all(c->headers_none);
        for (size_t i = 0; i < _CLIENT_SERVICE_MAX; i++)
                free(c->sockets[i]);
        free(c->worker_name);
        free(c->note);
        free(c);
        curl_global_cleanup();
        return NULL;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Buffer *b = userdata;
        size_t n = size * nmemb;

        if (n > CLIENT_REPLY_MAX - b->len) {
                b->too_large = true;
                return 0; /* CURLE_WRITE_ERROR */
        }
        if (b->len + n + 1 > b->alloc) {
                size_t a = MAX(b->alloc * 2, b->len + n + 1);
                char *d = realloc(b->data, MAX(a, (size_t) 4096));

                if (!d)
                        return 0;
                b->data = d;
                b->alloc = MAX(a, (size_t) 4096);
        }
        memcpy(b->data + b->len, ptr, n);
        b->len += n;
        b->data[b->len] = 0;
        return n;
}

static bool client_is_url(const char *where) {
        return startswith(where, "http://");
}

static int headers_build(Client *c) {
        struct curl_slist *l;

        /* No "Expect: 100-continue" round trip before large bodies: the daemons answer at once.
         * A POST without a body (requeue) goes without curl's default form Content-Type. */
        l = curl_slist_append(NULL, "Expect:");
        if (!l)
                return -ENOMEM;
        c->headers_none = l;
        if (!curl_slist_append(l, "Content-Type:"))
                return -ENOMEM;
        l = curl_slist_append(NULL, "Expect:");
        if (!l)
                return -ENOMEM;
        c->headers_json = l;
        if (!curl_slist_append(l, "Content-Type: application/json"))
                return -ENOMEM;
        return 0;
}

/* Sets one curl option unless an earlier one failed (cc is the caller's CURLcode). */
#define SET(opt, val)                                                   \
        do {                                                            \
                if (cc == CURLE_OK)                                     \
                        cc = curl_easy_setopt(c->curl, opt, val);       \
        } while (0)

/* Options that hold for every request. */
static int handle_setup(Client *c) {
        CURLcode cc = CURLE_OK;

        SET(CURLOPT_ERRORBUFFER, c->errbuf);
        SET(CURLOPT_WRITEFUNCTION, on_data);
        SET(CURLOPT_CONNECTTIMEOUT_MS, CLIENT_CONNECT_TIMEOUT_MS);
        SET(CURLOPT_PROXY, "");         /* never a proxy from the environment */
        SET(CURLOPT_PROTOCOLS_STR, "http");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, "tasactl/" TASAD_VERSION);
        return cc == CURLE_OK ? 0 : -EINVAL;
}

int client_new(const char *scheduler_socket, const char *results_socket, Client **ret) {
        _cleanup_(client_freep) Client *c = NULL;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return output_error(ENOMEM, "cannot initialize libcurl");
        c = calloc(1, sizeof(Client));
        if (!c) {
                curl_global_cleanup();
                return output_oom();
        }
        c->curl = curl_easy_init();
        c->sockets[CLIENT_SCHEDULER] = strdup(scheduler_socket);
        c->sockets[CLIENT_RESULTS] = strdup(results_socket);
        if (!c->curl || !c->sockets[CLIENT_SCHEDULER] || !c->sockets[CLIENT_RESULTS] ||
            headers_build(c) < 0)
                return output_oom();
        if (handle_setup(c) < 0)
                return output_error(EINVAL, "cannot set up libcurl: %s", c->errbuf);
        *ret = TAKE_PTR(c);
        return 0;
}

int client_set_token(Client *c, const char *token) {
        _cleanup_free_ char *h = NULL;

        if (asprintf(&h, "Authorization: Bearer %s", token) < 0 ||
            !curl_slist_append(c->headers_none, h) || !curl_slist_append(c->headers_json, h))
                return output_oom();
        explicit_bzero(h, strlen(h));
        return 0;
}

int client_set_note(Client *c, const char *note) {
        char *n = NULL;

        if (note && !(n = strdup(note)))
                return output_oom();
        free(c->note);
        c->note = n;
        return 0;
}

/* One error line, with the note appended. */
_printf_(3, 4) static int client_error(Client *c, int error, const char *format, ...) {
        char buf[4096];
        va_list ap;

        errno = error < 0 ? -error : error; /* for %m */
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        if (c->note)
                return output_error(error, "%s; %s", buf, c->note);
        return output_error(error, "%s", buf);
}

static int path_append(char **path, const char *sep, const char *raw, const char *encoded) {
        char *n;

        if (asprintf(&n, "%s%s%s%s", *path ?: "", sep, raw ?: "", encoded ?: "") < 0)
                return -ENOMEM;
        free(*path);
        *path = n;
        return 0;
}

int client_path(Client *c, char **ret, ...) {
        _cleanup_free_ char *path = strdup("/v1");
        const char *seg;
        va_list ap;
        int r = path ? 0 : -ENOMEM;

        va_start(ap, ret);
        while (r >= 0 && (seg = va_arg(ap, const char *))) {
                char *e = curl_easy_escape(c->curl, seg, (int) strlen(seg));

                r = e ? path_append(&path, "/", NULL, e) : -ENOMEM;
                curl_free(e);
        }
        va_end(ap);
        if (r < 0)
                return output_oom();
        *ret = TAKE_PTR(path);
        return 0;
}

int client_path_query(Client *c, char **path, const char *name, const char *value) {
        char *e;
        int r;

        if (!value)
                return 0;
        e = curl_easy_escape(c->curl, value, (int) strlen(value));
        if (!e)
                return output_oom();
        r = path_append(path, strchr(*path, '?') ? "&" : "?", name, "=");
        if (r >= 0)
                r = path_append(path, "", NULL, e);
        curl_free(e);
        return r < 0 ? output_oom() : 0;
}

/* The per-request options: where, how and how long. */
static int request_setup(Client *c, ClientService s, const char *method, const char *url,
                         const char *json, uint64_t timeout_usec, Buffer *b) {
        bool post = streq(method, "POST"), body = post || streq(method, "PUT");
        CURLcode cc = CURLE_OK;

        SET(CURLOPT_URL, url);
        SET(CURLOPT_UNIX_SOCKET_PATH, client_is_url(c->sockets[s]) ? NULL : c->sockets[s]);
        SET(CURLOPT_WRITEDATA, b);
        SET(CURLOPT_TIMEOUT_MS, (long) MAX(timeout_usec / USEC_PER_MSEC, (uint64_t) 1));
        SET(CURLOPT_HTTPHEADER, json ? c->headers_json : c->headers_none);
        if (body) {
                SET(CURLOPT_POST, 1L);
                SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (json ? strlen(json) : 0));
                SET(CURLOPT_POSTFIELDS, json ?: "");
        } else
                SET(CURLOPT_HTTPGET, 1L);
        SET(CURLOPT_CUSTOMREQUEST, post || streq(method, "GET") ? NULL : method);
        if (cc != CURLE_OK)
                return client_error(c, EINVAL, "cannot set up request %s %s: %s", method, url,
                                    curl_easy_strerror(cc));
        return 0;
}

static int report_connect(Client *c, ClientService s, long os_errno, const char *detail) {
        const char *name = service_name(c, s), *path = c->sockets[s];

        switch (os_errno) {
        case 0:
                return client_error(c, ECONNREFUSED, "cannot reach %s at %s: %s", name, path, detail);
        case ENOENT:
        case ECONNREFUSED:
                return client_error(c, (int) os_errno, "cannot reach %s at %s: %m (is %s.socket running?)",
                                    name, path, name);
        case EACCES:
        case EPERM:
                return client_error(c, (int) os_errno, "cannot reach %s at %s: %m (check the permissions "
                                    "of the socket and its directory)", name, path);
        default:
                return client_error(c, (int) os_errno, "cannot reach %s at %s: %m", name, path);
        }
}

static int report_curl(Client *c, ClientService s, CURLcode cc, const Buffer *b, uint64_t timeout_usec,
                       const char *what) {
        const char *name = service_name(c, s), *path = c->sockets[s];
        const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);
        long os_errno = 0;

        (void) curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                return report_connect(c, s, os_errno, detail);
        case CURLE_OPERATION_TIMEDOUT:
                return client_error(c, ETIMEDOUT, "%s: %s at %s did not answer within %" PRIu64 "s",
                                    what, name, path, (timeout_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
        case CURLE_WRITE_ERROR:
                if (b->too_large)
                        return client_error(c, EFBIG, "%s: the reply of %s is larger than %" PRIu64
                                            " bytes", what, name, CLIENT_REPLY_MAX);
                return client_error(c, ENOMEM, "%s: out of memory", what);
        default:
                return client_error(c, EIO, "%s: request to %s at %s failed: %s", what, name, path,
                                    detail);
        }
}

int client_request(Client *c, ClientService s, const char *method, const char *path,
                   const json_t *body, uint64_t timeout_usec, const char *what, ClientReply *ret) {
        _cleanup_free_ char *url = NULL, *json = NULL;
        Buffer b = {};
        CURLcode cc;
        long status = 0;
        int r;

        /* A socket path, or the base URL of a TCP listener ("http://host:port"). */
        if (client_is_url(c->sockets[s]) ?
                    asprintf(&url, "%.*s%s", (int) strcspn(c->sockets[s] + 7, "/") + 7, c->sockets[s], path) < 0 :
                    asprintf(&url, "http://localhost%s", path) < 0)
                return output_oom();
        if (body && !(json = json_dumps(body, JSON_COMPACT)))
                return output_oom();
        r = request_setup(c, s, method, url, json, timeout_usec, &b);
        if (r < 0)
                return r;
        c->errbuf[0] = 0;
        cc = curl_easy_perform(c->curl);
        if (cc != CURLE_OK) {
                free(b.data);
                return report_curl(c, s, cc, &b, timeout_usec, what);
        }
        (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (!b.data && !(b.data = strdup(""))) /* callers may rely on the NUL */
                return output_oom();
        *ret = (ClientReply){ .status = status, .body = b.data, .body_len = b.len };
        return 0;
}

int client_errno_from_status(long status) {
        switch (status) {
        case 400:
                return -EINVAL;
        case 401:
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 409:
                return -EBUSY;
        case 413:
                return -E2BIG;
        case 503:
                return -EAGAIN;
        default:
                return -EPROTO;
        }
}

int client_reply_message(const ClientReply *r, char **ret) {
        _cleanup_(json_decrefp) json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
        json_t *err = json_object_get(j, "error");
        const char *msg = json_string_value(json_object_get(err, "message"));
        const char *code = json_string_value(json_object_get(err, "code"));
        char *m;

        if (msg && *msg)
                m = strdup(msg);
        else if (code && *code)
                m = strdup(code);
        else if (asprintf(&m, "unexpected reply (HTTP %ld)", r->status) < 0)
                m = NULL;
        if (!m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

int client_reply_check(Client *c, const ClientReply *r, const char *what) {
        _cleanup_free_ char *msg = NULL;
        int e;

        if (r->status >= 200 && r->status < 300)
                return 0;
        if (client_reply_message(r, &msg) < 0)
                return output_oom();
        /* It reaches the terminal through output_line(), control characters escaped. */
        e = r->status >= 400 ? client_errno_from_status(r->status) : -EPROTO;
        return client_error(c, e, "%s: %s", what, msg);
}

int client_call_json(Client *c, ClientService s, const char *method, const char *path,
                     const json_t *body, uint64_t timeout_usec, const char *what, json_t **ret) {
        _cleanup_(client_reply_done) ClientReply reply = {};
        json_error_t err;
        json_t *j;
        int r;

        r = client_request(c, s, method, path, body, timeout_usec, what, &reply);
        if (r < 0)
                return r;
        r = client_reply_check(c, &reply, what);
        if (r < 0)
                return r;
        j = json_loadb(reply.body, reply.body_len, 0, &err);
        if (!json_is_object(j)) {
                json_decref(j);
                return client_error(c, EPROTO, "%s: %s sent a reply that is not a JSON object%s%s",
                                    what, service_name(c, s), j ? "" : ": ", j ? "" : err.text);
        }
        *ret = j;
        return 0;
}

int client_call_bytes(Client *c, ClientService s, const char *path, const char *what,
                      ClientReply *ret) {
        _cleanup_(client_reply_done) ClientReply reply = {};
        int r;

        r = client_request(c, s, "GET", path, NULL, CLIENT_TIMEOUT_USEC, what, &reply);
        if (r < 0)
                return r;
        r = client_reply_check(c, &reply, what);
        if (r < 0)
                return r;
        *ret = reply;
        reply = (ClientReply){};
        return 0;
}
