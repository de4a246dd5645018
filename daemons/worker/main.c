/* tasad-worker QUEUE: runs the jobs of one queue (see worker.h). */
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "tasad-build.h"
#include "worker.h"

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        TasadConfig *config = NULL;
        QueueConfig *queue = NULL;
        const char *queue_name = NULL, *arg_config = NULL;
        int r;

        log_setup("tasad-worker");
        r = daemon_parse_argv(argc, argv, "Runs the jobs of QUEUE (" TASAD_SYSCONFDIR "/queues/QUEUE.conf).",
                              "QUEUE", &arg_config, &queue_name);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        r = daemon_load_config(arg_config, &config);
        if (r >= 0)
                r = worker_load_queue(config, queue_name, &queue);
        if (r < 0) {
                tasad_config_free(config);
                return 1;
        }
        if (daemon_check_config_only()) {
                printf("Configuration and queue '%s' are valid.\n", queue->name);
                queue_config_free(queue);
                tasad_config_free(config);
                return 0;
        }
        r = daemon_block_signals();
        if (r >= 0)
                r = sd_event_default(&e);
        if (r >= 0)
                r = worker_new(e, config, queue, &w);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the worker: %m");
                return 1;
        }
        r = worker_start(w);
        if (r >= 0)
                r = sd_event_loop(e);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), 1;
        log_info("Worker stopped.");
        return r;
}
