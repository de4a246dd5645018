/* The Lua scripts of docs/protocol.md (lib/lua/, embedded by lib/scripts.c), run with EVALSHA
 * against a real redis-server. Every step asserts the exact Redis state it leaves: the job hash,
 * the lists, the zset scores (against Redis' own TIME, read just before and after the call), the
 * done stream, the stats and batch counters and the TTLs. */
#include <check.h>
#include <ctype.h>
#include <stdbool.h>
#include <hiredis/hiredis.h>

#include "keys.h"
#include "macro.h"
#include "redis-fixture.h"
#include "scripts.h"

#define W1 "hostA:101:0000beef"
#define W2 "hostB:202:0000cafe"
#define W9 "hostC:909:0000dead"
#define ARGS "4:echo,5:hello,"
#define PAYLOAD "in\0put"
#define PAYLOAD_LEN 6
#define TIMEOUT "5000000"
#define RETENTION "3600"
#define LEASE "30000"
#define STARTED "1700000000000000"

DEFINE_TRIVIAL_CLEANUP_FUNC(redisReply *, freeReplyObject);
#define _cleanup_reply_ _cleanup_(freeReplyObjectp)

static redisContext *rc;
static QueueKeys *k;
static char *pool[1024]; /* strings the assertions return; freed by teardown */
static size_t n_pool;

static const char *keep(char *s) {
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_lt(n_pool, ELEMENTSOF(pool));
        return pool[n_pool++] = s;
}

static const char *jkey(const char *id) {
        return keep(queue_key_job(k, id));
}

static const char *pkey(const char *worker) {
        return keep(queue_key_proc(k, worker));
}

static const char *bkey(const char *batch) {
        return keep(queue_key_batch(k, batch));
}

/* --- commands ------------------------------------------------------------------------------- */

static redisReply *cmdv(size_t argc, const char *const *argv, const size_t *lens) {
        redisReply *r = redisCommandArgv(rc, (int) argc, (const char **) argv, lens);

        ck_assert_msg(r, "%s: %s", argv[0], rc->errstr);
        ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s: %s", argv[0], r->str);
        return r;
}

#define STRV(...) ((const char *const[]){ __VA_ARGS__ })
#define NARGS(...) ELEMENTSOF(STRV(__VA_ARGS__))
#define CMD(...) cmdv(NARGS(__VA_ARGS__), STRV(__VA_ARGS__), NULL)

static long long cmd_int(size_t argc, const char *const *argv) {
        _cleanup_reply_ redisReply *r = cmdv(argc, argv, NULL);

        ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "%s: reply type %d", argv[0], r->type);
        return r->integer;
}
#define CMD_INT(...) cmd_int(NARGS(__VA_ARGS__), STRV(__VA_ARGS__))

static void cmd_ok(size_t argc, const char *const *argv) {
        redisReply *r = cmdv(argc, argv, NULL);

        freeReplyObject(r);
}
#define CMD_OK(...) cmd_ok(NARGS(__VA_ARGS__), STRV(__VA_ARGS__))

/* EVALSHA of an embedded script; args are KEYS then ARGV, lens may be NULL. */
static redisReply *script(ScriptId id, int nkeys, size_t n, const char *const *args,
                          const size_t *lens) {
        const char *argv[64];
        size_t argl[64];
        char nk[16];

        ck_assert_uint_le(n + 3, ELEMENTSOF(argv));
        snprintf(nk, sizeof(nk), "%d", nkeys);
        argv[0] = "EVALSHA";
        argv[1] = script_sha(id);
        argv[2] = nk;
        for (size_t i = 0; i < 3; i++)
                argl[i] = strlen(argv[i]);
        for (size_t i = 0; i < n; i++) {
                argv[i + 3] = args[i];
                argl[i + 3] = lens ? lens[i] : strlen(args[i]);
        }
        return cmdv(n + 3, argv, argl);
}
#define SCRIPT(id, nkeys, ...) script(id, nkeys, NARGS(__VA_ARGS__), STRV(__VA_ARGS__), NULL)

/* Milliseconds on Redis' clock, the way common.lua computes them. */
static long long redis_now(void) {
        _cleanup_reply_ redisReply *r = CMD("TIME");

        ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
        ck_assert_uint_eq(r->elements, 2);
        return atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
}

/* --- rendering state as exact strings ------------------------------------------------------- */

static char *escape(const char *s, size_t n) {
        char *out = malloc(4 * n + 1), *p = out;

        ck_assert_ptr_nonnull(out);
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c >= 0x20 && c < 0x7f && c != '\\')
                        *p++ = (char) c;
                else
                        p += sprintf(p, "\\x%02x", c);
        }
        *p = '\0';
        return out;
}

static char *join(char **parts, size_t n, const char *sep) {
        size_t len = 1;
        char *out;

        for (size_t i = 0; i < n; i++)
                len += strlen(parts[i]) + strlen(sep);
        out = calloc(1, len);
        ck_assert_ptr_nonnull(out);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        strcat(out, sep);
                strcat(out, parts[i]);
        }
        return out;
}

static char *strjoin3(const char *a, const char *b, const char *c) {
        char *s;

        ck_assert_int_gt(asprintf(&s, "%s%s%s", a, b, c), 0);
        return s;
}

static void free_parts(char **parts, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(parts[i]);
        free(parts);
}

/* A reply as text: strings quoted and escaped, integers bare, nil, arrays in brackets. */
static char *render(const redisReply *r) {
        char *s, **parts;

        switch (r->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS: {
                _cleanup_free_ char *e = escape(r->str, r->len);
                ck_assert_int_gt(asprintf(&s, "\"%s\"", e), 0);
                return s;
        }
        case REDIS_REPLY_INTEGER:
                ck_assert_int_gt(asprintf(&s, "%lld", r->integer), 0);
                return s;
        case REDIS_REPLY_NIL:
                return strdup("nil");
        case REDIS_REPLY_ARRAY: {
                _cleanup_free_ char *inner = NULL;

                parts = calloc(r->elements + 1, sizeof(char *));
                ck_assert_ptr_nonnull(parts);
                for (size_t i = 0; i < r->elements; i++)
                        parts[i] = render(r->element[i]);
                inner = join(parts, r->elements, ",");
                free_parts(parts, r->elements);
                ck_assert_int_gt(asprintf(&s, "[%s]", inner), 0);
                return s;
        }
        default:
                ck_abort_msg("unexpected reply type %d", r->type);
        }
        return NULL;
}

