#include "keys.h"

#include <stdio.h>
#include <string.h>

static char *key_cat(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s%s", a, b) < 0 ? NULL : s;
}

int queue_keys_new(const char *prefix, const char *queue, QueueKeys **ret) {
        _cleanup_(queue_keys_freep) QueueKeys *k = NULL;
        _cleanup_free_ char *base = NULL;
        struct {
                char **field;
                const char *suffix;
        } table[8 + 6];
        size_t n = 0;

        k = calloc(1, sizeof(*k));
        if (!k || asprintf(&base, "%s:{%s}:", prefix, queue) < 0)
                return -ENOMEM;
#define K(f, s) table[n++] = (__typeof__(table[0])){ &k->f, s }
        K(ready, "ready");
        K(leases, "leases");
        K(workers, "workers");
        K(delayed, "delayed");
        K(dead, "dead");
        K(done, "done");
        K(stats, "stats");
        K(gather_failed, "gather-failed");
        K(job_prefix, "job:");
        K(proc_prefix, "proc:");
        K(batch_prefix, "batch:");
        K(staged_prefix, "staged:");
        K(staging, "staging");
        K(delivering, "delivering");
#undef K
        for (size_t i = 0; i < n; i++) {
                *table[i].field = key_cat(base, table[i].suffix);
                if (!*table[i].field)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(k);
        return 0;
}

QueueKeys *queue_keys_free(QueueKeys *k) {
        if (!k)
                return NULL;
        free(k->ready);
        free(k->leases);
        free(k->workers);
        free(k->delayed);
        free(k->dead);
        free(k->done);
        free(k->stats);
        free(k->gather_failed);
        free(k->job_prefix);
        free(k->proc_prefix);
        free(k->batch_prefix);
        free(k->staged_prefix);
        free(k->staging);
        free(k->delivering);
        free(k);
        return NULL;
}

char *queue_key_job(const QueueKeys *k, const char *id) {
        return key_cat(k->job_prefix, id);
}

char *queue_key_proc(const QueueKeys *k, const char *worker_id) {
        return key_cat(k->proc_prefix, worker_id);
}

char *queue_key_batch(const QueueKeys *k, const char *batch_id) {
        return key_cat(k->batch_prefix, batch_id);
}

char *queue_key_staged(const QueueKeys *k, const char *batch_id) {
        return key_cat(k->staged_prefix, batch_id);
}

char *queue_key_job_n(const QueueKeys *k, const char *id, size_t len, size_t *ret_len) {
        size_t n = strlen(k->job_prefix);
        char *s = malloc(n + len + 1);

        if (!s)
                return NULL;
        memcpy(s, k->job_prefix, n);
        memcpy(s + n, id, len);
        s[n + len] = '\0';
        *ret_len = n + len;
        return s;
}
