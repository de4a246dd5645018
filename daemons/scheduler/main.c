/* tasad-scheduler: the write side of tasad (see scheduler.h). */
#include "config.h"
#include "daemon.h"
#include "scheduler.h"

static int manager_new(sd_event *e, TasadConfig *config, void **ret) {
        Scheduler *s = NULL;
        int r = scheduler_new(e, config, &s);
        *ret = s;
        return r;
}

static int manager_start(void *m) {
        return scheduler_start(m);
}

static void manager_free(void *m) {
        scheduler_free(m);
}

int main(int argc, char *argv[]) {
        return daemon_service_main(argc, argv, &(DaemonService){
                .summary = "Accepts submissions and runs tasad's timers.",
                .new = manager_new, .start = manager_start, .free = manager_free });
}