static const char *rendered(redisReply *r) {
        const char *s = keep(render(r));

        freeReplyObject(r);
        return s;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool in_list(const char *s, const char *const *l) {
        for (; l && *l; l++)
                if (streq(s, *l))
                        return true;
        return false;
}

/* A hash as "f1=v1 f2=v2 …" sorted by field; fields in mask render as "f=*" (times). */
static const char *hash_masked(const char *key, const char *const *mask) {
        _cleanup_reply_ redisReply *r = CMD("HGETALL", key);
        size_t n = r->elements / 2;
        char **parts = calloc(n + 1, sizeof(char *));

        ck_assert_ptr_nonnull(parts);
        for (size_t i = 0; i < n; i++) {
                const redisReply *f = r->element[2 * i], *v = r->element[2 * i + 1];
                _cleanup_free_ char *ev = escape(v->str, v->len);

                ck_assert_int_gt(asprintf(&parts[i], "%s=%s", f->str,
                                          in_list(f->str, mask) ? "*" : ev), 0);
        }
        qsort(parts, n, sizeof(char *), cmp_str);
        const char *s = keep(join(parts, n, " "));
        free_parts(parts, n);
        return s;
}

static const char *hash(const char *key) {
        return hash_masked(key, NULL);
}

#define TIMES STRV("created", "finished", NULL)

/* A list left to right, space separated. */
static const char *list(const char *key) {
        _cleanup_reply_ redisReply *r = CMD("LRANGE", key, "0", "-1");
        char **parts = calloc(r->elements + 1, sizeof(char *));

        ck_assert_ptr_nonnull(parts);
        for (size_t i = 0; i < r->elements; i++)
                parts[i] = escape(r->element[i]->str, r->element[i]->len);
        const char *s = keep(join(parts, r->elements, " "));
        free_parts(parts, r->elements);
        return s;
}

/* The done stream's entries, "f=v f=v" each in order, separated by "; ". */
static const char *stream(const char *key) {
        _cleanup_reply_ redisReply *r = CMD("XRANGE", key, "-", "+");
        char **parts = calloc(r->elements + 1, sizeof(char *));

        ck_assert_ptr_nonnull(parts);
        for (size_t i = 0; i < r->elements; i++) {
                const redisReply *fv = r->element[i]->element[1];
                char **kv = calloc(fv->elements / 2 + 1, sizeof(char *));

                ck_assert_ptr_nonnull(kv);
                for (size_t j = 0; j < fv->elements / 2; j++)
                        ck_assert_int_gt(asprintf(&kv[j], "%s=%s", fv->element[2 * j]->str,
                                                  fv->element[2 * j + 1]->str), 0);
                parts[i] = join(kv, fv->elements / 2, " ");
                free_parts(kv, fv->elements / 2);
        }
        const char *s = keep(join(parts, r->elements, "; "));
        free_parts(parts, r->elements);
        return s;
}

/* All keys, sorted. */
static const char *keys(void) {
        _cleanup_reply_ redisReply *r = CMD("KEYS", "*");
        char **parts = calloc(r->elements + 1, sizeof(char *));

        ck_assert_ptr_nonnull(parts);
        for (size_t i = 0; i < r->elements; i++)
                parts[i] = strdup(r->element[i]->str);
        qsort(parts, r->elements, sizeof(char *), cmp_str);
        const char *s = keep(join(parts, r->elements, " "));
        free_parts(parts, r->elements);
        return s;
}

/* A zset member's score (scores here are integer ms), -1 when absent. */
static long long zscore(const char *key, const char *member) {
        _cleanup_reply_ redisReply *r = CMD("ZSCORE", key, member);

        if (r->type == REDIS_REPLY_NIL)
                return -1;
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        return atoll(r->str);
}

/* A hash field as a string, "(nil)" when absent. */
static const char *hget(const char *key, const char *field) {
        _cleanup_reply_ redisReply *r = CMD("HGET", key, field);

        if (r->type == REDIS_REPLY_NIL)
                return "(nil)";
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        return keep(escape(r->str, r->len));
}

static long long hget_ll(const char *key, const char *field) {
        _cleanup_reply_ redisReply *r = CMD("HGET", key, field);

        ck_assert_msg(r->type == REDIS_REPLY_STRING, "%s has no field %s", key, field);
        return atoll(r->str);
}

#define ck_assert_between(v, lo, hi)              \
        do {                                      \
                long long v_ = (v);               \
                ck_assert_int_ge(v_, (lo));       \
                ck_assert_int_le(v_, (hi));       \
        } while (0)

/* A TTL set to the retention (3600 s) a moment ago. */
#define ck_assert_retention(key) ck_assert_between(CMD_INT("TTL", (key)), 3590, 3600)

/* --- the job life cycle, as the daemons drive it -------------------------------------------- */

static void submit_full(const char *id, const char *payload, size_t payload_len,
                        const char *timeout, const char *batch, const char *expect) {
        const char *bk = batch[0] ? bkey(batch) : jkey(id);
        const char *argv[] = { jkey(id), k->ready, bk, id, ARGS, payload, timeout, batch,
                               RETENTION };
        size_t lens[ELEMENTSOF(argv)];

        for (size_t i = 0; i < ELEMENTSOF(argv); i++)
                lens[i] = argv[i] == payload ? payload_len : strlen(argv[i]);
        ck_assert_str_eq(rendered(script(SCRIPT_SUBMIT, 3, ELEMENTSOF(argv), argv, lens)), expect);
}

static void submit(const char *id, const char *batch) {
        submit_full(id, "", 0, "", batch, "[1,\"queued\"]");
}

/* BLMOVE's non-blocking twin, as a worker takes a job into its proc list. */
static void take(const char *worker, const char *id) {
        _cleanup_reply_ redisReply *r = CMD("LMOVE", k->ready, pkey(worker), "RIGHT", "LEFT");

        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(r->str, id);
}

static redisReply *start(const char *id, const char *worker) {
        return SCRIPT(SCRIPT_START, 6, pkey(worker), jkey(id), k->leases, k->workers, k->done,
                      k->stats, id, worker, LEASE, STARTED, RETENTION, k->batch_prefix);
}

static void run(const char *worker, const char *id, const char *attempt) {
        _cleanup_reply_ redisReply *r = NULL;

        take(worker, id);
        r = start(id, worker);
        ck_assert_str_eq(r->element[0]->str, "run");
        ck_assert_int_eq(r->element[1]->integer, atoll(attempt));
}

static redisReply *finish_full(const char *id, const char *worker, const char *attempt,
                               const char *outcome, const char *exit_code, const char *retryable,
                               const char *retries, const char *backoff, const char *bmax) {
        return SCRIPT(SCRIPT_FINISH, 8, jkey(id), k->leases, k->delayed, k->dead, k->done,
                      k->stats, k->ready, k->workers, id, worker, attempt, outcome, exit_code, "",
                      "out\n", "0", "", "0", "1500", "1200", "2048", retryable, retries, backoff,
                      bmax, RETENTION, k->batch_prefix, "", "0", k->job_prefix, LEASE, STARTED);
}

static redisReply *finish(const char *id, const char *worker, const char *attempt,
                          const char *outcome) {
        return finish_full(id, worker, attempt, outcome,
                           strncmp(outcome, "exit:", 5) == 0 ? outcome + 5 : "-1", "1", "3",
                           "1000", "60000");
}

/* What a worker with n free slots and no BLMOVE does (take.lua). */
static redisReply *take_script(const char *worker, const char *n) {
        return SCRIPT(SCRIPT_TAKE, 5, k->ready, k->leases, k->workers, k->done, k->stats, worker,
                      LEASE, STARTED, RETENTION, k->batch_prefix, k->job_prefix, n);
}

/* A successful attempt recorded with its spawn time, taking n jobs in the same step. */
static redisReply *finish_take(const char *id, const char *worker, const char *attempt,
                               const char *n) {
        return SCRIPT(SCRIPT_FINISH, 8, jkey(id), k->leases, k->delayed, k->dead, k->done,
                      k->stats, k->ready, k->workers, id, worker, attempt, "exit:0", "0", "", "",
                      "0", "", "0", "1500", "1200", "2048", "0", "0", "1000", "60000", RETENTION,
                      k->batch_prefix, "1700000000000123", n, k->job_prefix, LEASE,
                      "1700000000000999");
}

static redisReply *cancel(const char *id) {
        return SCRIPT(SCRIPT_CANCEL, 5, jkey(id), k->ready, k->delayed, k->done, k->stats, id,
                      RETENTION, k->batch_prefix);
}

static redisReply *reap(const char *max_redeliveries) {
        return SCRIPT(SCRIPT_REAP, 6, k->leases, k->workers, k->ready, k->dead, k->done,
                      k->stats, k->job_prefix, k->proc_prefix, max_redeliveries, "100", RETENTION,
                      k->batch_prefix, STRINGIFY(REAP_WORKER_GRACE_MS));
}

static redisReply *promote(const char *limit) {
        return SCRIPT(SCRIPT_PROMOTE, 2, k->delayed, k->ready, k->job_prefix, limit);
}

static redisReply *requeue(const char *id) {
        return SCRIPT(SCRIPT_REQUEUE, 3, jkey(id), k->dead, k->ready, id, k->batch_prefix);
}

/* A queued job moved to the delayed zset, due at `due` ms (as finish does for a retry). */
static void make_delayed(const char *id, long long due) {
        char score[32];

        snprintf(score, sizeof(score), "%lld", due);
        ck_assert_int_eq(CMD_INT("LREM", k->ready, "0", id), 1);
        CMD_OK("HSET", jkey(id), "state", "delayed");
        ck_assert_int_eq(CMD_INT("ZADD", k->delayed, score, id), 1);
}

/* --- fixtures ------------------------------------------------------------------------------- */

static void setup(void) {
        redis_fixture_start(NULL);
        rc = redis_fixture_connect();
        ck_assert_int_eq(queue_keys_new("tasad", "q", &k), 0);
        for (ScriptId i = 0; i < _SCRIPT_MAX; i++) {
                _cleanup_reply_ redisReply *r = CMD("SCRIPT", "LOAD", script_source(i));

                ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
                ck_assert_str_eq(r->str, script_sha(i));
        }
}

static void teardown(void) {
        while (n_pool > 0)
                free(pool[--n_pool]);
        k = queue_keys_free(k);
        if (rc)
                redisFree(rc);
        rc = NULL;
        redis_fixture_teardown();
}

/* --- scripts.c ------------------------------------------------------------------------------ */

START_TEST(test_sha) {
        for (ScriptId i = 0; i < _SCRIPT_MAX; i++) {
                const char *sha = script_sha(i);
                _cleanup_reply_ redisReply *r = CMD("SCRIPT", "LOAD", script_source(i));

                ck_assert_uint_eq(strlen(sha), 40);
                for (size_t j = 0; j < 40; j++)
                        ck_assert_msg(isdigit(sha[j]) || (sha[j] >= 'a' && sha[j] <= 'f'), "%s",
                                      sha);
                ck_assert_str_eq(r->str, sha);
                ck_assert_ptr_eq(script_sha(i), sha); /* computed once */
                for (ScriptId j = 0; j < i; j++)
                        ck_assert_str_ne(script_sha(j), sha);
                /* common.lua is the prelude of every script. */
                ck_assert_ptr_eq(strstr(script_source(i), "-- Prelude shared by every tasad"),
                                 script_source(i));
                ck_assert_ptr_nonnull(strstr(script_source(i), "local function finalize("));
        }
        {
                _cleanup_reply_ redisReply *r = CMD("SCRIPT", "EXISTS", script_sha(SCRIPT_SUBMIT),
                                                    script_sha(SCRIPT_REQUEUE));
                ck_assert_str_eq(rendered(TAKE_PTR(r)), "[1,1]");
        }
}
END_TEST

/* --- submit --------------------------------------------------------------------------------- */

START_TEST(test_submit_creates) {
        long long t0 = redis_now(), t1;

        submit_full("j1", PAYLOAD, PAYLOAD_LEN, TIMEOUT, "b1", "[1,\"queued\"]");
        t1 = redis_now();
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, batch=b1 created=* payload=in\\x00put "
                         "state=queued timeout=5000000 v=1");
        ck_assert_between(hget_ll(jkey("j1"), "created"), t0, t1);
        ck_assert_int_eq(CMD_INT("TTL", jkey("j1")), -1);
        ck_assert_str_eq(list(k->ready), "j1");
        ck_assert_str_eq(hash(bkey("b1")), "total=1");
        ck_assert_retention(bkey("b1"));
        ck_assert_str_eq(keys(), "tasad:{q}:batch:b1 tasad:{q}:job:j1 tasad:{q}:ready");
}
END_TEST

