/* lib/redis.c: the asynchronous RedisConn on a real sd-event loop against a real redis-server:
 * connecting and the state transitions, commands and scripts, the outage and reconnection with
 * backoff, command timeouts, AUTH and SELECT, and the reply helpers. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "keys.h"
#include "macro.h"
#include "parse.h"
#include "redis-fixture.h"
#include "redis.h"
#include "scripts.h"

#define STRV(...) ((const char *const[]){ __VA_ARGS__ })
#define MSEC USEC_PER_MSEC
#define SEC USEC_PER_SEC

static sd_event *event;
static RedisConn *conn;

/* What the state callback saw. */
static struct {
        unsigned up, down;
        int first_down_error;
        int last_error;
} watch;

/* One command's callback, copied while the reply is valid. */
typedef struct Result {
        unsigned calls;
        int error;
        bool has_reply;
        char text[512]; /* the reply rendered: "OK" "v" 42 nil [1,"queued"] (error: the message) */
        uint64_t at;    /* CLOCK_MONOTONIC µs */
} Result;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void append(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static void append(char *buf, size_t size, const char *fmt, ...) {
        size_t n = strlen(buf);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf + n, size - n, fmt, ap);
        va_end(ap);
}

static void render(char *buf, size_t size, const redisReply *r) {
        switch (r->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
        case REDIS_REPLY_ERROR:
                append(buf, size, "\"%.*s\"", (int) r->len, r->str);
                break;
        case REDIS_REPLY_INTEGER:
                append(buf, size, "%lld", r->integer);
                break;
        case REDIS_REPLY_NIL:
                append(buf, size, "nil");
                break;
        case REDIS_REPLY_ARRAY:
                append(buf, size, "[");
                for (size_t i = 0; i < r->elements; i++) {
                        if (i > 0)
                                append(buf, size, ",");
                        render(buf, size, r->element[i]);
                }
                append(buf, size, "]");
                break;
        default:
                append(buf, size, "?%d", r->type);
        }
}

static void on_result(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Result *res = userdata;

        ck_assert_ptr_eq(c, conn);
        res->calls++;
        res->error = error;
        res->has_reply = reply != NULL;
        res->text[0] = '\0';
        res->at = mono_usec();
        if (reply)
                render(res->text, sizeof(res->text), reply);
}

static void on_state(RedisConn *c, bool up, int error, void *userdata) {
        ck_assert_ptr_eq(userdata, &watch);
        if (up) {
                ck_assert_int_eq(error, 0);
                watch.up++;
        } else {
                if (watch.down++ == 0)
                        watch.first_down_error = error;
        }
        watch.last_error = error;
}

/* --- the loop ------------------------------------------------------------------------------- */

static void run_once(uint64_t deadline) {
        uint64_t now = mono_usec();

        ck_assert_int_ge(sd_event_run(event, deadline > now ? deadline - now : 0), 0);
}

/* Runs the loop until cond holds or timeout passes; evaluates to cond. */
#define RUN_UNTIL(cond, timeout)                                        \
        ({                                                              \
                uint64_t deadline_ = mono_usec() + (timeout);           \
                while (!(cond) && mono_usec() < deadline_)              \
                        run_once(deadline_);                            \
                (cond);                                                 \
        })

static void run_for(uint64_t usec) {
        uint64_t deadline = mono_usec() + usec;

        while (mono_usec() < deadline)
                run_once(deadline);
}

/* --- fixtures ------------------------------------------------------------------------------- */

static void conn_start(const char *query) {
        _cleanup_free_ char *url = NULL;
        RedisAddress addr = {};

        ck_assert_int_gt(asprintf(&url, "unix://%s%s", redis_fixture_socket(), query), 0);
        ck_assert_int_eq(redis_address_parse(url, &addr), 0);
        ck_assert_int_eq(redis_conn_new(event, &addr, "test", &conn), 0);
        redis_address_done(&addr);
        redis_conn_set_state_callback(conn, on_state, &watch);
        ck_assert_int_eq(redis_conn_start(conn), 0);
}

static void conn_up(const char *query) {
        conn_start(query);
        ck_assert_msg(RUN_UNTIL(watch.up == 1, 5 * SEC), "not up: %u down (error %d)",
                      watch.down, watch.last_error);
}

