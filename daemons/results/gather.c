/* The gatherer (see gather.h and docs/protocol.md, "Gathered results").
 *
 * It works in rounds. A round is the entries of one XREADGROUP (at most GATHER_COUNT per
 * stream), or the failed entries whose retry is due. Each entry's record is read (HGETALL)
 * and judged: written to disk, nothing to write, failed (retried later), set aside, or the
 * results directory failed (a stall). When every entry of the round is judged, the round is
 * committed: the queue directories that received results are fsynced, then, on the command
 * connection and so in this order, the records of the written results lose their outputs
 * (HSET gathered/out_len/err_len, HDEL out err), set-aside ones are recorded (script
 * set_aside), and every handled entry is acknowledged (one XACK per queue). Failed entries stay
 * pending in the group and wait in memory for their retry; the next round starts at once, so a
 * record that cannot be gathered never holds up the others.
 *
 * What a SIGKILL (or a lost connection) at each point leaves, and why nothing is lost:
 *  1. before or while the files are written into .<id>.tmp: the entry is pending and the
 *     record still holds out/err; the next instance reads the entry again (backlog), removes
 *     the stale .<id>.tmp and writes it afresh.
 *  2. after the files and .<id>.tmp were fsynced, before the rename: the same as 1.
 *  3. after the rename, before the queue directory's fsync or before HSET/HDEL reached Redis:
 *     the result is on disk (a power loss may undo the rename), the record still holds
 *     out/err: gathered again, the directory is replaced by an identical one in one
 *     RENAME_EXCHANGE. An exchange interrupted before the old copy is removed leaves a
 *     .<id>.tmp, which the next write removes as in 1.
 *  4. after HDEL, before XACK: the entry is read again, the record says gathered=1 and holds
 *     no `out`: its result is complete and durable on disk (the fsync came before the HDEL),
 *     so the entry is only acknowledged, never written again from a record without outputs.
 *  5. after XACK: done; nothing is read again.
 * The one copy of the outputs in Redis is dropped only in 4, after the disk holds them durably.
 *
 * A record is set aside at once when its id is not a valid id (it must never become a path),
 * when it has no state, or when its stream entry has no id; after GATHER_ATTEMPTS failed
 * attempts (a record that cannot be read, a result that cannot be written while others can),
 * with a pause doubling from GATHER_RETRY_USEC between them. Errors that say the results
 * directory itself takes nothing (the queue's directory cannot be opened or take a new entry,
 * a full, read-only or failing file system) are not the record's fault: they count no attempt
 * and pause all gathering (STALL_MIN_USEC doubling to STALL_MAX_USEC) until a write works;
 * they are logged once per episode. Attempts are counted per process. */
#include "gather.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "config.h"
#include "fsutil.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "record.h"
#include "redis.h"
#include "resultdir.h"
#include "service.h"

#define GATHER_COUNT "64"               /* entries per stream and round */
#define GATHER_ATTEMPTS 5U              /* failed attempts before a record is set aside */
#define GATHER_RETRY_USEC USEC_PER_SEC  /* before the first retry of a record; doubles */
#define STALL_MIN_USEC USEC_PER_SEC     /* the results directory takes nothing: pause */
#define STALL_MAX_USEC (5 * USEC_PER_SEC)
#define ID_PRINT_MAX (4 * JOB_ID_MAX + 8)

typedef enum Verdict {
        VERDICT_PENDING,  /* waiting for its record */
        VERDICT_DROP,     /* Redis failed: stays pending, read again after the reconnect */
        VERDICT_WRITTEN,  /* renamed into place; durable once the queue directory is synced */
        VERDICT_DONE,     /* nothing to write: record gone, or its result on disk already */
        VERDICT_RETRY,    /* this record failed; tried again at `due`, attempts counted */
        VERDICT_ASIDE,    /* given up on: recorded, logged, acknowledged */
        VERDICT_STALL,    /* the results directory failed: tried again after the pause */
} Verdict;

