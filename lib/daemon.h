/* What every tasad daemon does the same way at start-up. */
#pragma once

#include <stdbool.h>

#include "config.h"

/* The configuration file: `arg` (from -c), else $TASAD_CONF, else /etc/tasad/tasad.conf. A
 * missing default file means built-in defaults; a missing explicitly named file is an error.
 * Credentials are loaded too. Logs what is wrong (file:line: key: …). */
int daemon_load_config(const char *arg, TasadConfig **ret);

/* Blocks the signals sd-event handles (TERM, INT, HUP, CHLD) and ignores SIGPIPE. */
int daemon_block_signals(void);

/* Parses the command line shared by the daemons: -c/--config FILE, --check-config, --help,
 * --version, and exactly one positional argument when `positional` names it (the worker's
 * QUEUE), none otherwise. Returns 1 to go on, 0 after --help/--version, -EINVAL (logged) on a
 * usage error. */
int daemon_parse_argv(int argc, char *argv[], const char *summary, const char *positional,
                      const char **ret_config, const char **ret_positional);
/* Whether --check-config was given: load and validate everything, print a verdict, exit. */
bool daemon_check_config_only(void);

typedef struct sd_event sd_event;

/* tasad-scheduler and tasad-results: one manager object, built from the configuration. */
typedef struct DaemonService {
        const char *summary;                                   /* for --help */
        int (*new)(sd_event *e, TasadConfig *config, void **ret); /* takes config */
        int (*start)(void *manager);
        void (*free)(void *manager);
} DaemonService;

/* The whole main() of such a daemon: arguments, configuration, --check-config, signals, the
 * manager, the event loop. Returns the process exit code. */
int daemon_service_main(int argc, char *argv[], const DaemonService *d);
