/* A job record (docs/protocol.md) as read with HGETALL, turned into the API's status object. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct json_t json_t;
typedef struct redisReply redisReply;

/* The value of `field` in an HGETALL reply, or NULL. */
const char *record_get(const redisReply *hgetall, const char *field, size_t *ret_len);
/* False for a job cancelled before any attempt ran (state cancelled, attempt 0): it has no
 * attempt fields and no outputs (docs/api.md). */
bool record_ran(const redisReply *hgetall);
/* The status object of docs/api.md; NULL when the record is empty (no such job). */
json_t *record_to_status(const redisReply *hgetall, const char *queue, const char *id);