START_TEST(test_submit_minimal) {
        submit("j1", "");
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, created=* state=queued v=1");
        ck_assert_str_eq(keys(), "tasad:{q}:job:j1 tasad:{q}:ready");
}
END_TEST

START_TEST(test_submit_duplicate) {
        const char *before;

        submit_full("j1", PAYLOAD, PAYLOAD_LEN, TIMEOUT, "b1", "[1,\"queued\"]");
        before = hash(jkey("j1"));
        /* Same id, other content and batch: nothing changes. */
        submit_full("j1", "other", 5, "7", "b2", "[0,\"queued\"]");
        ck_assert_str_eq(hash(jkey("j1")), before);
        ck_assert_str_eq(list(k->ready), "j1");
        ck_assert_str_eq(hash(bkey("b1")), "total=1");
        ck_assert_int_eq(CMD_INT("EXISTS", bkey("b2")), 0);
        /* Another job of the batch counts. */
        submit("j2", "b1");
        ck_assert_str_eq(hash(bkey("b1")), "total=2");
        ck_assert_str_eq(list(k->ready), "j2 j1");
        /* The answer names the existing job's state. */
        CMD_OK("HSET", jkey("j1"), "state", "done");
        submit_full("j1", "", 0, "", "", "[0,\"done\"]");
        ck_assert_str_eq(list(k->ready), "j2 j1");
}
END_TEST

/* --- start ---------------------------------------------------------------------------------- */

START_TEST(test_start_runs) {
        long long t0, t1, lease;

        submit_full("j1", PAYLOAD, PAYLOAD_LEN, TIMEOUT, "", "[1,\"queued\"]");
        take(W1, "j1");
        ck_assert_str_eq(list(pkey(W1)), "j1");
        t0 = redis_now();
        ck_assert_str_eq(rendered(start("j1", W1)),
                         "[\"run\",1,\"4:echo,5:hello,\",\"in\\x00put\",\"5000000\",\"0\",\"1\"]");
        t1 = redis_now();
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=1 created=* payload=in\\x00put "
                         "started=1700000000000000 state=running timeout=5000000 v=1 "
                         "worker=" W1);
        ck_assert_int_eq(CMD_INT("EXISTS", pkey(W1)), 0);
        lease = zscore(k->leases, "j1");
        ck_assert_between(lease, t0 + 30000, t1 + 30000);
        ck_assert_int_eq(zscore(k->workers, W1), lease);
        ck_assert_int_eq(CMD_INT("ZCARD", k->leases), 1);
        ck_assert_int_eq(CMD_INT("ZCARD", k->workers), 1);
}
END_TEST

START_TEST(test_start_defaults) {
        /* No payload, no timeout: empty strings. */
        submit("j1", "");
        take(W1, "j1");
        ck_assert_str_eq(rendered(start("j1", W1)), "[\"run\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\"]");
}
END_TEST

START_TEST(test_start_reclaimed) {
        const char *before;
        long long lease;

        submit("j1", "");
        run(W1, "j1", "1");
        before = hash(jkey("j1"));
        lease = zscore(k->leases, "j1");
        /* No longer in the proc list: someone else owns it now. */
        ck_assert_str_eq(rendered(start("j1", W1)), "[\"skip\",\"reclaimed\"]");
        ck_assert_str_eq(hash(jkey("j1")), before);
        ck_assert_int_eq(zscore(k->leases, "j1"), lease);

        /* Taken, then given back by release before start. */
        submit("j2", "");
        take(W2, "j2");
        ck_assert_int_eq(CMD_INT("EVALSHA", script_sha(SCRIPT_RELEASE), "4", pkey(W2), k->ready,
                                 k->leases, k->workers, W2, "0"),
                         1);
        ck_assert_str_eq(rendered(start("j2", W2)), "[\"skip\",\"reclaimed\"]");
        ck_assert_str_eq(hash_masked(jkey("j2"), TIMES),
                         "args=4:echo,5:hello, created=* state=queued v=1");
        ck_assert_str_eq(list(k->ready), "j2");
        ck_assert_int_eq(zscore(k->leases, "j2"), -1);
}
END_TEST

START_TEST(test_start_missing) {
        CMD_OK("LPUSH", pkey(W1), "ghost");
        ck_assert_str_eq(rendered(start("ghost", W1)), "[\"skip\",\"missing\"]");
        ck_assert_str_eq(keys(), "");
}
END_TEST

START_TEST(test_start_cancelled) {
        submit("j1", "");
        take(W1, "j1");
        /* Cancelled between BLMOVE and start: state cancelled, not in ready. */
        ck_assert_str_eq(rendered(cancel("j1")), "[\"cancelled\"]");
        ck_assert_str_eq(rendered(start("j1", W1)), "[\"skip\",\"cancelled\"]");
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, created=* finished=* outcome=cancelled "
                         "state=cancelled v=1");
        ck_assert_int_eq(CMD_INT("EXISTS", pkey(W1)), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", k->leases), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", k->workers), 0);
}
END_TEST

/* --- renew ---------------------------------------------------------------------------------- */

START_TEST(test_renew_extends) {
        long long t0, t1, exp;

        submit("j1", "");
        submit("j2", "");
        run(W1, "j1", "1");
        run(W1, "j2", "1");
        CMD_OK("ZADD", k->leases, "5", "j1", "5", "j2");
        CMD_OK("ZADD", k->workers, "5", W1);
        t0 = redis_now();
        ck_assert_str_eq(rendered(SCRIPT(SCRIPT_RENEW, 4, k->leases, k->workers, jkey("j1"),
                                         jkey("j2"), W1, "60000", "j1", "1", "j2", "1")),
                         "[[],[]]");
        t1 = redis_now();
        exp = zscore(k->workers, W1);
        ck_assert_between(exp, t0 + 60000, t1 + 60000);
        ck_assert_int_eq(zscore(k->leases, "j1"), exp);
        ck_assert_int_eq(zscore(k->leases, "j2"), exp);
}
END_TEST

START_TEST(test_renew_lost) {
        submit("j1", "");
        run(W1, "j1", "1");
        CMD_OK("ZADD", k->leases, "5", "j1");
        /* Another attempt. */
        ck_assert_str_eq(rendered(SCRIPT(SCRIPT_RENEW, 3, k->leases, k->workers, jkey("j1"), W1,
                                         "60000", "j1", "2")),
                         "[[\"j1\"],[]]");
        ck_assert_int_eq(zscore(k->leases, "j1"), 5);
        /* Another worker: lost for it, though its own liveness is refreshed. */
        ck_assert_str_eq(rendered(SCRIPT(SCRIPT_RENEW, 3, k->leases, k->workers, jkey("j1"), W2,
                                         "60000", "j1", "1")),
                         "[[\"j1\"],[]]");
        ck_assert_int_eq(zscore(k->leases, "j1"), 5);
        ck_assert_int_gt(zscore(k->workers, W2), 5);
        /* A job that is no longer running, and one that does not exist. */
        CMD_OK("HSET", jkey("j1"), "state", "done");
        ck_assert_str_eq(rendered(SCRIPT(SCRIPT_RENEW, 4, k->leases, k->workers, jkey("j1"),
                                         jkey("nope"), W1, "60000", "j1", "1", "nope", "1")),
                         "[[\"j1\",\"nope\"],[]]");
        ck_assert_int_eq(zscore(k->leases, "j1"), 5);
        ck_assert_int_eq(zscore(k->leases, "nope"), -1);
}
END_TEST

START_TEST(test_renew_cancel) {
        long long t0;

        submit("j1", "");
        submit("j2", "");
        run(W1, "j1", "1");
        run(W1, "j2", "1");
        ck_assert_str_eq(rendered(cancel("j2")), "[\"cancelling\"]");
        t0 = redis_now();
        ck_assert_str_eq(rendered(SCRIPT(SCRIPT_RENEW, 4, k->leases, k->workers, jkey("j1"),
                                         jkey("j2"), W1, "60000", "j1", "1", "j2", "1")),
                         "[[],[\"j2\"]]");
        /* Still leased while it is being stopped. */
        ck_assert_int_ge(zscore(k->leases, "j2"), t0 + 60000);
}
END_TEST

/* --- finish --------------------------------------------------------------------------------- */

START_TEST(test_finish_done) {
        long long t0, t1;

        submit("j1", "b1");
        run(W1, "j1", "1");
        /* The batch's TTL is renewed by every job that ends. */
        CMD_OK("EXPIRE", bkey("b1"), "100");
        t0 = redis_now();
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "exit:0")), "[\"done\",0,[]]");
        t1 = redis_now();
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=1 batch=b1 cpu_us=1200 created=* detail= "
                         "err= err_truncated=0 exit_code=0 finished=* max_rss_kib=2048 "
                         "out=out\\x0a out_truncated=0 outcome=exit:0 started=1700000000000000 "
                         "state=done v=1 wall_us=1500 worker=" W1);
        ck_assert_between(hget_ll(jkey("j1"), "finished"), t0, t1);
        ck_assert_int_eq(zscore(k->leases, "j1"), -1);
        ck_assert_str_eq(hash(k->stats), "done=1");
        ck_assert_int_eq(CMD_INT("XLEN", k->done), 1);
        ck_assert_str_eq(stream(k->done), "id=j1 state=done batch=b1 left=0");
        ck_assert_str_eq(hash(bkey("b1")), "done=1 total=1");
        ck_assert_retention(jkey("j1"));
        ck_assert_retention(bkey("b1"));
        ck_assert_int_eq(CMD_INT("EXISTS", k->dead), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", k->delayed), 0);
}
END_TEST

