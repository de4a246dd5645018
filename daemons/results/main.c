/* tasad-results: the read side and gatherer of tasad (see results.h). */
#include "config.h"
#include "daemon.h"
#include "results.h"

static int manager_new(sd_event *e, TasadConfig *config, void **ret) {
        Results *r = NULL;
        int k = results_new(e, config, &r);
        *ret = r;
        return k;
}

static int manager_start(void *m) {
        return results_start(m);
}

static void manager_free(void *m) {
        results_free(m);
}

int main(int argc, char *argv[]) {
        return daemon_service_main(argc, argv, &(DaemonService){
                .summary = "Gathers results and answers every read query.",
                .new = manager_new, .start = manager_start, .free = manager_free });
}
