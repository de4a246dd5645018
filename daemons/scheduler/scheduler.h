/* tasad-scheduler: the write side. Accepts submissions (one job or a batch), cancels and
 * requeues jobs, and runs the timers that promote due delayed jobs and reclaim the jobs of dead
 * workers. Any number may run at once: every state change is one atomic script. */
#pragma once

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct TasadConfig TasadConfig;
typedef struct Scheduler Scheduler;

int scheduler_new(sd_event *e, TasadConfig *config, Scheduler **ret);
Scheduler *scheduler_free(Scheduler *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Scheduler *, scheduler_free);
int scheduler_start(Scheduler *s);