typedef struct Entry Entry;
struct Entry {
        Gatherer *g;               /* NULL once the gatherer is gone (a reply still comes) */
        Entry *next;
        size_t queue;
        char *eid;                 /* stream entry id */
        char *id;                  /* the job id as the stream has it: id_len bytes (+ NUL) */
        size_t id_len;
        bool id_ok;                /* passed job_id_is_valid_n(): may be a path */
        char *batch;               /* the job's batch when it may have finished with it */
        unsigned attempts;         /* failed attempts of this record */
        uint64_t due;              /* in the retry list: when to try again (CLOCK_MONOTONIC) */
        Verdict verdict;
        char *reason;              /* RETRY, ASIDE, STALL: why */
        int error;                 /* STALL: -errno */
        char out_len[24], err_len[24];
        bool outputs_empty;        /* WRITTEN: out and err were empty, nothing to HDEL */
        bool was_set_aside;        /* WRITTEN: the record had a gather_error (gathered again) */
};

struct Gatherer {
        Service *service;
        RedisConn *feed;           /* XREADGROUP … BLOCK: nothing else on it */
        char *consumer;
        GatherHook hook;
        void *userdata;
        bool reading;
        bool backlog;              /* re-reading our pending entries, from cursors[] on */
        char **cursors;            /* per queue: the last entry of its backlog read so far */
        bool in_round;
        Entry *round;
        size_t waiting;            /* records the round still waits for */
        Entry *retries;            /* failed entries, each waiting for its `due` */
        sd_event_source *stall_timer;
        uint64_t stall_usec;       /* the pause after the last failure to write at all */
        uint64_t stalled_until;
        time_t stall_since;        /* 0: not stalled */
        int *queue_dirs;           /* per queue: its results directory, or -EBADF until used */
        bool *dirty;               /* per queue: results renamed into it this round */
        uint64_t gathered;
};

static void gatherer_next(Gatherer *g);

static const char *queue_name(const Gatherer *g, size_t qi) {
        return g->service->queues->queues[qi]->name;
}

static uint64_t now_usec(const Gatherer *g) {
        uint64_t t = 0;

        (void) sd_event_now(g->service->event, CLOCK_MONOTONIC, &t);
        return t;
}

/* --- entries ---------------------------------------------------------------------------------- */

static Entry *entry_free(Entry *e) {
        if (!e)
                return NULL;
        free(e->eid);
        free(e->id);
        free(e->batch);
        free(e->reason);
        free(e);
        return NULL;
}

static void entry_list_free(Entry *l) {
        for (Entry *next; l; l = next) {
                next = l->next;
                entry_free(l);
        }
}

static Entry *entry_new(Gatherer *g, size_t qi, const char *eid, const char *id, size_t id_len,
                        const char *batch) {
        Entry *e = calloc(1, sizeof(Entry));

        if (!e)
                return NULL;
        *e = (Entry){ .g = g, .queue = qi, .id_len = id_len };
        e->eid = strdup(eid);
        e->id = id ? malloc(id_len + 1) : NULL;
        e->batch = batch ? strdup(batch) : NULL;
        if (!e->eid || (id && !e->id) || (batch && !e->batch))
                return entry_free(e);
        if (id) {
                memcpy(e->id, id, id_len);
                e->id[id_len] = '\0';
                e->id_ok = job_id_is_valid_n(id, id_len);
        }
        return e;
}

/* The id for a log line: as it is when valid, else escaped (it may hold any byte). */
static const char *entry_print_id(const Entry *e, char buf[static ID_PRINT_MAX]) {
        size_t o = 0;

        if (!e->id)
                return "(none)";
        if (e->id_ok)
                return e->id;
        for (size_t i = 0; i < e->id_len && o + 8 < ID_PRINT_MAX; i++) {
                unsigned char c = (unsigned char) e->id[i];
                if (c >= 0x20 && c < 0x7f && c != '\\')
                        buf[o++] = (char) c;
                else
                        o += (size_t) snprintf(buf + o, ID_PRINT_MAX - o, "\\x%02x", c);
        }
        if (o + 8 >= ID_PRINT_MAX)
                o += (size_t) snprintf(buf + o, ID_PRINT_MAX - o, "...");
        buf[o] = '\0';
        return buf;
}

