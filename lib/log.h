/* Logging: to the journal with structured fields when stderr is connected to it (systemd sets
 * JOURNAL_STREAM), otherwise one line per message to stderr.
 *
 * lib/ code logs at debug level only; the caller that decides what to do logs once. Every
 * log_*_errno() call returns -abs(error) so `return log_error_errno(r, "…: %m");` works; %m
 * expands to strerror(error). */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,    /* journal when JOURNAL_STREAM matches stderr, else stderr */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
} LogTarget;

/* Job fields attached to a message as TASAD_* journal fields (any member may be NULL/0). */
typedef struct LogJob {
        const char *queue;
        const char *job_id;
        unsigned attempt;   /* 0: omitted */
        const char *exit;   /* TASAD_EXIT=, the classified outcome ("exit:0", "timeout", …) */
} LogJob;

/* Sets the program name and target; TASAD_LOG_LEVEL (debug|info|notice|warning|err) and
 * TASAD_LOG_TARGET (journal|stderr|auto) override from the environment. */
void log_setup(const char *ident);
void log_set_max_level(int level);
int log_get_max_level(void);
void log_set_target(LogTarget t);

int log_internal(int level, int error, const LogJob *job, const char *file, int line,
                 const char *func, const char *format, ...) _printf_(7, 8);
int log_internalv(int level, int error, const LogJob *job, const char *file, int line,
                  const char *func, const char *format, va_list ap) _printf_(7, 0);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* A message about one job, carrying TASAD_QUEUE/TASAD_JOB_ID/TASAD_ATTEMPT/TASAD_EXIT. */
#define log_job(level, jobfields, ...) \
        log_internal((level), 0, (jobfields), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_job_errno(level, e, jobfields, ...) \
        log_internal((level), (e), (jobfields), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Oom: log and return -ENOMEM. */
#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")