START_TEST(test_finish_done_no_batch) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "exit:0")), "[\"done\",0,[]]");
        ck_assert_str_eq(stream(k->done), "id=j1 state=done");
        ck_assert_str_eq(keys(), "tasad:{q}:done tasad:{q}:job:j1 tasad:{q}:stats "
                                 "tasad:{q}:workers");
}
END_TEST

START_TEST(test_finish_stale) {
        const char *before;
        long long lease;

        submit("j1", "");
        run(W1, "j1", "1");
        before = hash(jkey("j1"));
        lease = zscore(k->leases, "j1");
        ck_assert_str_eq(rendered(finish("j1", W2, "1", "exit:0")), "[\"stale\",0,[]]");
        ck_assert_str_eq(rendered(finish("j1", W1, "2", "exit:0")), "[\"stale\",0,[]]");
        ck_assert_str_eq(rendered(finish("nope", W1, "1", "exit:0")), "[\"stale\",0,[]]");
        ck_assert_str_eq(hash(jkey("j1")), before);
        ck_assert_int_eq(zscore(k->leases, "j1"), lease);
        ck_assert_int_eq(CMD_INT("EXISTS", k->done), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", k->stats), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("nope")), 0);
        /* Finished once: a second result is stale too. */
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "exit:0")), "[\"done\",0,[]]");
        before = hash(jkey("j1"));
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "exit:1")), "[\"stale\",0,[]]");
        ck_assert_str_eq(hash(jkey("j1")), before);
        ck_assert_str_eq(hash(k->stats), "done=1");
        ck_assert_int_eq(CMD_INT("XLEN", k->done), 1);
}
END_TEST

/* Retries 3, backoff 1 s doubling up to 3 s: delayed 1000, 2000, 3000 (capped), then failed. */
START_TEST(test_finish_retry_backoff) {
        static const long long delays[] = { 1000, 2000, 3000 };
        char attempt[8], expect[64];
        long long t0, t1;

        submit("j1", "b1");
        for (size_t i = 0; i < ELEMENTSOF(delays); i++) {
                snprintf(attempt, sizeof(attempt), "%zu", i + 1);
                run(W1, "j1", attempt);
                t0 = redis_now();
                snprintf(expect, sizeof(expect), "[\"delayed\",%lld,[]]", delays[i]);
                ck_assert_str_eq(rendered(finish_full("j1", W1, attempt, "exit:3", "3", "1", "3",
                                                      "1000", "3000")),
                                 expect);
                t1 = redis_now();
                ck_assert_str_eq(hget(jkey("j1"), "state"), "delayed");
                ck_assert_int_eq(hget_ll(jkey("j1"), "failures"), (long long) i + 1);
                ck_assert_between(zscore(k->delayed, "j1"), t0 + delays[i], t1 + delays[i]);
                ck_assert_int_eq(zscore(k->leases, "j1"), -1);
                ck_assert_int_eq(CMD_INT("EXISTS", k->stats), 0);
                ck_assert_int_eq(CMD_INT("EXISTS", k->done), 0);
                ck_assert_int_eq(CMD_INT("EXISTS", k->dead), 0);
                ck_assert_str_eq(list(k->ready), "");
                ck_assert_int_eq(CMD_INT("TTL", jkey("j1")), -1);
                /* Make it due now and let promote bring it back. */
                CMD_OK("ZADD", k->delayed, "XX", "1", "j1");
                ck_assert_str_eq(rendered(promote("100")), "[1,-1]");
        }
        run(W1, "j1", "4");
        t0 = redis_now();
        ck_assert_str_eq(rendered(finish_full("j1", W1, "4", "exit:3", "3", "1", "3", "1000",
                                              "3000")),
                         "[\"failed\",0,[]]");
        t1 = redis_now();
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=4 batch=b1 cpu_us=1200 created=* detail= "
                         "err= err_truncated=0 exit_code=3 failures=4 finished=* "
                         "max_rss_kib=2048 out=out\\x0a out_truncated=0 outcome=exit:3 "
                         "started=1700000000000000 state=failed v=1 wall_us=1500 worker=" W1);
        ck_assert_between(zscore(k->dead, "j1"), t0, t1);
        ck_assert_int_eq(CMD_INT("EXISTS", k->delayed), 0);
        ck_assert_str_eq(hash(k->stats), "failed=1");
        ck_assert_str_eq(stream(k->done), "id=j1 state=failed batch=b1 left=0");
        ck_assert_str_eq(hash(bkey("b1")), "failed=1 total=1");
        ck_assert_retention(jkey("j1"));
}
END_TEST

START_TEST(test_finish_backoff_large) {
        /* The cap applies to big exponents too, and the delay is an integer number of ms. */
        submit("j1", "");
        run(W1, "j1", "1");
        CMD_OK("HSET", jkey("j1"), "failures", "60");
        ck_assert_str_eq(rendered(finish_full("j1", W1, "1", "timeout", "-1", "1", "100", "1500",
                                              "3600000")),
                         "[\"delayed\",3600000,[]]");
        ck_assert_int_eq(hget_ll(jkey("j1"), "failures"), 61);
}
END_TEST

START_TEST(test_finish_not_retryable) {
        long long t0, t1;

        submit("j1", "");
        run(W1, "j1", "1");
        t0 = redis_now();
        ck_assert_str_eq(rendered(finish_full("j1", W1, "1", "invalid", "-1", "0", "3", "1000",
                                              "60000")),
                         "[\"failed\",0,[]]");
        t1 = redis_now();
        ck_assert_str_eq(hget(jkey("j1"), "state"), "failed");
        ck_assert_int_eq(hget_ll(jkey("j1"), "failures"), 1);
        ck_assert_between(zscore(k->dead, "j1"), t0, t1);
        ck_assert_int_eq(CMD_INT("EXISTS", k->delayed), 0);
        ck_assert_str_eq(hash(k->stats), "failed=1");
        ck_assert_str_eq(stream(k->done), "id=j1 state=failed");
        ck_assert_retention(jkey("j1"));
}
END_TEST

START_TEST(test_finish_no_retries) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(finish_full("j1", W1, "1", "exit:1", "1", "1", "0", "1000",
                                              "60000")),
                         "[\"failed\",0,[]]");
        ck_assert_int_ge(zscore(k->dead, "j1"), 0);
}
END_TEST

START_TEST(test_finish_cancel_flag) {
        submit("j1", "b1");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(cancel("j1")), "[\"cancelling\"]");
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "signal:SIGTERM")), "[\"cancelled\",0,[]]");
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=1 batch=b1 cancel=1 cpu_us=1200 "
                         "created=* detail= err= err_truncated=0 exit_code=-1 finished=* "
                         "max_rss_kib=2048 out=out\\x0a out_truncated=0 "
                         "outcome=signal:SIGTERM started=1700000000000000 state=cancelled v=1 "
                         "wall_us=1500 worker=" W1);
        ck_assert_int_eq(zscore(k->leases, "j1"), -1);
        ck_assert_int_eq(CMD_INT("EXISTS", k->dead), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", k->delayed), 0);
        ck_assert_str_eq(hash(k->stats), "cancelled=1");
        ck_assert_str_eq(stream(k->done), "id=j1 state=cancelled batch=b1 left=0");
        ck_assert_str_eq(hash(bkey("b1")), "cancelled=1 total=1");
        ck_assert_retention(jkey("j1"));
}
END_TEST

START_TEST(test_finish_outcome_cancelled) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "cancelled")), "[\"cancelled\",0,[]]");
        ck_assert_int_eq(CMD_INT("HEXISTS", jkey("j1"), "failures"), 0);
        ck_assert_str_eq(hash(k->stats), "cancelled=1");
}
END_TEST

START_TEST(test_finish_done_despite_cancel) {
        /* The job completed before the cancel reached it: its result stands. */
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(cancel("j1")), "[\"cancelling\"]");
        ck_assert_str_eq(rendered(finish("j1", W1, "1", "exit:0")), "[\"done\",0,[]]");
        ck_assert_str_eq(hash(k->stats), "done=1");
}
END_TEST

/* --- release -------------------------------------------------------------------------------- */

START_TEST(test_release_proc) {
        const char *l;

        submit("a", "");
        submit("b", "");
        take(W1, "a");
        take(W1, "b");
        ck_assert_str_eq(list(pkey(W1)), "b a");
        submit("x", "");
        ck_assert_int_eq(CMD_INT("EVALSHA", script_sha(SCRIPT_RELEASE), "4", pkey(W1), k->ready,
                                 k->leases, k->workers, W1, "0"),
                         2);
        ck_assert_int_eq(CMD_INT("EXISTS", pkey(W1)), 0);
        /* Both at the right end, where workers take next, in the order they were taken
         * (a first); x still waits behind them. */
        l = list(k->ready);
        ck_assert_str_eq(l, "x b a");
        ck_assert_str_eq(hash_masked(jkey("a"), TIMES),
                         "args=4:echo,5:hello, created=* state=queued v=1");
}
END_TEST

