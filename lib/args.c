/* Job arguments: validation against a queue's rules, and the argv that is finally executed. */
#include "strutil.h"
#include "args.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>

#include "config.h"
#include "macro.h"

static int substitute_count(const char *elem, size_t n_args, size_t *ret, char **ret_error);

static int arg_validate(const QueueConfig *q, const char *arg, size_t i, char **ret_error) {
        /* A C string cannot carry a NUL; the decoders (JSON, netstring) refuse one before this. */
        size_t cap = q->max_arg_len >= SIZE_MAX ? SIZE_MAX - 1 : (size_t) q->max_arg_len;
        int k;

        if (!arg)
                return error_setf(ret_error, -EINVAL, "args[%zu]: missing", i);
        if (strnlen(arg, cap + 1) > cap)
                return error_setf(ret_error, -E2BIG, "args[%zu]: longer than max_arg_len (%" PRIu64 ")",
                                  i, q->max_arg_len);
        if (!q->arg_pattern)
                return 0;
        k = regexec(&q->arg_regex, arg, 0, NULL, 0);
        if (k == REG_NOMATCH)
                return error_setf(ret_error, -EINVAL, "args[%zu]: does not match the queue's pattern '%s'",
                                  i, q->arg_pattern);
        if (k != 0)
                return error_setf(ret_error, -ENOMEM, "args[%zu]: matching the queue's pattern failed", i);
        return 0;
}

int args_validate(const QueueConfig *q, char *const *args, size_t n_args, char **ret_error) {
        size_t k;
        int r;

        /* Each argument's own rules first: "-oN /tmp/x" to a queue of one address is refused
         * for "-oN" not being one, which says more than the count does. The decoders bound
         * n_args (max_args + 16 at most from a request), so this costs little. */
        for (size_t i = 0; i < n_args; i++) {
                r = arg_validate(q, args[i], i, ret_error);
                if (r < 0)
                        return r;
        }
        if (n_args > q->max_args)
                return error_setf(ret_error, -E2BIG, "args: %zu arguments exceed max_args (%u)", n_args,
                                  q->max_args);
        /* A job that lacks an argument the command names ("{N}") is refused here, at
         * submission, not when a worker builds its argv. */
        if (q->args_mode == ARGS_SUBSTITUTE && q->command)
                for (char **c = q->command; *c; c++) {
                        r = substitute_count(*c, n_args, &k, ret_error);
                        if (r < 0)
                                return r;
                }
        return 0;
}

/* Whether elem is a "{N}" placeholder: '{', one or more ASCII digits, '}' (the rule config.c
 * uses to pick ARGS_SUBSTITUTE). *ret_n is N, saturated at SIZE_MAX. Any other element,
 * "--port={1}" included, is passed literally. */
static bool placeholder_number(const char *elem, size_t *ret_n) {
        const char *s = elem + 1;
        size_t n = 0;

        if (elem[0] != '{' || *s < '0' || *s > '9')
                return false;
        for (; *s >= '0' && *s <= '9'; s++)
                n = n > (SIZE_MAX - 9) / 10 ? SIZE_MAX : n * 10 + (size_t) (*s - '0');
        if (!streq(s, "}"))
                return false;
        *ret_n = n;
        return true;
}

/* Number of argv elements a command element expands to, or -EINVAL with a message when it
 * names an argument the job does not have. */
static int substitute_count(const char *elem, size_t n_args, size_t *ret, char **ret_error) {
        size_t idx, k = 1;

        if (streq(elem, "{args}"))
                k = n_args;
        else if (placeholder_number(elem, &idx)) {
                if (idx == 0)
                        return error_setf(ret_error, -EINVAL,
                                          "command element '%s': arguments are numbered from {1}", elem);
                if (idx > n_args)
                        return error_setf(ret_error, -EINVAL,
                                          "command needs argument {%zu} but the job has only %zu", idx,
                                          n_args);
        }
        *ret = k;
        return 0;
}

static int push(char **argv, size_t *n, const char *s) {
        argv[*n] = strdup(s);
        if (!argv[*n])
                return -ENOMEM;
        (*n)++;
        return 0;
}

/* Appends what one command element expands to. */
static int substitute_one(const char *elem, char *const *args, size_t n_args, char **argv,
                          size_t *n) {
        size_t idx;
        int r;

        if (streq(elem, "{args}")) {
                for (size_t i = 0; i < n_args; i++) {
                        r = push(argv, n, args[i]);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        /* substitute_count() has checked 1 <= idx <= n_args */
        if (placeholder_number(elem, &idx))
                return push(argv, n, args[idx - 1]);
        return push(argv, n, elem);
}

static int argv_size(const QueueConfig *q, size_t n_args, size_t *ret, char **ret_error) {
        size_t total = 0;
        int r;

        for (char **c = q->command; *c; c++) {
                size_t k = 1;

                if (q->args_mode == ARGS_SUBSTITUTE) {
                        r = substitute_count(*c, n_args, &k, ret_error);
                        if (r < 0)
                                return r;
                }
                if (k > SIZE_MAX / sizeof(char *) - 2 - total)
                        return -E2BIG;
                total += k;
        }
        if (q->args_mode == ARGS_APPEND) {
                if (n_args > SIZE_MAX / sizeof(char *) - 2 - total)
                        return -E2BIG;
                total += n_args;
        }
        *ret = total;
        return 0;
}

int args_build_argv(const QueueConfig *q, char *const *args, size_t n_args, char ***ret_argv,
                    char **ret_error) {
        _cleanup_strv_free_ char **argv = NULL;
        size_t total, n = 0;
        int r;

        if (!q->command || !q->command[0])
                return error_setf(ret_error, -EINVAL, "queue has no command");
        r = argv_size(q, n_args, &total, ret_error);
        if (r < 0)
                return r;
        argv = calloc(total + 1, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        for (char **c = q->command; *c; c++) {
                if (q->args_mode == ARGS_SUBSTITUTE)
                        r = substitute_one(*c, args, n_args, argv, &n);
                else
                        r = push(argv, &n, *c);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; q->args_mode == ARGS_APPEND && i < n_args; i++) {
                r = push(argv, &n, args[i]);
                if (r < 0)
                        return r;
        }
        *ret_argv = TAKE_PTR(argv);
        return 0;
}
