/* Upkeep of tasad-results: what is left of expired jobs leaves the queues' zsets of job ids
 * (the dead-letter list `dead` and the set-aside results `gather-failed`): an entry older than
 * the retention whose job record no longer exists is removed (script trim, at most TRIM_LIMIT
 * per key and call), every queue once per retention, at most every minute, at least every
 * second. Without it GET /v1/queues would count dead jobs that the dead listing and requeue
 * no longer know. */
#pragma once

#include "macro.h"

typedef struct Service Service;
typedef struct Trimmer Trimmer;

int trimmer_new(Service *s, Trimmer **ret);
Trimmer *trimmer_free(Trimmer *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Trimmer *, trimmer_free);
