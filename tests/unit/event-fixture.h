/* Shared by the unit suites that drive a real sd-event loop (http, ctl). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_event sd_event;

/* Runs e until pred() holds; false when timeout_usec passed first (the check assertions fail
 * on a loop error). */
bool event_run_until(sd_event *e, bool (*pred)(void), uint64_t timeout_usec);
/* A predicate that never holds: event_run_until(e, event_never, t) runs the loop for t. */
bool event_never(void);
