/* Job arguments against a queue's rules, and the argv that is finally executed. */
#pragma once

#include <stddef.h>

typedef struct QueueConfig QueueConfig;

/* Checks count (max_args and, for a command with "{N}" placeholders, at least the largest N),
 * each length (max_arg_len), no NUL, and the full-match pattern. -EINVAL/-E2BIG with a message
 * ("args[i]: …", "command needs argument {N} but the job has only M") in *ret_error. */
int args_validate(const QueueConfig *q, char *const *args, size_t n_args, char **ret_error);

/* The queue's command with the job's args appended, or substituted into "{args}" (all, in
 * place) and "{N}" (1-based; a missing N is an error) elements. NULL-terminated, owned. */
int args_build_argv(const QueueConfig *q, char *const *args, size_t n_args, char ***ret_argv,
                    char **ret_error);