/* One line about an entry, its id printable whatever its bytes (no %m: it is formatted first). */
static void entry_log(const Entry *e, int level, const char *fmt, ...) _printf_(3, 4);
static void entry_log(const Entry *e, int level, const char *fmt, ...) {
        char idbuf[ID_PRINT_MAX];
        LogJob lj = { .queue = queue_name(e->g, e->queue), .job_id = entry_print_id(e, idbuf) };
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        log_job(level, &lj, "Job %s of queue '%s': %s", lj.job_id, lj.queue,
                      msg ? msg : "(out of memory)");
}

static void entry_set_reason(Entry *e, const char *fmt, va_list ap) _printf_(2, 0);
static void entry_set_reason(Entry *e, const char *fmt, va_list ap) {
        free(e->reason);
        if (vasprintf(&e->reason, fmt, ap) < 0)
                e->reason = NULL;
}

/* Given up on at once: the record can never be gathered. */
static Verdict entry_aside(Entry *e, const char *fmt, ...) _printf_(2, 3);
static Verdict entry_aside(Entry *e, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        entry_set_reason(e, fmt, ap);
        va_end(ap);
        return VERDICT_ASIDE;
}

/* This record failed: one attempt more, then a retry after a doubling pause, or set aside. */
static Verdict entry_fail(Entry *e, const char *fmt, ...) _printf_(2, 3);
static Verdict entry_fail(Entry *e, const char *fmt, ...) {
        uint64_t delay;
        va_list ap;

        va_start(ap, fmt);
        entry_set_reason(e, fmt, ap);
        va_end(ap);
        if (++e->attempts >= GATHER_ATTEMPTS)
                return VERDICT_ASIDE;
        delay = GATHER_RETRY_USEC << (e->attempts - 1);
        e->due = now_usec(e->g) + delay;
        entry_log(e, e->attempts == 1 ? LOG_WARNING : LOG_DEBUG,
                  "failed to gather its result: %s; retrying in %" PRIu64 "s (set aside after %u "
                  "failed attempts), later results are gathered meanwhile",
                  e->reason ? e->reason : "?", delay / USEC_PER_SEC, GATHER_ATTEMPTS);
        return VERDICT_RETRY;
}

/* The results directory failed, not the record: no attempt counted. */
static Verdict entry_stall(Entry *e, int error, const char *what) {
        free(e->reason);
        e->reason = strdup(what);
        e->error = error;
        return VERDICT_STALL;
}

/* --- writing results ------------------------------------------------------------------------ */

/* The queue's results directory, made (and its parent synced, so it survives a crash) and
 * opened once; again when `fresh` (it was removed meanwhile). */
static int queue_dir(Gatherer *g, size_t qi, bool fresh) {
        const char *base = g->service->config->results_dir;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF, parent = -EBADF;
        int k;

        if (g->queue_dirs[qi] >= 0 && !fresh)
                return g->queue_dirs[qi];
        g->queue_dirs[qi] = safe_close(g->queue_dirs[qi]);
        if (asprintf(&path, "%s/%s", base, queue_name(g, qi)) < 0)
                return -ENOMEM;
        k = mkdir_parents(path, 0750);
        if (k < 0)
                return k;
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        parent = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0 || fsync(parent) < 0)
                return -errno;
        return g->queue_dirs[qi] = TAKE_FD(fd);
}

/* Whether a failed write says the results directory takes nothing (so that every record would
 * fail alike), rather than that this record's result cannot be written. */
static bool write_error_is_global(int k, const char *stage) {
        if (streq(stage, "create")) /* the queue's directory takes no new entry */
                return true;
        switch (-k) {
        case ENOSPC: case EDQUOT: case EROFS: case EIO: case ENOMEM: case EMFILE: case ENFILE:
                return true;
        default:
                return false;
        }
}

