/* `tasactl policy check NAME|FILE` and `tasactl policy groups`: local checks of seccomp
 * profiles (docs/policy.md), read from the configured policy_dirs; nothing is sent to a daemon. */
#include <jansson.h>

#include "config.h"
#include "output.h"
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

int verb_policy(int argc, char *argv[]) {
        if (streq(argv[1], "check")) {
                if (argc != 3)
                        return tasactl_usage_error("usage: tasactl policy check NAME|FILE");
                return policy_check(argv[2]);
        }
        if (streq(argv[1], "groups")) {
                if (argc != 2)
                        return tasactl_usage_error("usage: tasactl policy groups");
                return policy_groups_format(stdout) < 0 ? output_error(-EIO, "cannot write: %m") : 0;
        }
        return tasactl_usage_error("unknown policy command '%s'; usage: tasactl policy check "
                                   "NAME|FILE, tasactl policy groups", argv[1]);
}