START_TEST(test_release_running) {
        long long l2, l3, w1;

        submit("j1", "");
        submit("j2", "");
        submit("j3", "");
        run(W1, "j1", "1");
        run(W1, "j2", "1");
        run(W2, "j3", "1");
        submit("x", "");
        l2 = zscore(k->leases, "j2");
        l3 = zscore(k->leases, "j3");
        w1 = zscore(k->workers, W1);
        /* j1 matches; j2 with another attempt and j3 of another worker do not. */
        ck_assert_int_eq(CMD_INT("EVALSHA", script_sha(SCRIPT_RELEASE), "7", pkey(W1), k->ready,
                                 k->leases, k->workers, jkey("j1"), jkey("j2"), jkey("j3"), W1,
                                 "0", "j1", "1", "j2", "2", "j3", "1"),
                         1);
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=0 created=* started=1700000000000000 "
                         "state=queued v=1");
        ck_assert_str_eq(list(k->ready), "x j1");
        ck_assert_int_eq(zscore(k->leases, "j1"), -1);
        ck_assert_str_eq(hget(jkey("j2"), "state"), "running");
        ck_assert_str_eq(hget(jkey("j3"), "state"), "running");
        ck_assert_int_eq(zscore(k->leases, "j2"), l2);
        ck_assert_int_eq(zscore(k->leases, "j3"), l3);
        ck_assert_int_eq(zscore(k->workers, W1), w1);
        /* Started again: attempt 1, not 2. */
        run(W2, "j1", "1");
}
END_TEST

START_TEST(test_release_leaving) {
        submit("j1", "");
        run(W1, "j1", "1");
        CMD_OK("ZADD", k->workers, "99999999999999", W2);
        ck_assert_int_eq(CMD_INT("EVALSHA", script_sha(SCRIPT_RELEASE), "5", pkey(W1), k->ready,
                                 k->leases, k->workers, jkey("j1"), W1, "1", "j1", "1"),
                         1);
        ck_assert_int_eq(zscore(k->workers, W1), -1);
        ck_assert_int_eq(zscore(k->workers, W2), 99999999999999LL);
        ck_assert_str_eq(list(k->ready), "j1");
        ck_assert_int_eq(CMD_INT("EXISTS", k->leases), 0);
}
END_TEST

/* --- reap ----------------------------------------------------------------------------------- */

START_TEST(test_reap_expired_lease) {
        long long t0, t1, w1;

        submit("j1", "b1");
        run(W1, "j1", "1");
        submit("x", "");
        w1 = zscore(k->workers, W1);
        CMD_OK("ZADD", k->leases, "XX", "1", "j1");
        ck_assert_str_eq(rendered(reap("1")), "[1,0,0]");
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=1 batch=b1 created=* redeliveries=1 "
                         "started=1700000000000000 state=queued v=1");
        /* At the right end: it runs next. */
        ck_assert_str_eq(list(k->ready), "x j1");
        ck_assert_int_eq(CMD_INT("EXISTS", k->leases), 0);
        ck_assert_int_eq(zscore(k->workers, W1), w1);
        ck_assert_int_eq(CMD_INT("EXISTS", k->stats), 0);

        /* Second expiry: past max_redeliveries = 1, dead-lettered. */
        take(W2, "j1");
        ck_assert_str_eq(rendered(start("j1", W2)),
                         "[\"run\",2,\"4:echo,5:hello,\",\"\",\"\",\"1\",\"1\"]");
        CMD_OK("ZADD", k->leases, "XX", "1", "j1");
        t0 = redis_now();
        ck_assert_str_eq(rendered(reap("1")), "[0,1,0]");
        t1 = redis_now();
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, attempt=2 batch=b1 created=* "
                         "detail=lease expired 2 times finished=* outcome=lease-lost "
                         "redeliveries=2 started=1700000000000000 state=failed v=1");
        ck_assert_between(hget_ll(jkey("j1"), "finished"), t0, t1);
        ck_assert_between(zscore(k->dead, "j1"), t0, t1);
        ck_assert_str_eq(list(k->ready), "x");
        ck_assert_str_eq(hash(k->stats), "failed=1");
        ck_assert_str_eq(stream(k->done), "id=j1 state=failed batch=b1 left=0");
        ck_assert_str_eq(hash(bkey("b1")), "failed=1 total=1");
        ck_assert_retention(jkey("j1"));
}
END_TEST

START_TEST(test_reap_live_lease) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(reap("1")), "[0,0,0]");
        ck_assert_str_eq(hget(jkey("j1"), "state"), "running");
        ck_assert_int_gt(zscore(k->leases, "j1"), 0);
}
END_TEST

START_TEST(test_reap_dead_worker) {
        const char *l;

        submit("p1", "");
        submit("p2", "");
        take(W9, "p1");
        take(W9, "p2");
        CMD_OK("ZADD", k->workers, "1", W9, "99999999999999", W1);
        ck_assert_str_eq(rendered(reap("1")), "[2,0,1]");
        /* In the order they were taken: p1 (rightmost) goes next. */
        l = list(k->ready);
        ck_assert_str_eq(l, "p2 p1");
        ck_assert_int_eq(CMD_INT("EXISTS", pkey(W9)), 0);
        ck_assert_int_eq(zscore(k->workers, W9), -1);
        ck_assert_int_eq(zscore(k->workers, W1), 99999999999999LL);
}
END_TEST

/* A host that lost power while its worker waited in BLMOVE: Redis serves the dead
 * connection's BLMOVE after the worker's liveness expired. Its proc list is still swept while
 * the worker is within the grace, and the worker is forgotten only after it. */
START_TEST(test_reap_vanished_fetcher) {
        char score[32];

        snprintf(score, sizeof(score), "%lld", redis_now() - 1);
        CMD_OK("ZADD", k->workers, score, W9);
        ck_assert_str_eq(rendered(reap("1")), "[0,0,0]");
        ck_assert_int_gt(zscore(k->workers, W9), 0); /* within the grace: not forgotten */
        submit("late", "");
        take(W9, "late"); /* what the blocked BLMOVE does after the reaper saw W9 dead */
        ck_assert_str_eq(rendered(reap("1")), "[1,0,0]");
        ck_assert_str_eq(list(k->ready), "late");
        ck_assert_int_eq(CMD_INT("EXISTS", pkey(W9)), 0);
        snprintf(score, sizeof(score), "%lld", redis_now() - REAP_WORKER_GRACE_MS - 1);
        CMD_OK("ZADD", k->workers, score, W9);
        ck_assert_str_eq(rendered(reap("1")), "[0,0,1]");
        ck_assert_int_eq(zscore(k->workers, W9), -1);
}
END_TEST

START_TEST(test_reap_not_running) {
        const char *before;

        /* A lease left behind by a job that already ended is dropped, the job untouched. */
        submit("j1", "");
        CMD_OK("HSET", jkey("j1"), "state", "done");
        CMD_OK("ZADD", k->leases, "1", "j1");
        before = hash(jkey("j1"));
        ck_assert_str_eq(rendered(reap("1")), "[0,0,0]");
        ck_assert_int_eq(CMD_INT("EXISTS", k->leases), 0);
        ck_assert_str_eq(hash(jkey("j1")), before);
}
END_TEST

/* --- promote -------------------------------------------------------------------------------- */

START_TEST(test_promote) {
        long long t0, t1, due;
        _cleanup_reply_ redisReply *r = NULL;

        submit("d1", "");
        submit("d2", "");
        t0 = redis_now();
        make_delayed("d1", t0 - 1000);
        make_delayed("d2", t0 + 60000);
        ck_assert_str_eq(list(k->ready), "");
        r = promote("100");
        t1 = redis_now();
        ck_assert_uint_eq(r->elements, 2);
        ck_assert_int_eq(r->element[0]->integer, 1);
        due = r->element[1]->integer;
        ck_assert_between(due, t0 + 60000 - t1, 60000);
        ck_assert_str_eq(list(k->ready), "d1");
        ck_assert_str_eq(hget(jkey("d1"), "state"), "queued");
        ck_assert_str_eq(hget(jkey("d2"), "state"), "delayed");
        ck_assert_int_eq(zscore(k->delayed, "d1"), -1);
        ck_assert_int_eq(zscore(k->delayed, "d2"), t0 + 60000);
        /* Nothing due, nothing delayed. */
        CMD_OK("ZREM", k->delayed, "d2");
        ck_assert_str_eq(rendered(promote("100")), "[0,-1]");
}
END_TEST

START_TEST(test_promote_limit) {
        submit("d1", "");
        submit("d2", "");
        submit("d3", "");
        make_delayed("d1", 1);
        make_delayed("d2", 2);
        make_delayed("d3", 3);
        /* Two moved (the oldest due first); the third is overdue: 0 ms to wait. */
        ck_assert_str_eq(rendered(promote("2")), "[2,0]");
        ck_assert_str_eq(list(k->ready), "d2 d1");
        ck_assert_str_eq(rendered(promote("2")), "[1,-1]");
        ck_assert_str_eq(list(k->ready), "d3 d2 d1");
}
END_TEST

/* --- cancel --------------------------------------------------------------------------------- */

START_TEST(test_cancel_queued) {
        long long t0, t1;

        submit("c1", "b1");
        submit("x", "");
        t0 = redis_now();
        ck_assert_str_eq(rendered(cancel("c1")), "[\"cancelled\"]");
        t1 = redis_now();
        ck_assert_str_eq(list(k->ready), "x");
        ck_assert_str_eq(hash_masked(jkey("c1"), TIMES),
                         "args=4:echo,5:hello, batch=b1 created=* finished=* outcome=cancelled "
                         "state=cancelled v=1");
        ck_assert_between(hget_ll(jkey("c1"), "finished"), t0, t1);
        ck_assert_str_eq(hash(k->stats), "cancelled=1");
        ck_assert_str_eq(stream(k->done), "id=c1 state=cancelled batch=b1 left=0");
        ck_assert_str_eq(hash(bkey("b1")), "cancelled=1 total=1");
        ck_assert_retention(jkey("c1"));
        ck_assert_retention(bkey("b1"));
}
END_TEST