/* Sends a command and runs the loop until its callback. */
#define COMMAND(res, ...)                                                             \
        do {                                                                          \
                ck_assert_int_eq(redis_command(conn, on_result, (res), __VA_ARGS__), 0); \
                ck_assert_msg(RUN_UNTIL((res)->calls > 0, 5 * SEC), "no reply");        \
                ck_assert_uint_eq((res)->calls, 1);                                   \
        } while (0)

static void setup_event(void) {
        memset(&watch, 0, sizeof(watch));
        ck_assert_int_ge(sd_event_new(&event), 0);
        /* As the daemons do (daemon_block_signals): a peer closing on us must not kill us. */
        ck_assert(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
}

static void setup(void) {
        redis_fixture_start(STRV("--enable-debug-command", "yes", NULL));
        setup_event();
}

static void setup_auth(void) {
        /* The default user's password, and a second ACL user with its own. */
        redis_fixture_start(STRV("--requirepass", "s3cret", "--user", "alice", "on", ">alicepw",
                                 "~*", "&*", "+@all", NULL));
        setup_event();
}

static void teardown(void) {
        conn = redis_conn_free(conn);
        event = sd_event_unref(event);
        redis_fixture_teardown();
}

/* --- connecting ----------------------------------------------------------------------------- */

START_TEST(test_connect) {
        Result res = {};

        conn_start("");
        /* Connecting is asynchronous: nothing is up before the loop ran. */
        ck_assert(!redis_conn_is_up(conn));
        ck_assert_int_eq(redis_command(conn, on_result, &res, "PING"), -ENOTCONN);
        ck_assert(RUN_UNTIL(watch.up == 1, 5 * SEC));
        ck_assert(redis_conn_is_up(conn));
        ck_assert_str_eq(redis_conn_name(conn), "test");
        ck_assert_uint_eq(redis_conn_pending(conn), 0);
        /* Once, and nothing else happens while idle. */
        run_for(300 * MSEC);
        ck_assert_uint_eq(watch.up, 1);
        ck_assert_uint_eq(watch.down, 0);
        ck_assert_uint_eq(res.calls, 0);
}
END_TEST

START_TEST(test_not_connected) {
        Result res = {};
        const char *argv[] = { "k" };

        conn_start("");
        ck_assert_int_eq(redis_command(conn, on_result, &res, "GET k"), -ENOTCONN);
        ck_assert_int_eq(redis_command_argv(conn, on_result, &res, 2,
                                            (const char *[]){ "GET", "k" }, NULL),
                         -ENOTCONN);
        ck_assert_int_eq(redis_script(conn, SCRIPT_PROMOTE, on_result, &res, 1, 1, argv, NULL),
                         -ENOTCONN);
        ck_assert_uint_eq(redis_conn_pending(conn), 0);
        ck_assert(RUN_UNTIL(watch.up == 1, 5 * SEC));
        ck_assert_uint_eq(res.calls, 0);
}
END_TEST

START_TEST(test_refused) {
        /* Nobody listens: down is reported once, although every attempt fails. */
        redis_fixture_stop();
        conn_start("");
        ck_assert(RUN_UNTIL(watch.down == 1, 2 * SEC));
        ck_assert_int_lt(watch.first_down_error, 0);
        run_for(1600 * MSEC);
        ck_assert_uint_eq(watch.down, 1);
        ck_assert_uint_eq(watch.up, 0);
        /* The server appears: up without anybody asking. */
        redis_fixture_restart();
        ck_assert(RUN_UNTIL(watch.up == 1, 7 * SEC));
        ck_assert_uint_eq(watch.down, 1);
}
END_TEST

/* --- commands ------------------------------------------------------------------------------- */

START_TEST(test_commands) {
        Result set = {}, get = {}, incr = {}, bin = {}, getbin = {}, bad = {}, nil = {};

        conn_up("");
        /* Pipelined: three in flight, answered in order. */
        ck_assert_int_eq(redis_command(conn, on_result, &set, "SET %s %s", "k", "v"), 0);
        ck_assert_int_eq(redis_command(conn, on_result, &get, "GET %s", "k"), 0);
        ck_assert_int_eq(redis_command(conn, on_result, &incr, "INCR n"), 0);
        ck_assert_uint_eq(redis_conn_pending(conn), 3);
        ck_assert(RUN_UNTIL(incr.calls == 1, 5 * SEC));
        ck_assert_uint_eq(redis_conn_pending(conn), 0);
        ck_assert_uint_eq(set.calls, 1);
        ck_assert_int_eq(set.error, 0);
        ck_assert_str_eq(set.text, "\"OK\"");
        ck_assert_uint_eq(get.calls, 1);
        ck_assert_str_eq(get.text, "\"v\"");
        ck_assert_uint_le(set.at, get.at);
        ck_assert_uint_le(get.at, incr.at);
        ck_assert_str_eq(incr.text, "1");
        ck_assert_int_eq(incr.error, 0);

        /* Binary-safe argv. */
        ck_assert_int_eq(redis_command_argv(conn, on_result, &bin, 3,
                                            (const char *[]){ "SET", "b", "x\0y" },
                                            (const size_t[]){ 3, 1, 3 }),
                         0);
        ck_assert(RUN_UNTIL(bin.calls == 1, 5 * SEC));
        COMMAND(&getbin, "STRLEN b");
        ck_assert_str_eq(getbin.text, "3");

        COMMAND(&nil, "GET %s", "missing");
        ck_assert_int_eq(nil.error, 0);
        ck_assert(nil.has_reply);
        ck_assert_str_eq(nil.text, "nil");

        /* A Redis error reply comes with -EIO and the reply. */
        COMMAND(&bad, "INCR %s", "k");
        ck_assert_int_eq(bad.error, -EIO);
        ck_assert(bad.has_reply);
        ck_assert_str_eq(bad.text, "\"ERR value is not an integer or out of range\"");
        /* The connection stays up. */
        ck_assert(redis_conn_is_up(conn));
        ck_assert_uint_eq(watch.down, 0);

        /* A command nobody waits for. */
        ck_assert_int_eq(redis_command(conn, NULL, NULL, "SET quiet 1"), 0);
        ck_assert(RUN_UNTIL(redis_conn_pending(conn) == 0, 5 * SEC));
}
END_TEST

START_TEST(test_script) {
        _cleanup_(queue_keys_freep) QueueKeys *k = NULL;
        _cleanup_free_ char *jk = NULL;
        Result exists = {}, res = {}, state = {};
        const char *argv[2 + _SCRIPT_MAX] = { "SCRIPT", "EXISTS" };

        conn_up("");
        /* Every script was loaded on connect. */
        for (ScriptId i = 0; i < _SCRIPT_MAX; i++)
                argv[2 + i] = script_sha(i);
        ck_assert_int_eq(redis_command_argv(conn, on_result, &exists, ELEMENTSOF(argv), argv, NULL),
                         0);
        ck_assert(RUN_UNTIL(exists.calls == 1, 5 * SEC));
        ck_assert_str_eq(exists.text, "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]");
        ck_assert_int_eq(_SCRIPT_MAX, 17);

        ck_assert_int_eq(queue_keys_new("tasad", "q", &k), 0);
        jk = queue_key_job(k, "j1");
        ck_assert_int_eq(redis_script(conn, SCRIPT_SUBMIT, on_result, &res, 3, 9,
                                      (const char *[]){ jk, k->ready, jk, "j1", "2:ok,", "", "",
                                                        "", "60" },
                                      NULL),
                         0);
        ck_assert(RUN_UNTIL(res.calls == 1, 5 * SEC));
        ck_assert_int_eq(res.error, 0);
        ck_assert_str_eq(res.text, "[1,\"queued\"]");
        COMMAND(&state, "HGET %s state", jk);
        ck_assert_str_eq(state.text, "\"queued\"");
}
END_TEST

/* --- losing the server ---------------------------------------------------------------------- */

/* A listener in place of the server that accepts and hangs up at once: counts the attempts. */
static unsigned n_accepted;

static int on_fake_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

        if (c >= 0) {
                n_accepted++;
                close(c);
        }
        return 0;
}

