#include "log.h"

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* log_to_journal() sends the caller's CODE_FILE/LINE/FUNC itself; without this, sd-journal.h's
 * macros would add log.c's own location as a second set of CODE_* fields. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <time.h>

static const char *log_ident = "tasad";
static int log_max_level = LOG_INFO;
static LogTarget log_target = LOG_TARGET_AUTO;
static bool log_use_journal = false;

static bool journal_stream_is_stderr(void) {
        const char *e = secure_getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

static int level_from_string(const char *s) {
        static const struct {
                const char *name;
                int level;
        } table[] = {
                { "debug", LOG_DEBUG },     { "info", LOG_INFO },   { "notice", LOG_NOTICE },
                { "warning", LOG_WARNING }, { "err", LOG_ERR },     { "error", LOG_ERR },
                { "crit", LOG_CRIT },
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(table[i].name, s))
                        return table[i].level;
        return -EINVAL;
}

static void update_target(void) {
        switch (log_target) {
        case LOG_TARGET_JOURNAL:
                log_use_journal = true;
                break;
        case LOG_TARGET_STDERR:
                log_use_journal = false;
                break;
        default:
                log_use_journal = journal_stream_is_stderr();
        }
}

void log_setup(const char *ident) {
        const char *e;

        if (ident)
                log_ident = ident;
        e = secure_getenv("TASAD_LOG_LEVEL");
        if (e && level_from_string(e) >= 0)
                log_max_level = level_from_string(e);
        e = secure_getenv("TASAD_LOG_TARGET");
        if (e && streq(e, "journal"))
                log_target = LOG_TARGET_JOURNAL;
        else if (e && streq(e, "stderr"))
                log_target = LOG_TARGET_STDERR;
        update_target();
}

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

void log_set_target(LogTarget t) {
        log_target = t;
        update_target();
}

static void log_to_journal(int level, int error, const LogJob *job, const char *file, int line,
                           const char *func, const char *msg) {
        char f_prio[32], f_file[512], f_line[32], f_func[256], f_errno[32], f_q[256], f_id[256],
                f_att[48], f_exit[256], f_ident[128];
        struct iovec iov[12];
        size_t n = 0;
        _cleanup_free_ char *f_msg = NULL;

#define ADD(buf, ...)                                                  \
        do {                                                           \
                snprintf(buf, sizeof(buf), __VA_ARGS__);               \
                iov[n++] = (struct iovec){ buf, strlen(buf) };         \
        } while (0)

        if (asprintf(&f_msg, "MESSAGE=%s", msg) < 0)
                return;
        iov[n++] = (struct iovec){ f_msg, strlen(f_msg) };
        ADD(f_prio, "PRIORITY=%d", level);
        ADD(f_ident, "SYSLOG_IDENTIFIER=%s", log_ident);
        ADD(f_file, "CODE_FILE=%s", file);
        ADD(f_line, "CODE_LINE=%d", line);
        ADD(f_func, "CODE_FUNC=%s", func);
        if (error != 0)
                ADD(f_errno, "ERRNO=%d", error < 0 ? -error : error);
        if (job && job->queue)
                ADD(f_q, "TASAD_QUEUE=%s", job->queue);
        if (job && job->job_id)
                ADD(f_id, "TASAD_JOB_ID=%s", job->job_id);
        if (job && job->attempt > 0)
                ADD(f_att, "TASAD_ATTEMPT=%u", job->attempt);
        if (job && job->exit)
                ADD(f_exit, "TASAD_EXIT=%s", job->exit);
#undef ADD
        sd_journal_sendv(iov, (int) n);
}

static void log_to_stderr(int level, const LogJob *job, const char *msg) {
        static const char *const names[] = { "emerg", "alert", "crit", "error",
                                             "warning", "notice", "info", "debug" };
        char fields[512] = "";

        if (job && job->job_id)
                snprintf(fields, sizeof(fields), " [queue=%s job=%s attempt=%u%s%s]",
                         job->queue ? job->queue : "-", job->job_id, job->attempt,
                         job->exit ? " exit=" : "", job->exit ? job->exit : "");
        else if (job && job->queue)
                snprintf(fields, sizeof(fields), " [queue=%s]", job->queue);
        /* One write per line so concurrent writers do not interleave. */
        fprintf(stderr, "%s[%d]: %s: %s%s\n", log_ident, (int) getpid(),
                names[level & 7], msg, fields);
}

int log_internalv(int level, int error, const LogJob *job, const char *file, int line,
                  const char *func, const char *format, va_list ap) {
        char buf[4096];

        if (error < 0)
                error = -error;
        if ((level & 7) > log_max_level)
                return -error;

        errno = error; /* for %m */
        vsnprintf(buf, sizeof(buf), format, ap);

        if (log_use_journal)
                log_to_journal(level, error, job, file, line, func, buf);
        else
                log_to_stderr(level, job, buf);
        return -error;
}

int log_internal(int level, int error, const LogJob *job, const char *file, int line,
                 const char *func, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_internalv(level, error, job, file, line, func, format, ap);
        va_end(ap);
        return r;
}
