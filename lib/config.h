/* Configuration: /etc/tasad/tasad.conf (TasadConfig) and /etc/tasad/queues/<queue>.conf
 * (QueueConfig), both libconfig syntax, each parsed through one schema table.
 *
 * Errors: every loader returns -errno and, on failure, a malloc'd message in *ret_error of the
 * form "<file>:<line>: <key>: <what is wrong>" (line omitted when libconfig has none). Unknown
 * keys are errors. Strings are copied out of libconfig before config_destroy(). */
#pragma once

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "parse.h"

#define TASAD_CONF_DEFAULT "/etc/tasad/tasad.conf"
/* The default of tasad.conf's queues_dir (what a --help names: the path the binary reads). */
#define TASAD_QUEUES_DIR_DEFAULT "/etc/tasad/queues"

typedef struct TasadConfig {
        char *path;                     /* file it was loaded from (NULL for built-in defaults) */
        RedisAddress redis;             /* key "redis", URL; default unix:///run/redis/redis-server.sock */
        char *redis_password_credential; /* key "redis_password_credential": name of a file in
                                          * $CREDENTIALS_DIRECTORY; overrides the URL password */
        char *api_tokens_credential;    /* "api_tokens_credential": credential holding the API
                                         * tokens (tokens.h, loaded by the scheduler and
                                         * tasad-results); set, they also serve TCP */
        bool credentials_loaded;        /* daemon_load_config() read the credentials (not so
                                         * for --check-config without $CREDENTIALS_DIRECTORY) */
        char *prefix;                   /* "prefix", default "tasad" ([A-Za-z0-9_.-]{1,32}) */
        char *queues_dir;               /* "queues_dir", default /etc/tasad/queues */
        char *results_dir;              /* "results_dir", default /var/lib/tasad/results */
        char *scheduler_socket;         /* "scheduler_socket", default /run/tasad/scheduler.sock */
        char *results_socket;           /* "results_socket", default /run/tasad/results.sock */
        char *worker_socket_dir;        /* "worker_socket_dir", default /run/tasad/worker */
        char **policy_dirs;             /* "policy_dirs", default [/etc/tasad/policy, /usr/share/tasad/policy] */
        char *work_dir;                 /* "work_dir", jobs' working directories are made in
                                         * <work_dir>/<queue>/, default /var/lib/tasad/work */
        uint64_t retention_usec;        /* "retention", finished job records in Redis, default 7d */
        uint64_t max_request;           /* "max_request", HTTP body limit, default 64M */
        uint64_t max_request_buffered;  /* "max_request_buffered", all bodies held at once,
                                         * default 256M, >= max_request */
        uint64_t http_timeout_usec;     /* "http_timeout": a request head, a pause in a body
                                         * or in taking a reply, default 10s */
        unsigned http_max_connections;  /* "http_max_connections", per daemon, default 512 */
        unsigned http_max_connections_per_host; /* "http_max_connections_per_host", per
                                                 * client address on TCP, default 64 */
        uint64_t redis_timeout_usec;    /* "redis_timeout", per command, default 10s */
        uint64_t batch_abandon_after_usec; /* "batch_abandon_after": a batch stored in steps
                                            * whose staging stopped this long ago without a
                                            * commit is discarded, default 10min */
        unsigned job_uid_first;         /* "job_uid_first", default 400000: the range of
                                         * accounts reserved for jobs (one per running job) */
        unsigned job_uid_count;         /* "job_uid_count", default 1024 */
} TasadConfig;

typedef enum ArgsMode {
        ARGS_APPEND,       /* job args appended after the command (no placeholder present) */
        ARGS_SUBSTITUTE,   /* command contains "{args}" and/or "{1}".."{N}" elements */
} ArgsMode;

