/* tasad-results: the read side and the gatherer. Follows every queue's `done` stream (consumer
 * group "gatherer"), writes each finished job to <results_dir>/<queue>/<id>/ atomically, and
 * answers status, output, batch, queue and dead-letter queries, including long polls that are
 * woken by the completion itself. */
#pragma once

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct TasadConfig TasadConfig;
typedef struct Results Results;

int results_new(sd_event *e, TasadConfig *config, Results **ret);
Results *results_free(Results *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Results *, results_free);
int results_start(Results *r);