static Verdict write_result(Entry *e, const redisReply *rec, const json_t *status) {
        Gatherer *g = e->g;
        _cleanup_free_ char *json = json_dumps(status, JSON_INDENT(2) | JSON_SORT_KEYS |
                                                       JSON_REAL_PRECISION(15));
        ResultFiles f = { .json = json, .json_len = json ? strlen(json) : 0 };
        const char *stage = "open";
        int qfd, k;

        if (!json)
                return entry_stall(e, -ENOMEM, "formatting result.json");
        f.out = record_get(rec, "out", &f.out_len);
        f.err = record_get(rec, "err", &f.err_len);
        qfd = queue_dir(g, e->queue, false);
        k = qfd < 0 ? qfd : result_dir_write(qfd, e->id, &f, &stage);
        if (k == -ENOENT && streq(stage, "create")) { /* the queue's directory was removed */
                qfd = queue_dir(g, e->queue, true);
                k = qfd < 0 ? qfd : result_dir_write(qfd, e->id, &f, &stage);
        }
        if (qfd < 0)
                return entry_stall(e, qfd, "opening the queue's results directory");
        if (k < 0 && write_error_is_global(k, stage))
                return entry_stall(e, k, stage);
        if (k < 0)
                return entry_fail(e, "%s of its result directory failed: %s", stage, strerror(-k));
        g->dirty[e->queue] = true;
        snprintf(e->out_len, sizeof(e->out_len), "%zu", f.out_len);
        snprintf(e->err_len, sizeof(e->err_len), "%zu", f.err_len);
        e->outputs_empty = f.out_len + f.err_len == 0;
        e->was_set_aside = record_get(rec, "gather_error", NULL) != NULL;
        return VERDICT_WRITTEN;
}

/* The record says its result was written and its outputs left Redis: this is a re-read after
 * a crash between HDEL and XACK. The result on disk is complete and durable; it is never
 * replaced by one written from this record, which has no outputs any more. */
static Verdict already_gathered(Entry *e) {
        int qfd = queue_dir(e->g, e->queue, false);

        if (qfd < 0)
                return entry_stall(e, qfd, "opening the queue's results directory");
        (void) result_dir_discard_tmp(qfd, e->id);
        if (!result_dir_complete(qfd, e->id))
                entry_log(e, LOG_WARNING, "gathered before, but its result directory is gone; "
                          "its outputs left Redis then, so nothing is written again");
        return VERDICT_DONE;
}

static bool outputs_gathered(const redisReply *rec) {
        const char *v = record_get(rec, "gathered", NULL);

        return v && streq(v, "1") && !record_get(rec, "out", NULL);
}

static Verdict judge(Entry *e, const redisReply *rec, int error) {
        Verdict v;
        json_t *status;

        if (error == -EIO) /* an error reply: WRONGTYPE, say */
                return entry_fail(e, "reading its record failed: %s",
                                  rec && rec->str ? rec->str : "error reply");
        if (error < 0)
                return VERDICT_DROP;
        if (!rec || rec->type != REDIS_REPLY_ARRAY)
                return entry_fail(e, "reading its record gave a reply of type %d", rec ? rec->type : -1);
        if (rec->elements == 0) { /* expired or deleted: nothing left to gather */
                int qfd = queue_dir(e->g, e->queue, false);
                if (qfd >= 0)
                        (void) result_dir_discard_tmp(qfd, e->id);
                return VERDICT_DONE;
        }
        if (!record_get(rec, "state", NULL))
                return entry_aside(e, "its record has no field 'state': not a job record");
        if (outputs_gathered(rec))
                return already_gathered(e);
        status = record_to_status(rec, queue_name(e->g, e->queue), e->id);
        if (!status)
                return entry_stall(e, -ENOMEM, "building the status");
        v = write_result(e, rec, status);
        json_decref(status);
        return v;
}

/* --- rounds ----------------------------------------------------------------------------------- */

static void round_commit(Gatherer *g);

static void round_reply_done(Gatherer *g) {
        if (--g->waiting == 0)
                round_commit(g);
}

static void on_record(RedisConn *c, const redisReply *rec, int error, void *userdata) {
        Entry *e = userdata;

        if (!e->g) { /* the gatherer is gone */
                entry_free(e);
                return;
        }
        e->verdict = judge(e, rec, error);
        round_reply_done(e->g);
}

