/* The gatherer of tasad-results: follows every queue's `done` stream (consumer group
 * "gatherer", consumer = this host's name), writes each finished job's result to
 * <results_dir>/<queue>/<id>/ durably, and only then removes its outputs from the record and
 * acknowledges the entry (docs/protocol.md, "Gathered results"). A record it cannot gather
 * is retried with backoff a bounded number of times while later entries go on, then set
 * aside; a results directory it cannot write at all pauses gathering until it can. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef struct Service Service;
typedef struct Gatherer Gatherer;

/* Called once a job's entry is handled (its result on disk, or set aside): whoever waits for
 * the job can be answered. batch is the job's batch when the batch may have finished with it
 * (its last job), else NULL. Must not free the gatherer. */
typedef void (*GatherHook)(void *userdata, size_t queue, const char *id, const char *batch);

/* The gatherer of the service's queues; it opens a Redis connection of its own for the
 * blocking reads and writes acknowledgements on the service's. */
int gatherer_new(Service *s, GatherHook hook, void *userdata, Gatherer **ret);
Gatherer *gatherer_free(Gatherer *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(Gatherer *, gatherer_free);

int gatherer_start(Gatherer *g);
/* The service's connection is up (again): entries left pending are read again. */
void gatherer_redis_up(Gatherer *g);
/* Results written to disk since the start. */
uint64_t gatherer_count(const Gatherer *g);
