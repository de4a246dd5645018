/* Unit tests for lib/config.c against the fixtures in tests/unit/fixtures/ (good/ loads, each
 * file of bad/ has exactly one error) and the shipped examples in conf/. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "macro.h"

#define FIXTURE(p) TEST_FIXTURES "/" p
#define CONF_DIR TEST_FIXTURES "/../../../conf"
#define SEC(n) ((uint64_t) (n) * USEC_PER_SEC)

static void assert_strv(char **got, const char *const *want) {
        size_t n = 0;

        ck_assert_ptr_nonnull(got);
        for (; want[n]; n++) {
                ck_assert_ptr_nonnull(got[n]);
                ck_assert_str_eq(got[n], want[n]);
        }
        ck_assert_ptr_null(got[n]);
}

static bool matches(const QueueConfig *q, const char *arg) {
        return regexec(&q->arg_regex, arg, 0, NULL, 0) == 0;
}

/* ---- tasad.conf ---- */

static void assert_tasad_defaults(const TasadConfig *c) {
        ck_assert_ptr_null(c->redis.host);
        ck_assert_str_eq(c->redis.unix_path, "/run/redis/redis-server.sock");
        ck_assert_ptr_null(c->redis.user);
        ck_assert_ptr_null(c->redis.password);
        ck_assert_uint_eq(c->redis.db, 0);
        ck_assert_ptr_null(c->redis_password_credential);
        ck_assert_str_eq(c->prefix, "tasad");
        ck_assert_str_eq(c->queues_dir, "/etc/tasad/queues");
        ck_assert_str_eq(c->results_dir, "/var/lib/tasad/results");
        ck_assert_str_eq(c->scheduler_socket, "/run/tasad/scheduler.sock");
        ck_assert_str_eq(c->results_socket, "/run/tasad/results.sock");
        ck_assert_str_eq(c->worker_socket_dir, "/run/tasad/worker");
        assert_strv(c->policy_dirs,
                    (const char *const[]) { "/etc/tasad/policy", "/usr/share/tasad/policy", NULL });
        ck_assert_str_eq(c->work_dir, "/var/lib/tasad/work");
        ck_assert_uint_eq(c->retention_usec, SEC(7 * 86400));
        ck_assert_uint_eq(c->max_request, 64 << 20);
        ck_assert_uint_eq(c->max_request_buffered, 256 << 20);
        ck_assert_uint_eq(c->http_timeout_usec, SEC(10));
        ck_assert_uint_eq(c->http_max_connections, 512);
        ck_assert_uint_eq(c->http_max_connections_per_host, 64);
        ck_assert_uint_eq(c->redis_timeout_usec, SEC(10));
        ck_assert_uint_eq(c->batch_abandon_after_usec, SEC(600));
}

START_TEST(test_tasad_defaults) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;

        ck_assert_int_eq(tasad_config_new_default(&c), 0);
        ck_assert_ptr_null(c->path);
        assert_tasad_defaults(c);
}
END_TEST

