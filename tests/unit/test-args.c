/* lib/args.c: validation against a queue's rules and argv building. QueueConfig is built by
 * hand here so that this suite does not depend on config.c. */
#include <check.h>
#include <regex.h>

#include "args.h"
#include "config.h"
#include "macro.h"

static QueueConfig q;

/* A queue with the defaults of docs and, when pattern is given, the anchored regex config.c
 * would compile from it. */
static void queue_init(const char *pattern) {
        memset(&q, 0, sizeof(q));
        q.name = (char *) "test";
        q.max_args = 16;
        q.max_arg_len = 4096;
        q.max_payload = 1048576;
        q.timeout_usec = 3600 * USEC_PER_SEC;
        if (pattern) {
                char re[256];

                snprintf(re, sizeof(re), "^(%s)$", pattern);
                ck_assert_int_eq(regcomp(&q.arg_regex, re, REG_EXTENDED | REG_NOSUB), 0);
                q.arg_pattern = (char *) pattern;
        }
}

static void queue_done(void) {
        if (q.arg_pattern)
                regfree(&q.arg_regex);
        memset(&q, 0, sizeof(q));
}

/* Expects failure r with exactly msg. */
static void assert_invalid(char *const *args, size_t n, int r, const char *msg) {
        _cleanup_free_ char *error = NULL;

        ck_assert_int_eq(args_validate(&q, args, n, &error), r);
        ck_assert_ptr_nonnull(error);
        ck_assert_str_eq(error, msg);
}