static void fake_listen(sd_event_source **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        ck_assert_int_ge(fd, 0);
        strncpy(sa.sun_path, redis_fixture_socket(), sizeof(sa.sun_path) - 1);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 16), 0);
        ck_assert_int_ge(sd_event_add_io(event, ret, fd, EPOLLIN, on_fake_accept, NULL), 0);
        ck_assert_int_ge(sd_event_source_set_io_fd_own(*ret, true), 0);
}

START_TEST(test_outage) {
        _cleanup_(queue_keys_freep) QueueKeys *k = NULL;
        sd_event_source *fake = NULL;
        Result set = {}, blpop = {}, again = {}, get = {}, script = {};

        conn_up("");
        COMMAND(&set, "SET kept v");
        /* Waiting for an answer when the server goes. */
        ck_assert_int_eq(redis_command(conn, on_result, &blpop, "BLPOP never 0"), 0);
        run_for(50 * MSEC);
        ck_assert_uint_eq(blpop.calls, 0);
        redis_fixture_stop();
        ck_assert(RUN_UNTIL(blpop.calls > 0, 5 * SEC));
        ck_assert_uint_eq(blpop.calls, 1);
        ck_assert_int_eq(blpop.error, -ECONNRESET);
        ck_assert(!blpop.has_reply);
        ck_assert_uint_eq(redis_conn_pending(conn), 0);
        ck_assert(RUN_UNTIL(watch.down == 1, 1 * SEC));
        ck_assert_int_eq(watch.first_down_error, -ECONNRESET);
        ck_assert(!redis_conn_is_up(conn));
        ck_assert_int_eq(redis_command(conn, on_result, &again, "PING"), -ENOTCONN);

        /* Down for a while: attempts fail (no socket), reported once. */
        run_for(1600 * MSEC);
        ck_assert_uint_eq(watch.down, 1);
        ck_assert_uint_eq(watch.up, 1);
        /* Attempts that connect but are dropped at once: still no new report, still trying. */
        fake_listen(&fake);
        ck_assert_msg(RUN_UNTIL(n_accepted >= 2, 12 * SEC), "%u attempts", n_accepted);
        ck_assert_uint_eq(watch.down, 1);
        ck_assert_uint_eq(watch.up, 1);
        ck_assert_uint_eq(again.calls, 0);
        fake = sd_event_source_disable_unref(fake);
        ck_assert_int_eq(unlink(redis_fixture_socket()), 0);

        /* Back: up again, the data (AOF) and the scripts (loaded again) are there. */
        redis_fixture_restart();
        ck_assert(RUN_UNTIL(watch.up == 2, 12 * SEC));
        ck_assert_uint_eq(watch.down, 1);
        COMMAND(&get, "GET kept");
        ck_assert_str_eq(get.text, "\"v\"");
        ck_assert_int_eq(queue_keys_new("tasad", "q", &k), 0);
        ck_assert_int_eq(redis_script(conn, SCRIPT_PROMOTE, on_result, &script, 2, 4,
                                      (const char *[]){ k->delayed, k->ready, k->job_prefix,
                                                        "10" },
                                      NULL),
                         0);
        ck_assert(RUN_UNTIL(script.calls == 1, 5 * SEC));
        ck_assert_int_eq(script.error, 0);
        ck_assert_str_eq(script.text, "[0,-1]");
}
END_TEST

