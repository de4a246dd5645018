/* tasad-results: the read side and gatherer of tasad (see results.h). */
#include <systemd/sd-event.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "results.h"

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(results_freep) Results *res = NULL;
        TasadConfig *config = NULL;
        const char *arg_config = NULL;
        int r;

        log_setup("tasad-results");
        r = daemon_parse_argv(argc, argv, "Gathers results and answers every read query.", NULL,
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
                r = results_new(e, config, &res);  /* takes config */
        if (r >= 0 && daemon_check_config_only())
                return puts("Configuration and queues are valid."), 0;
        if (r >= 0)
                r = results_start(res);
        if (r >= 0)
                r = sd_event_loop(e);
        if (r < 0)
                return log_error_errno(r, "tasad-results failed: %m"), 1;
        return 0;
}