static void entry_fetch(Entry *e) {
        Gatherer *g = e->g;
        _cleanup_free_ char *jk = NULL;

        if (!e->id) {
                e->verdict = entry_aside(e, "its entry in the done stream has no job id (deleted "
                                         "from the stream, or not written by tasad)");
                return;
        }
        if (!e->id_ok) { /* never used as a path, never retried */
                e->verdict = entry_aside(e, "invalid job id (docs/protocol.md: "
                                         "[A-Za-z0-9_.:-]{1,64}, not starting with '.' or '-')");
                return;
        }
        jk = queue_key_job(g->service->keys[e->queue], e->id);
        if (!jk || redis_command_argv(g->service->redis, on_record, e, 2,
                                      (const char *[]){ "HGETALL", jk }, NULL) < 0) {
                e->verdict = VERDICT_DROP;
                return;
        }
        g->waiting++;
}

static void round_start(Gatherer *g, Entry *entries) {
        g->in_round = true;
        g->round = entries;
        g->waiting = 1; /* held while the commands are sent */
        for (Entry *e = entries; e; e = e->next)
                entry_fetch(e);
        round_reply_done(g);
}

/* The renames of the round become durable before anything leaves Redis. */
static void round_sync_dirs(Gatherer *g) {
        for (size_t qi = 0; qi < g->service->queues->n_queues; qi++) {
                int k;

                if (!g->dirty[qi])
                        continue;
                g->dirty[qi] = false;
                k = result_dir_sync(g->queue_dirs[qi]);
                if (k < 0)
                        for (Entry *e = g->round; e; e = e->next)
                                if (e->queue == qi && e->verdict == VERDICT_WRITTEN)
                                        e->verdict = entry_stall(e, k, "syncing the queue's directory");
        }
}

static void commit_written(Gatherer *g, Entry *e) {
        _cleanup_free_ char *jk = queue_key_job(g->service->keys[e->queue], e->id);
        RedisConn *c = g->service->redis;

        if (!jk)
                return; /* out of memory: the outputs stay in Redis too, nothing is lost */
        /* The sizes stay for the status once the outputs are on disk. Empty outputs may stay:
         * they cost nothing and say the same. */
        (void) redis_command_argv(c, NULL, NULL, 8,
                                  (const char *[]){ "HSET", jk, "gathered", "1", "out_len",
                                                    e->out_len, "err_len", e->err_len }, NULL);
        if (!e->outputs_empty)
                (void) redis_command_argv(c, NULL, NULL, 4,
                                          (const char *[]){ "HDEL", jk, "out", "err" }, NULL);
        if (e->was_set_aside) { /* set aside before, gathered now after all */
                (void) redis_command_argv(c, NULL, NULL, 3,
                                          (const char *[]){ "HDEL", jk, "gather_error" }, NULL);
                (void) redis_command_argv(c, NULL, NULL, 3,
                                          (const char *[]){ "ZREM", g->service->keys[e->queue]->gather_failed,
                                                            e->id }, NULL);
        }
        g->gathered++;
}

static void commit_aside(Gatherer *g, Entry *e) {
        const QueueKeys *k = g->service->keys[e->queue];
        const char *reason = e->reason ? e->reason : "out of memory";
        _cleanup_free_ char *jk = NULL;
        size_t jk_len = 0;

        entry_log(e, LOG_ERR, "set aside, its result is not gathered: %s%s. Whatever the "
                  "record holds stays in Redis; the reason goes into its field gather_error (if "
                  "it is a hash), the id into %s.", reason,
                  e->attempts >= GATHER_ATTEMPTS ? " (last of its failed attempts)" : "",
                  k->gather_failed);
        if (!e->id)
                return;
        jk = queue_key_job_n(k, e->id, e->id_len, &jk_len);
        if (jk)
                (void) redis_script(g->service->redis, SCRIPT_SET_ASIDE, NULL, NULL, 2, 4,
                                    (const char *[]){ jk, k->gather_failed, e->id, reason },
                                    (const size_t[]){ jk_len, strlen(k->gather_failed),
                                                      e->id_len, strlen(reason) });
}

static bool entry_handled(const Entry *e) {
        return e->verdict == VERDICT_WRITTEN || e->verdict == VERDICT_DONE ||
               e->verdict == VERDICT_ASIDE;
}

/* One XACK per queue for the handled entries of the round, after their records' updates on
 * the same connection. Lost with the connection, they stay pending and are read again. */