START_TEST(test_reset) {
        Result blpop = {}, ping = {};

        conn_up("");
        ck_assert_int_eq(redis_command(conn, on_result, &blpop, "BLPOP never 0"), 0);
        run_for(50 * MSEC);
        redis_conn_reset(conn);
        /* At once, without running the loop. */
        ck_assert_uint_eq(blpop.calls, 1);
        ck_assert_int_eq(blpop.error, -ECONNRESET);
        ck_assert(!redis_conn_is_up(conn));
        ck_assert_uint_eq(watch.down, 1);
        ck_assert(RUN_UNTIL(watch.up == 2, 3 * SEC));
        ck_assert_uint_eq(watch.down, 1);
        COMMAND(&ping, "PING");
        ck_assert_str_eq(ping.text, "\"PONG\"");
}
END_TEST

START_TEST(test_free_pending) {
        Result blpop = {};

        conn_up("");
        ck_assert_int_eq(redis_command(conn, on_result, &blpop, "BLPOP never 0"), 0);
        run_for(50 * MSEC);
        /* on_result checks c == conn: keep conn set during the free. */
        redis_conn_free(conn);
        conn = NULL;
        ck_assert_uint_eq(blpop.calls, 1);
        ck_assert_int_eq(blpop.error, -ECANCELED);
        ck_assert(!blpop.has_reply);
        ck_assert_uint_eq(watch.down, 0);
        run_for(200 * MSEC);
        ck_assert_uint_eq(blpop.calls, 1);
}
END_TEST

/* --- command timeouts ----------------------------------------------------------------------- */

