#include "trim.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "service.h"

#define TRIM_LIMIT "1000"
#define TRIM_MIN_USEC USEC_PER_SEC
#define TRIM_MAX_USEC (60 * USEC_PER_SEC)

struct Trimmer {
        Service *service;
        sd_event_source *timer;
};

static void on_trimmed(RedisConn *c, const redisReply *reply, int error, void *userdata) {
        long long n = 0;

        if (error < 0)
                return; /* tried again at the next round */
        if (redis_reply_integer(reply, &n) >= 0 && n > 0)
                log_debug("Removed %lld expired job id(s) from the dead-letter and set-aside lists.", n);
}

static uint64_t trim_interval(const Service *s) {
        return MIN(MAX(s->config->retention_usec, TRIM_MIN_USEC), TRIM_MAX_USEC);
}

static int on_trim_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Trimmer *t = userdata;
        Service *s = t->service;
        char retention[24];

        snprintf(retention, sizeof(retention), "%" PRIu64, tasad_config_retention_sec(s->config));
        for (size_t i = 0; redis_conn_is_up(s->redis) && i < s->queues->n_queues; i++) {
                const QueueKeys *k = s->keys[i];
                (void) redis_script(s->redis, SCRIPT_TRIM, on_trimmed, NULL, 2, 5,
                                    (const char *[]){ k->dead, k->gather_failed, k->job_prefix,
                                                      retention, TRIM_LIMIT }, NULL);
        }
        (void) sd_event_source_set_time_relative(src, trim_interval(s));
        return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

int trimmer_new(Service *s, Trimmer **ret) {
        _cleanup_(trimmer_freep) Trimmer *t = calloc(1, sizeof(Trimmer));
        int k;

        if (!t)
                return -ENOMEM;
        t->service = s;
        k = sd_event_add_time_relative(s->event, &t->timer, CLOCK_MONOTONIC, trim_interval(s),
                                       USEC_PER_SEC / 10, on_trim_timer, t);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(t);
        return 0;
}

Trimmer *trimmer_free(Trimmer *t) {
        if (!t)
                return NULL;
        sd_event_source_disable_unref(t->timer);
        free(t);
        return NULL;
}
