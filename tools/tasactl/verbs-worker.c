/* `tasactl worker status|pause|resume|drain QUEUE`: the control socket of this host's
 * tasad-worker@QUEUE, <worker_socket_dir>/QUEUE.sock (docs/api.md "Worker control"). */
#include <jansson.h>

#include "client.h"
#include "output.h"
#include "parse.h"
#include "tasactl.h"

static const struct {
        const char *name;
        const char *method;
        const char *path;
} commands[] = {
        { "status", "GET", "/v1/worker" },
        { "pause", "POST", "/v1/worker/pause" },
        { "resume", "POST", "/v1/worker/resume" },
        { "drain", "POST", "/v1/worker/drain" },
};

int verb_worker(int argc, char *argv[]) {
        _cleanup_(json_decrefp) json_t *st = NULL;
        _cleanup_free_ char *path = NULL, *what = NULL;
        const char *queue = argv[2];
        Client *c;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                if (!streq(argv[1], commands[i].name))
                        continue;
                if (!queue_name_is_valid(queue))
                        return tasactl_usage_error("'%s' is not a valid queue name", queue);
                r = tasactl_client(&c);
                if (r < 0)
                        return r;
                if (asprintf(&path, "%s/%s.sock", tasactl_worker_socket_dir(), queue) < 0 ||
                    asprintf(&what, "%s the worker of queue '%s'", commands[i].name, queue) < 0)
                        return output_oom();
                r = client_set_worker(c, queue, path);
                if (r < 0)
                        return output_oom();
                r = client_call_json(c, CLIENT_WORKER, commands[i].method, commands[i].path, NULL,
                                     CLIENT_TIMEOUT_USEC, what, &st);
                if (r < 0)
                        return r;
                if (arg_json)
                        return output_json(st);
                if (streq(commands[i].name, "status"))
                        return output_object(st);
                printf("%s %s\n", queue, json_string_value(json_object_get(st, "state")) ?: "?");
                return 0;
        }
        return tasactl_usage_error("unknown worker command '%s'; usage: tasactl worker "
                                   "status|pause|resume|drain QUEUE", argv[1]);
}