static void round_ack(Gatherer *g) {
        size_t n = 0;
        _cleanup_free_ const char **argv = NULL;

        for (Entry *e = g->round; e; e = e->next)
                n++;
        argv = calloc(n + 3, sizeof(char *));
        if (!argv)
                return (void) log_oom();
        for (size_t qi = 0; qi < g->service->queues->n_queues; qi++) {
                size_t k = 0;

                argv[k++] = "XACK";
                argv[k++] = g->service->keys[qi]->done;
                argv[k++] = "gatherer";
                for (Entry *e = g->round; e; e = e->next)
                        if (e->queue == qi && entry_handled(e))
                                argv[k++] = e->eid;
                if (k > 3)
                        (void) redis_command_argv(g->service->redis, NULL, NULL, (int) k, argv, NULL);
        }
}

static int on_stall_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        gatherer_next(userdata);
        return 0;
}

/* Some result could not be written because the results directory takes nothing: pause all
 * gathering, longer each time, and say so once. */
static void stall_begin(Gatherer *g, const Entry *e) {
        g->stall_usec = g->stall_usec ? MIN(g->stall_usec * 2, STALL_MAX_USEC) : STALL_MIN_USEC;
        g->stalled_until = now_usec(g) + g->stall_usec;
        if (g->stall_since == 0) {
                LogJob lj = { .queue = queue_name(g, e->queue), .job_id = e->id };

                g->stall_since = time(NULL);
                log_job_errno(LOG_ERR, e->error, &lj, "Failed to write the result of job %s to "
                              "%s/%s (%s): %m; results stay in Redis, gathering pauses and is "
                              "retried every %" PRIu64 "s at most (logged once until it works "
                              "again).", e->id, g->service->config->results_dir, lj.queue,
                              e->reason ? e->reason : "?", STALL_MAX_USEC / USEC_PER_SEC);
        }
}

static void stall_end(Gatherer *g) {
        if (g->stall_since != 0)
                log_info("Writing results to %s works again after %lds.",
                         g->service->config->results_dir, (long) (time(NULL) - g->stall_since));
        g->stall_since = 0;
        g->stall_usec = 0;
}

/* Entries that failed wait in the retry list; the others are done with. */
static void round_dispose(Gatherer *g, Entry *l) {
        for (Entry *e = l, *next; e; e = next) {
                next = e->next;
                if (e->verdict == VERDICT_STALL)
                        e->due = g->stalled_until;
                if (e->verdict == VERDICT_RETRY || e->verdict == VERDICT_STALL) {
                        e->verdict = VERDICT_PENDING;
                        e->next = g->retries;
                        g->retries = e;
                } else
                        entry_free(e);
        }
}

static void round_commit(Gatherer *g) {
        const Entry *stalled = NULL;
        bool wrote = false;
        Entry *l;

        round_sync_dirs(g);
        for (Entry *e = g->round; e; e = e->next) {
                if (e->verdict == VERDICT_WRITTEN) {
                        commit_written(g, e);
                        wrote = true;
                } else if (e->verdict == VERDICT_ASIDE)
                        commit_aside(g, e);
                else if (e->verdict == VERDICT_STALL && !stalled)
                        stalled = e;
        }
        round_ack(g);
        if (stalled)
                stall_begin(g, stalled);
        else if (wrote)
                stall_end(g);
        l = TAKE_PTR(g->round);
        g->in_round = false;
        for (Entry *e = l; e; e = e->next)
                if (entry_handled(e) && e->id_ok && g->hook)
                        g->hook(g->userdata, e->queue, e->id, e->batch);
        round_dispose(g, l);
        gatherer_next(g);
}

/* --- reading the streams ----------------------------------------------------------------------- */

static bool retry_has(const Gatherer *g, size_t qi, const char *eid) {
        for (const Entry *e = g->retries; e; e = e->next)
                if (e->queue == qi && streq(e->eid, eid))
                        return true;
        return false;
}

/* Takes the retries that are due out of the list; *ret_next: when the next one is due. */
static Entry *retries_take_due(Gatherer *g, uint64_t now, uint64_t *ret_next) {
        Entry *due = NULL, **p = &g->retries;

        *ret_next = UINT64_MAX;
        while (*p) {
                Entry *e = *p;
                if (e->due <= now) {
                        *p = e->next;
                        e->next = due;
                        due = e;
                } else {
                        *ret_next = MIN(*ret_next, e->due);
                        p = &e->next;
                }
        }
        return due;
}

