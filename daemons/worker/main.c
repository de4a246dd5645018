/* tasad-worker QUEUE: runs the jobs of one queue (see worker.h). */
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "policy.h"
#include "sandbox.h"
#include "tasad-build.h"
#include "worker.h"

/* --check-config: everything a start would check, the sandbox included, then the resolved
 * policy. */
static int check_config(const TasadConfig *config, const QueueConfig *queue) {
        _cleanup_(sandbox_host_freep) SandboxHost *host = NULL;
        _cleanup_(sandbox_freep) Sandbox *sandbox = NULL;
        _cleanup_free_ char *accounts = NULL;
        int r;

        r = sandbox_host_new(&host);
        if (r < 0)
                return log_error_errno(r, "Failed to probe the job sandbox: %m"), 1;
        printf("Job sandbox on this host: %s.\n", sandbox_host_describe(host));
        if (worker_load_sandbox(host, config, queue, &sandbox) < 0)
                return 1;
        printf("Configuration and queue '%s' are valid.\n", queue->name);
        accounts = worker_describe_accounts(config, queue, sandbox);
        printf("Accounts: %s.\n\n", accounts ? accounts : "?");
        if (!sandbox_policy(sandbox)) {
                printf("Policy: " POLICY_UNCONFINED " (no seccomp filter).\n");
                return 0;
        }
        return policy_format(sandbox_policy(sandbox), stdout) < 0 ? 1 : 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        TasadConfig *config = NULL;
        QueueConfig *queue = NULL;
        const char *queue_name = NULL, *arg_config = NULL;
        int r;

        log_setup("tasad-worker");
        /* Jobs may run as our own user (unprivileged mode): keep them out of our memory,
         * environment and descriptors under /proc (it makes those root's). */
        (void) prctl(PR_SET_DUMPABLE, 0);
        /* The path this binary reads, whatever prefix it was built with. */
        r = daemon_parse_argv(argc, argv, "Runs the jobs of QUEUE (QUEUE.conf in tasad.conf's "
                              "queues_dir, by default " TASAD_QUEUES_DIR_DEFAULT ").",
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
                r = check_config(config, queue);
                queue_config_free(queue);
                tasad_config_free(config);
                return r;
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