static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);

        ck_assert_ptr_nonnull(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

START_TEST(test_validate_count) {
        char *args[17];
        char *error = NULL;

        queue_init(NULL);
        for (size_t i = 0; i < ELEMENTSOF(args); i++)
                args[i] = (char *) "x";
        ck_assert_int_eq(args_validate(&q, args, 0, &error), 0);
        ck_assert_int_eq(args_validate(&q, args, 16, &error), 0);
        ck_assert_ptr_null(error);
        assert_invalid(args, 17, -E2BIG, "args: 17 arguments exceed max_args (16)");
        q.max_args = 0;
        assert_invalid(args, 1, -E2BIG, "args: 1 arguments exceed max_args (0)");
        ck_assert_int_eq(args_validate(&q, args, 0, &error), 0);
        queue_done();
}
END_TEST

START_TEST(test_validate_length) {
        _cleanup_free_ char *ok = repeat('a', 4096), *big = repeat('b', 4097);
        char *args[3] = { (char *) "x", ok, big };
        char *error = NULL;

        queue_init(NULL);
        ck_assert_int_eq(args_validate(&q, args, 2, &error), 0);
        assert_invalid(args, 3, -E2BIG, "args[2]: longer than max_arg_len (4096)");
        q.max_arg_len = 0;
        assert_invalid(args, 3, -E2BIG, "args[0]: longer than max_arg_len (0)");
        args[0] = (char *) "";
        assert_invalid(args, 3, -E2BIG, "args[1]: longer than max_arg_len (0)");
        q.max_arg_len = UINT64_MAX;
        ck_assert_int_eq(args_validate(&q, args, 3, &error), 0);
        ck_assert_ptr_null(error);
        queue_done();
}
END_TEST

START_TEST(test_validate_null_element) {
        char *args[2] = { (char *) "x", NULL };

        queue_init(NULL);
        assert_invalid(args, 2, -EINVAL, "args[1]: missing");
        queue_done();
}
END_TEST

START_TEST(test_validate_pattern) {
        char *good[] = { (char *) "127.0.0.1", (char *) "10.0.0.0", (char *) "1" };
        char *bad1[] = { (char *) "127.0.0.1", (char *) "x" };
        char *bad2[] = { (char *) "1x" };           /* the pattern must match in full */
        char *bad3[] = { (char *) "" };
        char *bad4[] = { (char *) "1\n2" };
        char *error = NULL;

        queue_init("[0-9.]+");
        ck_assert_int_eq(args_validate(&q, good, ELEMENTSOF(good), &error), 0);
        ck_assert_ptr_null(error);
        assert_invalid(bad1, 2, -EINVAL, "args[1]: does not match the queue's pattern '[0-9.]+'");
        assert_invalid(bad2, 1, -EINVAL, "args[0]: does not match the queue's pattern '[0-9.]+'");
        assert_invalid(bad3, 1, -EINVAL, "args[0]: does not match the queue's pattern '[0-9.]+'");
        assert_invalid(bad4, 1, -EINVAL, "args[0]: does not match the queue's pattern '[0-9.]+'");
        queue_done();

        /* Alternation is grouped by the anchoring: "a|b" does not accept "ab" or "xa". */
        queue_init("a|b");
        char *alt_ok[] = { (char *) "a", (char *) "b" };
        char *alt_bad[] = { (char *) "ab" };
        char *alt_bad2[] = { (char *) "xa" };
        ck_assert_int_eq(args_validate(&q, alt_ok, 2, &error), 0);
        assert_invalid(alt_bad, 1, -EINVAL, "args[0]: does not match the queue's pattern 'a|b'");
        assert_invalid(alt_bad2, 1, -EINVAL, "args[0]: does not match the queue's pattern 'a|b'");
        queue_done();
}
END_TEST

START_TEST(test_validate_no_pattern) {
        char *args[] = { (char *) "", (char *) "; rm -rf /", (char *) "\xff\x01", (char *) "$(x)" };
        char *error = NULL;

        queue_init(NULL);
        ck_assert_int_eq(args_validate(&q, args, ELEMENTSOF(args), &error), 0);
        ck_assert_ptr_null(error);
        queue_done();
}
END_TEST

START_TEST(test_validate_null_error) {
        char *args[] = { (char *) "x" };

        queue_init("[0-9]+");
        ck_assert_int_eq(args_validate(&q, args, 1, NULL), -EINVAL);
        args[0] = (char *) "1";
        q.max_args = 0;
        ck_assert_int_eq(args_validate(&q, args, 1, NULL), -E2BIG);
        queue_done();
}
END_TEST

/* An argument that breaks the pattern is named before the count is looked at: the README's
 * "tasactl submit tnmap -- -oN /tmp/x" is refused as "not an address". */
START_TEST(test_validate_pattern_before_count) {
        char *args[] = { (char *) "-oN", (char *) "/tmp/x" };

        queue_init("[0-9.]+");
        q.max_args = 1;
        assert_invalid(args, 2, -EINVAL, "args[0]: does not match the queue's pattern '[0-9.]+'");
        args[0] = (char *) "127.0.0.1";
        assert_invalid(args, 2, -EINVAL, "args[1]: does not match the queue's pattern '[0-9.]+'");
        args[1] = (char *) "127.0.0.2";
        assert_invalid(args, 2, -E2BIG, "args: 2 arguments exceed max_args (1)");
        queue_done();
}
END_TEST

/* argv building */

static void assert_argv(char **argv, const char *const *expected) {
        size_t i = 0;

        ck_assert_ptr_nonnull(argv);
        for (; expected[i]; i++) {
                ck_assert_ptr_nonnull(argv[i]);
                ck_assert_str_eq(argv[i], expected[i]);
        }
        ck_assert_ptr_null(argv[i]);
}

static void build_ok(char **command, ArgsMode mode, char *const *args, size_t n,
                     const char *const *expected) {
        _cleanup_strv_free_ char **argv = NULL;
        char *error = NULL;

        q.command = command;
        q.args_mode = mode;
        ck_assert_int_eq(args_build_argv(&q, args, n, &argv, &error), 0);
        ck_assert_ptr_null(error);
        assert_argv(argv, expected);
}

static void build_fail(char **command, char *const *args, size_t n, int r, const char *msg) {
        char **argv = (char **) 0x1;
        _cleanup_free_ char *error = NULL;

        q.command = command;
        q.args_mode = ARGS_SUBSTITUTE;
        ck_assert_int_eq(args_build_argv(&q, args, n, &argv, &error), r);
        ck_assert_ptr_eq(argv, (char **) 0x1); /* untouched on failure */
        ck_assert_str_eq(error, msg);
}

START_TEST(test_build_append) {
        char *cmd[] = { (char *) "/usr/bin/nmap", (char *) "-sV", NULL };
        char *args[] = { (char *) "-p", (char *) "22", (char *) "127.0.0.1" };

        queue_init(NULL);
        build_ok(cmd, ARGS_APPEND, args, 3,
                 (const char *const[]){ "/usr/bin/nmap", "-sV", "-p", "22", "127.0.0.1", NULL });
        build_ok(cmd, ARGS_APPEND, args, 0, (const char *const[]){ "/usr/bin/nmap", "-sV", NULL });
        build_ok(cmd, ARGS_APPEND, NULL, 0, (const char *const[]){ "/usr/bin/nmap", "-sV", NULL });
        queue_done();
}
END_TEST

START_TEST(test_build_append_is_verbatim) {
        /* In append mode placeholders are plain text (config.c only picks append when none is
         * present; the builder follows args_mode, not the text). */
        char *cmd[] = { (char *) "/usr/bin/find", (char *) "{args}", (char *) "{1}", NULL };
        char *args[] = { (char *) "x" };

        queue_init(NULL);
        build_ok(cmd, ARGS_APPEND, args, 1,
                 (const char *const[]){ "/usr/bin/find", "{args}", "{1}", "x", NULL });
        queue_done();
}
END_TEST

START_TEST(test_build_substitute) {
        char *cmd[] = { (char *) "/bin/echo", (char *) "{args}", (char *) "--", (char *) "{2}",
                        (char *) "{1}", NULL };
        char *args[] = { (char *) "x", (char *) "y", (char *) "z" };

        queue_init(NULL);
        build_ok(cmd, ARGS_SUBSTITUTE, args, 3,
                 (const char *const[]){ "/bin/echo", "x", "y", "z", "--", "y", "x", NULL });
        queue_done();
}
END_TEST

START_TEST(test_build_substitute_all_empty) {
        char *cmd[] = { (char *) "/bin/echo", (char *) "a", (char *) "{args}", (char *) "b",
                        (char *) "{args}", NULL };
        char *args[] = { (char *) "1", (char *) "2" };

        queue_init(NULL);
        build_ok(cmd, ARGS_SUBSTITUTE, args, 0, (const char *const[]){ "/bin/echo", "a", "b", NULL });
        build_ok(cmd, ARGS_SUBSTITUTE, args, 2,
                 (const char *const[]){ "/bin/echo", "a", "1", "2", "b", "1", "2", NULL });
        queue_done();
}
END_TEST

START_TEST(test_build_substitute_unreferenced_not_appended) {
        char *cmd[] = { (char *) "/bin/cp", (char *) "{1}", (char *) "/tmp/out", NULL };
        char *args[] = { (char *) "a", (char *) "b", (char *) "c" };

        queue_init(NULL);
        build_ok(cmd, ARGS_SUBSTITUTE, args, 3, (const char *const[]){ "/bin/cp", "a", "/tmp/out", NULL });
        queue_done();
}
END_TEST

START_TEST(test_build_substitute_verbatim) {
        /* Only elements that are exactly "{args}" or "{" digits "}" expand (the rule config.c
         * uses); arguments are never expanded again. */
        char *cmd[] = { (char *) "/bin/x", (char *) "{1", (char *) "x{1}", (char *) "{1}x",
                        (char *) "--port={1}", (char *) "{args}x", (char *) "{}", (char *) "{ARGS}",
                        (char *) "{-1}", (char *) "{+1}", (char *) "{ 1}", (char *) "{10}",
                        (char *) "{01}", NULL };
        char *args[] = { (char *) "{2}", (char *) "{args}", (char *) "3", (char *) "4",
                         (char *) "5", (char *) "6", (char *) "7", (char *) "8", (char *) "9",
                         (char *) "ten" };

        queue_init(NULL);
        build_ok(cmd, ARGS_SUBSTITUTE, args, 10,
                 (const char *const[]){ "/bin/x", "{1", "x{1}", "{1}x", "--port={1}", "{args}x",
                                        "{}", "{ARGS}", "{-1}", "{+1}", "{ 1}", "ten", "{2}", NULL });
        char *cmd2[] = { (char *) "/bin/x", (char *) "{1}", (char *) "{2}", NULL };
        build_ok(cmd2, ARGS_SUBSTITUTE, args, 2, (const char *const[]){ "/bin/x", "{2}", "{args}", NULL });
        queue_done();
}
END_TEST

START_TEST(test_build_substitute_missing) {
        char *cmd[] = { (char *) "/bin/cp", (char *) "{1}", (char *) "{3}", NULL };
        char *cmd_big[] = { (char *) "/bin/x", (char *) "{99999999999999999999999}", NULL };
        char *cmd_zero[] = { (char *) "/bin/x", (char *) "{1}", (char *) "{0}", NULL };
        char *cmd_zeros[] = { (char *) "/bin/x", (char *) "{000}", NULL };
        char *args[] = { (char *) "a", (char *) "b" };

        queue_init(NULL);
        build_fail(cmd, args, 2, -EINVAL, "command needs argument {3} but the job has only 2");
        build_fail(cmd, args, 0, -EINVAL, "command needs argument {1} but the job has only 0");
        build_fail(cmd_big, args, 2, -EINVAL,
                   "command needs argument {18446744073709551615} but the job has only 2");
        build_fail(cmd_zero, args, 2, -EINVAL, "command element '{0}': arguments are numbered from {1}");
        build_fail(cmd_zeros, args, 2, -EINVAL, "command element '{000}': arguments are numbered from {1}");
        /* ...and the same job is refused by validation, at submission. */
        q.command = cmd;
        q.args_mode = ARGS_SUBSTITUTE;
        assert_invalid(args, 2, -EINVAL, "command needs argument {3} but the job has only 2");
        assert_invalid(args, 0, -EINVAL, "command needs argument {1} but the job has only 0");
        q.args_mode = ARGS_APPEND;
        ck_assert_int_eq(args_validate(&q, args, 0, NULL), 0);
        queue_done();
}
END_TEST

START_TEST(test_build_no_command) {
        char *empty[] = { NULL };
        char **argv = NULL;
        _cleanup_free_ char *error = NULL;

        queue_init(NULL);
        ck_assert_int_eq(args_build_argv(&q, NULL, 0, &argv, &error), -EINVAL);
        ck_assert_str_eq(error, "queue has no command");
        free(TAKE_PTR(error));
        q.command = empty;
        ck_assert_int_eq(args_build_argv(&q, NULL, 0, &argv, &error), -EINVAL);
        ck_assert_ptr_null(argv);
        queue_done();
}
END_TEST

static Suite *args_suite(void) {
        Suite *s = suite_create("args");
        TCase *tc;

        tc = tcase_create("validate");
        tcase_add_test(tc, test_validate_count);
        tcase_add_test(tc, test_validate_length);
        tcase_add_test(tc, test_validate_null_element);
        tcase_add_test(tc, test_validate_pattern);
        tcase_add_test(tc, test_validate_no_pattern);
        tcase_add_test(tc, test_validate_null_error);
        tcase_add_test(tc, test_validate_pattern_before_count);
        suite_add_tcase(s, tc);

        tc = tcase_create("build_argv");
        tcase_add_test(tc, test_build_append);
        tcase_add_test(tc, test_build_append_is_verbatim);
        tcase_add_test(tc, test_build_substitute);
        tcase_add_test(tc, test_build_substitute_all_empty);
        tcase_add_test(tc, test_build_substitute_unreferenced_not_appended);
        tcase_add_test(tc, test_build_substitute_verbatim);
        tcase_add_test(tc, test_build_substitute_missing);
        tcase_add_test(tc, test_build_no_command);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(args_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
