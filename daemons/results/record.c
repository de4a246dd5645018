#include "record.h"

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "job.h"
#include "macro.h"
#include "parse.h"

const char *record_get(const redisReply *r, const char *field, size_t *ret_len) {
        if (!r || r->type != REDIS_REPLY_ARRAY)
                return NULL;
        for (size_t i = 0; i + 1 < r->elements; i += 2)
                if (r->element[i]->type == REDIS_REPLY_STRING && streq(r->element[i]->str, field)) {
                        if (ret_len)
                                *ret_len = r->element[i + 1]->len;
                        return r->element[i + 1]->str;
                }
        return NULL;
}

static uint64_t get_u64(const redisReply *r, const char *field) {
        const char *v = record_get(r, field, NULL);
        uint64_t u = 0;
        long long ll;

        if (v && parse_uint64(v, &u) < 0 && sscanf(v, "%lld", &ll) == 1 && ll > 0)
                u = (uint64_t) ll;
        return u;
}

/* Byte counts survive gathering (out/err move to disk): out_len/err_len are kept then. */
static size_t output_len(const redisReply *r, const char *data, const char *len_field) {
        size_t n = 0;
        if (record_get(r, data, &n))
                return n;
        return (size_t) get_u64(r, len_field);
}

static void add_attempt(json_t *o, const redisReply *r) {
        const char *outcome = record_get(r, "outcome", NULL);
        const char *detail = record_get(r, "detail", NULL);
        JobResult res = {
                .outcome = (char *) outcome,
                .exit_code = -1,
                .detail = detail && *detail ? (char *) detail : NULL,
                .out_len = output_len(r, "out", "out_len"),
                .out_truncated = get_u64(r, "out_truncated") == 1,
                .err_len = output_len(r, "err", "err_len"),
                .err_truncated = get_u64(r, "err_truncated") == 1,
                .started_usec = get_u64(r, "started"),
                .finished_usec = get_u64(r, "finished") * USEC_PER_MSEC,
                .wall_usec = get_u64(r, "wall_us"),
                .cpu_usec = get_u64(r, "cpu_us"),
                .max_rss_kib = get_u64(r, "max_rss_kib"),
        };
        json_t *a = NULL;

        if (!outcome)
                return;
        if (strncmp(outcome, "exit:", 5) == 0)
                res.exit_code = atoi(outcome + 5);
        if (job_result_to_json(&res, &a) >= 0) {
                json_object_update(o, a);
                json_decref(a);
        }
}

static json_t *args_to_json(const redisReply *r) {
        _cleanup_strv_free_ char **args = NULL;
        size_t len = 0, n = 0;
        const char *a = record_get(r, "args", &len);
        json_t *arr = json_array();

        if (a && job_args_decode(a, len, SIZE_MAX, SIZE_MAX, &args, &n) >= 0)
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(arr, json_string(args[i]));
        return arr;
}

bool record_ran(const redisReply *r) {
        const char *state = record_get(r, "state", NULL);

        return get_u64(r, "attempt") > 0 || !state || !streq(state, "cancelled");
}

json_t *record_to_status(const redisReply *r, const char *queue, const char *id) {
        const char *state = record_get(r, "state", NULL), *batch = record_get(r, "batch", NULL);
        json_t *o;

        if (!state)
                return NULL;
        o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:f, s:o}", "id", id, "queue", queue, "state",
                      state, "attempt", (json_int_t) get_u64(r, "attempt"), "batch",
                      batch ? json_string(batch) : json_null(), "created",
                      (double) get_u64(r, "created") / 1000.0, "args", args_to_json(r));
        /* A job cancelled before any attempt ran has how it ended, but no attempt's fields:
         * nothing ran, so nothing was measured or captured. */
        if (o && !record_ran(r)) {
                json_object_set_new(o, "outcome", json_string("cancelled"));
                json_object_set_new(o, "finished",
                                    json_real((double) get_u64(r, "finished") / 1000.0));
        } else if (o)
                add_attempt(o, r);
        if (o && record_get(r, "gather_error", NULL)) /* set aside by the gatherer: why */
                json_object_set_new(o, "gather_error", json_string(record_get(r, "gather_error", NULL)));
        return o;
}
