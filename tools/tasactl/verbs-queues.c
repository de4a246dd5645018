/* Verbs about queues: queues, dead, requeue (docs/api.md GET /v1/queues,
 * GET /v1/queues/{queue}/dead, POST /v1/queues/{queue}/dead/{id}/requeue). */
#include <jansson.h>

#include "client.h"
#include "output.h"
#include "tasactl.h"

/* A table column filled from one key of each object of a daemon array. */
typedef struct Column {
        TableColumn table;
        const char *key;
        int (*format)(const json_t *v, char **ret);
} Column;

static const Column queue_columns[] = {
        { { "NAME", false }, "name", output_value },
        { { "READY", true }, "ready", output_value },
        { { "DELAYED", true }, "delayed", output_value },
        { { "RUNNING", true }, "running", output_value },
        { { "DONE", true }, "done", output_value },
        { { "FAILED", true }, "failed", output_value },
        { { "DEAD", true }, "dead", output_value },
        { { "WORKERS", true }, "workers", output_value },
};

static const Column dead_columns[] = {
        { { "ID", false }, "id", output_value },
        { { "ATTEMPT", true }, "attempt", output_value },
        { { "OUTCOME", false }, "outcome", output_value },
        { { "FINISHED", false }, "finished", output_time },
};

#define COLUMNS_MAX 8

static int add_row(Table *t, const Column *columns, size_t n, const json_t *obj) {
        char *cells[COLUMNS_MAX] = {};

        for (size_t i = 0; i < n; i++) {
                int r = columns[i].format(json_object_get(obj, columns[i].key), &cells[i]);

                if (r < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(cells[j]);
                        return r;
                }
        }
        return table_add_row(t, cells);
}

/* The array under key of a daemon reply as a table, or the whole reply with --json. */
static int print_list(const json_t *reply, const char *key, const Column *columns, size_t n,
                      const char *what) {
        TableColumn headers[COLUMNS_MAX];
        _cleanup_(table_freep) Table *t = NULL;
        const json_t *list = json_object_get(reply, key);
        json_t *obj;
        size_t i;
        int r;

        if (!json_is_array(list))
                return output_error(EPROTO, "%s: the reply has no \"%s\" array", what, key);
        if (arg_json)
                return output_json(reply);
        for (i = 0; i < n; i++)
                headers[i] = columns[i].table;
        r = table_new(headers, n, &t);
        if (r < 0)
                return r;
        json_array_foreach(list, i, obj) {
                r = add_row(t, columns, n, obj);
                if (r < 0)
                        return r;
        }
        return table_print(t, stdout);
}

int verb_queues(int argc, char *argv[]) {
        _cleanup_(json_decrefp) json_t *reply = NULL;
        _cleanup_free_ char *path = NULL;
        const char *what = "cannot list the queues";
        Client *c;
        int r;

        r = tasactl_client(&c);
        if (r >= 0)
                r = client_path(c, &path, "queues", NULL);
        if (r >= 0)
                r = client_call_json(c, CLIENT_RESULTS, "GET", path, NULL, CLIENT_TIMEOUT_USEC, what,
                                     &reply);
        if (r >= 0)
                r = print_list(reply, "queues", queue_columns, ELEMENTSOF(queue_columns), what);
        return r < 0 ? r : TASACTL_EXIT_OK;
}

int verb_dead(int argc, char *argv[]) {
        _cleanup_(json_decrefp) json_t *reply = NULL;
        _cleanup_free_ char *path = NULL, *what = NULL;
        Client *c;
        int r;

        if (asprintf(&what, "cannot list the dead jobs of queue '%s'", argv[1]) < 0)
                return output_oom();
        r = tasactl_client(&c);
        if (r >= 0)
                r = client_path(c, &path, "queues", argv[1], "dead", NULL);
        if (r >= 0)
                r = client_call_json(c, CLIENT_RESULTS, "GET", path, NULL, CLIENT_TIMEOUT_USEC, what,
                                     &reply);
        if (r >= 0)
                r = print_list(reply, "jobs", dead_columns, ELEMENTSOF(dead_columns), what);
        return r < 0 ? r : TASACTL_EXIT_OK;
}

int verb_requeue(int argc, char *argv[]) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        Client *c;
        int r;

        if (asprintf(&what, "requeue of job '%s' in queue '%s' refused", argv[2], argv[1]) < 0)
                return output_oom();
        r = tasactl_client(&c);
        if (r >= 0)
                r = client_path(c, &path, "queues", argv[1], "dead", argv[2], "requeue", NULL);
        if (r < 0)
                return r;
        return job_state_change(c, "POST", path, what, argv[2]);
}
