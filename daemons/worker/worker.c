#include "worker.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>

#include <jansson.h>

#include "args.h"
#include "config.h"
#include "control.h"
#include "fsutil.h"
#include "ctl.h"
#include "job.h"
#include "jobuid.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "run.h"
#include "sandbox.h"

#define JOB_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define STATUS_INTERVAL_USEC (100 * USEC_PER_MSEC)
#define PREFETCH_SHORT_USEC (100 * USEC_PER_MSEC) /* jobs this short may be prefetched */
#define TAKE_FIELDS 7   /* id, attempt, args, payload, timeout, redeliveries, v (take.lua) */

typedef enum WorkerJobState {
        WJ_STARTING,    /* taken with BLMOVE, start script in flight */
        WJ_READY,       /* leased and waiting here for a process slot (prefetched) */
        WJ_RUNNING,     /* process running */
        WJ_FINISHING,   /* process done, result not yet acknowledged by Redis */
} WorkerJobState;

/* A job's data as the take or start script returned it. */
typedef struct JobFields {
        char *args;
        size_t args_len;
        char *payload;
        size_t payload_len;
        char *timeout;
        size_t timeout_len;
        char *version;          /* the record's v: only JOB_RECORD_VERSION is run */
        size_t version_len;
} JobFields;

static void job_fields_done(JobFields *f) {
        free(f->args);
        free(f->payload);
        free(f->timeout);
        free(f->version);
        *f = (JobFields){};
}

typedef struct WorkerJob WorkerJob;
struct WorkerJob {
        Worker *worker;
        WorkerJob *prev, *next;
        char *id;
        char *key;
        char attempt[24];
        WorkerJobState state;
        JobRun *run;
        JobResult *result;
        bool lost;        /* lease lost: the result is discarded */
        const char *release; /* give back, not finish, and why (static); NULL: finish */
        bool inflight;    /* finish/release script sent, no answer yet */
        uint64_t sent;    /* CLOCK_MONOTONIC when the start or finish script in flight was sent */
        /* Fencing: when the request that last set or extended this job's lease was sent
         * (CLOCK_MONOTONIC): Redis ran it later, so by its clock the lease lasts at least until
         * lease_base + lease. The job is stopped before that (fence_deadline). */
        uint64_t lease_base;
        uint64_t renew_from; /* the first renewal that includes this job (its seq) */
        bool fenced;      /* stopped by the fence: recorded as lease-lost */
        unsigned take;    /* jobs the finish in flight takes beyond this job's own slot */
        char *workdir;    /* <work_dir>/<queue>/<id>.<attempt>, made for this attempt, or NULL */
        uint64_t workdir_limit; /* a tmpfs of this size is mounted on it (limit_work_dir), or 0 */
        uid_t uid;        /* its own account while it runs (jobuid.h), or 0 */
        bool uid_clean;   /* no process of uid is left (the run said so) */
        JobFields ready;  /* WJ_READY: what it runs with (copied from the take's reply) */
        LogJob log;
};

/* A line about one job: its message names the job ("Job ID: started, pid 586."), so that
 * concurrent jobs can be told apart in the message alone; the fields name it too. An id that
 * is not valid (it came from Redis: any bytes) is not put in the message. */
