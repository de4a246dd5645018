#include "event-fixture.h"

#include <check.h>
#include <systemd/sd-event.h>
#include <time.h>

static int on_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

bool event_run_until(sd_event *e, bool (*pred)(void), uint64_t timeout_usec) {
        sd_event_source *timeout = NULL;
        bool hit = false;

        ck_assert_int_ge(sd_event_add_time_relative(e, &timeout, CLOCK_MONOTONIC, timeout_usec, 1,
                                                    on_timeout, &hit), 0);
        while (!pred() && !hit)
                ck_assert_int_ge(sd_event_run(e, UINT64_MAX), 0);
        sd_event_source_disable_unref(timeout);
        return !hit;
}

bool event_never(void) {
        return false;
}