static size_t queue_of_stream(const Gatherer *g, const char *key) {
        for (size_t i = 0; i < g->service->queues->n_queues; i++)
                if (streq(g->service->keys[i]->done, key))
                        return i;
        return SIZE_MAX;
}

/* The entries of one stream of an XREADGROUP reply, appended to *list; the number read. */
static size_t feed_stream(Gatherer *g, const redisReply *stream, Entry ***tail) {
        const char *key = redis_reply_string(redis_reply_element(stream, 0), NULL);
        const redisReply *entries = redis_reply_element(stream, 1);
        size_t qi = queue_of_stream(g, key ? key : ""), n = 0;

        for (size_t i = 0; qi != SIZE_MAX && entries && i < entries->elements; i++) {
                const redisReply *fields = redis_reply_element(entries->element[i], 1);
                const char *eid = redis_reply_string(redis_reply_element(entries->element[i], 0), NULL);
                const char *left = record_get(fields, "left", NULL);
                const char *batch = record_get(fields, "batch", NULL);
                size_t id_len = 0;
                const char *id = record_get(fields, "id", &id_len);
                Entry *e;

                if (!eid)
                        continue;
                n++;
                if (g->backlog) {
                        free(g->cursors[qi]);
                        g->cursors[qi] = strdup(eid);
                        if (!g->cursors[qi] || retry_has(g, qi, eid))
                                continue; /* out of memory: read again; retrying: not twice */
                }
                /* Entries without `left` (written by older workers) wake the batch's waiters each. */
                e = entry_new(g, qi, eid, id, id_len, batch && (!left || streq(left, "0")) ? batch : NULL);
                if (!e) {
                        log_oom(); /* stays pending: read again with the next backlog */
                        continue;
                }
                **tail = e;
                *tail = &e->next;
        }
        return n;
}

static void cursors_reset(Gatherer *g) {
        for (size_t i = 0; i < g->service->queues->n_queues; i++) {
                free(g->cursors[i]);
                g->cursors[i] = NULL;
        }
}

static void on_feed(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Gatherer *g = userdata;
        Entry *list = NULL, **tail = &list;
        size_t n = 0;

        g->reading = false;
        if (error < 0)
                return; /* the reconnect reads the backlog again */
        for (size_t s = 0; reply && reply->type == REDIS_REPLY_ARRAY && s < reply->elements; s++)
                n += feed_stream(g, reply->element[s], &tail);
        if (g->backlog && n == 0) {
                g->backlog = false; /* every pending entry was read: now new ones */
                cursors_reset(g);
        }
        round_start(g, list);
}

/* XREADGROUP of every queue's stream: the backlog (our pending entries, page by page) without
 * blocking, else new entries, blocking until the next retry is due. */