START_TEST(test_tasad_empty) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;
        char *err = NULL;

        ck_assert_int_eq(tasad_config_load(FIXTURE("good/tasad-empty.conf"), &c, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_str_eq(c->path, FIXTURE("good/tasad-empty.conf"));
        assert_tasad_defaults(c);
}
END_TEST

START_TEST(test_tasad_full) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;
        char *err = NULL;

        ck_assert_int_eq(tasad_config_load(FIXTURE("good/tasad-full.conf"), &c, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_str_eq(c->redis.host, "::1");
        ck_assert_ptr_null(c->redis.unix_path);
        ck_assert_uint_eq(c->redis.port, 6380);
        ck_assert_str_eq(c->redis.user, "worker");
        ck_assert_str_eq(c->redis.password, "pa@ss");
        ck_assert_uint_eq(c->redis.db, 2);
        ck_assert_str_eq(c->redis_password_credential, "redis-password");
        ck_assert_str_eq(c->prefix, "tasad-test.1");
        ck_assert_str_eq(c->queues_dir, "/srv/tasad/queues");
        ck_assert_str_eq(c->results_dir, "/srv/tasad/results");
        ck_assert_str_eq(c->scheduler_socket, "/run/tasad-test/scheduler.sock");
        ck_assert_str_eq(c->results_socket, "/run/tasad-test/results.sock");
        ck_assert_str_eq(c->worker_socket_dir, "/run/tasad-test/worker");
        assert_strv(c->policy_dirs, (const char *const[]) { "/srv/tasad/policy", NULL });
        ck_assert_uint_eq(c->retention_usec, SEC(36 * 3600));
        ck_assert_uint_eq(c->max_request, 1 << 20);
        ck_assert_uint_eq(c->max_request_buffered, 3 << 20);
        ck_assert_uint_eq(c->http_timeout_usec, 2500 * USEC_PER_MSEC);
        ck_assert_uint_eq(c->http_max_connections, 100);
        ck_assert_uint_eq(c->http_max_connections_per_host, 7);
        ck_assert_uint_eq(c->redis_timeout_usec, 250 * USEC_PER_MSEC);
        ck_assert_uint_eq(c->batch_abandon_after_usec, SEC(90));
}
END_TEST

START_TEST(test_tasad_integers) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;

        ck_assert_int_eq(tasad_config_load(FIXTURE("good/tasad-integers.conf"), &c, NULL), 0);
        ck_assert_uint_eq(c->retention_usec, SEC(3600));
        ck_assert_uint_eq(c->max_request, 65536);
        /* Unset, the bodies held at once are at least one body. */
        ck_assert_uint_eq(c->max_request_buffered, 256 << 20);
        ck_assert_uint_eq(c->redis_timeout_usec, SEC(2));
        assert_strv(c->policy_dirs, (const char *const[]) { "/a", "/b", "/c", NULL });
}
END_TEST

typedef struct BadCase {
        const char *file;   /* under bad/<kind>/ */
        int r;
        const char *cited;  /* file named in the message, when not `file` itself */
        const char *msg;    /* what follows the cited file name */
} BadCase;

static const BadCase tasad_bad[] = {
        { "unknown-key.conf", -EINVAL, NULL, ":3: queue_dir: unknown key" },
        { "bad-prefix.conf", -EINVAL, NULL, ":2: prefix: \"tas:ad\" must match [A-Za-z0-9_.-]{1,32}" },
        { "empty-prefix.conf", -EINVAL, NULL, ":2: prefix: \"\" must match [A-Za-z0-9_.-]{1,32}" },
        { "long-prefix.conf", -EINVAL, NULL,
          ":2: prefix: \"abcdefghijklmnopqrstuvwxyz0123456\" must match [A-Za-z0-9_.-]{1,32}" },
        { "relative-queues-dir.conf", -EINVAL, NULL,
          ":2: queues_dir: \"etc/tasad/queues\" is not an absolute path" },
        { "long-socket.conf", -EINVAL, NULL,
          ":2: scheduler_socket: \"/run/"
          "ssssssssssssssssssssssssssssssssssssssssssssssssss"
          "ssssssssssssssssssssssssssssssssssssssssssssssssss.sock\" is longer than 107 bytes, the limit for "
          "a socket path" },
        { "bad-redis-url.conf", -EINVAL, NULL,
          ":2: redis: not a valid Redis URL (expected redis://[user[:password]@]host[:port][/db] "
          "or unix:///path[?db=N][&password=...])" },
        { "redis-not-string.conf", -EINVAL, NULL, ":2: redis: expected a string" },
        { "empty-policy-dirs.conf", -EINVAL, NULL, ":2: policy_dirs: must not be empty" },
        { "relative-policy-dir.conf", -EINVAL, NULL,
          ":2: policy_dirs[1]: \"policy\" is not an absolute path" },
        { "bad-credential.conf", -EINVAL, NULL,
          ":2: redis_password_credential: \"../redis-password\" is not a valid credential name (a "
          "file name)" },
        { "zero-retention.conf", -EINVAL, NULL, ":2: retention: 0 is out of range (1s..365d)" },
        { "big-request.conf", -EINVAL, NULL, ":2: max_request: 2G is out of range (1K..1G)" },
        { "small-buffered.conf", -EINVAL, NULL,
          ":3: max_request_buffered: 1M is less than max_request (2M)" },
        { "zero-connections.conf", -EINVAL, NULL,
          ":2: http_max_connections: 0 is out of range (1..65536)" },
        { "bad-timeout.conf", -EINVAL, NULL, ":2: redis_timeout: \"10 s\" is not a valid duration" },
        { "syntax-error.conf", -EINVAL, NULL, ":3: syntax error" },
};

static void assert_error(const char *kind, const BadCase *bc, int r, char *err) {
        _cleanup_free_ char *want = NULL;

        ck_assert_int_ge(asprintf(&want, "%s/bad/%s/%s%s", TEST_FIXTURES, kind,
                                  bc->cited ?: bc->file, bc->msg),
                         0);
        ck_assert_msg(r == bc->r, "%s: r=%d", bc->file, r);
        ck_assert_ptr_nonnull(err);
        ck_assert_str_eq(err, want);
}

START_TEST(test_tasad_bad) {
        const BadCase *bc = &tasad_bad[_i];
        _cleanup_free_ char *path = NULL, *err = NULL;
        TasadConfig *c = (TasadConfig *) 0x1;
        int r;

        ck_assert_int_ge(asprintf(&path, "%s/bad/tasad/%s", TEST_FIXTURES, bc->file), 0);
        r = tasad_config_load(path, &c, &err);
        assert_error("tasad", bc, r, err);
        ck_assert_ptr_eq(c, (TasadConfig *) 0x1); /* untouched on failure */
        ck_assert_int_eq(tasad_config_load(path, &c, NULL), bc->r);
}
END_TEST

START_TEST(test_tasad_password_not_echoed) {
        _cleanup_free_ char *err = NULL;
        TasadConfig *c = NULL;

        ck_assert_int_eq(tasad_config_load(FIXTURE("bad/tasad/bad-redis-url.conf"), &c, &err),
                         -EINVAL);
        ck_assert_ptr_null(strstr(err, "hunter2"));
}
END_TEST

START_TEST(test_tasad_missing) {
        _cleanup_free_ char *err = NULL;
        TasadConfig *c = NULL;

        ck_assert_int_eq(tasad_config_load(FIXTURE("good/nonexistent.conf"), &c, &err), -ENOENT);
        ck_assert_str_eq(err, FIXTURE("good/nonexistent.conf") ": No such file or directory");
        ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_tasad_directory) {
        _cleanup_free_ char *err = NULL;
        TasadConfig *c = NULL;

        ck_assert_int_eq(tasad_config_load(FIXTURE("good/queues"), &c, &err), -EISDIR);
        ck_assert_str_eq(err, FIXTURE("good/queues") ": Is a directory");
}
END_TEST

/* ---- queue files ---- */

START_TEST(test_queue_minimal) {
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;
        char *err = NULL;

        ck_assert_int_eq(queue_config_load(FIXTURE("good/queues/alpha.conf"), &q, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_str_eq(q->name, "alpha");
        ck_assert_str_eq(q->path, FIXTURE("good/queues/alpha.conf"));
        assert_strv(q->command, (const char *const[]) { "/bin/true", NULL });
        ck_assert_int_eq(q->args_mode, ARGS_APPEND);
        ck_assert_uint_eq(q->concurrency, 1);
        ck_assert_uint_eq(q->prefetch, 1);
        ck_assert_uint_eq(q->timeout_usec, SEC(3600));
        ck_assert_uint_eq(q->kill_grace_usec, SEC(5));
        ck_assert_uint_eq(q->lease_usec, SEC(15));
        ck_assert_uint_eq(q->drain_timeout_usec, SEC(30));
        ck_assert_uint_eq(q->retries, 0);
        ck_assert_uint_eq(q->backoff_usec, SEC(1));
        ck_assert_uint_eq(q->backoff_max_usec, SEC(600));
        ck_assert_uint_eq(q->max_redeliveries, 5);
        ck_assert_uint_eq(q->max_output, 1 << 20);
        ck_assert_uint_eq(q->max_payload, 1 << 20);
        ck_assert_uint_eq(q->max_args, 16);
        ck_assert_uint_eq(q->max_arg_len, 4096);
        ck_assert_ptr_null(q->arg_pattern);
        ck_assert_str_eq(q->policy, "default");
        ck_assert_ptr_null(q->env);
        ck_assert_ptr_null(q->user);
        ck_assert_uint_eq(q->limit_cpu_usec, UINT64_MAX);
        ck_assert_uint_eq(q->limit_memory, 1 << 30);
        ck_assert_uint_eq(q->limit_address_space, UINT64_MAX);
        ck_assert_uint_eq(q->limit_processes, 512);
        ck_assert_uint_eq(q->limit_open_files, 1024);
        ck_assert_uint_eq(q->limit_file_size, 1 << 30);
        ck_assert(q->network);
        ck_assert(!q->private_ipc);
        ck_assert(!q->private_tmp);
        ck_assert_uint_eq(q->private_tmp_size, 64 << 20);
        ck_assert(!q->allow_degraded);
        assert_strv(q->submit_groups, (const char *const[]) { "tasad", NULL });
        assert_strv(q->read_groups, (const char *const[]) { "tasad", NULL });
}
END_TEST

START_TEST(test_queue_full) {
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;

        ck_assert_int_eq(queue_config_load(FIXTURE("good/queues/beta.conf"), &q, NULL), 0);
        ck_assert_str_eq(q->name, "beta");
        assert_strv(q->command,
                    (const char *const[]) { "/usr/bin/nmap", "-oX", "-", "--", "{args}", NULL });
        ck_assert_int_eq(q->args_mode, ARGS_SUBSTITUTE);
        ck_assert_uint_eq(q->concurrency, 8);
        ck_assert_uint_eq(q->prefetch, 0);
        ck_assert_uint_eq(q->timeout_usec, SEC(600));
        ck_assert_uint_eq(q->kill_grace_usec, SEC(2));
        ck_assert_uint_eq(q->lease_usec, SEC(30));
        ck_assert_uint_eq(q->drain_timeout_usec, SEC(60));
        ck_assert_uint_eq(q->retries, 3);
        ck_assert_uint_eq(q->backoff_usec, 500 * USEC_PER_MSEC);
        ck_assert_uint_eq(q->backoff_max_usec, SEC(3600));
        ck_assert_uint_eq(q->max_redeliveries, 0);
        ck_assert_uint_eq(q->max_output, 16 << 20);
        ck_assert_uint_eq(q->max_payload, 64 << 10);
        ck_assert_uint_eq(q->max_args, 4);
        ck_assert_uint_eq(q->max_arg_len, 255);
        ck_assert_str_eq(q->arg_pattern, "[A-Za-z0-9.:-]+(/[0-9]+)?");
        ck_assert_str_eq(q->policy, "network");
        assert_strv(q->env, (const char *const[]) { "LANG=C.UTF-8", "NMAPDIR=/usr/share/nmap",
                                                    "EMPTY=", NULL });
        assert_strv(q->submit_groups, (const char *const[]) { "scanners", "admins", NULL });
        assert_strv(q->read_groups, (const char *const[]) { NULL });
        ck_assert_str_eq(q->user, "scanner");
        ck_assert_uint_eq(q->limit_cpu_usec, SEC(120));
        ck_assert_uint_eq(q->limit_memory, 256 << 20);
        ck_assert_uint_eq(q->limit_address_space, (uint64_t) 4 << 30);
        ck_assert_uint_eq(q->limit_processes, UINT64_MAX);
        ck_assert_uint_eq(q->limit_open_files, 4096);
        ck_assert_uint_eq(q->limit_file_size, 0);
        ck_assert(!q->network);
        ck_assert(q->private_ipc);
        ck_assert(q->private_tmp);
        ck_assert_uint_eq(q->private_tmp_size, 16 << 20);
        ck_assert(q->allow_degraded);
}
END_TEST

START_TEST(test_queue_regex_anchored) {
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;

        ck_assert_int_eq(queue_config_load(FIXTURE("good/queues/beta.conf"), &q, NULL), 0);
        ck_assert(matches(q, "127.0.0.1"));
        ck_assert(matches(q, "10.0.0.0/8"));
        ck_assert(matches(q, "::1"));
        ck_assert(matches(q, "scanme.example.org"));
        ck_assert(!matches(q, ""));
        ck_assert(!matches(q, "a b"));
        ck_assert(!matches(q, "127.0.0.1 -oN x"));
        ck_assert(!matches(q, "x;rm"));
        ck_assert(!matches(q, "10.0.0.0/8/"));
        ck_assert(!matches(q, "/8"));
}
END_TEST

START_TEST(test_queue_placeholders) {
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;

        ck_assert_int_eq(queue_config_load(FIXTURE("good/queues/gamma-1.conf"), &q, NULL), 0);
        ck_assert_str_eq(q->name, "gamma-1");
        ck_assert_int_eq(q->args_mode, ARGS_SUBSTITUTE);
        ck_assert_uint_eq(q->max_args, 2);
        ck_assert_uint_eq(q->timeout_usec, SEC(90));
        ck_assert_uint_eq(q->max_output, 1048576);
        ck_assert_str_eq(q->command[4], "--port={1}"); /* not a placeholder: passed as is */
        ck_assert_str_eq(q->command[5], "{x}");
}
END_TEST

START_TEST(test_queue_include) {
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;
        char *err = NULL;

        /* The test runs in the build directory: the include must be found next to the file. */
        ck_assert_int_eq(queue_config_load(FIXTURE("good/include/incl.conf"), &q, &err), 0);
        ck_assert_ptr_null(err);
        assert_strv(q->command, (const char *const[]) { "/bin/true", NULL });
        ck_assert_uint_eq(q->concurrency, 2);
}
END_TEST

static const BadCase queue_bad[] = {
        { "unknown-key.conf", -EINVAL, NULL, ":3: concurrancy: unknown key" },
        { "nested-group.conf", -EINVAL, NULL, ":3: limits: unknown key" },
        { "wrong-type.conf", -EINVAL, NULL, ":3: concurrency: expected an integer" },
        { "float-duration.conf", -EINVAL, NULL,
          ":3: timeout: expected a duration: a string such as \"30s\" or an integer number of "
          "seconds" },
        { "bad-regex.conf", -EINVAL, NULL,
          ":3: arg_pattern: invalid regular expression: Invalid content of \\{\\}" },
        { "unbalanced-regex.conf", -EINVAL, NULL,
          ":3: arg_pattern: unbalanced parentheses or brackets, or a trailing backslash" },
        { "unterminated-bracket.conf", -EINVAL, NULL,
          ":3: arg_pattern: unbalanced parentheses or brackets, or a trailing backslash" },
        { "empty-pattern.conf", -EINVAL, NULL, ":3: arg_pattern: must not be empty" },
        { "relative-command.conf", -EINVAL, NULL,
          ":2: command[0]: \"bin/true\" is not an absolute path" },
        { "placeholder-command.conf", -EINVAL, NULL,
          ":2: command[0]: \"{args}\" is not an absolute path" },
        { "empty-command.conf", -EINVAL, NULL, ":2: command: must not be empty" },
        { "string-command.conf", -EINVAL, NULL, ":2: command: expected an array of strings" },
        { "list-command.conf", -EINVAL, NULL, ":4: command[1]: expected a string" },
        { "missing-command.conf", -EINVAL, NULL, ": command: required key is missing" },
        { "placeholder-range.conf", -EINVAL, NULL,
          ":3: command[2]: \"{3}\": a placeholder must be {args} or {1}..{2} (max_args = 2)" },
        { "placeholder-zero.conf", -EINVAL, NULL,
          ":2: command[1]: \"{0}\": a placeholder must be {args} or {1}..{16} (max_args = 16)" },
        { "placeholder-huge.conf", -EINVAL, NULL,
          ":2: command[1]: \"{99999999999999999999999}\": a placeholder must be {args} or "
          "{1}..{16} (max_args = 16)" },
        { "concurrency-zero.conf", -EINVAL, NULL, ":3: concurrency: 0 is out of range (1..1024)" },
        { "concurrency-big.conf", -EINVAL, NULL, ":3: concurrency: 1025 is out of range (1..1024)" },
        { "negative-retries.conf", -EINVAL, NULL, ":3: retries: -1 is out of range (0..100)" },
        { "bad-duration.conf", -EINVAL, NULL, ":3: timeout: \"5x\" is not a valid duration" },
        { "duration-overflow.conf", -EINVAL, NULL,
          ":3: timeout: 99999999999999999999s is out of range (1ms..365d)" },
        { "zero-timeout.conf", -EINVAL, NULL, ":3: timeout: 0 is out of range (1ms..365d)" },
        { "short-lease.conf", -EINVAL, NULL, ":3: lease: 500ms is out of range (1s..1h)" },
        { "bad-size.conf", -EINVAL, NULL, ":3: max_output: \"1.5M\" is not a valid size" },
        { "big-size.conf", -EINVAL, NULL, ":3: max_output: 1G is out of range (0..512M)" },
        { "big-arg-len.conf", -EINVAL, NULL, ":3: max_arg_len: 128K is out of range (1..131071)" },
        { "backoff-max.conf", -EINVAL, NULL, ": backoff_max: 10m is less than backoff (20m)" },
        { "cpu-fraction.conf", -EINVAL, NULL, ":3: limit_cpu: must be a whole number of seconds" },
        { "bool-string.conf", -EINVAL, NULL, ":3: network: expected true or false" },
        { "bad-user.conf", -EINVAL, NULL, ":3: user: \"a:b\" is not a valid user name" },
        { "small-memory.conf", -EINVAL, NULL,
          ":3: limit_memory: 1M is out of range (16M..1024T)" },
        { "files-infinity.conf", -EINVAL, NULL, ":3: limit_open_files: expected an integer" },
        { "bad-env.conf", -EINVAL, NULL,
          ":3: env[1]: not NAME=value with NAME matching [A-Za-z_][A-Za-z0-9_]*" },
        { "env-no-equals.conf", -EINVAL, NULL,
          ":3: env[0]: not NAME=value with NAME matching [A-Za-z_][A-Za-z0-9_]*" },
        /* Not the last element: libconfig 1.5 dates an array's last string to the line of the
         * token after it (it looks ahead for adjacent string literals to concatenate). */
        { "dup-env.conf", -EINVAL, NULL, ":5: env[1]: FOO is set more than once" },
        { "bad-group.conf", -EINVAL, NULL,
          ":3: submit_groups[0]: \"ops team\" is not a valid group name (non-empty, no whitespace "
          "or ':')" },
        { "colon-group.conf", -EINVAL, NULL,
          ":3: read_groups[1]: \"a:b\" is not a valid group name (non-empty, no whitespace or ':')" },
        { "empty-group.conf", -EINVAL, NULL,
          ":3: read_groups[0]: \"\" is not a valid group name (non-empty, no whitespace or ':')" },
        { "bad-policy.conf", -EINVAL, NULL,
          ":3: policy: \"../etc/passwd\" is not a valid policy name ([A-Za-z0-9_-]{1,64})" },
        { "syntax-error.conf", -EINVAL, NULL, ":3: syntax error" },
        { "duplicate-key.conf", -EINVAL, NULL, ":4: duplicate setting name" },
        { "include-error.conf", -EINVAL, "include-error.inc", ":2: foo: unknown key" },
        { "bad.name.conf", -EINVAL, NULL,
          ": \"bad.name\" is not a valid queue name ([A-Za-z0-9_-]{1,64}, taken from the file "
          "name)" },
        { "no-suffix.cfg", -EINVAL, NULL, ": the file name of a queue must be <queue>.conf" },
        { "nonexistent.conf", -ENOENT, NULL, ": No such file or directory" },
};

START_TEST(test_queue_bad) {
        const BadCase *bc = &queue_bad[_i];
        _cleanup_free_ char *path = NULL, *err = NULL;
        QueueConfig *q = (QueueConfig *) 0x1;
        int r;

        ck_assert_int_ge(asprintf(&path, "%s/bad/queues/%s", TEST_FIXTURES, bc->file), 0);
        r = queue_config_load(path, &q, &err);
        assert_error("queues", bc, r, err);
        ck_assert_ptr_eq(q, (QueueConfig *) 0x1);
        ck_assert_int_eq(queue_config_load(path, &q, NULL), bc->r);
}
END_TEST

/* arg_pattern edge cases, written to a temporary queue file: parentheses inside bracket
 * expressions and after backslashes are literal; everything else must balance. */
static const struct {
        const char *pattern;
        bool ok;
        const char *match, *no_match;
} patterns[] = {
        { "[()]+", true, "()(", "a" },
        { "[]()]+", true, "])(", "a" },
        { "[^]()]+", true, "abc", "a)" },
        { "[[:alpha:]()]+", true, "a(b)", "1" },
        { "[[:alpha:]]+|[0-9]+", true, "42", "a4" }, /* the alternation stays anchored */
        { "\\(x\\)", true, "(x)", "x" },
        { "(a|b)(c)", true, "bc", "abc" },
        { "a)|(b", false, NULL, NULL },
        { "a)(b", false, NULL, NULL },
        { "(a", false, NULL, NULL },
        { "a\\", false, NULL, NULL },
        { "[a", false, NULL, NULL },
        { "[[:alpha:]", false, NULL, NULL },
        { "[[:alpha]", false, NULL, NULL },
};

/* The pattern as a libconfig string literal: backslashes and quotes escaped. */
static void write_pattern_queue(const char *dir, const char *pattern) {
        _cleanup_free_ char *path = NULL;
        _cleanup_fclose_ FILE *f = NULL;

        ck_assert_int_ge(asprintf(&path, "%s/p.conf", dir), 0);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs("command = [\"/bin/true\"];\narg_pattern = \"", f);
        for (const char *c = pattern; *c; c++)
                fprintf(f, "%s%c", *c == '\\' || *c == '"' ? "\\" : "", *c);
        fputs("\";\n", f);
}

START_TEST(test_queue_patterns) {
        char dir[] = "/tmp/tasad-test-pattern-XXXXXX";
        _cleanup_free_ char *path = NULL, *err = NULL;
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;
        int r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        write_pattern_queue(dir, patterns[_i].pattern);
        ck_assert_int_ge(asprintf(&path, "%s/p.conf", dir), 0);
        r = queue_config_load(path, &q, &err);
        unlink(path);
        rmdir(dir);
        if (!patterns[_i].ok) {
                ck_assert_int_eq(r, -EINVAL);
                ck_assert_ptr_nonnull(strstr(err, ":2: arg_pattern: unbalanced parentheses or "
                                                  "brackets, or a trailing backslash"));
                return;
        }
        ck_assert_msg(r == 0, "%s: %s", patterns[_i].pattern, err);
        ck_assert_str_eq(q->arg_pattern, patterns[_i].pattern);
        ck_assert(matches(q, patterns[_i].match));
        ck_assert(!matches(q, patterns[_i].no_match));
}
END_TEST

/* ---- queue sets ---- */

START_TEST(test_set_good) {
        _cleanup_(queue_set_freep) QueueSet *s = NULL;
        char *err = NULL;

        /* README, notes.conf.disabled and .hidden.conf are not queues (the last two would not
         * even parse). */
        ck_assert_int_eq(queue_set_load(FIXTURE("good/queues"), &s, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_uint_eq(s->n_queues, 3);
        ck_assert_str_eq(s->queues[0]->name, "alpha");
        ck_assert_str_eq(s->queues[1]->name, "beta");
        ck_assert_str_eq(s->queues[2]->name, "gamma-1");
        ck_assert_ptr_eq(queue_set_find(s, "beta"), s->queues[1]);
        ck_assert_ptr_eq(queue_set_find(s, "gamma-1"), s->queues[2]);
        ck_assert_ptr_null(queue_set_find(s, "gamma"));
        ck_assert_ptr_null(queue_set_find(s, "README"));
        ck_assert_ptr_null(queue_set_find(s, NULL));
        ck_assert_ptr_null(queue_set_find(NULL, "beta"));
}
END_TEST

START_TEST(test_set_missing_dir) {
        _cleanup_(queue_set_freep) QueueSet *s = NULL;

        ck_assert_int_eq(queue_set_load(FIXTURE("no-such-dir"), &s, NULL), 0);
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_eq(s->n_queues, 0);
        ck_assert_ptr_null(queue_set_find(s, "alpha"));
}
END_TEST

START_TEST(test_set_bad) {
        _cleanup_free_ char *err = NULL;
        QueueSet *s = (QueueSet *) 0x1;

        /* a-good.conf is fine, b-bad.conf is not: nothing is loaded. */
        ck_assert_int_eq(queue_set_load(FIXTURE("bad/set"), &s, &err), -EINVAL);
        ck_assert_str_eq(err, FIXTURE("bad/set/b-bad.conf") ":2: concurrency: 0 is out of range "
                                                             "(1..1024)");
        ck_assert_ptr_eq(s, (QueueSet *) 0x1);
}
END_TEST

START_TEST(test_set_not_a_dir) {
        _cleanup_free_ char *err = NULL;
        QueueSet *s = NULL;

        ck_assert_int_eq(queue_set_load(FIXTURE("good/tasad-empty.conf"), &s, &err), -ENOTDIR);
        ck_assert_str_eq(err, FIXTURE("good/tasad-empty.conf") ": Not a directory");
        ck_assert_ptr_null(s);
}
END_TEST

/* ---- credentials ---- */

static char cred_dir[] = "/tmp/tasad-test-config-XXXXXX";

static void write_file(const char *name, const char *data, size_t n) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;

        ck_assert_int_ge(asprintf(&path, "%s/%s", cred_dir, name), 0);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, n), (ssize_t) n);
}

static void cred_setup(void) {
        ck_assert_ptr_nonnull(mkdtemp(cred_dir));
        write_file("pw", "s3cret\n", 7);
        write_file("pw-raw", "s3cret", 6);
        write_file("pw-two-newlines", "s3cret\n\n", 8);
        write_file("pw-empty", "\n", 1);
        write_file("pw-nul", "s3\0cret", 7);
}

static void cred_teardown(void) {
        static const char *const files[] = { "pw", "pw-raw", "pw-two-newlines", "pw-empty",
                                             "pw-nul", "pw-big" };
        char path[256];

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                snprintf(path, sizeof(path), "%s/%s", cred_dir, files[i]);
                unlink(path);
        }
        rmdir(cred_dir);
}

static TasadConfig *config_with_credential(const char *name) {
        TasadConfig *c = NULL;

        /* Again in every test: one of them removes it (and CK_FORK=no runs them in one process). */
        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", cred_dir, 1), 0);
        ck_assert_int_eq(tasad_config_load(FIXTURE("good/tasad-full.conf"), &c, NULL), 0);
        free(c->redis_password_credential);
        c->redis_password_credential = name ? strdup(name) : NULL;
        return c;
}

START_TEST(test_cred_none) {
        _cleanup_(tasad_config_freep) TasadConfig *c = config_with_credential(NULL);

        ck_assert_int_eq(tasad_config_load_credentials(c, NULL), 0);
        ck_assert_str_eq(c->redis.password, "pa@ss"); /* the URL's password stays */
}
END_TEST

START_TEST(test_cred_good) {
        static const char *const names[] = { "pw", "pw-raw", "pw-two-newlines" };
        static const char *const want[] = { "s3cret", "s3cret", "s3cret\n" };
        _cleanup_(tasad_config_freep) TasadConfig *c = config_with_credential(names[_i]);
        char *err = NULL;

        ck_assert_int_eq(tasad_config_load_credentials(c, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_str_eq(c->redis.password, want[_i]);
}
END_TEST

START_TEST(test_cred_no_directory) {
        _cleanup_(tasad_config_freep) TasadConfig *c = config_with_credential("pw");
        _cleanup_free_ char *err = NULL;

        ck_assert_int_eq(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        ck_assert_int_eq(tasad_config_load_credentials(c, &err), -ENXIO);
        ck_assert_str_eq(err, FIXTURE("good/tasad-full.conf") ": redis_password_credential: \"pw\" "
                                                             "is configured but "
                                                             "$CREDENTIALS_DIRECTORY is not set "
                                                             "(the tasad units load "
                                                             "/etc/tasad/credentials/<file> as "
                                                             "tasad_<file>; elsewhere use "
                                                             "LoadCredential=pw:<file>)");
        ck_assert_str_eq(c->redis.password, "pa@ss");
}
END_TEST

static const struct {
        const char *name;
        int r;
        const char *what;
} cred_bad[] = {
        { "pw-missing", -ENOENT, "No such file or directory" },
        { "pw-empty", -EINVAL, "empty" },
        { "pw-nul", -EBADMSG, "contains a NUL byte" },
        { "pw-big", -EFBIG, "larger than 64K" },
};

START_TEST(test_cred_bad) {
        _cleanup_(tasad_config_freep) TasadConfig *c = config_with_credential(cred_bad[_i].name);
        _cleanup_free_ char *err = NULL, *want = NULL, *big = calloc(65537, 1);

        memset(big, 'x', 65537);
        write_file("pw-big", big, 65537);
        ck_assert_int_eq(tasad_config_load_credentials(c, &err), cred_bad[_i].r);
        ck_assert_int_ge(asprintf(&want, "%s/%s: redis_password_credential: cannot use: %s",
                                  cred_dir, cred_bad[_i].name, cred_bad[_i].what),
                         0);
        ck_assert_str_eq(err, want);
        ck_assert_str_eq(c->redis.password, "pa@ss");
}
END_TEST

/* ---- the shipped examples ---- */

START_TEST(test_example_tasad_conf) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;
        _cleanup_free_ char *err = NULL;

        ck_assert_msg(tasad_config_load(CONF_DIR "/tasad.conf", &c, &err) == 0, "%s", err);
        assert_tasad_defaults(c); /* the example documents the defaults */
}
END_TEST

START_TEST(test_example_queue_conf) {
        _cleanup_(queue_config_freep) QueueConfig *q = NULL;
        _cleanup_free_ char *err = NULL;

        ck_assert_msg(queue_config_load(CONF_DIR "/queues/example.conf", &q, &err) == 0, "%s", err);
        ck_assert_str_eq(q->name, "example");
        ck_assert_str_eq(q->command[0], "/usr/bin/nmap");
        ck_assert_int_eq(q->args_mode, ARGS_SUBSTITUTE);
        ck_assert_ptr_nonnull(q->arg_pattern);
        ck_assert(matches(q, "127.0.0.1"));
        ck_assert(!matches(q, "-iL/etc/shadow"));
}
END_TEST

static Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc;

        tc = tcase_create("tasad");
        tcase_add_test(tc, test_tasad_defaults);
        tcase_add_test(tc, test_tasad_empty);
        tcase_add_test(tc, test_tasad_full);
        tcase_add_test(tc, test_tasad_integers);
        tcase_add_loop_test(tc, test_tasad_bad, 0, ELEMENTSOF(tasad_bad));
        tcase_add_test(tc, test_tasad_password_not_echoed);
        tcase_add_test(tc, test_tasad_missing);
        tcase_add_test(tc, test_tasad_directory);
        suite_add_tcase(s, tc);

        tc = tcase_create("queue");
        tcase_add_test(tc, test_queue_minimal);
        tcase_add_test(tc, test_queue_full);
        tcase_add_test(tc, test_queue_regex_anchored);
        tcase_add_test(tc, test_queue_placeholders);
        tcase_add_test(tc, test_queue_include);
        tcase_add_loop_test(tc, test_queue_bad, 0, ELEMENTSOF(queue_bad));
        tcase_add_loop_test(tc, test_queue_patterns, 0, ELEMENTSOF(patterns));
        suite_add_tcase(s, tc);

        tc = tcase_create("set");
        tcase_add_test(tc, test_set_good);
        tcase_add_test(tc, test_set_missing_dir);
        tcase_add_test(tc, test_set_bad);
        tcase_add_test(tc, test_set_not_a_dir);
        suite_add_tcase(s, tc);

        tc = tcase_create("credentials");
        tcase_add_unchecked_fixture(tc, cred_setup, cred_teardown);
        tcase_add_test(tc, test_cred_none);
        tcase_add_loop_test(tc, test_cred_good, 0, 3);
        tcase_add_test(tc, test_cred_no_directory);
        tcase_add_loop_test(tc, test_cred_bad, 0, ELEMENTSOF(cred_bad));
        suite_add_tcase(s, tc);

        tc = tcase_create("examples");
        tcase_add_test(tc, test_example_tasad_conf);
        tcase_add_test(tc, test_example_queue_conf);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(config_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