START_TEST(test_timeout) {
        Result slow = {};
        uint64_t t0;

        conn_up("");
        redis_conn_set_timeout(conn, 300 * MSEC);
        t0 = mono_usec();
        ck_assert_int_eq(redis_command(conn, on_result, &slow, "DEBUG SLEEP 2"), 0);
        ck_assert(RUN_UNTIL(slow.calls > 0, 5 * SEC));
        ck_assert_uint_eq(slow.calls, 1);
        ck_assert(!slow.has_reply);
        ck_assert_uint_ge(slow.at - t0, 300 * MSEC);
        ck_assert_uint_lt(slow.at - t0, 1000 * MSEC);
        ck_assert_int_eq(slow.error, -ETIMEDOUT);
}
END_TEST

START_TEST(test_timeout_recovers) {
        Result slow = {}, ping = {}, fast = {};

        conn_up("");
        redis_conn_set_timeout(conn, 300 * MSEC);
        /* Answers within the timeout are fine. */
        COMMAND(&fast, "DEBUG SLEEP 0.1");
        ck_assert_int_eq(fast.error, 0);
        ck_assert_str_eq(fast.text, "\"OK\"");
        ck_assert_int_eq(redis_command(conn, on_result, &slow, "DEBUG SLEEP 2"), 0);
        ck_assert(RUN_UNTIL(slow.calls > 0, 5 * SEC));
        ck_assert_int_lt(slow.error, 0);
        ck_assert_uint_eq(watch.down, 1);
        ck_assert(!redis_conn_is_up(conn));
        /* The server answers again after its 2 s: up again, and only one down on the way
         * although the attempts during the sleep time out too. */
        ck_assert(RUN_UNTIL(watch.up == 2, 10 * SEC));
        ck_assert_uint_eq(watch.down, 1);
        COMMAND(&ping, "PING");
        ck_assert_str_eq(ping.text, "\"PONG\"");
        ck_assert_uint_eq(slow.calls, 1);
        /* The down transition says why. */
        ck_assert_int_eq(watch.first_down_error, -ETIMEDOUT);
}
END_TEST

START_TEST(test_timeout_disabled) {
        Result slow = {};

        conn_up("");
        redis_conn_set_timeout(conn, 0);
        COMMAND(&slow, "DEBUG SLEEP 0.5");
        ck_assert_int_eq(slow.error, 0);
        ck_assert_uint_eq(watch.down, 0);
}
END_TEST

/* --- AUTH and SELECT ------------------------------------------------------------------------ */

START_TEST(test_auth_password) {
        Result ping = {};

        conn_up("?password=s3cret");
        ck_assert_uint_eq(watch.down, 0);
        COMMAND(&ping, "PING");
        ck_assert_str_eq(ping.text, "\"PONG\"");
}
END_TEST

START_TEST(test_auth_user_password) {
        Result who = {};

        conn_up("?user=alice&password=alicepw");
        COMMAND(&who, "ACL WHOAMI");
        ck_assert_str_eq(who.text, "\"alice\"");
}
END_TEST

START_TEST(test_auth_wrong_password) {
        conn_start("?password=wrong");
        ck_assert(RUN_UNTIL(watch.down == 1, 3 * SEC));
        ck_assert_int_eq(watch.first_down_error, -EACCES);
        run_for(1 * SEC);
        ck_assert_uint_eq(watch.up, 0);
        ck_assert_uint_eq(watch.down, 1);
        ck_assert(!redis_conn_is_up(conn));
}
END_TEST

START_TEST(test_auth_missing) {
        conn_start("");
        ck_assert(RUN_UNTIL(watch.down == 1, 3 * SEC));
        ck_assert_int_lt(watch.first_down_error, 0);
        run_for(1 * SEC);
        ck_assert_uint_eq(watch.up, 0);
        ck_assert_uint_eq(watch.down, 1);
        ck_assert(!redis_conn_is_up(conn));
}
END_TEST

static char *blocking_get(int db, const char *key) {
        redisContext *c = redis_fixture_connect();
        redisReply *r;
        char *v;

        r = redisCommand(c, "SELECT %d", db);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
        r = redisCommand(c, "GET %s", key);
        ck_assert_ptr_nonnull(r);
        v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : strdup("nil");
        freeReplyObject(r);
        redisFree(c);
        return v;
}

