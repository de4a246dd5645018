/* `tasactl policy check NAME|FILE` and `tasactl policy groups`: local checks of seccomp
 * profiles (docs/policy.md), read from the configured policy_dirs; nothing is sent to a daemon. */
#include <jansson.h>

#include "config.h"
#include "output.h"
#include "policy-internal.h"
#include "policy.h"
#include "tasactl.h"

static json_t *rule_json(const PolicyRule *r) {
        json_t *o = json_object(), *conds = json_array();

        if (!o || !conds) {
                json_decref(o);
                json_decref(conds);
                return NULL;
        }
        for (unsigned i = 0; i < r->n_conditions; i++)
                json_array_append_new(conds, json_string(r->conditions[i].text));
        json_object_set_new(o, "syscall", json_string(r->name));
        json_object_set_new(o, "nr", json_integer(r->nr));
        json_object_set_new(o, "action", json_string(policy_action_name(r->action)));
        if (r->action == POLICY_ERRNO)
                json_object_set_new(o, "errno", json_string(policy_errno_to_name(r->errno_value) ?: "?"));
        json_object_set_new(o, "when", conds);
        json_object_set_new(o, "origin", json_string(r->origin));
        if (r->reason)
                json_object_set_new(o, "reason", json_string(r->reason));
        return o;
}

static int policy_print_json(const Policy *p) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        json_t *rules = json_array(), *skipped = json_array();
        char def[64];

        if (!o || !rules || !skipped) {
                json_decref(rules);
                json_decref(skipped);
                return output_oom();
        }
        snprintf(def, sizeof(def), "%s%s%s", policy_action_name(p->default_action),
                 p->default_action == POLICY_ERRNO ? ":" : "",
                 p->default_action == POLICY_ERRNO ? policy_errno_to_name(p->default_errno) ?: "?" : "");
        json_object_set_new(o, "name", json_string(p->name));
        json_object_set_new(o, "path", json_string(p->path));
        json_object_set_new(o, "description", json_string(p->description));
        json_object_set_new(o, "default_action", json_string(def));
        for (size_t i = 0; i < p->n_rules; i++)
                json_array_append_new(rules, rule_json(&p->rules[i]));
        for (char **s = p->skipped; s && *s; s++)
                json_array_append_new(skipped, json_string(*s));
        json_object_set_new(o, "rules", rules);
        json_object_set_new(o, "skipped", skipped);
        return output_json(o);
}

static int policy_check(const char *what) {
        _cleanup_(tasad_config_freep) TasadConfig *config = NULL;
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = tasactl_config(&config);
        if (r < 0)
                return r;
        if (strchr(what, '/'))
                r = policy_load_file(config->policy_dirs, what, &p, &error);
        else if (!policy_name_is_valid(what))
                return output_error(-EINVAL, "\"%s\" is not a valid policy name "
                                    "([A-Za-z0-9_-]{1,64}); give a path with a '/' to check a file",
                                    what);
        else
                r = policy_load(config->policy_dirs, what, &p, &error);
        if (r == -ENOENT && !strchr(what, '/'))
                return output_error(r, "no policy \"%s\": no %s.policy in the policy directories",
                                    what, what);
        if (r < 0)
                return output_error(r, "%s", error ? error : strerror(-r));
        if (arg_json)
                return policy_print_json(p);
        return policy_format(p, stdout) < 0 ? output_error(-EIO, "cannot write: %m") : 0;
}

static int compare_json_strings(const void *a, const void *b) {
        return strcmp(json_string_value(*(json_t *const *) a),
                      json_string_value(*(json_t *const *) b));
}

/* A JSON array of strings, sorted (what policy_groups_format prints, sorted, as words). */
static json_t *sorted(json_t *a) {
        size_t n = json_array_size(a);
        _cleanup_free_ json_t **v = calloc(n + 1, sizeof(json_t *));
        json_t *out = json_array();

        if (!v || !out) {
                json_decref(a);
                json_decref(out);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                v[i] = json_array_get(a, i);
        qsort(v, n, sizeof(json_t *), compare_json_strings);
        for (size_t i = 0; i < n; i++)
                json_array_append(out, v[i]);
        json_decref(a);
        return out;
}

/* --json policy groups: {"groups": [{"name", "description", "calls", "other_arch"}]}, the
 * groups in policy_groups_format's order, calls (of this architecture) and other_arch (names
 * that are no system call here) sorted. */
static int policy_groups_json(void) {
        _cleanup_(json_decrefp) json_t *groups = json_array();

        if (!groups)
                return output_oom();
        for (size_t i = 0; i < policy_n_groups; i++) {
                const PolicyGroup *g = &policy_groups[i];
                json_t *here = json_array(), *elsewhere = json_array(), *o;

                for (const char *const *c = g->calls; here && elsewhere && *c; c++)
                        json_array_append_new(policy_syscall_is_native(*c) ? here : elsewhere,
                                              json_string(*c));
                o = json_pack("{s:s, s:s, s:o*, s:o*}", "name", g->name, "description",
                              g->description, "calls", here ? sorted(here) : NULL, "other_arch",
                              elsewhere ? sorted(elsewhere) : NULL);
                if (!o || json_array_append_new(groups, o) < 0)
                        return output_oom();
        }
        return output_json(json_pack("{s:O}", "groups", groups));
}

int verb_policy(int argc, char *argv[]) {
        if (streq(argv[1], "check")) {
                if (argc != 3)
                        return tasactl_usage_error("usage: tasactl policy check NAME|FILE");
                return policy_check(argv[2]);
        }
        if (streq(argv[1], "groups")) {
                if (argc != 2)
                        return tasactl_usage_error("usage: tasactl policy groups");
                if (arg_json)
                        return policy_groups_json();
                return policy_groups_format(stdout) < 0 ? output_error(-EIO, "cannot write: %m") : 0;
        }
        return tasactl_usage_error("unknown policy command '%s'; usage: tasactl policy check "
                                   "NAME|FILE, tasactl policy groups", argv[1]);
}
