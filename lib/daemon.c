#include "daemon.h"

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>

#include "tasad-build.h"

#include <systemd/sd-event.h>

#include "log.h"

static bool arg_check_config = false;

int daemon_load_config(const char *arg, TasadConfig **ret) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;
        _cleanup_free_ char *error = NULL;
        const char *path = arg ? arg : secure_getenv("TASAD_CONF");
        int r;

        r = tasad_config_load(path ? path : TASAD_CONF_DEFAULT, &c, &error);
        if (r == -ENOENT && !path) {
                log_info("No %s, using built-in defaults.", TASAD_CONF_DEFAULT);
                r = tasad_config_new_default(&c);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to load configuration: %s",
                                       error ? error : strerror(-r));
        /* --check-config from a shell has no credentials: it checks the name only, and the
         * credential itself when it is run with them (systemd-run -p LoadCredential=…). */
        if (arg_check_config && (c->redis_password_credential || c->api_tokens_credential) &&
            !*(secure_getenv("CREDENTIALS_DIRECTORY") ?: "")) {
                log_info("Not reading credential '%s': $CREDENTIALS_DIRECTORY is not set (the "
                         "units set it).", c->redis_password_credential ?: c->api_tokens_credential);
                *ret = TAKE_PTR(c);
                return 0;
        }
        r = tasad_config_load_credentials(c, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to load credentials: %s",
                                       error ? error : strerror(-r));
        c->credentials_loaded = true;
        *ret = TAKE_PTR(c);
        return 0;
}

int daemon_block_signals(void) {
        sigset_t s;

        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigaddset(&s, SIGINT);
        sigaddset(&s, SIGHUP);
        sigaddset(&s, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &s, NULL) < 0)
                return -errno;
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                return -errno;
        return 0;
}

bool daemon_check_config_only(void) {
        return arg_check_config;
}

int daemon_parse_argv(int argc, char *argv[], const char *summary, const char *positional,
                      const char **ret_config, const char **ret_positional) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        int c;

        *ret_config = NULL;
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        *ret_config = optarg;
                        break;
                case 'C':
                        arg_check_config = true;
                        break;
                case 'V':
                        printf("%s %s\n", program_invocation_short_name, TASAD_VERSION);
                        return 0;
                case 'h':
                        printf("Usage: %s [-c FILE] [--check-config]%s%s\n%s\n\n"
                               "  -c, --config FILE  configuration file (default $TASAD_CONF or %s)\n"
                               "      --check-config validate the configuration and the queues, then exit\n"
                               "  -h, --help         this text\n"
                               "      --version      the version\n",
                               program_invocation_short_name, positional ? " " : "",
                               positional ? positional : "", summary, TASAD_CONF_DEFAULT);
                        return 0;
                default:
                        return -EINVAL;
                }
        if (positional && optind == argc - 1) {
                *ret_positional = argv[optind];
                return 1;
        }
        if (!positional && optind == argc)
                return 1;
        return log_error_errno(-EINVAL, "%s (see --help).",
                               positional ? "Expected exactly one argument, the queue name"
                                          : "No arguments expected");
}

int daemon_service_main(int argc, char *argv[], const DaemonService *d) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TasadConfig *config = NULL;
        const char *arg_config = NULL;
        void *m = NULL;
        int r;

        log_setup(program_invocation_short_name);
        r = daemon_parse_argv(argc, argv, d->summary, NULL, &arg_config, NULL);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        r = daemon_load_config(arg_config, &config);
        if (r < 0)
                return 1;
        r = daemon_block_signals();
        if (r >= 0)
                r = sd_event_default(&e);
        if (r >= 0)
                r = d->new(e, config, &m); /* takes config, also on failure */
        else
                tasad_config_free(config);
        if (r >= 0 && daemon_check_config_only()) {
                puts("Configuration and queues are valid.");
                d->free(m);
                return 0;
        }
        if (r >= 0)
                r = d->start(m);
        if (r >= 0)
                r = sd_event_loop(e);
        if (m)
                d->free(m);
        if (r < 0)
                return log_error_errno(r, "%s failed: %m", program_invocation_short_name), 1;
        return 0;
}