static void read_feed(Gatherer *g, uint64_t now, uint64_t next_due) {
        size_t nq = g->service->queues->n_queues, k = 0;
        _cleanup_free_ const char **argv = calloc(9 + 2 * nq, sizeof(char *));
        char block[24];

        if (!argv)
                return (void) log_oom();
        argv[k++] = "XREADGROUP";
        argv[k++] = "GROUP";
        argv[k++] = "gatherer";
        argv[k++] = g->consumer;
        argv[k++] = "COUNT";
        argv[k++] = GATHER_COUNT;
        if (!g->backlog) {
                snprintf(block, sizeof(block), "%" PRIu64, next_due == UINT64_MAX ? 0 :
                         MAX((next_due - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (uint64_t) 1));
                argv[k++] = "BLOCK";
                argv[k++] = block;
        }
        argv[k++] = "STREAMS";
        for (size_t i = 0; i < nq; i++)
                argv[k++] = g->service->keys[i]->done;
        for (size_t i = 0; i < nq; i++)
                argv[k++] = !g->backlog ? ">" : g->cursors[i] ? g->cursors[i] : "0";
        if (redis_command_argv(g->feed, on_feed, g, (int) k, argv, NULL) >= 0)
                g->reading = true;
}

static void gatherer_next(Gatherer *g) {
        uint64_t now = now_usec(g), next_due;
        Entry *due;

        if (g->reading || g->in_round || g->service->queues->n_queues == 0 ||
            !redis_conn_is_up(g->feed) || !redis_conn_is_up(g->service->redis))
                return;
        if (g->stalled_until > now) {
                (void) sd_event_source_set_time(g->stall_timer, g->stalled_until);
                (void) sd_event_source_set_enabled(g->stall_timer, SD_EVENT_ONESHOT);
                return;
        }
        due = retries_take_due(g, now, &next_due);
        if (due)
                return round_start(g, due);
        read_feed(g, now, next_due);
}

static void on_feed_state(RedisConn *c, bool up, int error, void *userdata) {
        Gatherer *g = userdata;

        if (!up) {
                g->reading = false;
                return;
        }
        /* The groups exist before the first read (same connection, so in order). */
        for (size_t i = 0; i < g->service->queues->n_queues; i++)
                (void) redis_command_argv(c, NULL, NULL, 6,
                                          (const char *[]){ "XGROUP", "CREATE", g->service->keys[i]->done,
                                                            "gatherer", "0", "MKSTREAM" }, NULL);
        gatherer_redis_up(g);
}

void gatherer_redis_up(Gatherer *g) {
        /* Entries whose gathering failed with a connection are pending: read them again. */
        g->backlog = true;
        cursors_reset(g);
        gatherer_next(g);
}

/* --- life cycle -------------------------------------------------------------------------------- */

int gatherer_new(Service *s, GatherHook hook, void *userdata, Gatherer **ret) {
        _cleanup_(gatherer_freep) Gatherer *g = calloc(1, sizeof(Gatherer));
        size_t nq = MAX(s->queues->n_queues, (size_t) 1);
        char host[256] = "localhost";
        int k;

        if (!g)
                return -ENOMEM;
        g->service = s;
        g->hook = hook;
        g->userdata = userdata;
        g->queue_dirs = calloc(nq, sizeof(int));
        g->dirty = calloc(nq, sizeof(bool));
        g->cursors = calloc(nq, sizeof(char *));
        if (!g->queue_dirs || !g->dirty || !g->cursors)
                return -ENOMEM;
        for (size_t i = 0; i < s->queues->n_queues; i++)
                g->queue_dirs[i] = -EBADF;
        /* Stable across restarts, so entries pending from a previous run are ours again. */
        (void) gethostname(host, sizeof(host) - 1);
        g->consumer = strdup(host);
        if (!g->consumer)
                return -ENOMEM;
        k = sd_event_add_time(s->event, &g->stall_timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC * 10,
                              on_stall_timer, g);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(g->stall_timer, SD_EVENT_OFF);
        k = redis_conn_new(s->event, &s->config->redis, "feed", &g->feed);
        if (k < 0)
                return k;
        redis_conn_set_timeout(g->feed, 0);
        redis_conn_set_state_callback(g->feed, on_feed_state, g);
        *ret = TAKE_PTR(g);
        return 0;
}

int gatherer_start(Gatherer *g) {
        return redis_conn_start(g->feed);
}

uint64_t gatherer_count(const Gatherer *g) {
        return g->gathered;
}

Gatherer *gatherer_free(Gatherer *g) {
        if (!g)
                return NULL;
        g->feed = redis_conn_free(g->feed);
        /* Records still on their way find their entry orphaned and free it. */
        for (Entry *e = g->round, *next; e; e = next) {
                next = e->next;
                if (e->verdict == VERDICT_PENDING)
                        e->g = NULL;
                else
                        entry_free(e);
        }
        entry_list_free(g->retries);
        sd_event_source_disable_unref(g->stall_timer);
        for (size_t i = 0; g->queue_dirs && i < g->service->queues->n_queues; i++)
                safe_close(g->queue_dirs[i]);
        free(g->queue_dirs);
        free(g->dirty);
        if (g->cursors)
                cursors_reset(g);
        free(g->cursors);
        free(g->consumer);
        free(g);
        return NULL;
}
