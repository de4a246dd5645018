/* tasad-scheduler: the write side of tasad (see scheduler.h). */
#include <systemd/sd-event.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "scheduler.h"

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(scheduler_freep) Scheduler *s = NULL;
        TasadConfig *config = NULL;
        const char *arg_config = NULL;
        int r;

        log_setup("tasad-scheduler");
        r = daemon_parse_argv(argc, argv, "Accepts submissions and runs tasad's timers.", NULL,
                              &arg_config, NULL);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        r = daemon_load_config(arg_config, &config);
        if (r < 0)
                return 1;
        r = daemon_block_signals();
        if (r >= 0)
                r = sd_event_default(&e);
        if (r >= 0)
                r = scheduler_new(e, config, &s);  /* takes config */
        if (r >= 0 && daemon_check_config_only())
                return puts("Configuration and queues are valid."), 0;
        if (r >= 0)
                r = scheduler_start(s);
        if (r >= 0)
                r = sd_event_loop(e);
        if (r < 0)
                return log_error_errno(r, "tasad-scheduler failed: %m"), 1;
        return 0;
}