START_TEST(test_select_db) {
        Result set = {}, set2 = {};
        _cleanup_free_ char *v3 = NULL, *v0 = NULL, *w3 = NULL;

        conn_up("?db=3");
        COMMAND(&set, "SET where three");
        ck_assert_int_eq(set.error, 0);
        v3 = blocking_get(3, "where");
        v0 = blocking_get(0, "where");
        ck_assert_str_eq(v3, "three");
        ck_assert_str_eq(v0, "nil");
        /* Selected again after a reconnect. */
        redis_conn_reset(conn);
        ck_assert(RUN_UNTIL(watch.up == 2, 3 * SEC));
        COMMAND(&set2, "SET again yes");
        w3 = blocking_get(3, "again");
        ck_assert_str_eq(w3, "yes");
}
END_TEST

/* --- reply helpers -------------------------------------------------------------------------- */

START_TEST(test_reply_helpers) {
        redisReply s = { .type = REDIS_REPLY_STRING, .str = (char *) "42", .len = 2 };
        redisReply st = { .type = REDIS_REPLY_STATUS, .str = (char *) "OK", .len = 2 };
        redisReply bad = { .type = REDIS_REPLY_STRING, .str = (char *) "4x", .len = 2 };
        redisReply empty = { .type = REDIS_REPLY_STRING, .str = (char *) "", .len = 0 };
        redisReply i = { .type = REDIS_REPLY_INTEGER, .integer = -7 };
        redisReply nil = { .type = REDIS_REPLY_NIL };
        redisReply *elems[] = { &s, &i };
        redisReply arr = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = elems };
        long long v = 99;
        size_t len = 99;

        ck_assert_ptr_eq(redis_reply_element(&arr, 0), &s);
        ck_assert_ptr_eq(redis_reply_element(&arr, 1), &i);
        ck_assert_ptr_null(redis_reply_element(&arr, 2));
        ck_assert_ptr_null(redis_reply_element(&s, 0));
        ck_assert_ptr_null(redis_reply_element(NULL, 0));

        ck_assert_str_eq(redis_reply_string(&s, &len), "42");
        ck_assert_uint_eq(len, 2);
        ck_assert_str_eq(redis_reply_string(&st, NULL), "OK");
        ck_assert_ptr_null(redis_reply_string(&i, &len));
        ck_assert_ptr_null(redis_reply_string(&nil, &len));
        ck_assert_ptr_null(redis_reply_string(NULL, &len));
        ck_assert_uint_eq(len, 2);

        ck_assert_int_eq(redis_reply_integer(&i, &v), 0);
        ck_assert_int_eq(v, -7);
        ck_assert_int_eq(redis_reply_integer(&s, &v), 0);
        ck_assert_int_eq(v, 42);
        v = 99;
        ck_assert_int_eq(redis_reply_integer(&bad, &v), -EINVAL);
        ck_assert_int_eq(redis_reply_integer(&empty, &v), -EINVAL);
        ck_assert_int_eq(redis_reply_integer(&nil, &v), -EINVAL);
        ck_assert_int_eq(redis_reply_integer(&arr, &v), -EINVAL);
        ck_assert_int_eq(redis_reply_integer(NULL, &v), -ENODATA);
        ck_assert_int_eq(v, 99);
}
END_TEST

START_TEST(test_free_null) {
        ck_assert_ptr_null(redis_conn_free(NULL));
}
END_TEST

static Suite *redis_suite(void) {
        Suite *s = suite_create("redis");
        TCase *tc;

        tc = tcase_create("conn");
        tcase_add_unchecked_fixture(tc, redis_fixture_init, redis_fixture_cleanup);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_connect);
        tcase_add_test(tc, test_not_connected);
        tcase_add_test(tc, test_refused);
        tcase_add_test(tc, test_commands);
        tcase_add_test(tc, test_script);
        tcase_add_test(tc, test_outage);
        tcase_add_test(tc, test_reset);
        tcase_add_test(tc, test_free_pending);
        tcase_add_test(tc, test_timeout);
        tcase_add_test(tc, test_timeout_recovers);
        tcase_add_test(tc, test_timeout_disabled);
        tcase_add_test(tc, test_select_db);
        suite_add_tcase(s, tc);

        tc = tcase_create("auth");
        tcase_add_unchecked_fixture(tc, redis_fixture_init, redis_fixture_cleanup);
        tcase_add_checked_fixture(tc, setup_auth, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_auth_password);
        tcase_add_test(tc, test_auth_user_password);
        tcase_add_test(tc, test_auth_wrong_password);
        tcase_add_test(tc, test_auth_missing);
        suite_add_tcase(s, tc);

        tc = tcase_create("reply");
        tcase_add_test(tc, test_reply_helpers);
        tcase_add_test(tc, test_free_null);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(redis_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