typedef struct QueueConfig {
        char *name;                 /* from the file name, validated by queue_name_is_valid() */
        char *path;
        char **command;             /* "command": argv, NULL-terminated, [0] absolute path */
        ArgsMode args_mode;
        unsigned concurrency;       /* "concurrency", 1..1024, default 1 */
        unsigned prefetch;          /* "prefetch", 0..1024, default 1: jobs taken ahead of a
                                     * free slot while the queue's jobs are short */
        uint64_t timeout_usec;      /* "timeout", default 1h, > 0 */
        uint64_t kill_grace_usec;   /* "kill_grace", TERM -> KILL, default 5s */
        uint64_t lease_usec;        /* "lease", default 15s, >= 1s; renewed every lease/3 */
        uint64_t drain_timeout_usec; /* "drain_timeout", on SIGTERM, default 30s */
        unsigned retries;           /* "retries", extra attempts after the first, default 0, <= 100 */
        uint64_t backoff_usec;      /* "backoff", first retry delay, default 1s; doubles */
        uint64_t backoff_max_usec;  /* "backoff_max", default 10m */
        unsigned max_redeliveries;  /* "max_redeliveries", lease expiries before dead, default 5 */
        uint64_t max_output;        /* "max_output", per stream (stdout, stderr), default 1M */
        uint64_t max_payload;       /* "max_payload", default 1M */
        unsigned max_args;          /* "max_args", default 16, <= 4096 */
        uint64_t max_arg_len;       /* "max_arg_len", default 4096 */
        char *arg_pattern;          /* "arg_pattern", POSIX ERE each argument must match in full;
                                     * NULL: any argument (still bounded by max_arg_len, no NUL) */
        regex_t arg_regex;          /* compiled, anchored ^(?:pattern)$, valid when arg_pattern */
        char *policy;               /* "policy", sandbox profile name, default "default" */
        char **env;                 /* "env": ["NAME=value", …] passed to jobs; NULL-terminated */
        char *user;                 /* "user": the account jobs run as; NULL: "nobody" when the
                                     * worker runs as root, else the worker's own user */
        /* Resource limits (setrlimit) of every job process; UINT64_MAX: "infinity". */
        uint64_t limit_cpu_usec;    /* "limit_cpu", RLIMIT_CPU, default infinity (see timeout) */
        uint64_t limit_memory;      /* "limit_memory", RLIMIT_DATA, default 1G */
        uint64_t limit_address_space; /* "limit_address_space", RLIMIT_AS, default infinity */
        uint64_t limit_processes;   /* "limit_processes", RLIMIT_NPROC (per user), default 512 */
        uint64_t limit_open_files;  /* "limit_open_files", RLIMIT_NOFILE, default 1024 */
        uint64_t limit_file_size;   /* "limit_file_size", RLIMIT_FSIZE, default 1G */
        uint64_t limit_work_dir;    /* "limit_work_dir", size of the tmpfs that is the job's
                                     * working directory, default 1G; UINT64_MAX: none */
        /* Namespaces. */
        bool network;               /* "network", default true; false: an empty network
                                     * namespace with only loopback */
        bool private_ipc;           /* "private_ipc", default false: own SysV IPC / POSIX mq */
        bool private_tmp;           /* "private_tmp", default false: own tmpfs on /tmp */
        uint64_t private_tmp_size;  /* "private_tmp_size", default 64M */
        bool allow_degraded;        /* "allow_degraded", default false: run even when a requested
                                     * isolation layer is unavailable (logged) instead of refusing */
        char **submit_groups;       /* "submit_groups", default ["tasad"] */
        char **read_groups;         /* "read_groups", default ["tasad"] */
} QueueConfig;

/* Finished records' lifetime in Redis, in whole seconds as EXPIRE takes it (at least 1). */
static inline uint64_t tasad_config_retention_sec(const TasadConfig *c) {
        return MAX(c->retention_usec / USEC_PER_SEC, 1);
}

/* Built-in defaults, as if the file were empty. */
int tasad_config_new_default(TasadConfig **ret);
/* Loads path; a missing file is -ENOENT (callers may then use defaults). */
int tasad_config_load(const char *path, TasadConfig **ret, char **ret_error);
TasadConfig *tasad_config_free(TasadConfig *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(TasadConfig *, tasad_config_free);

/* Loads one queue file; the queue's name is the file name without ".conf". */
int queue_config_load(const char *path, QueueConfig **ret, char **ret_error);
QueueConfig *queue_config_free(QueueConfig *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(QueueConfig *, queue_config_free);

/* All queues of a directory (*.conf, sorted by name). Any bad file fails the whole load. */
typedef struct QueueSet {
        QueueConfig **queues;
        size_t n_queues;
} QueueSet;
int queue_set_load(const char *dir, QueueSet **ret, char **ret_error);
QueueSet *queue_set_free(QueueSet *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(QueueSet *, queue_set_free);
QueueConfig *queue_set_find(const QueueSet *s, const char *name);

/* Opens and parses one libconfig file (relative @include paths resolved next to it). A missing
 * file is -ENOENT; every failure sets *ret_error ("<file>:<line>: <what>" for syntax errors). */
typedef struct config_t config_t;
int config_file_read(const char *path, config_t **ret, char **ret_error);
void config_file_freep(config_t **c);

/* Reads the Redis password from $CREDENTIALS_DIRECTORY/<name> when configured (trailing
 * newline stripped). 0 when nothing is configured. */
int tasad_config_load_credentials(TasadConfig *c, char **ret_error);
/* The content of credential `name` (configured by key `key`): its path and text (NUL-free, at
 * most 64K). Errors name the file and the key in *ret_error. */
int tasad_config_read_credential(const TasadConfig *c, const char *key, const char *name,
                                 char **ret_path, char **ret, char **ret_error);