#define log_wjob(level, j, format, ...)                                                        \
        log_job(level, &(j)->log, "Job %s: " format,                                           \
                job_id_is_valid((j)->id) ? (j)->id : "(invalid id)", ##__VA_ARGS__)

struct Worker {
        sd_event *event;
        TasadConfig *config;
        QueueConfig *queue;        /* replaced on SIGHUP */
        SandboxHost *host;
        JobUids *uids;             /* the accounts of running jobs, made when first needed */
        Sandbox *sandbox;          /* the queue's, replaced on SIGHUP */
        int work_dirfd;            /* <work_dir>/<queue> */
        char *name;                /* the queue's name: outlives reloads, jobs' log fields use it */
        QueueKeys *keys;
        char *id, *proc_key;
        RedisConn *cmd, *block;
        WorkerJob *jobs;
        unsigned n_jobs;
        unsigned reserved;         /* slots promised to takes in flight (beyond finishing jobs) */
        unsigned take_n;           /* what the take in flight asked for */
        bool fetching;             /* BLMOVE in flight (it holds one slot) */
        bool taking;               /* take in flight */
        bool ready_empty;          /* the last take found fewer jobs than asked: wait in BLMOVE */
        bool draining, paused, ready_sent, redis_down, leaving, started;
        CtlServer *control;        /* the control socket */
        time_t down_since;
        uint64_t renew_usec, n_done, n_failed;
        uint64_t renew_seq;        /* renewals sent so far */
        uint64_t take_sent;        /* CLOCK_MONOTONIC when the take in flight was sent */
        uint64_t wall_avg_usec;    /* moving average of the jobs' wall time (0: none ended yet) */
        sd_event_source *renew_timer, *drain_timer, *status_timer, *fence_timer;
        uint64_t status_last;      /* when STATUS= was last sent (CLOCK_MONOTONIC) */
        int devnull_fd;
};

static void worker_fetch(Worker *w);
static int worker_block_conn(Worker *w);
static void worker_check_drained(Worker *w);
static void job_send_result(WorkerJob *j);
static void worker_take_reply(Worker *w, const redisReply *list, unsigned asked,
                              uint64_t lease_base);
static void fence_arm(Worker *w);

static uint64_t mono_usec(Worker *w) {
        uint64_t t = 0;
        (void) sd_event_now(w->event, CLOCK_MONOTONIC, &t);
        return t;
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

/* --- slots ----------------------------------------------------------------------------------
 * A worker holds up to concurrency + prefetch jobs: every job (starting, ready, running, or
 * finishing: its result not yet recorded), a BLMOVE in flight and every job a take in flight
 * may bring hold one. At most `concurrency` processes run; a job taken beyond them waits ready
 * and starts when a process ends. A finish takes the next jobs in the same script (one round
 * trip from one job to the next); a worker with free slots and jobs in the queue takes them
 * with `take`; only when the queue was found empty does it wait in BLMOVE, which brings one
 * job, started with `start`. */

static bool worker_may_take(const Worker *w) {
        return !w->draining && !w->paused && redis_conn_is_up(w->cmd);
}

/* Jobs held beyond those running (the queue's `prefetch`): the next ones start the moment a
 * process ends, and their round trip to Redis overlaps the running jobs. Only while the jobs
 * are short, so that none waits behind a long job here while an idle worker could run it; not
 * before the first job has ended, when nothing is known of them. */
static unsigned worker_prefetch(const Worker *w) {
        if (w->wall_avg_usec == 0 || w->wall_avg_usec >= PREFETCH_SHORT_USEC)
                return 0;
        return w->queue->prefetch;
}

static unsigned worker_free_slots(const Worker *w) {
        uint64_t used = (uint64_t) w->n_jobs + w->reserved + w->fetching,
                 cap = (uint64_t) w->queue->concurrency + worker_prefetch(w);

        return used >= cap ? 0 : (unsigned) (cap - used);
}


/* --- STATUS= ----------------------------------------------------------------------------- */

static int on_status(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        unsigned running = 0;
        char redis[64] = "", since[16];

        for (WorkerJob *j = w->jobs; j; j = j->next)
                running += j->state == WJ_RUNNING;
        if (w->redis_down) {
                strftime(since, sizeof(since), "%H:%M:%S", localtime(&w->down_since));
                snprintf(redis, sizeof(redis), "Redis unreachable since %s, reconnecting; ", since);
        }
        sd_notifyf(false, "STATUS=%s: %s%s%u/%u running, %" PRIu64 " done, %" PRIu64 " failed",
                   w->name, w->draining ? "draining, " : w->paused ? "paused, " : "", redis, running,
                   w->queue->concurrency, w->n_done, w->n_failed);
        w->status_last = usec;
        return 0;
}

/* STATUS= says what changed at once, but at most every STATUS_INTERVAL_USEC: at thousands of
 * jobs a second, a message per job would cost more than the jobs' own bookkeeping. */
static void status_changed(Worker *w) {
        int enabled = SD_EVENT_OFF;

        if (!w->status_timer ||
            sd_event_source_get_enabled(w->status_timer, &enabled) < 0 || enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time(w->status_timer,
                                        MAX(mono_usec(w), w->status_last + STATUS_INTERVAL_USEC));
        (void) sd_event_source_set_enabled(w->status_timer, SD_EVENT_ONESHOT);
}

/* --- job bookkeeping --------------------------------------------------------------------- */

static WorkerJob *job_new(Worker *w, const char *id) {
        WorkerJob *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->worker = w;
        j->id = strdup(id);
        j->key = queue_key_job(w->keys, id);
        if (!j->id || !j->key) {
                free(j->id);
                free(j->key);
                free(j);
                return NULL;
        }
        j->log = (LogJob){ .queue = w->name, .job_id = j->id };
        j->next = w->jobs;
        if (w->jobs)
                w->jobs->prev = j;
        w->jobs = j;
        w->n_jobs++;
        return j;
}

/* The job's directory's name in the queue's work directory (w->work_dirfd). */
static const char *workdir_name(const WorkerJob *j) {
        return strrchr(j->workdir, '/') + 1;
}

/* The job's own working directory, made for each attempt and removed after it. */
static int job_workdir_make(WorkerJob *j) {
        Worker *w = j->worker;
        uid_t uid;
        gid_t gid;
        const char *name;
        int r;

        if (asprintf(&j->workdir, "%s/%s/%s.%s", w->config->work_dir, w->name, j->id,
                     j->attempt) < 0) {
                j->workdir = NULL;
                return -ENOMEM;
        }
        name = workdir_name(j);
        if (j->uid != 0)
                uid = j->uid, gid = (gid_t) j->uid;
        else
                sandbox_job_user(w->sandbox, &uid, &gid);
        if (mkdirat(w->work_dirfd, name, 0700) < 0) {
                if (errno != EEXIST)
                        return -errno;
                (void) rm_rf_at(w->work_dirfd, name); /* left over by a crashed worker */
                if (mkdirat(w->work_dirfd, name, 0700) < 0)
                        return -errno;
        }
        if ((uid != geteuid() || gid != getegid()) &&
            fchownat(w->work_dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        r = sandbox_work_dir_mount(w->sandbox, w->work_dirfd, name, uid, gid);
        if (r > 0)
                j->workdir_limit = sandbox_work_dir_limit(w->sandbox);
        return MIN(r, 0);
}

static void job_workdir_remove(WorkerJob *j) {
        int r;

        if (!j->workdir)
                return;
        if (j->workdir_limit > 0) {
                r = sandbox_work_dir_unmount(j->workdir);
                if (r < 0)
                        log_job_errno(LOG_WARNING, r, &j->log, "Could not unmount the job's "
                                      "directory %s: %m", j->workdir);
                j->workdir_limit = 0;
        }
        r = rm_rf_at(j->worker->work_dirfd, workdir_name(j));
        if (r < 0 && r != -ENOENT)
                log_job_errno(LOG_WARNING, r, &j->log, "Could not remove the job's directory %s: %m",
                              j->workdir);
        j->workdir = mfree(j->workdir);
}

/* The job's own account serves the next job once no process of it is left. */
static void job_uid_put(WorkerJob *j) {
        int r = 0;

        if (j->uid == 0)
                return;
        if (!j->uid_clean)
                r = job_uid_reap(j->uid);
        if (r >= 0) {
                /* What it left in /tmp, /var/tmp and /dev/shm goes too. */
                unsigned n = 0;
                int k = job_uid_sweep(job_uid_shared_dirs, j->uid, &n);

                if (k < 0)
                        log_job_errno(LOG_WARNING, k, &j->log, "Could not remove everything "
                                      "the job's account %u left in the temporary directories: "
                                      "%m", (unsigned) j->uid);
                else if (n > 0)
                        log_wjob(LOG_DEBUG, j, "removed %u entries it left in the temporary "
                                  "directories.", n);
        }
        if (r >= 0)
                job_uids_release(j->worker->uids, j->uid);
        else
                log_job_errno(LOG_ERR, r, &j->log, "Could not kill what is left of the job's "
                              "account %u: %m; it is not used again by this worker.",
                              (unsigned) j->uid);
        j->uid = 0;
}

static int job_uid_get(WorkerJob *j) {
        Worker *w = j->worker;
        _cleanup_free_ char *dir = NULL;
        int r;

        if (!sandbox_job_uids(w->sandbox))
                return 0;
        if (!w->uids) {
                if (asprintf(&dir, "%s/.job-uids", w->config->work_dir) < 0)
                        return -ENOMEM;
                r = job_uids_new(dir, w->config->job_uid_first, w->config->job_uid_count,
                                 &w->uids);
                if (r < 0)
                        return r;
        }
        j->uid_clean = false;
        return job_uids_acquire(w->uids, &j->uid);
}

/* Forgets the job without looking for the next one (the caller does). */
static void job_drop(WorkerJob *j) {
        Worker *w = j->worker;

        if (j->prev)
                j->prev->next = j->next;
        else
                w->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        w->n_jobs--;
        job_run_free(j->run);
        job_uid_put(j);
        job_workdir_remove(j);
        job_result_free(j->result);
        job_fields_done(&j->ready);
        free(j->id);
        free(j->key);
        free(j);
        status_changed(w);
}

static void worker_launch_ready(Worker *w);

static void job_free(WorkerJob *j) {
        Worker *w = j->worker;

        job_drop(j);
        worker_launch_ready(w);
        worker_fetch(w);
        worker_check_drained(w);
}

/* --- finishing ---------------------------------------------------------------------------- */

static void on_result_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        WorkerJob *j = userdata;
        Worker *w = j->worker;
        unsigned asked = j->take;
        const char *state;
        uint64_t sent;

        j->inflight = false;
        j->take = 0;
        w->reserved -= asked > 0 ? asked - 1 : 0;
        if (error < 0) {
                /* Kept; sent again on reconnect or at the next renewal tick. A refusal by Redis
                 * itself (not a lost connection) is worth a warning. */
                log_job_errno(error == -EIO ? LOG_WARNING : LOG_DEBUG, error, &j->log,
                              "Recording the result failed (%s); retrying at the next lease renewal.",
                              reply && reply->str ? reply->str : strerror(-error));
                return;
        }
        if (j->release) {
                log_wjob(LOG_NOTICE, j, "given back to the queue: %s.", j->release);
                job_free(j);
                return;
        }
        state = redis_reply_string(redis_reply_element(reply, 0), NULL);
        j->log.exit = j->result->outcome;
        if (state && streq(state, "stale"))
                log_wjob(LOG_WARNING, j, "lease lost before the result was recorded; the result "
                         "of this attempt (%s) is discarded, the job runs again elsewhere.",
                         j->result->outcome);
        else if (state && streq(state, "done")) {
                w->n_done++;
                log_wjob(LOG_INFO, j, "finished: %s.", j->result->outcome);
        } else {
                w->n_failed++;
                log_wjob(LOG_WARNING, j, "failed: %s%s%s; now %s.", j->result->outcome,
                         j->result->detail ? ", " : "", j->result->detail ? j->result->detail : "",
                         state ? state : "?");
        }
        /* The slot is free; the jobs taken in the same step start in it (and in the others
         * reserved for them). */
        sent = j->sent;
        job_drop(j);
        worker_take_reply(w, redis_reply_element(reply, 2), asked, sent);
}

static int job_send_release(WorkerJob *j) {
        Worker *w = j->worker;
        const char *argv[] = { w->proc_key, w->keys->ready, w->keys->leases, w->keys->workers,
                               j->key, w->id, "0", j->id, j->attempt };

        return redis_script(w->cmd, SCRIPT_RELEASE, on_result_reply, j, 5, ELEMENTSOF(argv),
                            argv, NULL);
}

static int job_send_finish(WorkerJob *j) {
        Worker *w = j->worker;
        const QueueConfig *q = w->queue;
        const JobResult *r = j->result;
        char ec[16], wall[24], cpu[24], rss[24], retries[16], backoff[24], bmax[24], ret[24],
             started[24] = "", take[16], lease[24], now[24];
        unsigned n_take = worker_may_take(w) ? 1 + worker_free_slots(w) : 0;
        const char *argv[32];
        size_t len[32];
        int n = 0, k;

        snprintf(ec, sizeof(ec), "%d", r->exit_code);
        snprintf(wall, sizeof(wall), "%" PRIu64, r->wall_usec);
        snprintf(cpu, sizeof(cpu), "%" PRIu64, r->cpu_usec);
        snprintf(rss, sizeof(rss), "%" PRIu64, r->max_rss_kib);
        snprintf(retries, sizeof(retries), "%u", q->retries);
        snprintf(backoff, sizeof(backoff), "%" PRIu64, q->backoff_usec / USEC_PER_MSEC);
        snprintf(bmax, sizeof(bmax), "%" PRIu64, q->backoff_max_usec / USEC_PER_MSEC);
        snprintf(ret, sizeof(ret), "%" PRIu64, tasad_config_retention_sec(w->config));
        if (r->started_usec > 0)
                snprintf(started, sizeof(started), "%" PRIu64, r->started_usec);
        snprintf(take, sizeof(take), "%u", n_take);
        snprintf(lease, sizeof(lease), "%" PRIu64, q->lease_usec / USEC_PER_MSEC);
        snprintf(now, sizeof(now), "%" PRIu64, realtime_usec());
#define ARG(s, l) (argv[n] = (s), len[n++] = (l))
#define STR(s) ARG((s), strlen(s))
        STR(j->key); STR(w->keys->leases); STR(w->keys->delayed); STR(w->keys->dead);
        STR(w->keys->done); STR(w->keys->stats); STR(w->keys->ready); STR(w->keys->workers);
        STR(j->id); STR(w->id); STR(j->attempt); STR(r->outcome); STR(ec);
        STR(r->detail ? r->detail : "");
        ARG(r->out ? (const char *) r->out : "", r->out_len); STR(r->out_truncated ? "1" : "0");
        ARG(r->err ? (const char *) r->err : "", r->err_len); STR(r->err_truncated ? "1" : "0");
        STR(wall); STR(cpu); STR(rss); STR(outcome_is_retryable(r->outcome) ? "1" : "0");
        STR(retries); STR(backoff); STR(bmax); STR(ret); STR(w->keys->batch_prefix);
        STR(started); STR(take); STR(w->keys->job_prefix); STR(lease); STR(now);
#undef STR
#undef ARG
        k = redis_script(w->cmd, SCRIPT_FINISH, on_result_reply, j, 8, n, argv, len);
        if (k >= 0 && n_take > 0) {
                j->take = n_take;
                w->reserved += n_take - 1;
        }
        return k;
}

static void job_send_result(WorkerJob *j) {
        int r;

        if (j->state != WJ_FINISHING || j->inflight || !redis_conn_is_up(j->worker->cmd))
                return;
        r = j->release ? job_send_release(j) : job_send_finish(j);
        if (r >= 0) {
                j->inflight = true;
                j->sent = mono_usec(j->worker);
        }
}

static void on_job_done(JobRun *run, JobResult *result, void *userdata) {
        WorkerJob *j = userdata;
        Worker *w = j->worker;

        j->uid_clean = job_run_reaped(run);
        j->run = job_run_free(run);
        job_uid_put(j);
        job_workdir_remove(j);
        if (!result || j->lost) {
                if (j->lost)
                        log_wjob(LOG_WARNING, j, "killed, its lease was lost.");
                job_result_free(result);
                job_free(j);
                return;
        }
        j->result = result;
        j->state = WJ_FINISHING;
        fence_arm(w);
        /* Weight 1/8, so that a few long jobs switch prefetching off. */
        w->wall_avg_usec = w->wall_avg_usec == 0
                                   ? MAX(result->wall_usec, (uint64_t) 1)
                                   : (7 * w->wall_avg_usec + result->wall_usec) / 8;
        status_changed(j->worker);
        worker_launch_ready(j->worker); /* before the finish: its take counts the slot as used */
        job_send_result(j);
}

/* --- starting ------------------------------------------------------------------------------ */

static int job_build_env(WorkerJob *j, char ***ret) {
        const QueueConfig *q = j->worker->queue;
        size_t n = strv_length(q->env), k = 0;
        _cleanup_strv_free_ char **env = calloc(n + 5, sizeof(char *));

        if (!env)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(env[k++] = strdup(q->env[i])))
                        return -ENOMEM;
        if (!(env[k++] = strdup(JOB_PATH)) ||
            asprintf(&env[k++], "TASAD_JOB_ID=%s", j->id) < 0 ||
            asprintf(&env[k++], "TASAD_QUEUE=%s", q->name) < 0 ||
            asprintf(&env[k++], "TASAD_ATTEMPT=%s", j->attempt) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(env);
        return 0;
}

/* Records an attempt that could not run at all (bad arguments under the current config,
 * command not executable) without starting anything. */
static void job_fail_early(WorkerJob *j, const char *outcome, int exit_code, const char *detail) {
        JobResult *r = calloc(1, sizeof(JobResult));

        if (r) {
                r->outcome = strdup(outcome);
                r->exit_code = exit_code;
                r->detail = strdup(detail);
        }
        if (!r || !r->outcome || !r->detail) {
                job_result_free(r);
                log_oom();
                job_free(j);
                return;
        }
        j->result = r;
        j->state = WJ_FINISHING;
        job_send_result(j);
}

/* Whether the record is of the version this worker knows (docs/protocol.md: a change an
 * older daemon would misread bumps v); else the detail of its refusal. */
static bool job_version_known(const JobFields *f, char *detail, size_t size) {
        bool digits = f->version && f->version_len > 0 && f->version_len <= 9 &&
                      strspn(f->version, "0123456789") == f->version_len;

        if (digits && f->version_len == 1 && f->version[0] == '0' + JOB_RECORD_VERSION)
                return true;
        if (!f->version || f->version_len == 0)
                snprintf(detail, size, "the job's record has no version field v: this worker "
                         "runs records of version %d only", JOB_RECORD_VERSION);
        else if (digits)
                snprintf(detail, size, "the job's record is of version v=%.*s: this worker runs "
                         "records of version %d only", (int) f->version_len, f->version,
                         JOB_RECORD_VERSION);
        else
                snprintf(detail, size, "the job's record has a malformed version field v: this "
                         "worker runs records of version %d only", JOB_RECORD_VERSION);
        return false;
}

/* Starts the job's process with f (which may point into a reply). */
static void job_launch(WorkerJob *j, const JobFields *f) {
        Worker *w = j->worker;
        const QueueConfig *q = w->queue;
        _cleanup_strv_free_ char **args = NULL, **argv = NULL, **env = NULL;
        _cleanup_free_ char *error = NULL, *detail = NULL;
        size_t n_args = 0, args_len = f->args_len, payload_len = f->payload_len,
               t_len = f->timeout_len;
        const char *a = f->args, *payload = f->payload, *t = f->timeout;
        uint64_t timeout = q->timeout_usec, job_timeout;
        const char *step = NULL;
        char refusal[160];
        int r;

        /* Written straight into Redis by another producer: it must never become a path. */
        if (!job_id_is_valid(j->id))
                return job_fail_early(j, "invalid", -1, "the job's id is not a valid id "
                                      "([A-Za-z0-9_.:-]{1,64}, not starting with '.' or '-')");
        /* A record of another version may mean something else by any field: nothing of it is
         * run (a final outcome: dead-lettered, its record kept as it is for the operator). */
        if (!job_version_known(f, refusal, sizeof(refusal)))
                return job_fail_early(j, "invalid", -1, refusal);
        r = job_args_decode(a ? a : "", args_len, q->max_args, q->max_arg_len, &args, &n_args);
        if (r >= 0)
                r = args_validate(q, args, n_args, &error);
        if (r >= 0)
                r = args_build_argv(q, args, n_args, &argv, &error);
        if (r < 0)
                return job_fail_early(j, "invalid", -1, error ? error : "undecodable arguments");
        if (t && t_len > 0 && parse_uint64(t, &job_timeout) >= 0 && job_timeout > 0)
                timeout = MIN(timeout, job_timeout);
        r = job_build_env(j, &env);
        if (r >= 0) {
                step = "take an account of its own (job_uid_first, job_uid_count)";
                r = job_uid_get(j);
        }
        if (r >= 0) {
                step = "make the job's directory";
                r = job_workdir_make(j);
                if (r >= 0)
                        step = NULL;
        }
        if (r >= 0)
                r = job_run_start(w->event, &(JobRunParams){
                        .argv = argv, .envp = env, .payload = (const uint8_t *) payload,
                        .payload_len = payload ? payload_len : 0, .timeout_usec = timeout,
                        .kill_grace_usec = q->kill_grace_usec, .max_output = q->max_output,
                        .devnull_fd = w->devnull_fd, .cwd = j->workdir, .sandbox = w->sandbox,
                        .job_uid = j->uid, .cwd_limit = j->workdir_limit },
                        on_job_done, j, &j->run, &step);
        if (r < 0) {
                job_workdir_remove(j);
                j->uid_clean = true; /* nothing ran under it */
                job_uid_put(j);
                log_job_errno(LOG_ERR, r, &j->log, "Failed to start %s (%s): %m", argv[0],
                              step ? step : "set-up");
                if (asprintf(&detail, "cannot execute %s: %s: %s", argv[0], step ? step : "set-up",
                             strerror(-r)) < 0)
                        detail = NULL;
                return job_fail_early(j, "exit:127", 127, detail ? detail : "cannot execute");
        }
        j->state = WJ_RUNNING;
        log_wjob(LOG_INFO, j, "started, pid %d.", (int) job_run_pid(j->run));
        status_changed(w);
}

static unsigned worker_running(const Worker *w) {
        unsigned n = 0;

        for (const WorkerJob *j = w->jobs; j; j = j->next)
                n += j->state == WJ_STARTING || j->state == WJ_RUNNING;
        return n;
}

static char *memdup_nul(const char *p, size_t n) {
        char *d = malloc(n + 1);

        if (d) {
                memcpy(d, p, n);
                d[n] = '\0';
        }
        return d;
}

/* Elements i, i+1, i+2 and i+4 of reply (args, payload, timeout, v; i+3 is redeliveries),
 * pointing into it. */
static JobFields job_fields_view(const redisReply *reply, size_t i) {
        JobFields f = {};

        f.args = (char *) redis_reply_string(redis_reply_element(reply, i), &f.args_len);
        f.payload = (char *) redis_reply_string(redis_reply_element(reply, i + 1), &f.payload_len);
        f.timeout = (char *) redis_reply_string(redis_reply_element(reply, i + 2), &f.timeout_len);
        f.version = (char *) redis_reply_string(redis_reply_element(reply, i + 4), &f.version_len);
        return f;
}

/* A copy that outlives the reply. */
static int job_fields_dup(JobFields *dst, const JobFields *src) {
        *dst = (JobFields){ .args_len = src->args_len, .payload_len = src->payload_len,
                            .timeout_len = src->timeout_len, .version_len = src->version_len };
        if ((src->args && !(dst->args = memdup_nul(src->args, src->args_len))) ||
            (src->payload && !(dst->payload = memdup_nul(src->payload, src->payload_len))) ||
            (src->timeout && !(dst->timeout = memdup_nul(src->timeout, src->timeout_len))) ||
            (src->version && !(dst->version = memdup_nul(src->version, src->version_len))))
                return -ENOMEM;
        return 0;
}

/* The lease of j was set by a request sent at `base`; renewals sent from now on extend it. */
static void job_set_lease(WorkerJob *j, uint64_t base) {
        j->lease_base = base;
        j->renew_from = j->worker->renew_seq + 1;
        fence_arm(j->worker);
}

/* The attempt the script leased: element i of reply. */
static void job_set_attempt(WorkerJob *j, const redisReply *reply, size_t i) {
        long long attempt = 0;

        (void) redis_reply_integer(redis_reply_element(reply, i), &attempt);
        snprintf(j->attempt, sizeof(j->attempt), "%lld", attempt);
        j->log.attempt = (unsigned) attempt;
}

/* The attempt the script leased is element i of reply, its args, payload and timeout follow.
 * It starts now if a process slot is free, else it waits here (WJ_READY) for one. */
static void job_start_attempt(WorkerJob *j, const redisReply *reply, size_t i,
                              uint64_t lease_base) {
        Worker *w = j->worker;
        JobFields f = job_fields_view(reply, i + 1);

        job_set_attempt(j, reply, i);
        job_set_lease(j, lease_base);
        /* The others: j itself is starting. */
        if (worker_running(w) - (j->state == WJ_STARTING) < w->queue->concurrency)
                return job_launch(j, &f);
        if (job_fields_dup(&j->ready, &f) < 0) {
                log_oom(); /* its lease expires and it runs again */
                return job_free(j);
        }
        j->state = WJ_READY;
}

/* The oldest job waiting for a process slot starts when one is free. */
static void worker_launch_ready(Worker *w) {
        WorkerJob *oldest = NULL;
        JobFields f;

        if (worker_running(w) >= w->queue->concurrency)
                return;
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (j->state == WJ_READY)
                        oldest = j; /* the list is newest first */
        if (!oldest)
                return;
        /* Taken out first: launching may end (and free) the job. */
        f = oldest->ready;
        oldest->ready = (JobFields){};
        oldest->state = WJ_STARTING;
        job_launch(oldest, &f);
        job_fields_done(&f);
}

/* Jobs waiting here go back to the queue (pause, drain). */
static void worker_give_back_ready(Worker *w) {
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (j->state == WJ_READY) {
                        job_fields_done(&j->ready);
                        j->release = w->draining ? "taken ahead, and the worker is stopping"
                                                 : "taken ahead, and the worker was paused";
                        j->state = WJ_FINISHING;
                        job_send_result(j);
                }
}

static void on_start_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        WorkerJob *j = userdata;
        const char *verdict;
        long long attempt;

        if (error < 0) {
                /* The id stays in our proc list; it is given back on reconnect (release). */
                log_job_errno(LOG_DEBUG, error, &j->log, "Start script failed: %m");
                job_free(j);
                return;
        }
        verdict = redis_reply_string(redis_reply_element(reply, 0), NULL);
        if (!verdict || !streq(verdict, "run") ||
            redis_reply_integer(redis_reply_element(reply, 1), &attempt) < 0) {
                log_wjob(LOG_DEBUG, j, "not starting: %s.",
                         redis_reply_string(redis_reply_element(reply, 1), NULL) ?: "?");
                job_free(j);
                return;
        }
        job_start_attempt(j, reply, 1, j->sent);
}

static int job_send_start(WorkerJob *j) {
        Worker *w = j->worker;
        struct timespec ts;
        char lease[24], started[24], retention[24];
        const char *argv[] = { w->proc_key, j->key, w->keys->leases, w->keys->workers,
                               w->keys->done, w->keys->stats, j->id, w->id, lease, started,
                               retention, w->keys->batch_prefix };

        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(started, sizeof(started), "%" PRIu64,
                 (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC);
        snprintf(lease, sizeof(lease), "%" PRIu64, w->queue->lease_usec / USEC_PER_MSEC);
        snprintf(retention, sizeof(retention), "%" PRIu64,
                 tasad_config_retention_sec(w->config));
        j->sent = mono_usec(w);
        return redis_script(w->cmd, SCRIPT_START, on_start_reply, j, 6, ELEMENTSOF(argv), argv,
                            NULL);
}

static void on_blmove_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Worker *w = userdata;
        const char *id = redis_reply_string(reply, NULL);
        WorkerJob *j;

        w->fetching = false;
        if (error >= 0 && id) {
                w->ready_empty = false; /* the queue has jobs again: take the next ones */
                j = job_new(w, id);
                if (!j)
                        log_oom();
                else if (job_send_start(j) < 0)
                        job_free(j); /* the id stays in our proc list: released on reconnect */
        }
        worker_fetch(w);
}

/* The jobs a take (or a finish) brought: `asked` jobs were asked for (0: none). */
static void worker_take_reply(Worker *w, const redisReply *list, unsigned asked,
                              uint64_t lease_base) {
        size_t got = list && list->type == REDIS_REPLY_ARRAY ? list->elements / TAKE_FIELDS : 0;

        if (asked > 0)
                w->ready_empty = got < asked;
        for (size_t i = 0; i < got; i++)
                if (!redis_reply_string(list->element[i * TAKE_FIELDS], NULL))
                        got = 0; /* malformed: nothing of it is trusted (its leases expire) */
        for (size_t i = 0; i < got; i++) {
                WorkerJob *j = job_new(w, list->element[i * TAKE_FIELDS]->str);

                if (!j) { /* its lease expires and the scheduler requeues it */
                        log_oom();
                        continue;
                }
                if (!w->draining && !w->paused) {
                        job_start_attempt(j, list, i * TAKE_FIELDS + 1, lease_base);
                        continue;
                }
                /* Taken while pausing or draining: back to the queue at once, without counting
                 * an attempt. */
                job_set_attempt(j, list, i * TAKE_FIELDS + 1);
                j->state = WJ_READY;
        }
        if (w->draining || w->paused)
                worker_give_back_ready(w);
        worker_fetch(w);
        worker_check_drained(w);
}

static void on_take_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Worker *w = userdata;
        unsigned asked = w->take_n;

        w->taking = false;
        w->reserved -= asked;
        w->take_n = 0;
        if (error < 0) {
                /* Jobs it may have leased before the connection broke return when their leases
                 * expire. Wait in BLMOVE rather than retry at once. */
                log_debug_errno(error, "Taking jobs failed: %m");
                w->ready_empty = true;
                reply = NULL;
        }
        worker_take_reply(w, reply, asked, w->take_sent);
}

static int worker_send_take(Worker *w, unsigned n) {
        char lease[24], started[24], retention[24], count[16];
        const char *argv[] = { w->keys->ready, w->keys->leases, w->keys->workers, w->keys->done,
                               w->keys->stats, w->id, lease, started, retention,
                               w->keys->batch_prefix, w->keys->job_prefix, count };
        int r;

        snprintf(lease, sizeof(lease), "%" PRIu64, w->queue->lease_usec / USEC_PER_MSEC);
        snprintf(started, sizeof(started), "%" PRIu64, realtime_usec());
        snprintf(retention, sizeof(retention), "%" PRIu64, tasad_config_retention_sec(w->config));
        snprintf(count, sizeof(count), "%u", n);
        r = redis_script(w->cmd, SCRIPT_TAKE, on_take_reply, w, 5, ELEMENTSOF(argv), argv, NULL);
        if (r >= 0) {
                w->take_sent = mono_usec(w);
                w->taking = true;
                w->take_n = n;
                w->reserved += n;
        }
        return r;
}

/* Fills free slots: with take while the queue has jobs, else one blocking BLMOVE at a time on
 * its own connection. */
static void worker_fetch(Worker *w) {
        unsigned n;

        if (!worker_may_take(w) || w->taking || (n = worker_free_slots(w)) == 0)
                return;
        if (!w->ready_empty) {
                (void) worker_send_take(w, n);
                return;
        }
        if (w->fetching || !w->block || !redis_conn_is_up(w->block))
                return;
        if (redis_command_argv(w->block, on_blmove_reply, w, 6,
                               (const char *[]){ "BLMOVE", w->keys->ready, w->proc_key, "RIGHT",
                                                 "LEFT", STRINGIFY(FETCH_BLOCK_SEC) }, NULL) >= 0)
                w->fetching = true;
}

/* --- leases and the fence ---------------------------------------------------------------------
 * Every lease is renewed every renew_interval() (at most lease/3, at most 1 s). Redis sets a
 * lease to its own now + lease when it runs the request, which is after the worker sent it:
 * so by Redis' clock a lease lasts at least until (when the worker sent the request that last
 * set or extended it) + lease. The fence stops a running job fence_margin() before that, by the
 * worker's monotonic clock, when no renewal came back meanwhile: a partitioned worker or one
 * cut off by a Redis outage has stopped its job before the scheduler can hand it to another.
 * The margin covers clock-rate differences, timer slack and the kill itself. */

static uint64_t fence_margin(const Worker *w) {
        return MAX(w->queue->lease_usec / 20, 200 * USEC_PER_MSEC);
}

static uint64_t fence_deadline(const Worker *w, const WorkerJob *j) {
        uint64_t lease = w->queue->lease_usec, m = fence_margin(w);

        return j->lease_base + (lease > m ? lease - m : 0);
}

/* Jobs that hold a lease and a process slot or a ready slot: what the fence watches. */
static bool job_fenceable(const WorkerJob *j) {
        return !j->fenced && !j->lost && j->lease_base > 0 &&
               (j->run || j->state == WJ_READY);
}

static void fence_arm(Worker *w) {
        uint64_t next = UINT64_MAX;

        if (!w->fence_timer)
                return;
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (job_fenceable(j))
                        next = MIN(next, fence_deadline(w, j));
        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(w->fence_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(w->fence_timer, next);
        (void) sd_event_source_set_enabled(w->fence_timer, SD_EVENT_ONESHOT);
}

static int on_fence(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        uint64_t now = mono_usec(w);

        for (WorkerJob *j = w->jobs, *next; j; j = next) {
                next = j->next;
                if (!job_fenceable(j) || fence_deadline(w, j) > now)
                        continue;
                log_wjob(LOG_WARNING, j, "no lease renewal came back for %" PRIu64 " ms: stopping "
                         "the job before its lease can expire in Redis (lease-lost).",
                         (now - j->lease_base) / USEC_PER_MSEC);
                if (j->run) {
                        j->fenced = true;
                        job_run_stop(j->run, "lease-lost", true);
                } else /* ready: its lease expires and the scheduler requeues it */
                        job_drop(j);
        }
        fence_arm(w);
        worker_fetch(w);
        worker_check_drained(w);
        return 0;
}

typedef struct RenewCall {
        Worker *worker;
        uint64_t seq, sent;
} RenewCall;

static void renew_lost(Worker *w, const redisReply *lost) {
        for (WorkerJob *j = w->jobs, *next; j; j = next) {
                next = j->next;
                for (size_t i = 0; i < lost->elements; i++)
                        if (streq(lost->element[i]->str, j->id) && j->state != WJ_STARTING) {
                                j->lost = true;
                                if (j->run)
                                        job_run_stop(j->run, "lease-lost", true);
                                else if (j->state == WJ_READY ||
                                         (j->state == WJ_FINISHING && !j->inflight))
                                        job_free(j);
                                break; /* j may be gone */
                        }
        }
}

static void renew_cancel(Worker *w, const redisReply *cancel) {
        for (WorkerJob *j = w->jobs, *next; j; j = next) {
                next = j->next;
                for (size_t i = 0; i < cancel->elements; i++)
                        if (streq(cancel->element[i]->str, j->id) && j->run) {
                                log_wjob(LOG_NOTICE, j, "cancel requested, stopping it.");
                                job_run_stop(j->run, "cancelled", false);
                        } else if (streq(cancel->element[i]->str, j->id) && j->state == WJ_READY) {
                                log_wjob(LOG_NOTICE, j, "cancelled before it started.");
                                job_fields_done(&j->ready);
                                job_fail_early(j, "cancelled", -1, "cancelled before it started");
                                break;
                        }
        }
}

static void on_renew_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        _cleanup_free_ RenewCall *call = userdata;
        Worker *w = call->worker;
        const redisReply *lost = redis_reply_element(reply, 0),
                         *cancel = redis_reply_element(reply, 1);

        if (error < 0 || !lost || !cancel || lost->type != REDIS_REPLY_ARRAY ||
            cancel->type != REDIS_REPLY_ARRAY)
                return;
        for (size_t i = 0; i < lost->elements; i++)
                if (!redis_reply_string(lost->element[i], NULL))
                        return;
        for (size_t i = 0; i < cancel->elements; i++)
                if (!redis_reply_string(cancel->element[i], NULL))
                        return;
        /* Every job this renewal included and did not report lost holds its lease until at
         * least call->sent + lease by Redis' clock. */
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (j->renew_from <= call->seq && j->state != WJ_STARTING)
                        j->lease_base = MAX(j->lease_base, call->sent);
        renew_lost(w, lost);
        renew_cancel(w, cancel);
        fence_arm(w);
}

static void worker_renew(Worker *w) {
        _cleanup_free_ const char **argv = NULL;
        _cleanup_free_ RenewCall *call = NULL;
        char lease[24];
        size_t n = 0, k = 0;

        for (WorkerJob *j = w->jobs; j; j = j->next)
                n += j->state != WJ_STARTING;
        argv = calloc(2 + 3 * n + 2, sizeof(char *));
        call = malloc(sizeof(RenewCall));
        if (!argv || !call)
                return (void) log_oom();
        snprintf(lease, sizeof(lease), "%" PRIu64, w->queue->lease_usec / USEC_PER_MSEC);
        argv[k++] = w->keys->leases;
        argv[k++] = w->keys->workers;
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (j->state != WJ_STARTING)
                        argv[k++] = j->key;
        argv[k++] = w->id;
        argv[k++] = lease;
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (j->state != WJ_STARTING) {
                        argv[k++] = j->id;
                        argv[k++] = j->attempt;
                }
        *call = (RenewCall){ .worker = w, .seq = w->renew_seq + 1, .sent = mono_usec(w) };
        if (redis_script(w->cmd, SCRIPT_RENEW, on_renew_reply, call, (int) (2 + n), (int) k, argv,
                         NULL) < 0)
                return;
        w->renew_seq++;
        call = NULL; /* on_renew_reply owns it */
}

static int on_renew_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;

        /* The watchdog follows this loop, not Redis: a worker waiting out a Redis outage is
         * alive (its STATUS= says Redis is down). */
        sd_notify(false, "WATCHDOG=1");
        if (redis_conn_is_up(w->cmd)) {
                worker_renew(w);
                for (WorkerJob *j = w->jobs, *next; j; j = next) {
                        next = j->next;
                        job_send_result(j);
                }
        }
        (void) sd_event_source_set_time_relative(s, w->renew_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

/* Gives back what sits in our proc list (taken, never started) and, when leaving, removes the
 * worker from the live set. */
static void on_release_reply(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        Worker *w = userdata;
        long long n = 0;

        if (error >= 0 && redis_reply_integer(reply, &n) >= 0 && n > 0)
                log_info("Gave %lld taken but unstarted job(s) back to queue '%s'.", n,
                         w->name);
        if (w->leaving)
                (void) sd_event_exit(w->event, 0);
}

static int worker_release_proc(Worker *w, bool leaving) {
        const char *argv[] = { w->proc_key, w->keys->ready, w->keys->leases, w->keys->workers,
                               w->id, leaving ? "1" : "0" };

        return redis_script(w->cmd, SCRIPT_RELEASE, on_release_reply, w, 4, ELEMENTSOF(argv),
                            argv, NULL);
}

/* --- Redis state ---------------------------------------------------------------------------- */

static void on_redis_state(RedisConn *c, bool up, int error, void *userdata) {
        Worker *w = userdata;
        bool all_up = redis_conn_is_up(w->cmd) && (!w->block || redis_conn_is_up(w->block));

        if (!up && !w->redis_down) {
                /* Once per outage, not once per retry. */
                w->redis_down = true;
                w->down_since = time(NULL);
                log_warning_errno(error, "Redis at %s is unreachable (%s connection): %s; "
                                  "running jobs continue until their leases would expire, "
                                  "reconnecting with backoff.",
                                  w->config->redis.unix_path ? w->config->redis.unix_path
                                                             : w->config->redis.host,
                                  redis_conn_name(c), redis_conn_error_text(c, error));
        } else if (up && all_up && w->redis_down) {
                w->redis_down = false;
                log_info("Redis is reachable again after %lds.", (long) (time(NULL) - w->down_since));
        }
        if (up && c == w->cmd) {
                (void) worker_release_proc(w, false);
                worker_renew(w);
                for (WorkerJob *j = w->jobs, *next; j; j = next) {
                        next = j->next;
                        job_send_result(j);
                }
                if (!w->ready_sent) {
                        w->ready_sent = true;
                        sd_notify(false, "READY=1");
                        log_info("Worker %s serving queue '%s' (concurrency %u).", w->id,
                                 w->name, w->queue->concurrency);
                }
        }
        status_changed(w);
        worker_fetch(w);
}

/* --- drain (SIGTERM) and reload (SIGHUP) ---------------------------------------------------- */

static void worker_check_drained(Worker *w) {
        if (!w->draining || w->n_jobs > 0 || w->taking || w->leaving)
                return;
        w->leaving = true;
        if (worker_release_proc(w, true) < 0)
                (void) sd_event_exit(w->event, 0);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;

        if (w->leaving) { /* Redis never answered the last release: leases will expire. */
                log_warning("Could not tell Redis we are leaving; our jobs return after their leases expire.");
                return sd_event_exit(w->event, 0);
        }
        log_warning("Drain timeout reached with %u job(s) running: stopping them and giving "
                    "them back to the queue.", w->n_jobs);
        for (WorkerJob *j = w->jobs; j; j = j->next)
                if (j->run) {
                        j->release = "interrupted by the drain timeout";
                        job_run_stop(j->run, "released", false);
                }
        /* Last chance: stop waiting after the kill grace and a few round trips. */
        (void) sd_event_source_set_time_relative(s, w->queue->kill_grace_usec + 5 * USEC_PER_SEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        worker_drain(userdata);
        return 0;
}

void worker_drain(Worker *w) {
        if (w->draining)
                return;
        w->draining = true;
        sd_notify(false, "STOPPING=1");
        log_info("Stopping: no new jobs; waiting up to %" PRIu64 "s for %u running job(s).",
                 w->queue->drain_timeout_usec / USEC_PER_SEC, w->n_jobs);
        /* Closing the blocking connection cancels the pending BLMOVE; an id it may have moved
         * meanwhile is given back by the release below. */
        w->block = redis_conn_free(w->block);
        (void) worker_release_proc(w, false);
        worker_give_back_ready(w);
        (void) sd_event_add_time_relative(w->event, &w->drain_timer, CLOCK_MONOTONIC,
                                          w->queue->drain_timeout_usec, 0, on_drain_timeout, w);
        status_changed(w);
        worker_check_drained(w);
}

void worker_pause(Worker *w) {
        if (w->paused || w->draining)
                return;
        w->paused = true;
        log_info("Paused: taking no new jobs; %u job(s) go on running.", w->n_jobs);
        /* As for a drain: closing the blocking connection cancels the pending BLMOVE, and an id
         * it may have moved meanwhile is given back. */
        w->block = redis_conn_free(w->block);
        (void) worker_release_proc(w, false);
        worker_give_back_ready(w);
        status_changed(w);
}

int worker_resume(Worker *w) {
        int r;

        if (w->draining)
                return -ESHUTDOWN;
        if (!w->paused)
                return 0;
        r = worker_block_conn(w);
        if (r < 0)
                return log_error_errno(r, "Failed to resume: %m");
        w->paused = false;
        log_info("Resumed: taking jobs again.");
        status_changed(w);
        return 0;
}

const QueueConfig *worker_queue(const Worker *w) {
        return w->queue;
}

json_t *worker_status_json(const Worker *w) {
        json_t *jobs = json_array(), *o;

        if (!jobs)
                return NULL;
        for (const WorkerJob *j = w->jobs; j; j = j->next) {
                static const char *const states[] = { "starting", "ready", "running",
                                                      "finishing" };
                json_t *e = json_pack("{s:s, s:s, s:s}", "id", j->id, "attempt", j->attempt,
                                      "state", states[j->state]);
                if (!e || (j->run && json_object_set_new(e, "pid",
                                                         json_integer(job_run_pid(j->run))) < 0) ||
                    json_array_append_new(jobs, e) < 0) {
                        json_decref(jobs);
                        return NULL;
                }
        }
        o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:b, s:o}", "queue", w->name,
                      "worker", w->id,
                      "state", w->draining ? "draining" : w->paused ? "paused" : "running",
                      "concurrency", (int) w->queue->concurrency, "jobs_running",
                      (int) w->n_jobs, "done", (json_int_t) w->n_done, "failed",
                      (json_int_t) w->n_failed, "redis_up", !w->redis_down, "jobs", jobs);
        return o;
}

/* Leases are renewed every lease/3 but at least every second (the more often, the longer an
 * outage the fence tolerates: docs/protocol.md), and often enough to feed the watchdog. */
static uint64_t renew_interval(const Worker *w) {
        uint64_t wd = 0, u = MIN(w->queue->lease_usec / 3, USEC_PER_SEC);

        if (sd_watchdog_enabled(false, &wd) > 0)
                u = MIN(u, wd / 3);
        return u;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Worker *w = userdata;
        QueueConfig *q = NULL;
        Sandbox *sb = NULL;
        uint64_t renew;

        if (worker_load_queue(w->config, w->name, &q) < 0 ||
            worker_load_sandbox(w->host, w->config, q, &sb) < 0) {
                queue_config_free(q);
                log_error("Reload failed; keeping the previous configuration of queue '%s'.",
                          w->name);
                return 0;
        }
        /* Running jobs keep their own argv and limits; new jobs use the new file. The sandbox
         * is only read while a job starts. */
        queue_config_free(w->queue);
        w->queue = q;
        sandbox_free(w->sandbox);
        w->sandbox = sb;
        /* A shorter lease must be renewed sooner, starting now, or the leases of running jobs
         * would expire between two renewals. */
        renew = renew_interval(w);
        if (renew < w->renew_usec) {
                (void) sd_event_source_set_time_relative(w->renew_timer, 0);
                (void) sd_event_source_set_enabled(w->renew_timer, SD_EVENT_ONESHOT);
        }
        w->renew_usec = renew;
        log_info("Reloaded queue '%s' (concurrency %u).", q->name, q->concurrency);
        status_changed(w);
        worker_fetch(w);
        return 0;
}

/* --- life cycle ----------------------------------------------------------------------------- */

int worker_load_queue(const TasadConfig *config, const char *queue, QueueConfig **ret) {
        _cleanup_free_ char *path = NULL, *error = NULL;
        int r;

        if (!queue_name_is_valid(queue))
                return log_error_errno(-EINVAL, "Invalid queue name '%s': use 1-64 of A-Z a-z 0-9 _ -.", queue);
        if (asprintf(&path, "%s/%s.conf", config->queues_dir, queue) < 0)
                return log_oom();
        r = queue_config_load(path, ret, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to load queue '%s': %s", queue,
                                       error ? error : strerror(-r));
        return 0;
}

char *worker_describe_accounts(const TasadConfig *config, const QueueConfig *queue,
                               const Sandbox *sandbox) {
        uid_t uid;
        gid_t gid;
        char *s;

        if (sandbox_job_uids(sandbox)) {
                if (asprintf(&s, "every running job has an account of its own (UIDs %u-%u, "
                             "job_uid_first and job_uid_count): jobs cannot see or signal each "
                             "other, and nothing a job started outlives it",
                             config->job_uid_first,
                             config->job_uid_first + config->job_uid_count - 1) < 0)
                        return NULL;
                return s;
        }
        sandbox_job_user(sandbox, &uid, &gid);
        if (asprintf(&s, "jobs share the account %s%s%s(uid %u): jobs of this account can read "
                     "each other's /proc files and signal each other, and a process a job leaves "
                     "outside its process group is not killed when it ends (remove `user` from "
                     "the queue and run the worker as root to give every job its own account)",
                     queue->user ? "\"" : "", queue->user ? queue->user : "",
                     queue->user ? "\" " : "", (unsigned) uid) < 0)
                return NULL;
        return s;
}

int worker_load_sandbox(SandboxHost *host, const TasadConfig *config, const QueueConfig *queue,
                        Sandbox **ret) {
        _cleanup_free_ char *accounts = NULL;
        _cleanup_free_ char *error = NULL;
        Sandbox *s;
        int r;

        r = sandbox_new(host, queue, config->policy_dirs, &s, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the sandbox of queue '%s': %s",
                                       queue->name, error ? error : strerror(-r));
        for (char *const *w = sandbox_warnings(s); *w; w++)
                log_warning("Queue '%s': %s.", queue->name, *w);
        accounts = worker_describe_accounts(config, queue, s);
        log_full(sandbox_job_uids(s) ? LOG_INFO : LOG_NOTICE, "Queue '%s': %s.", queue->name,
                 accounts ? accounts : "?");
        *ret = s;
        return 0;
}

static int worker_open_work_dir(Worker *w) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (asprintf(&path, "%s/%s", w->config->work_dir, w->name) < 0)
                return log_oom();
        r = mkdir_parents(path, 0711);
        if (r >= 0) {
                w->work_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                r = w->work_dirfd < 0 ? -errno : 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to open the work directory %s: %m", path);
        return 0;
}

static int worker_make_id(Worker *w) {
        char host[256] = "localhost";
        uint32_t rnd = 0;

        (void) gethostname(host, sizeof(host) - 1);
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
                return -errno;
        if (asprintf(&w->id, "%s:%d:%08x", host, (int) getpid(), rnd) < 0)
                return -ENOMEM;
        w->proc_key = queue_key_proc(w->keys, w->id);
        return w->proc_key ? 0 : -ENOMEM;
}

static int worker_add_sources(Worker *w) {
        int r;

        w->renew_usec = renew_interval(w);
        r = sd_event_add_time_relative(w->event, &w->renew_timer, CLOCK_MONOTONIC, w->renew_usec,
                                       USEC_PER_MSEC, on_renew_timer, w);
        if (r >= 0)
                r = sd_event_add_time(w->event, &w->status_timer, CLOCK_MONOTONIC, 0, 0,
                                      on_status, w);
        if (r >= 0)
                r = sd_event_add_time(w->event, &w->fence_timer, CLOCK_MONOTONIC, 0,
                                      USEC_PER_MSEC, on_fence, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->fence_timer, SD_EVENT_OFF);
        if (r >= 0)
                /* Before anything else due at the same time: a job past its fence must not
                 * wait behind other work. */
                r = sd_event_source_set_priority(w->fence_timer, SD_EVENT_PRIORITY_IMPORTANT);
        if (r >= 0)
                r = sd_event_add_signal(w->event, NULL, SIGTERM, on_sigterm, w);
        if (r >= 0)
                r = sd_event_add_signal(w->event, NULL, SIGINT, on_sigterm, w);
        if (r >= 0)
                r = sd_event_add_signal(w->event, NULL, SIGHUP, on_sighup, w);
        return r;
}

int worker_new(sd_event *e, TasadConfig *config, QueueConfig *queue, Worker **ret) {
        _cleanup_(worker_freep) Worker *w = calloc(1, sizeof(Worker));
        int r;

        if (!w)
                return -ENOMEM;
        w->event = sd_event_ref(e);
        w->config = config;
        w->queue = queue;
        w->work_dirfd = -EBADF;
        w->devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (w->devnull_fd < 0)
                return -errno;
        r = sandbox_host_new(&w->host);
        if (r < 0)
                return r;
        log_info("Job sandbox: %s.", sandbox_host_describe(w->host));
        w->name = strdup(queue->name);
        if (!w->name)
                return -ENOMEM;
        r = worker_load_sandbox(w->host, config, queue, &w->sandbox);
        if (r >= 0)
                r = worker_open_work_dir(w);
        if (r < 0)
                return r;
        r = queue_keys_new(config->prefix, queue->name, &w->keys);
        if (r >= 0)
                r = worker_make_id(w);
        if (r >= 0)
                r = redis_conn_new(e, &config->redis, "command", &w->cmd);
        if (r < 0)
                return r;
        /* A reply that takes half a lease means a dead connection: drop it and reconnect. */
        redis_conn_set_timeout(w->cmd, MIN(config->redis_timeout_usec, queue->lease_usec / 2));
        redis_conn_set_state_callback(w->cmd, on_redis_state, w);
        r = worker_block_conn(w);
        if (r >= 0)
                r = worker_add_sources(w);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(w);
        return 0;
}

/* The connection that only waits in BLMOVE; made at start and again on resume. */
static int worker_block_conn(Worker *w) {
        int r = redis_conn_new(w->event, &w->config->redis, "fetch", &w->block);

        if (r < 0)
                return r;
        /* Only BLMOVE, which blocks for FETCH_BLOCK_SEC at most. */
        redis_conn_set_timeout(w->block, FETCH_BLOCK_SEC * USEC_PER_SEC + w->config->redis_timeout_usec);
        redis_conn_set_state_callback(w->block, on_redis_state, w);
        return w->started ? redis_conn_start(w->block) : 0;
}

int worker_start(Worker *w) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (asprintf(&path, "%s/%s.sock", w->config->worker_socket_dir, w->name) < 0)
                return log_oom();
        r = worker_control_start(w->event, w, path, &w->control);
        if (r < 0)
                return r;
        sd_notifyf(false, "STATUS=%s: connecting to Redis", w->name);
        w->started = true;
        redis_conn_start(w->cmd);
        redis_conn_start(w->block);
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        /* Also what jobs taken ahead hold (job_drop frees it all). */
        while (w->jobs)
                job_drop(w->jobs);
        w->control = ctl_server_free(w->control);
        w->cmd = redis_conn_free(w->cmd);
        w->block = redis_conn_free(w->block);
        sd_event_source_disable_unref(w->renew_timer);
        sd_event_source_disable_unref(w->drain_timer);
        sd_event_source_disable_unref(w->status_timer);
        sd_event_source_disable_unref(w->fence_timer);
        queue_keys_free(w->keys);
        queue_config_free(w->queue);
        sandbox_free(w->sandbox);
        sandbox_host_free(w->host);
        job_uids_free(w->uids);
        tasad_config_free(w->config);
        safe_close(w->devnull_fd);
        safe_close(w->work_dirfd);
        free(w->name);
        free(w->id);
        free(w->proc_key);
        sd_event_unref(w->event);
        free(w);
        return NULL;
}