START_TEST(test_cancel_delayed) {
        submit("c1", "");
        make_delayed("c1", 99999999999999LL);
        ck_assert_str_eq(rendered(cancel("c1")), "[\"cancelled\"]");
        ck_assert_int_eq(CMD_INT("EXISTS", k->delayed), 0);
        ck_assert_str_eq(hget(jkey("c1"), "state"), "cancelled");
        ck_assert_str_eq(stream(k->done), "id=c1 state=cancelled");
}
END_TEST

START_TEST(test_cancel_running) {
        const char *before;
        long long lease;

        submit("c1", "");
        run(W1, "c1", "1");
        before = hash(jkey("c1"));
        lease = zscore(k->leases, "c1");
        ck_assert_str_eq(rendered(cancel("c1")), "[\"cancelling\"]");
        ck_assert_str_eq(hget(jkey("c1"), "cancel"), "1");
        CMD_OK("HDEL", jkey("c1"), "cancel");
        ck_assert_str_eq(hash(jkey("c1")), before);
        ck_assert_int_eq(zscore(k->leases, "c1"), lease);
        ck_assert_int_eq(CMD_INT("EXISTS", k->stats), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", k->done), 0);
}
END_TEST

START_TEST(test_cancel_final_and_missing) {
        submit("c1", "");
        run(W1, "c1", "1");
        ck_assert_str_eq(rendered(finish("c1", W1, "1", "exit:0")), "[\"done\",0,[]]");
        ck_assert_str_eq(rendered(cancel("c1")), "[\"final\",\"done\"]");
        submit("c2", "");
        ck_assert_str_eq(rendered(cancel("c2")), "[\"cancelled\"]");
        ck_assert_str_eq(rendered(cancel("c2")), "[\"final\",\"cancelled\"]");
        ck_assert_str_eq(hash(k->stats), "cancelled=1 done=1");
        ck_assert_int_eq(CMD_INT("XLEN", k->done), 2);
        ck_assert_str_eq(rendered(cancel("nope")), "[\"missing\"]");
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("nope")), 0);
}
END_TEST

/* A cancel accepted while the job ran ({'cancelling'}) must survive its worker dying (reap)
 * or giving it back at a drain timeout (release): the job must not run again, it ends
 * cancelled. Whether reap/release finalise it at once or the next start refuses it is theirs
 * to choose; both ways are accepted here. */
static void assert_cancel_kept(const char *id) {
        _cleanup_free_ char *pattern = NULL;

        ck_assert_int_gt(asprintf(&pattern, " %s ", id), 0);
        if (strstr(keep(strjoin3(" ", list(k->ready), " ")), pattern)) {
                _cleanup_reply_ redisReply *r = NULL;

                take(W2, id);
                r = start(id, W2);
                ck_assert_msg(!streq(r->element[0]->str, "run"),
                              "the cancelled job %s runs again (attempt %lld)", id,
                              r->element[1]->integer);
        }
        ck_assert_str_eq(hget(jkey(id), "state"), "cancelled");
        ck_assert_str_eq(hash(k->stats), "cancelled=1");
        ck_assert_str_eq(stream(k->done), keep(strjoin3("id=", id, " state=cancelled")));
}

START_TEST(test_cancel_survives_reap) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(cancel("j1")), "[\"cancelling\"]");
        /* The worker dies before it could stop the job. */
        CMD_OK("ZADD", k->leases, "XX", "1", "j1");
        (void) rendered(reap("5"));
        assert_cancel_kept("j1");
}
END_TEST

START_TEST(test_cancel_survives_release) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(cancel("j1")), "[\"cancelling\"]");
        /* The worker drains and gives the interrupted job back. */
        (void) CMD_INT("EVALSHA", script_sha(SCRIPT_RELEASE), "5", pkey(W1), k->ready, k->leases,
                       k->workers, jkey("j1"), W1, "1", "j1", "1");
        assert_cancel_kept("j1");
}
END_TEST

/* --- requeue -------------------------------------------------------------------------------- */

START_TEST(test_requeue_dead) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(finish_full("j1", W1, "1", "invalid", "-1", "0", "3", "1000",
                                              "60000")),
                         "[\"failed\",0,[]]");
        CMD_OK("HSET", jkey("j1"), "redeliveries", "2", "cancel", "1");
        submit("x", "");
        ck_assert_str_eq(rendered(requeue("j1")), "[\"queued\"]");
        ck_assert_str_eq(hget(jkey("j1"), "state"), "queued");
        ck_assert_int_eq(hget_ll(jkey("j1"), "attempt"), 0);
        ck_assert_int_eq(hget_ll(jkey("j1"), "failures"), 0);
        ck_assert_int_eq(hget_ll(jkey("j1"), "redeliveries"), 0);
        ck_assert_int_eq(CMD_INT("HEXISTS", jkey("j1"), "worker"), 0);
        ck_assert_int_eq(CMD_INT("HEXISTS", jkey("j1"), "cancel"), 0);
        ck_assert_int_eq(CMD_INT("TTL", jkey("j1")), -1);
        ck_assert_str_eq(list(k->ready), "j1 x");
        ck_assert_int_eq(CMD_INT("EXISTS", k->dead), 0);
        /* And it runs as a first attempt. */
        take(W1, "x");
        run(W1, "j1", "1");
}
END_TEST

START_TEST(test_requeue_not_dead) {
        const char *before;

        submit("j1", "");
        before = hash(jkey("j1"));
        ck_assert_str_eq(rendered(requeue("j1")), "[\"notdead\"]");
        ck_assert_str_eq(hash(jkey("j1")), before);
        ck_assert_str_eq(list(k->ready), "j1");
        ck_assert_str_eq(rendered(requeue("nope")), "[\"notdead\"]");
        /* In the dead-letter list but its record expired: dropped from the list. */
        CMD_OK("ZADD", k->dead, "1", "gone");
        ck_assert_str_eq(rendered(requeue("gone")), "[\"notdead\"]");
        ck_assert_int_eq(CMD_INT("EXISTS", k->dead), 0);
        ck_assert_str_eq(list(k->ready), "j1");
}
END_TEST

/* A requeued job's next attempt is gathered afresh: nothing says its last one was. */
START_TEST(test_requeue_forgets_gathered) {
        submit("j1", "");
        run(W1, "j1", "1");
        ck_assert_str_eq(rendered(finish_full("j1", W1, "1", "exit:3", "3", "0", "3", "1000",
                                              "60000")),
                         "[\"failed\",0,[]]");
        /* As tasad-results leaves a gathered record. */
        CMD_OK("HSET", jkey("j1"), "gathered", "1", "out_len", "4", "err_len", "0",
               "gather_error", "x");
        CMD_OK("HDEL", jkey("j1"), "out", "err");
        ck_assert_str_eq(rendered(requeue("j1")), "[\"queued\"]");
        for (size_t i = 0; i < 4; i++)
                ck_assert_int_eq(CMD_INT("HEXISTS", jkey("j1"),
                                         STRV("gathered", "out_len", "err_len", "gather_error")[i]), 0);
}
END_TEST

/* --- trim ----------------------------------------------------------------------------------- */

static long long trim(const char *retention, const char *limit) {
        _cleanup_reply_ redisReply *r = SCRIPT(SCRIPT_TRIM, 2, k->dead, k->gather_failed,
                                               k->job_prefix, retention, limit);

        ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
        return r->integer;
}

static void zadd_ago(const char *key, long long ago_ms, const char *id) {
        char score[32];

        snprintf(score, sizeof(score), "%lld", redis_now() - ago_ms);
        ck_assert_int_eq(CMD_INT("ZADD", key, score, id), 1);
}

/* Entries older than the retention whose record is gone are dropped; younger ones, and old
 * ones whose record still exists, stay. */
START_TEST(test_trim) {
        zadd_ago(k->dead, 20000, "gone-old");
        zadd_ago(k->dead, 20000, "kept-old");
        CMD_OK("HSET", jkey("kept-old"), "state", "failed");
        zadd_ago(k->dead, 2000, "gone-young");
        zadd_ago(k->gather_failed, 20000, "bad/id");
        zadd_ago(k->gather_failed, 20000, "kept/id");
        CMD_OK("HSET", jkey("kept/id"), "state", "done");
        ck_assert_int_eq(trim("10", "100"), 2);
        ck_assert_str_eq(rendered(CMD("ZRANGE", k->dead, "0", "-1")), "[\"kept-old\",\"gone-young\"]");
        ck_assert_str_eq(rendered(CMD("ZRANGE", k->gather_failed, "0", "-1")), "[\"kept/id\"]");
        ck_assert_int_eq(trim("10", "100"), 0);
        /* A shorter retention reaches the younger one. */
        ck_assert_int_eq(trim("1", "100"), 1);
        ck_assert_str_eq(rendered(CMD("ZRANGE", k->dead, "0", "-1")), "[\"kept-old\"]");
}
END_TEST

/* At most `limit` candidates per key and call, the oldest first. */
START_TEST(test_trim_limit) {
        zadd_ago(k->dead, 30000, "a");
        zadd_ago(k->dead, 29000, "b");
        zadd_ago(k->dead, 28000, "c");
        ck_assert_int_eq(trim("10", "2"), 2);
        ck_assert_str_eq(rendered(CMD("ZRANGE", k->dead, "0", "-1")), "[\"c\"]");
        ck_assert_int_eq(trim("10", "2"), 1);
        ck_assert_int_eq(CMD_INT("EXISTS", k->dead), 0);
}
END_TEST

/* --- set_aside ------------------------------------------------------------------------------ */

static long long set_aside(const char *key, size_t key_len, const char *id, size_t id_len,
                           const char *reason) {
        const char *argv[] = { key, k->gather_failed, id, reason };
        size_t lens[] = { key_len, strlen(k->gather_failed), id_len, strlen(reason) };
        _cleanup_reply_ redisReply *r = script(SCRIPT_SET_ASIDE, 2, 4, argv, lens);

        ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
        return r->integer;
}

START_TEST(test_set_aside) {
        _cleanup_free_ char *nulkey = NULL;
        size_t nulkey_len = 0;
        long long before = redis_now();

        /* A hash record gets the reason; its TTL stays. */
        CMD_OK("HSET", jkey("bad/id"), "state", "done");
        CMD_OK("EXPIRE", jkey("bad/id"), RETENTION);
        ck_assert_int_eq(set_aside(jkey("bad/id"), strlen(jkey("bad/id")), "bad/id", 6, "invalid job id"), 1);
        ck_assert_str_eq(hget(jkey("bad/id"), "gather_error"), "invalid job id");
        ck_assert_retention(jkey("bad/id"));
        ck_assert_between(zscore(k->gather_failed, "bad/id"), before, redis_now());
        /* A key of another type is left alone; a missing record is not created. */
        CMD_OK("SET", jkey("str"), "x");
        ck_assert_int_eq(set_aside(jkey("str"), strlen(jkey("str")), "str", 3, "WRONGTYPE"), 0);
        ck_assert_str_eq(rendered(CMD("GET", jkey("str"))), "\"x\"");
        ck_assert_int_eq(set_aside(jkey("gone"), strlen(jkey("gone")), "gone", 4, "r"), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("gone")), 0);
        /* Binary ids (a NUL inside) are kept as they are. */
        nulkey = queue_key_job_n(k, "a\0b", 3, &nulkey_len);
        ck_assert_uint_eq(nulkey_len, strlen(k->job_prefix) + 3);
        ck_assert_int_eq(set_aside(nulkey, nulkey_len, "a\0b", 3, "r"), 0);
        ck_assert_int_eq(CMD_INT("ZCARD", k->gather_failed), 4);
}
END_TEST

START_TEST(test_submit_batch) {
        /* Two jobs, the first with a payload and a timeout; ids checked ('1'): j0 exists. */
        submit("j0", "");
        ck_assert_int_eq(CMD_INT("EVALSHA", script_sha(SCRIPT_SUBMIT_BATCH), "2", k->ready,
                                 bkey("b1"), k->job_prefix, "b1", RETENTION, "1",
                                 "j1", ARGS, "in", TIMEOUT,
                                 "j0", ARGS, "", "",
                                 "j2", ARGS, "", ""),
                         2);
        ck_assert_str_eq(hash_masked(jkey("j1"), TIMES),
                         "args=4:echo,5:hello, batch=b1 created=* payload=in state=queued "
                         "timeout=5000000 v=1");
        ck_assert_str_eq(hash_masked(jkey("j2"), TIMES),
                         "args=4:echo,5:hello, batch=b1 created=* state=queued v=1");
        ck_assert_str_eq(hash_masked(jkey("j0"), TIMES),
                         "args=4:echo,5:hello, created=* state=queued v=1");
        /* FIFO: j0 (submitted first) is taken first, then j1, then j2. */
        ck_assert_str_eq(list(k->ready), "j2 j1 j0");
        ck_assert_str_eq(hash(bkey("b1")), "total=2");
        ck_assert_retention(bkey("b1"));
        /* Unchecked ('0', the scheduler generated every id): stored as given. */
        ck_assert_int_eq(CMD_INT("EVALSHA", script_sha(SCRIPT_SUBMIT_BATCH), "2", k->ready,
                                 bkey("b2"), k->job_prefix, "b2", RETENTION, "0",
                                 "j3", ARGS, "", ""),
                         1);
        ck_assert_str_eq(list(k->ready), "j3 j2 j1 j0");
        ck_assert_str_eq(hash(bkey("b2")), "total=1");
}
END_TEST

/* --- batches stored in steps ------------------------------------------------------------------ */

static const char *skey(const char *batch) {
        return keep(queue_key_staged(k, batch));
}

/* Two jobs per step: ids i1, i2 (payload on the first). */
static redisReply *stage(const char *batch, const char *i1, const char *i2) {
        return SCRIPT(SCRIPT_BATCH_STAGE, 3, bkey(batch), skey(batch), k->staging, k->job_prefix,
                      batch, i1, ARGS, "in", TIMEOUT, i2, ARGS, "", "");
}

static redisReply *commit(const char *batch) {
        return SCRIPT(SCRIPT_BATCH_COMMIT, 4, bkey(batch), skey(batch), k->staging,
                      k->delivering, batch, RETENTION);
}

static redisReply *deliver(const char *max) {
        return SCRIPT(SCRIPT_BATCH_DELIVER, 2, k->delivering, k->ready, k->job_prefix,
                      k->staged_prefix, max);
}

static redisReply *abandon(const char *older_ms) {
        return SCRIPT(SCRIPT_BATCH_ABANDON, 1, k->staging, k->job_prefix, k->batch_prefix,
                      k->staged_prefix, older_ms, "1");
}

START_TEST(test_batch_stage_commit_deliver) {
        submit("x0", "");
        /* Staged: records exist as 'staged', nothing in ready; an existing id is left alone. */
        ck_assert_str_eq(rendered(stage("B", "b.0", "x0")), "[\"staged\",1]");
        ck_assert_str_eq(rendered(stage("B", "b.1", "b.2")), "[\"staged\",2]");
        /* A retry of the first step (an earlier attempt's) stages nothing twice. */
        ck_assert_str_eq(rendered(stage("B", "b.0", "x0")), "[\"staged\",0]");
        ck_assert_str_eq(hash_masked(jkey("b.0"), TIMES),
                         "args=4:echo,5:hello, batch=B created=* payload=in state=staged "
                         "timeout=5000000 v=1");
        ck_assert_str_eq(list(k->ready), "x0");
        ck_assert_str_eq(list(skey("B")), "b.0 b.1 b.2");
        ck_assert_str_eq(hash(bkey("B")), "state=staging");
        ck_assert_int_eq(CMD_INT("ZCARD", k->staging), 1);
        /* A staged job of an uncommitted batch is unknown to cancel. */
        ck_assert_str_eq(rendered(cancel("b.1")), "[\"missing\"]");
        /* Commit: visible whole, counted once; a second commit says so. */
        ck_assert_str_eq(rendered(commit("B")), "[\"committed\",3,1]");
        ck_assert_str_eq(rendered(commit("B")), "[\"committed\",3,0]");
        ck_assert_str_eq(rendered(stage("B", "b.9", "b.8")), "[\"committed\"]");
        ck_assert_str_eq(hash(bkey("B")), "state=committed total=3");
        ck_assert_retention(bkey("B"));
        ck_assert_int_eq(CMD_INT("ZCARD", k->staging), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("b.9")), 0);
        /* Cancelled after the commit, before delivery: final at once, never delivered. */
        ck_assert_str_eq(rendered(cancel("b.1")), "[\"cancelled\"]");
        ck_assert_str_eq(hash(bkey("B")), "cancelled=1 state=committed total=3");
        /* Delivered in steps, in order, FIFO behind what was ready. */
        ck_assert_str_eq(rendered(deliver("1")), "[1,1]");
        ck_assert_str_eq(list(k->ready), "b.0 x0");
        ck_assert_str_eq(rendered(deliver("5")), "[1,0]");
        ck_assert_str_eq(list(k->ready), "b.2 b.0 x0");
        ck_assert_str_eq(hget(jkey("b.2"), "state"), "queued");
        ck_assert_str_eq(hget(jkey("b.1"), "state"), "cancelled");
        ck_assert_int_eq(CMD_INT("EXISTS", skey("B")), 0);
        ck_assert_str_eq(rendered(deliver("5")), "[0,0]");
        /* A batch stored whole (submit_batch) counts as committed too. */
        CMD_OK("HSET", bkey("W"), "total", "1");
        ck_assert_str_eq(rendered(stage("W", "w.0", "w.1")), "[\"committed\"]");
        ck_assert_str_eq(rendered(commit("W")), "[\"committed\",1,0]");
}
END_TEST

START_TEST(test_batch_abandon) {
        ck_assert_str_eq(rendered(stage("A", "a.0", "a.1")), "[\"staged\",2]");
        submit("a.2", "");      /* not the batch's: never deleted */
        CMD_OK("RPUSH", skey("A"), "a.2");
        /* Too recent for an hour's cutoff. */
        ck_assert_str_eq(rendered(abandon("3600000")), "[0,0]");
        /* One job a step: the batch refuses staging and committing from the first step on. */
        ck_assert_str_eq(rendered(abandon("0")), "[1,1]");
        ck_assert_str_eq(rendered(stage("A", "a.5", "a.6")), "[\"abandoned\"]");
        ck_assert_str_eq(rendered(commit("A")), "[\"abandoned\"]");
        ck_assert_str_eq(rendered(abandon("0")), "[1,1]");
        ck_assert_str_eq(rendered(abandon("0")), "[0,0]");
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("a.0")), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("a.1")), 0);
        ck_assert_int_eq(CMD_INT("EXISTS", jkey("a.2")), 1);
        ck_assert_int_eq(CMD_INT("EXISTS", bkey("A")), 0);
        ck_assert_int_eq(CMD_INT("ZCARD", k->staging), 0);
        /* Then the id serves a new attempt. */
        ck_assert_str_eq(rendered(stage("A", "a.0", "a.1")), "[\"staged\",2]");
        ck_assert_str_eq(rendered(commit("A")), "[\"committed\",2,1]");
}
END_TEST

/* --- take, and finish taking the next jobs ---------------------------------------------------- */

START_TEST(test_take_runs) {
        long long t0, t1, lease;

        submit_full("j1", PAYLOAD, PAYLOAD_LEN, TIMEOUT, "", "[1,\"queued\"]");
        submit("j2", "");
        submit("j3", "");
        t0 = redis_now();
        /* FIFO: the oldest first; each leased as start does, with no proc list. */
        ck_assert_str_eq(rendered(take_script(W1, "2")),
                         "[\"j1\",1,\"4:echo,5:hello,\",\"in\\x00put\",\"5000000\",\"0\",\"1\","
                         "\"j2\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\"]");
        t1 = redis_now();
        ck_assert_str_eq(hash_masked(jkey("j2"), TIMES),
                         "args=4:echo,5:hello, attempt=1 created=* started=1700000000000000 "
                         "state=running v=1 worker=" W1);
        ck_assert_str_eq(list(k->ready), "j3");
        ck_assert_int_eq(CMD_INT("EXISTS", pkey(W1)), 0);
        lease = zscore(k->leases, "j1");
        ck_assert_between(lease, t0 + 30000, t1 + 30000);
        ck_assert_int_eq(zscore(k->leases, "j2"), lease);
        ck_assert_int_eq(zscore(k->workers, W1), lease);
        /* Fewer than asked: the queue is empty. */
        ck_assert_str_eq(rendered(take_script(W1, "4")),
                         "[\"j3\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\"]");
        ck_assert_int_eq(CMD_INT("EXISTS", k->ready), 0);
}
END_TEST

/* The record's version goes to the worker as it is ('' when there is none): the worker, not
 * the script, refuses what it does not know (finishing the attempt as invalid). */
START_TEST(test_take_passes_version) {
        submit("v2", "");
        submit("nov", "");
        CMD_OK("HSET", jkey("v2"), "v", "2");
        CMD_OK("HDEL", jkey("nov"), "v");
        ck_assert_str_eq(rendered(take_script(W1, "1")),
                         "[\"v2\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"2\"]");
        take(W1, "nov");
        ck_assert_str_eq(rendered(start("nov", W1)),
                         "[\"run\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"\"]");
}
END_TEST

START_TEST(test_take_empty) {
        ck_assert_str_eq(rendered(take_script(W1, "3")), "[]");
        /* Taking nothing does not make the worker look alive. */
        ck_assert_str_eq(keys(), "");
}
END_TEST

START_TEST(test_take_skips) {
        submit("j1", "b1");
        submit("c1", "b1");
        CMD_OK("LPUSH", k->ready, "ghost");      /* its record expired */
        submit("j2", "");
        /* A cancel asked while c1 ran, which outlived the attempt: it ends when taken. */
        CMD_OK("HSET", jkey("c1"), "cancel", "1");
        ck_assert_str_eq(rendered(take_script(W1, "5")),
                         "[\"j1\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\","
                         "\"j2\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\"]");
        ck_assert_str_eq(hget(jkey("c1"), "state"), "cancelled");
        ck_assert_str_eq(hget(jkey("c1"), "outcome"), "cancelled");
        ck_assert_int_eq(zscore(k->leases, "c1"), -1);
        ck_assert_str_eq(stream(k->done), "id=c1 state=cancelled batch=b1 left=1");
        ck_assert_int_eq(CMD_INT("EXISTS", k->ready), 0);
}
END_TEST

START_TEST(test_finish_takes_next) {
        submit("j1", "b1");
        submit("j2", "b1");
        submit("j3", "b1");
        run(W1, "j1", "1");
        /* One step: j1's result, and j2 and j3 leased for the freed slots. */
        ck_assert_str_eq(rendered(finish_take("j1", W1, "1", "2")),
                         "[\"done\",0,[\"j2\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\","
                         "\"j3\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\"]]");
        ck_assert_str_eq(hget(jkey("j1"), "state"), "done");
        /* The record keeps when the process really started, not when it was taken. */
        ck_assert_str_eq(hget(jkey("j1"), "started"), "1700000000000123");
        ck_assert_str_eq(hget(jkey("j2"), "started"), "1700000000000999");
        ck_assert_str_eq(hget(jkey("j2"), "state"), "running");
        ck_assert_int_eq(zscore(k->leases, "j1"), -1);
        ck_assert_int_gt(zscore(k->leases, "j3"), 0);
        /* The batch's last job says so: only it wakes the batch's waiters. */
        ck_assert_str_eq(rendered(finish_take("j2", W1, "1", "1")), "[\"done\",0,[]]");
        ck_assert_str_eq(rendered(finish_take("j3", W1, "1", "0")), "[\"done\",0,[]]");
        ck_assert_str_eq(stream(k->done), "id=j1 state=done batch=b1 left=2; "
                         "id=j2 state=done batch=b1 left=1; id=j3 state=done batch=b1 left=0");
}
END_TEST

START_TEST(test_finish_stale_still_takes) {
        const char *before;

        submit("j1", "");
        run(W1, "j1", "1");
        before = hash(jkey("j1"));
        submit("j2", "");
        /* W2 does not hold j1: nothing of j1 changes, but W2's free slot still gets j2. */
        ck_assert_str_eq(rendered(finish_take("j1", W2, "1", "1")),
                         "[\"stale\",0,[\"j2\",1,\"4:echo,5:hello,\",\"\",\"\",\"0\",\"1\"]]");
        ck_assert_str_eq(hash(jkey("j1")), before);
        ck_assert_str_eq(hget(jkey("j2"), "worker"), W2);
}
END_TEST

static Suite *scripts_suite(void) {
        Suite *s = suite_create("scripts");
        TCase *tc;

#define TC(name)                                                         \
        tc = tcase_create(name);                                         \
        tcase_add_unchecked_fixture(tc, redis_fixture_init, redis_fixture_cleanup); \
        tcase_add_checked_fixture(tc, setup, teardown);                  \
        tcase_set_timeout(tc, 30);                                       \
        suite_add_tcase(s, tc)

        TC("sha");
        tcase_add_test(tc, test_sha);

        TC("submit");
        tcase_add_test(tc, test_submit_creates);
        tcase_add_test(tc, test_submit_minimal);
        tcase_add_test(tc, test_submit_duplicate);
        tcase_add_test(tc, test_submit_batch);
        tcase_add_test(tc, test_batch_stage_commit_deliver);
        tcase_add_test(tc, test_batch_abandon);

        TC("start");
        tcase_add_test(tc, test_start_runs);
        tcase_add_test(tc, test_start_defaults);
        tcase_add_test(tc, test_start_reclaimed);
        tcase_add_test(tc, test_start_missing);
        tcase_add_test(tc, test_start_cancelled);

        TC("renew");
        tcase_add_test(tc, test_renew_extends);
        tcase_add_test(tc, test_renew_lost);
        tcase_add_test(tc, test_renew_cancel);

        TC("finish");
        tcase_add_test(tc, test_finish_done);
        tcase_add_test(tc, test_finish_done_no_batch);
        tcase_add_test(tc, test_finish_stale);
        tcase_add_test(tc, test_finish_retry_backoff);
        tcase_add_test(tc, test_finish_backoff_large);
        tcase_add_test(tc, test_finish_not_retryable);
        tcase_add_test(tc, test_finish_no_retries);
        tcase_add_test(tc, test_finish_cancel_flag);
        tcase_add_test(tc, test_finish_outcome_cancelled);
        tcase_add_test(tc, test_finish_done_despite_cancel);

        TC("take");
        tcase_add_test(tc, test_take_runs);
        tcase_add_test(tc, test_take_empty);
        tcase_add_test(tc, test_take_passes_version);
        tcase_add_test(tc, test_take_skips);
        tcase_add_test(tc, test_finish_takes_next);
        tcase_add_test(tc, test_finish_stale_still_takes);

        TC("release");
        tcase_add_test(tc, test_release_proc);
        tcase_add_test(tc, test_release_running);
        tcase_add_test(tc, test_release_leaving);

        TC("reap");
        tcase_add_test(tc, test_reap_expired_lease);
        tcase_add_test(tc, test_reap_live_lease);
        tcase_add_test(tc, test_reap_dead_worker);
        tcase_add_test(tc, test_reap_vanished_fetcher);
        tcase_add_test(tc, test_reap_not_running);

        TC("promote");
        tcase_add_test(tc, test_promote);
        tcase_add_test(tc, test_promote_limit);

        TC("cancel");
        tcase_add_test(tc, test_cancel_queued);
        tcase_add_test(tc, test_cancel_delayed);
        tcase_add_test(tc, test_cancel_running);
        tcase_add_test(tc, test_cancel_final_and_missing);
        tcase_add_test(tc, test_cancel_survives_reap);
        tcase_add_test(tc, test_cancel_survives_release);

        TC("requeue");
        tcase_add_test(tc, test_requeue_dead);
        tcase_add_test(tc, test_requeue_not_dead);
        tcase_add_test(tc, test_requeue_forgets_gathered);

        TC("set_aside");
        tcase_add_test(tc, test_set_aside);

        TC("trim");
        tcase_add_test(tc, test_trim);
        tcase_add_test(tc, test_trim_limit);
#undef TC
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(scripts_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
