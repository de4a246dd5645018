/* Seccomp policies (see policy.h and docs/policy.md).
 *
 * Loading a profile is three steps:
 *   1. parse each file of the extends chain on its own into a ProfileFile: its keys (one table,
 *      unknown keys fail), its lists expanded to Entries (one per system call and list; groups
 *      expanded; names checked; always-denied calls refused outside deny; one call in two lists
 *      refused). Every string is copied out of libconfig before config_destroy();
 *   2. resolve the chain, root first, into a RuleSet: each file replaces the rules of the calls it
 *      names and may override the default action;
 *   3. apply tasad's built-in rules (a table of steps) and flatten the RuleSet into the Policy's
 *      sorted rule array.
 * Compiling turns the rules into libseccomp rules, exports the BPF program into a memfd and reads
 * it back (libseccomp 2.5.4 has no seccomp_export_bpf_mem). */
#include "policy.h"

#include <libconfig.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "parse.h"
#include "policy-internal.h"
#include "strutil.h"

#define POLICY_FORMAT_VERSION 1
#define POLICY_MAX_DEPTH 8        /* levels of extends below the profile that was asked for */
#define SYSCALL_NAME_MAX 64
#define ORIGIN_TASAD "tasad"

bool policy_name_is_valid(const char *name) {
        /* The same rule as queue names: safe as a file name and in messages. */
        return queue_name_is_valid(name);
}

/* ---- errors ---- */

_printf_(6, 0) static int vfail(char **ret_error, int r, const char *path, unsigned line,
                                const char *key, const char *fmt, va_list ap) {
        _cleanup_free_ char *msg = NULL;

        if (!ret_error)
                return r;
        if (vasprintf(&msg, fmt, ap) < 0) {
                *ret_error = NULL;
                return r;
        }
        if (line == 0)
                return error_setf(ret_error, r, "%s: %s: %s", path, key, msg);
        return error_setf(ret_error, r, "%s:%u: %s: %s", path, line, key, msg);
}

/* "<path>:<line>: <key>: <message>" (no line when line is 0), returns -EINVAL. */
_printf_(5, 6) static int fail(char **ret_error, const char *path, unsigned line, const char *key,
                               const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vfail(ret_error, -EINVAL, path, line, key, fmt, ap);
        va_end(ap);
        return r;
}

/* The key a setting is known by, from the top of the file: "allow[2]", "allow_if[0].when[1]",
 * "errno.EPERM[0]". */
static void setting_path(const config_setting_t *s, char *buf, size_t size) {
        const config_setting_t *parent = config_setting_parent(s);
        char up[160];

        if (!parent || !config_setting_parent(parent)) {
                snprintf(buf, size, "%s", config_setting_name(s) ?: "?");
                return;
        }
        setting_path(parent, up, sizeof(up));
        if (config_setting_name(s))
                snprintf(buf, size, "%s.%s", up, config_setting_name(s));
        else
                snprintf(buf, size, "%s[%d]", up, config_setting_index(s));
}

_printf_(4, 5) static int fail_at(char **ret_error, const char *path, const config_setting_t *s,
                                  const char *fmt, ...) {
        char key[200];
        va_list ap;
        int r;

        setting_path(s, key, sizeof(key));
        va_start(ap, fmt);
        r = vfail(ret_error, -EINVAL, path, config_setting_source_line(s), key, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- small helpers ---- */

static const char *const list_names[] = { "allow", "allow_if", "deny", "errno" };

typedef enum ListKind {
        LIST_ALLOW,
        LIST_ALLOW_IF,
        LIST_DENY,
        LIST_ERRNO,
} ListKind;

static bool syscall_name_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > SYSCALL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

/* The native number of a system call, or -1 when it is not one on this architecture (libseccomp
 * gives other architectures' calls negative pseudo numbers). */
static int syscall_resolve(const char *name) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_NATIVE, name);

        return nr < 0 ? -1 : nr;
}

static char *join(char *const *l, const char *sep) {
        size_t n = 1;
        char *s;

        for (size_t i = 0; l && l[i]; i++)
                n += strlen(l[i]) + strlen(sep);
        s = malloc(n);
        if (!s)
                return NULL;
        s[0] = '\0';
        for (size_t i = 0; l && l[i]; i++) {
                if (i > 0)
                        strcat(s, sep);
                strcat(s, l[i]);
        }
        return s;
}

const char *policy_action_name(PolicyAction a) {
        switch (a) {
        case POLICY_ALLOW:
                return "allow";
        case POLICY_KILL:
                return "kill";
        case POLICY_ERRNO:
                return "errno";
        }
        return "?";
}

static const char *action_to_string(PolicyAction a, int errno_value, char *buf, size_t size) {
        if (a != POLICY_ERRNO)
                return policy_action_name(a);
        snprintf(buf, size, "errno:%s", policy_errno_to_name(errno_value) ?: "?");
        return buf;
}

static void rule_done(PolicyRule *r) {
        free(r->name);
        free(r->origin);
        for (unsigned i = 0; i < r->n_conditions; i++)
                free(r->conditions[i].text);
        *r = (PolicyRule) {};
}

/* ---- conditions: "argN OP VALUE" or "argN & MASK == VALUE" ---- */

static bool is_ident_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
}

static void skip_space(const char **p) {
        while (**p == ' ' || **p == '\t')
                (*p)++;
}

/* Digits of base 10 or 16 at *p into *ret, with overflow detection. */
static int parse_digits(const char **p, unsigned base, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = *p;
        int d;

        for (; (d = base == 16 ? unhexchar(*s) : (*s >= '0' && *s <= '9' ? *s - '0' : -1)) >= 0; s++)
                if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, (uint64_t) d, &v))
                        return -ERANGE;
        if (s == *p || is_ident_char(*s))
                return -EINVAL;
        *p = s;
        *ret = v;
        return 0;
}

/* One number or symbolic constant. */
static int parse_term(const char **p, uint64_t *ret, char *why, size_t size) {
        const char *s = *p;
        char name[64];
        size_t n = 0;
        int r;

        if (*s >= '0' && *s <= '9') {
                bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
                const char *start = s;

                s += hex ? 2 : 0;
                r = parse_digits(&s, hex ? 16 : 10, ret);
                if (r == -ERANGE)
                        snprintf(why, size, "number out of range (at most 64 bits)");
                else if (r < 0)
                        snprintf(why, size, "not a number at \"%s\"", start);
                *p = s;
                return r;
        }
        while (is_ident_char(s[n]))
                n++;
        if (n == 0 || n >= sizeof(name)) {
                snprintf(why, size, "expected a number or a constant at \"%s\"", s);
                return -EINVAL;
        }
        memcpy(name, s, n);
        name[n] = '\0';
        if (policy_constant_find(name, ret) < 0) {
                snprintf(why, size, "unknown constant %s", name);
                return -EINVAL;
        }
        *p = s + n;
        return 0;
}

/* Terms joined with '|', optionally in parentheses. */
static int parse_value(const char **p, uint64_t *ret, char *why, size_t size) {
        uint64_t v = 0, t;
        bool paren;
        int r;

        skip_space(p);
        paren = **p == '(';
        if (paren)
                (*p)++;
        for (;;) {
                skip_space(p);
                r = parse_term(p, &t, why, size);
                if (r < 0)
                        return r;
                v |= t;
                skip_space(p);
                if (**p != '|')
                        break;
                (*p)++;
        }
        if (paren && **p != ')') {
                snprintf(why, size, "missing \")\"");
                return -EINVAL;
        }
        *p += paren;
        *ret = v;
        return 0;
}

static int parse_compare(const char **p, PolicyCompare *ret) {
        static const struct {
                const char *token;
                PolicyCompare op;
        } ops[] = { /* two-character tokens first */
                { "==", POLICY_CMP_EQ }, { "!=", POLICY_CMP_NE }, { "<=", POLICY_CMP_LE },
                { ">=", POLICY_CMP_GE }, { "<", POLICY_CMP_LT },  { ">", POLICY_CMP_GT },
        };

        skip_space(p);
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (startswith(*p, ops[i].token)) {
                        *p += strlen(ops[i].token);
                        *ret = ops[i].op;
                        return 0;
                }
        return -EINVAL;
}

/* "argN" with N in 0..5. */
static int parse_arg(const char **p, unsigned *ret, char *why, size_t size) {
        const char *s = *p;

        skip_space(&s);
        if (!startswith(s, "arg") || !(s[3] >= '0' && s[3] <= '9')) {
                snprintf(why, size, "expected argN (N = 0..5) first");
                return -EINVAL;
        }
        if (s[3] > '5' || (s[4] >= '0' && s[4] <= '9')) {
                snprintf(why, size, "argument index must be 0..5");
                return -EINVAL;
        }
        *ret = (unsigned) (s[3] - '0');
        *p = s + 4;
        return 0;
}

/* Parses one condition; on failure, why says what is wrong (without the text). */
static int condition_parse(const char *text, PolicyCondition *ret, char *why, size_t size) {
        PolicyCondition c = {};
        const char *p = text;
        int r;

        r = parse_arg(&p, &c.arg, why, size);
        if (r < 0)
                return r;
        skip_space(&p);
        if (*p == '&') {
                p++;
                r = parse_value(&p, &c.mask, why, size);
                if (r < 0)
                        return r;
                c.op = POLICY_CMP_MASKED_EQ;
                skip_space(&p);
                if (!startswith(p, "==")) {
                        snprintf(why, size, "a masked comparison is \"argN & MASK == VALUE\"");
                        return -EINVAL;
                }
                p += 2;
        } else if (parse_compare(&p, &c.op) < 0) {
                snprintf(why, size, "expected one of == != < <= > >= or & MASK ==");
                return -EINVAL;
        }
        r = parse_value(&p, &c.value, why, size);
        if (r < 0)
                return r;
        skip_space(&p);
        if (*p != '\0') {
                snprintf(why, size, "unexpected \"%s\" after the value", p);
                return -EINVAL;
        }
        if (c.op == POLICY_CMP_MASKED_EQ && (c.value & ~c.mask) != 0) {
                snprintf(why, size, "the value has bits outside the mask, it can never match");
                return -EINVAL;
        }
        c.text = strdup(text);
        if (!c.text)
                return -ENOMEM;
        *ret = c;
        return 0;
}

/* ---- one file ---- */

/* One system call named in one list of a file. */
typedef struct Entry {
        char *name;
        int nr;                 /* -1: not a system call on this architecture */
        ListKind kind;
        const char *via;        /* the group it came from (static), NULL when named directly */
        int errno_value;        /* LIST_ERRNO */
        PolicyCondition conditions[POLICY_MAX_CONDITIONS]; /* LIST_ALLOW_IF */
        unsigned n_conditions;
} Entry;

typedef struct ProfileFile {
        char *name;
        char *path;
        char *description;
        char *extends;          /* NULL: none */
        unsigned extends_line;
        bool has_default;
        PolicyAction default_action;
        int default_errno;
        Entry *entries;
        size_t n_entries, n_alloc;
} ProfileFile;

static void entry_done(Entry *e) {
        free(e->name);
        for (unsigned i = 0; i < e->n_conditions; i++)
                free(e->conditions[i].text);
}

static ProfileFile *profile_file_free(ProfileFile *pf) {
        if (!pf)
                return NULL;
        for (size_t i = 0; i < pf->n_entries; i++)
                entry_done(&pf->entries[i]);
        free(pf->entries);
        free(pf->name);
        free(pf->path);
        free(pf->description);
        free(pf->extends);
        free(pf);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(ProfileFile *, profile_file_free);

typedef struct Parser {
        const char *path;
        char **ret_error;
        ProfileFile *pf;
} Parser;

/* " (from @group)" or "". */
static const char *via_string(const char *via, char *buf, size_t size) {
        if (!via)
                return "";
        snprintf(buf, size, " (from %s)", via);
        return buf;
}

/* Checks name against the entries so far: a call may be in one list only (several allow_if
 * entries are fine, the same call twice in one list is merged). *ret_merge: already there. */
static int entry_check_duplicate(Parser *p, const config_setting_t *where, const char *name,
                                 ListKind kind, int errno_value, const char *via,
                                 bool *ret_merge) {
        char a[80], b[80], list[32];

        *ret_merge = false;
        for (size_t i = 0; i < p->pf->n_entries; i++) {
                const Entry *e = &p->pf->entries[i];

                if (!streq(e->name, name))
                        continue;
                if (e->kind == LIST_ERRNO)
                        snprintf(list, sizeof(list), "errno.%s",
                                 policy_errno_to_name(e->errno_value));
                else
                        snprintf(list, sizeof(list), "%s", list_names[e->kind]);
                if (e->kind != kind || (kind == LIST_ERRNO && e->errno_value != errno_value))
                        return fail_at(p->ret_error, p->path, where,
                                       "\"%s\"%s is already listed in %s%s", name,
                                       via_string(via, a, sizeof(a)), list,
                                       via_string(e->via, b, sizeof(b)));
                *ret_merge = kind != LIST_ALLOW_IF;
        }
        return 0;
}

static void conditions_free(PolicyCondition *c, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                free(c[i].text);
}

/* Adds one call of list kind, takes the conditions' texts in every case. via: the group it
 * came from, NULL when named directly. */
static int entry_add(Parser *p, const config_setting_t *where, const char *name, ListKind kind,
                     int errno_value, const char *via, PolicyCondition *conds, unsigned n) {
        Entry *e;
        bool merge = false;
        int nr = syscall_resolve(name), r;

        if (kind != LIST_DENY && policy_always_denied_reason(name))
                r = fail_at(p->ret_error, p->path, where,
                            "\"%s\" is always denied by tasad and cannot be allowed", name);
        else
                r = entry_check_duplicate(p, where, name, kind, errno_value, via, &merge);
        if (r < 0 || merge || (nr < 0 && via)) { /* groups name other architectures' calls */
                conditions_free(conds, n);
                return r;
        }
        if (p->pf->n_entries == p->pf->n_alloc) {
                size_t k = MAX(p->pf->n_alloc * 2, (size_t) 64);
                Entry *a = reallocarray(p->pf->entries, k, sizeof(Entry));

                if (!a) {
                        conditions_free(conds, n);
                        return -ENOMEM;
                }
                p->pf->entries = a;
                p->pf->n_alloc = k;
        }
        e = &p->pf->entries[p->pf->n_entries];
        *e = (Entry) { .name = strdup(name), .nr = nr, .kind = kind, .via = via,
                       .errno_value = errno_value, .n_conditions = n };
        if (n > 0)
                memcpy(e->conditions, conds, n * sizeof(PolicyCondition));
        if (!e->name) {
                entry_done(e);
                return -ENOMEM;
        }
        p->pf->n_entries++;
        return 0;
}

static int parse_call_name(Parser *p, const config_setting_t *e, ListKind kind,
                           int errno_value) {
        const char *name;
        const PolicyGroup *g;
        int r;

        if (config_setting_type(e) != CONFIG_TYPE_STRING)
                return fail_at(p->ret_error, p->path, e, "expected a string");
        name = config_setting_get_string(e);
        if (name[0] != '@') {
                if (!syscall_name_is_valid(name))
                        return fail_at(p->ret_error, p->path, e,
                                       "\"%s\" is not a system call name ([a-z0-9_]{1,64})", name);
                return entry_add(p, e, name, kind, errno_value, NULL, NULL, 0);
        }
        g = policy_group_find(name);
        if (!g)
                return fail_at(p->ret_error, p->path, e, "unknown group \"%s\"", name);
        for (size_t i = 0; g->calls[i]; i++) {
                r = entry_add(p, e, g->calls[i], kind, errno_value, g->name, NULL, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* An array of system call names and @groups. */
static int parse_call_list(Parser *p, const config_setting_t *s, ListKind kind, int errno_value) {
        if (!config_setting_is_array(s) && !config_setting_is_list(s))
                return fail_at(p->ret_error, p->path, s,
                               "expected an array of system call names and @groups");
        for (int i = 0; i < config_setting_length(s); i++) {
                int r = parse_call_name(p, config_setting_get_elem(s, (unsigned) i), kind,
                                        errno_value);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_allow(Parser *p, const config_setting_t *s) {
        return parse_call_list(p, s, LIST_ALLOW, 0);
}

static int parse_deny(Parser *p, const config_setting_t *s) {
        return parse_call_list(p, s, LIST_DENY, 0);
}

static int parse_errno(Parser *p, const config_setting_t *s) {
        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return fail_at(p->ret_error, p->path, s,
                               "expected a group: { ENAME = [ \"call\", ... ]; }");
        for (int i = 0; i < config_setting_length(s); i++) {
                const config_setting_t *m = config_setting_get_elem(s, (unsigned) i);
                int e = policy_errno_from_name(config_setting_name(m)), r;

                if (e < 0)
                        return fail_at(p->ret_error, p->path, m, "unknown errno name \"%s\"",
                                       config_setting_name(m));
                r = parse_call_list(p, m, LIST_ERRNO, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The conditions of one allow_if entry: 1..6 strings, at most one comparison per argument
 * (libseccomp refuses a second one in the same rule). */
static int parse_when(Parser *p, const config_setting_t *s, PolicyCondition *conds,
                      unsigned *ret_n) {
        unsigned n = 0, used = 0;
        char why[200];
        int r = 0;

        if (!config_setting_is_array(s) && !config_setting_is_list(s))
                return fail_at(p->ret_error, p->path, s, "expected an array of conditions");
        if (config_setting_length(s) == 0)
                return fail_at(p->ret_error, p->path, s,
                               "must not be empty (use allow for an unconditional rule)");
        if (config_setting_length(s) > POLICY_MAX_CONDITIONS)
                return fail_at(p->ret_error, p->path, s, "more than %d conditions",
                               POLICY_MAX_CONDITIONS);
        for (; n < (unsigned) config_setting_length(s); n++) {
                const config_setting_t *e = config_setting_get_elem(s, n);
                const char *text = config_setting_get_string(e);

                if (!text)
                        r = fail_at(p->ret_error, p->path, e, "expected a string");
                else if (condition_parse(text, &conds[n], why, sizeof(why)) < 0)
                        r = fail_at(p->ret_error, p->path, e, "\"%s\": %s", text, why);
                else if (used & (1U << conds[n].arg)) {
                        r = fail_at(p->ret_error, p->path, e,
                                    "\"%s\": arg%u is already compared in this entry (one "
                                    "comparison per argument; add another allow_if entry)",
                                    text, conds[n].arg);
                        free(conds[n].text);
                }
                if (r < 0)
                        break;
                used |= 1U << conds[n].arg;
        }
        if (r < 0) {
                conditions_free(conds, n);
                return r;
        }
        *ret_n = n;
        return 0;
}

static int check_members(Parser *p, const config_setting_t *s, const char *const *known) {
        for (int i = 0; i < config_setting_length(s); i++) {
                const config_setting_t *m = config_setting_get_elem(s, (unsigned) i);
                bool ok = false;

                for (size_t k = 0; known[k]; k++)
                        ok = ok || streq(known[k], config_setting_name(m));
                if (!ok)
                        return fail_at(p->ret_error, p->path, m, "unknown key");
        }
        return 0;
}

static int member_required(Parser *p, const config_setting_t *s, const char *name,
                           const config_setting_t **ret) {
        char key[200];

        *ret = config_setting_get_member(s, name);
        if (*ret)
                return 0;
        setting_path(s, key, sizeof(key));
        return fail(p->ret_error, p->path, config_setting_source_line(s), key,
                    "%s: required key is missing", name);
}

/* { syscall = "name"; when = [ "cond", ... ]; } */
static int parse_allow_if_entry(Parser *p, const config_setting_t *s) {
        static const char *const keys[] = { "syscall", "when", NULL };
        PolicyCondition conds[POLICY_MAX_CONDITIONS];
        const config_setting_t *sc, *when;
        const char *name;
        unsigned n = 0;
        int r;

        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return fail_at(p->ret_error, p->path, s,
                               "expected { syscall = \"name\"; when = [ ... ]; }");
        r = check_members(p, s, keys);
        if (r >= 0)
                r = member_required(p, s, "syscall", &sc);
        if (r >= 0)
                r = member_required(p, s, "when", &when);
        if (r < 0)
                return r;
        name = config_setting_get_string(sc);
        if (!name)
                return fail_at(p->ret_error, p->path, sc, "expected a string");
        if (name[0] == '@')
                return fail_at(p->ret_error, p->path, sc,
                               "\"%s\": allow_if takes one system call, not a group", name);
        if (!syscall_name_is_valid(name))
                return fail_at(p->ret_error, p->path, sc,
                               "\"%s\" is not a system call name ([a-z0-9_]{1,64})", name);
        if (streq(name, "clone") || streq(name, "personality"))
                return fail_at(p->ret_error, p->path, sc,
                               "\"%s\": its conditions are set by tasad, allow it unconditionally",
                               name);
        r = parse_when(p, when, conds, &n);
        if (r < 0)
                return r;
        return entry_add(p, sc, name, LIST_ALLOW_IF, 0, NULL, conds, n);
}

static int parse_allow_if(Parser *p, const config_setting_t *s) {
        if (!config_setting_is_list(s))
                return fail_at(p->ret_error, p->path, s,
                               "expected a list: ( { syscall = \"name\"; when = [ ... ]; }, ... )");
        for (int i = 0; i < config_setting_length(s); i++) {
                int r = parse_allow_if_entry(p, config_setting_get_elem(s, (unsigned) i));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_version(Parser *p, const config_setting_t *s) {
        int t = config_setting_type(s);
        long long v;

        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
                return fail_at(p->ret_error, p->path, s, "expected an integer");
        v = config_setting_get_int64(s);
        if (v != POLICY_FORMAT_VERSION)
                return fail_at(p->ret_error, p->path, s, "unknown version %lld (only %d is known)",
                               v, POLICY_FORMAT_VERSION);
        return 0;
}

static int parse_string(Parser *p, const config_setting_t *s, char **ret) {
        const char *v = config_setting_get_string(s);

        if (!v)
                return fail_at(p->ret_error, p->path, s, "expected a string");
        if (!v[0])
                return fail_at(p->ret_error, p->path, s, "must not be empty");
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

static int parse_description(Parser *p, const config_setting_t *s) {
        return parse_string(p, s, &p->pf->description);
}

static int parse_extends(Parser *p, const config_setting_t *s) {
        int r = parse_string(p, s, &p->pf->extends);

        if (r < 0)
                return r;
        if (!policy_name_is_valid(p->pf->extends))
                return fail_at(p->ret_error, p->path, s,
                               "\"%s\" is not a valid policy name ([A-Za-z0-9_-]{1,64})",
                               p->pf->extends);
        p->pf->extends_line = config_setting_source_line(s);
        return 0;
}

static int parse_default_action(Parser *p, const config_setting_t *s) {
        const char *v = config_setting_get_string(s);
        int e;

        if (!v)
                return fail_at(p->ret_error, p->path, s, "expected a string");
        if (streq(v, "kill")) {
                p->pf->default_action = POLICY_KILL;
        } else if (streq(v, "allow")) {
                return fail_at(p->ret_error, p->path, s,
                               "\"allow\" is refused: a profile is an allow-list (use \"kill\" or "
                               "\"errno:NAME\")");
        } else if (startswith(v, "errno:")) {
                e = policy_errno_from_name(v + 6);
                if (e < 0)
                        return fail_at(p->ret_error, p->path, s, "unknown errno name \"%s\"", v + 6);
                p->pf->default_action = POLICY_ERRNO;
                p->pf->default_errno = e;
        } else
                return fail_at(p->ret_error, p->path, s,
                               "\"%s\" is not an action (expected \"kill\" or \"errno:NAME\")", v);
        p->pf->has_default = true;
        return 0;
}

typedef int (*KeyParser)(Parser *p, const config_setting_t *s);

/* The top-level keys of a profile, in the order they are applied (version first: a newer format
 * fails on its version, not on its new keys). */
static const struct {
        const char *key;
        KeyParser parse;
        bool required;
} profile_keys[] = {
        { "version", parse_version, true },
        { "description", parse_description, true },
        { "extends", parse_extends, false },
        { "default_action", parse_default_action, false },
        { "allow", parse_allow, false },
        { "allow_if", parse_allow_if, false },
        { "deny", parse_deny, false },
        { "errno", parse_errno, false },
};

static int profile_key_apply(Parser *p, const config_setting_t *root, size_t i) {
        const config_setting_t *s = config_setting_get_member(root, profile_keys[i].key);

        if (s)
                return profile_keys[i].parse(p, s);
        if (profile_keys[i].required)
                return fail(p->ret_error, p->path, 0, profile_keys[i].key,
                            "required key is missing");
        return 0;
}

static int profile_check_unknown(Parser *p, const config_setting_t *root) {
        for (int i = 0; i < config_setting_length(root); i++) {
                const config_setting_t *s = config_setting_get_elem(root, (unsigned) i);
                bool known = false;

                for (size_t k = 0; k < ELEMENTSOF(profile_keys); k++)
                        known = known || streq(profile_keys[k].key, config_setting_name(s));
                if (!known)
                        return fail_at(p->ret_error, p->path, s, "unknown key");
        }
        return 0;
}

/* Settings read from an @include'd file: profiles share rules through extends, which keeps the
 * origin of every rule visible; an include would hide it (and its lines would cite another
 * file). */
static int profile_check_no_include(Parser *p, const config_setting_t *s) {
        char key[200];

        if (config_setting_source_file(s)) {
                setting_path(s, key, sizeof(key));
                return fail(p->ret_error, p->path, 0, key,
                            "comes from @include \"%s\": profiles do not support @include (use "
                            "extends)", config_setting_source_file(s));
        }
        for (int i = 0; config_setting_is_aggregate(s) && i < config_setting_length(s); i++) {
                int r = profile_check_no_include(p, config_setting_get_elem(s, (unsigned) i));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int profile_parse_root(Parser *p, const config_setting_t *root) {
        int r = profile_check_no_include(p, root);

        if (r >= 0)
                r = profile_key_apply(p, root, 0);
        if (r >= 0)
                r = profile_check_unknown(p, root);
        for (size_t i = 1; r >= 0 && i < ELEMENTSOF(profile_keys); i++)
                r = profile_key_apply(p, root, i);
        if (r >= 0 && !p->pf->has_default && !p->pf->extends)
                r = fail(p->ret_error, p->path, 0, "default_action",
                         "required key is missing (only a profile with extends may leave it out)");
        return r;
}

/* Parses one file on its own (extends is recorded, not followed). */
static int profile_parse(const char *path, const char *name, ProfileFile **ret,
                         char **ret_error) {
        _cleanup_(config_file_freep) config_t *cfg = NULL;
        _cleanup_(profile_file_freep) ProfileFile *pf = calloc(1, sizeof(ProfileFile));
        Parser p = { .path = path, .ret_error = ret_error, .pf = pf };
        int r;

        if (!pf || !(pf->name = strdup(name)) || !(pf->path = strdup(path)))
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", path);
        r = config_file_read(path, &cfg, ret_error);
        if (r < 0)
                return r;
        r = profile_parse_root(&p, config_root_setting(cfg));
        if (r == -ENOMEM)
                return error_setf(ret_error, r, "%s: Out of memory", path);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(pf);
        return 0;
}

/* ---- resolution ---- */

/* The rules of one system call while a chain is resolved. */
typedef struct Call {
        char *name;
        int nr;
        PolicyRule *rules;
        size_t n_rules;
        unsigned claimed;       /* generation of the file that last replaced the rules */
} Call;

typedef struct RuleSet {
        Call *calls;
        size_t n_calls, n_alloc;
        char **skipped;         /* NULL-terminated */
        size_t n_skipped;
        unsigned generation;    /* one per file applied */
        PolicyAction default_action;
        int default_errno;
} RuleSet;

static void call_clear(Call *c) {
        for (size_t i = 0; i < c->n_rules; i++)
                rule_done(&c->rules[i]);
        free(c->rules);
        c->rules = NULL;
        c->n_rules = 0;
}

static void rule_set_done(RuleSet *set) {
        for (size_t i = 0; i < set->n_calls; i++) {
                call_clear(&set->calls[i]);
                free(set->calls[i].name);
        }
        free(set->calls);
        strv_free(set->skipped);
        *set = (RuleSet) {};
}

/* The call's entry in set, made when missing. */
static int rule_set_call(RuleSet *set, const char *name, int nr, Call **ret) {
        for (size_t i = 0; i < set->n_calls; i++)
                if (streq(set->calls[i].name, name)) {
                        *ret = &set->calls[i];
                        return 0;
                }
        if (set->n_calls == set->n_alloc) {
                size_t k = MAX(set->n_alloc * 2, (size_t) 64);
                Call *a = reallocarray(set->calls, k, sizeof(Call));

                if (!a)
                        return -ENOMEM;
                set->calls = a;
                set->n_alloc = k;
        }
        set->calls[set->n_calls] = (Call) { .name = strdup(name), .nr = nr };
        if (!set->calls[set->n_calls].name)
                return -ENOMEM;
        *ret = &set->calls[set->n_calls++];
        return 0;
}

/* Appends a rule; takes the conditions' texts in every case. */
static int call_add_rule(Call *c, PolicyAction action, int errno_value, PolicyCondition *conds,
                         unsigned n, const char *origin, const char *reason) {
        PolicyRule *a = reallocarray(c->rules, c->n_rules + 1, sizeof(PolicyRule));
        PolicyRule *r;

        if (!a) {
                conditions_free(conds, n);
                return -ENOMEM;
        }
        c->rules = a;
        r = &c->rules[c->n_rules++];
        *r = (PolicyRule) { .name = strdup(c->name), .nr = c->nr, .action = action,
                            .errno_value = errno_value, .n_conditions = n,
                            .origin = strdup(origin), .reason = reason };
        if (n > 0)
                memcpy(r->conditions, conds, n * sizeof(PolicyCondition));
        return r->name && r->origin ? 0 : -ENOMEM;
}

static int rule_set_skip(RuleSet *set, const char *name) {
        char **a;

        for (size_t i = 0; i < set->n_skipped; i++)
                if (streq(set->skipped[i], name))
                        return 0;
        a = reallocarray(set->skipped, set->n_skipped + 2, sizeof(char *));
        if (!a)
                return -ENOMEM;
        set->skipped = a;
        a[set->n_skipped] = strdup(name);
        a[set->n_skipped + 1] = NULL;
        if (!a[set->n_skipped])
                return -ENOMEM;
        set->n_skipped++;
        return 0;
}

static PolicyAction entry_action(const Entry *e) {
        static const PolicyAction actions[] = {
                [LIST_ALLOW] = POLICY_ALLOW,
                [LIST_ALLOW_IF] = POLICY_ALLOW,
                [LIST_DENY] = POLICY_KILL,
                [LIST_ERRNO] = POLICY_ERRNO,
        };
        return actions[e->kind];
}

/* One entry of pf onto set: the first entry of a call in this file replaces the call's rules. */
static int rule_set_apply_entry(RuleSet *set, const ProfileFile *pf, Entry *e) {
        Call *c;
        int r;

        if (e->nr < 0) {
                log_debug("%s: \"%s\" is not a system call on this architecture, skipped.",
                          pf->path, e->name);
                return rule_set_skip(set, e->name);
        }
        r = rule_set_call(set, e->name, e->nr, &c);
        if (r < 0)
                return r;
        if (c->claimed != set->generation) {
                call_clear(c);
                c->claimed = set->generation;
        }
        r = call_add_rule(c, entry_action(e), e->errno_value, e->conditions, e->n_conditions,
                          pf->name, NULL);
        e->n_conditions = 0; /* the texts moved */
        return r;
}

static int rule_set_apply(RuleSet *set, ProfileFile *pf) {
        set->generation++;
        for (size_t i = 0; i < pf->n_entries; i++) {
                int r = rule_set_apply_entry(set, pf, &pf->entries[i]);
                if (r < 0)
                        return r;
        }
        if (pf->has_default) { /* the root of a chain always has one */
                set->default_action = pf->default_action;
                set->default_errno = pf->default_errno;
        }
        return 0;
}

/* ---- the extends chain ---- */

typedef struct Chain {
        const char *names[POLICY_MAX_DEPTH + 2]; /* owned by the ProfileFiles being loaded */
        size_t n;
} Chain;

/* "a -> b -> c -> last". */
static char *chain_string(const Chain *chain, const char *last) {
        char *l[ELEMENTSOF(chain->names) + 1] = {};

        for (size_t i = 0; i < chain->n; i++)
                l[i] = (char *) chain->names[i];
        l[chain->n] = (char *) last;
        return join(l, " -> ");
}

/* The path of <name>.policy in the first of dirs that has it, or -ENOENT. */
static int profile_find(char *const *dirs, const char *name, char **ret) {
        for (size_t i = 0; dirs && dirs[i]; i++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s.policy", dirs[i], name) < 0)
                        return -ENOMEM;
                if (access(path, F_OK) >= 0) {
                        *ret = TAKE_PTR(path);
                        return 0;
                }
                if (errno != ENOENT && errno != ENOTDIR)
                        return negative_errno();
        }
        return -ENOENT;
}

static int chain_load(char *const *dirs, const char *path, const char *name, Chain *chain,
                      RuleSet *set, ProfileFile **ret_top, char **ret_error);

static int chain_load_parent(char *const *dirs, const ProfileFile *pf, Chain *chain,
                             RuleSet *set, char **ret_error) {
        _cleanup_free_ char *path = NULL, *names = chain_string(chain, pf->extends),
                            *where = join(dirs, ", ");
        int r;

        if (!names || !where)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", pf->path);
        for (size_t i = 0; i < chain->n; i++)
                if (streq(chain->names[i], pf->extends))
                        return fail(ret_error, pf->path, pf->extends_line, "extends", "cycle: %s",
                                    names);
        if (chain->n > POLICY_MAX_DEPTH)
                return fail(ret_error, pf->path, pf->extends_line, "extends",
                            "more than %d levels of extends: %s", POLICY_MAX_DEPTH, names);
        r = profile_find(dirs, pf->extends, &path);
        if (r == -ENOENT)
                return fail(ret_error, pf->path, pf->extends_line, "extends",
                            "no profile \"%s\" (%s.policy) in %s", pf->extends, pf->extends,
                            where[0] ? where : "no directory");
        if (r < 0)
                return error_setf(ret_error, r, "%s:%u: extends: cannot look up \"%s\": %s",
                                  pf->path, pf->extends_line, pf->extends, strerror(-r));
        return chain_load(dirs, path, pf->extends, chain, set, NULL, ret_error);
}

/* Loads path and, first, the profiles it extends, applying each onto set, root first. */
static int chain_load(char *const *dirs, const char *path, const char *name, Chain *chain,
                      RuleSet *set, ProfileFile **ret_top, char **ret_error) {
        _cleanup_(profile_file_freep) ProfileFile *pf = NULL;
        int r;

        r = profile_parse(path, name, &pf, ret_error);
        if (r < 0)
                return r;
        chain->names[chain->n++] = pf->name;
        r = pf->extends ? chain_load_parent(dirs, pf, chain, set, ret_error) : 0;
        chain->n--; /* the name dies with pf */
        if (r < 0)
                return r;
        r = rule_set_apply(set, pf);
        if (r < 0)
                return error_setf(ret_error, r, "%s: %s", path, strerror(-r));
        if (ret_top)
                *ret_top = TAKE_PTR(pf);
        return 0;
}

/* ---- built-in rules ---- */

static Call *rule_set_find(RuleSet *set, const char *name) {
        for (size_t i = 0; i < set->n_calls; i++)
                if (streq(set->calls[i].name, name))
                        return &set->calls[i];
        return NULL;
}

static bool call_allowed_unconditionally(const Call *c) {
        return c && c->n_rules == 1 && c->rules[0].n_conditions == 0 &&
               c->rules[0].action == POLICY_ALLOW;
}

/* Adds a built-in rule with at most one condition, written in the profile grammar. */
static int builtin_add(Call *c, PolicyAction action, int errno_value, const char *condition,
                       const char *reason) {
        PolicyCondition cond;
        char why[200];
        int r;

        if (!condition)
                return call_add_rule(c, action, errno_value, NULL, 0, ORIGIN_TASAD, reason);
        r = condition_parse(condition, &cond, why, sizeof(why));
        if (r < 0) /* a bug in this file */
                return log_debug_errno(r, "Built-in condition \"%s\": %s", condition, why);
        return call_add_rule(c, action, errno_value, &cond, 1, ORIGIN_TASAD, reason);
}

/* Replaces the rules of a call (made when missing) by one built-in rule. */
static int builtin_set(RuleSet *set, const char *name, PolicyAction action, int errno_value,
                       const char *reason) {
        int nr = syscall_resolve(name), r;
        Call *c;

        if (nr < 0) {
                log_debug("Built-in rule for %s: not a system call on this architecture.", name);
                return 0;
        }
        r = rule_set_call(set, name, nr, &c);
        if (r < 0)
                return r;
        call_clear(c);
        return builtin_add(c, action, errno_value, NULL, reason);
}

static int builtin_always_denied(RuleSet *set) {
        for (size_t i = 0; i < policy_n_always_denied; i++) {
                int r = builtin_set(set, policy_always_denied[i].name, POLICY_KILL, 0,
                                    policy_always_denied[i].reason);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* clone: allowed only without namespace flags; each flag is a violation of its own. */
static int builtin_clone(RuleSet *set) {
        static const char reason[] = "namespaces are set up by tasad, not by jobs";
        Call *c = rule_set_find(set, "clone");
        _cleanup_free_ char *all = NULL, *cond = NULL;
        char *names[16] = {};
        int r;

        if (!call_allowed_unconditionally(c))
                return 0;
        for (size_t i = 0; i < policy_n_clone_ns_flags && i < ELEMENTSOF(names) - 1; i++)
                names[i] = (char *) policy_clone_ns_flags[i].name;
        all = join(names, "|");
        if (!all || asprintf(&cond, "arg%u & (%s) == 0", POLICY_CLONE_FLAGS_ARG, all) < 0)
                return -ENOMEM;
        call_clear(c);
        r = builtin_add(c, POLICY_ALLOW, 0, cond, reason);
        for (size_t i = 0; r >= 0 && i < policy_n_clone_ns_flags; i++) {
                _cleanup_free_ char *kill_if = NULL;

                if (asprintf(&kill_if, "arg%u & %s == %s", POLICY_CLONE_FLAGS_ARG,
                             policy_clone_ns_flags[i].name, policy_clone_ns_flags[i].name) < 0)
                        return -ENOMEM;
                r = builtin_add(c, POLICY_KILL, 0, kill_if, reason);
        }
        return r;
}

static int builtin_clone3(RuleSet *set) {
        return builtin_set(set, "clone3", POLICY_ERRNO, ENOSYS,
                           "its flags are out of the filter's sight; glibc falls back to clone");
}

/* personality: queries, and changes that keep address space randomisation. */
static int builtin_personality(RuleSet *set) {
        static const char reason[] = "ADDR_NO_RANDOMIZE would turn off address space randomisation";
        Call *c = rule_set_find(set, "personality");
        int r;

        if (!call_allowed_unconditionally(c))
                return 0;
        call_clear(c);
        r = builtin_add(c, POLICY_ALLOW, 0, "arg0 == 0xffffffff", reason);
        if (r >= 0)
                r = builtin_add(c, POLICY_ALLOW, 0, "arg0 & ADDR_NO_RANDOMIZE == 0", reason);
        return r;
}

/* Applied in this order after the chain is resolved, whatever the profile says. */
static int (*const builtin_steps[])(RuleSet *set) = {
        builtin_always_denied,
        builtin_clone,
        builtin_clone3,
        builtin_personality,
};

/* ---- the Policy ---- */

Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_rules; i++)
                rule_done(&p->rules[i]);
        free(p->rules);
        free(p->name);
        free(p->path);
        free(p->description);
        strv_free(p->skipped);
        free(p);
        return NULL;
}

static int call_compare(const void *a, const void *b) {
        return strcmp(((const Call *) a)->name, ((const Call *) b)->name);
}

static int string_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Moves the rules of set into p, sorted by call name (a call's rules keep their order). */
static int rule_set_flatten(RuleSet *set, Policy *p) {
        size_t total = 0;

        qsort(set->calls, set->n_calls, sizeof(Call), call_compare);
        for (size_t i = 0; i < set->n_calls; i++)
                total += set->calls[i].n_rules;
        p->rules = calloc(MAX(total, (size_t) 1), sizeof(PolicyRule));
        p->skipped = set->skipped ? TAKE_PTR(set->skipped) : calloc(1, sizeof(char *));
        if (!p->rules || !p->skipped)
                return -ENOMEM;
        qsort(p->skipped, set->n_skipped, sizeof(char *), string_compare);
        for (size_t i = 0; i < set->n_calls; i++) {
                Call *c = &set->calls[i];

                if (c->n_rules > 0)
                        memcpy(&p->rules[p->n_rules], c->rules, c->n_rules * sizeof(PolicyRule));
                p->n_rules += c->n_rules;
                free(c->rules);
                c->rules = NULL;
                c->n_rules = 0;
        }
        return 0;
}

static int policy_build(RuleSet *set, ProfileFile *top, Policy **ret) {
        _cleanup_(policy_freep) Policy *p = calloc(1, sizeof(Policy));
        int r;

        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(builtin_steps); i++) {
                r = builtin_steps[i](set);
                if (r < 0)
                        return r;
        }
        p->name = TAKE_PTR(top->name);
        p->path = TAKE_PTR(top->path);
        p->description = TAKE_PTR(top->description);
        p->default_action = set->default_action;
        p->default_errno = set->default_errno;
        r = rule_set_flatten(set, p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

static int policy_load_path(char *const *dirs, const char *path, const char *name, Policy **ret,
                            char **ret_error) {
        _cleanup_(rule_set_done) RuleSet set = {};
        _cleanup_(profile_file_freep) ProfileFile *top = NULL;
        Chain chain = {};
        int r;

        r = chain_load(dirs, path, name, &chain, &set, &top, ret_error);
        if (r < 0)
                return r;
        r = policy_build(&set, top, ret);
        if (r < 0)
                return error_setf(ret_error, r, "%s: %s", path, strerror(-r));
        return 0;
}

int policy_load_file(char *const *dirs, const char *path, Policy **ret, char **ret_error) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t n = strlen(base);
        _cleanup_free_ char *name = NULL;

        if (n > strlen(".policy") && streq(base + n - strlen(".policy"), ".policy"))
                n -= strlen(".policy");
        name = strndup(base, n);
        if (!name)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", path);
        return policy_load_path(dirs, path, name, ret, ret_error);
}

int policy_load(char *const *dirs, const char *name, Policy **ret, char **ret_error) {
        _cleanup_free_ char *path = NULL, *where = NULL;
        int r;

        if (!policy_name_is_valid(name))
                return error_setf(ret_error, -EINVAL,
                                  "\"%s\" is not a valid policy name ([A-Za-z0-9_-]{1,64})", name);
        r = profile_find(dirs, name, &path);
        if (r == -ENOENT) {
                where = join(dirs, ", ");
                return error_setf(ret_error, r, "no profile \"%s\" (%s.policy) in %s", name, name,
                                  where && where[0] ? where : "no directory");
        }
        if (r < 0)
                return error_setf(ret_error, r, "%s.policy: %s", name, strerror(-r));
        return policy_load_path(dirs, path, name, ret, ret_error);
}

const PolicyRule *policy_find(const Policy *p, const char *syscall, size_t *ret_count) {
        size_t lo = 0, hi = p->n_rules, n = 0;

        while (lo < hi) { /* the first rule whose name is not below syscall */
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(p->rules[mid].name, syscall) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        while (lo + n < p->n_rules && streq(p->rules[lo + n].name, syscall))
                n++;
        if (ret_count)
                *ret_count = n;
        return n > 0 ? &p->rules[lo] : NULL;
}

/* ---- compiling ---- */

static void seccomp_releasep(scmp_filter_ctx *ctx) {
        if (*ctx)
                seccomp_release(*ctx);
}

static uint32_t scmp_action(PolicyAction a, int errno_value, PolicyKillMode mode) {
        switch (a) {
        case POLICY_ALLOW:
                return SCMP_ACT_ALLOW;
        case POLICY_ERRNO:
                return SCMP_ACT_ERRNO((uint32_t) errno_value);
        case POLICY_KILL:
                break;
        }
        return mode == POLICY_KILL_NOTIFY ? SCMP_ACT_NOTIFY : SCMP_ACT_KILL_PROCESS;
}

static struct scmp_arg_cmp scmp_compare(const PolicyCondition *c) {
        static const enum scmp_compare ops[] = {
                [POLICY_CMP_EQ] = SCMP_CMP_EQ, [POLICY_CMP_NE] = SCMP_CMP_NE,
                [POLICY_CMP_LT] = SCMP_CMP_LT, [POLICY_CMP_LE] = SCMP_CMP_LE,
                [POLICY_CMP_GT] = SCMP_CMP_GT, [POLICY_CMP_GE] = SCMP_CMP_GE,
                [POLICY_CMP_MASKED_EQ] = SCMP_CMP_MASKED_EQ,
        };

        if (c->op == POLICY_CMP_MASKED_EQ)
                return (struct scmp_arg_cmp) { c->arg, ops[c->op], c->mask, c->value };
        return (struct scmp_arg_cmp) { c->arg, ops[c->op], c->value, 0 };
}

/* Adds one rule, plus an optional extra comparison; a rule with the filter's default action
 * is left out (libseccomp refuses it with -EACCES, and it changes nothing). */
static int compile_rule(scmp_filter_ctx ctx, uint32_t def, uint32_t action, const PolicyRule *r,
                        const struct scmp_arg_cmp *extra) {
        struct scmp_arg_cmp cmps[POLICY_MAX_CONDITIONS + 1];
        unsigned n = 0;

        if (action == def)
                return 0;
        for (; n < r->n_conditions; n++)
                cmps[n] = scmp_compare(&r->conditions[n]);
        if (extra)
                cmps[n++] = *extra;
        return seccomp_rule_add_array(ctx, action, r->nr, n, cmps);
}

/* With a listener channel, sendmsg(channel_fd, …) must pass whatever the profile says: an
 * unconditional refusal becomes conditional on another descriptor (libseccomp would let an
 * unconditional rule override the conditional allow), and the channel is allowed. */
static int compile_rules(scmp_filter_ctx ctx, const Policy *p, uint32_t def,
                         PolicyKillMode mode, int channel_fd) {
        const struct scmp_arg_cmp not_channel = SCMP_A0(SCMP_CMP_NE, (uint64_t) channel_fd);
        bool exception = mode == POLICY_KILL_NOTIFY && channel_fd >= 0, sendmsg_open = false;
        int r;

        for (size_t i = 0; i < p->n_rules; i++) {
                const PolicyRule *rule = &p->rules[i];
                uint32_t action = scmp_action(rule->action, rule->errno_value, mode);
                bool unconditional_sendmsg = exception && rule->n_conditions == 0 &&
                                             streq(rule->name, "sendmsg");

                sendmsg_open = sendmsg_open ||
                               (unconditional_sendmsg && rule->action == POLICY_ALLOW);
                r = compile_rule(ctx, def, action, rule,
                                 unconditional_sendmsg && rule->action != POLICY_ALLOW ?
                                         &not_channel : NULL);
                if (r < 0)
                        return log_debug_errno(r, "Policy %s: cannot add the rule for %s: %m",
                                               p->name, rule->name);
        }
        if (!exception || sendmsg_open)
                return 0;
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sendmsg), 1,
                             SCMP_A0(SCMP_CMP_EQ, (uint64_t) channel_fd));
        if (r < 0)
                return log_debug_errno(r, "Policy %s: cannot allow the listener channel: %m",
                                       p->name);
        return 0;
}

/* Exports the filter into a memfd and reads the instructions back. */
static int compile_export(scmp_filter_ctx ctx, BpfProgram *ret) {
        _cleanup_close_ int fd = memfd_create("tasad-policy", MFD_CLOEXEC);
        _cleanup_free_ struct sock_filter *insns = NULL;
        struct stat st;
        size_t size;
        ssize_t n;
        int r;

        if (fd < 0)
                return -errno;
        r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        size = (size_t) st.st_size;
        if (size == 0 || size % sizeof(struct sock_filter) != 0)
                return -EIO;
        if (size / sizeof(struct sock_filter) > BPF_MAXINSNS)
                return -E2BIG;
        insns = malloc(size);
        if (!insns)
                return -ENOMEM;
        n = pread(fd, insns, size, 0);
        if (n < 0)
                return -errno;
        if ((size_t) n != size)
                return -EIO;
        *ret = (BpfProgram) { .insns = TAKE_PTR(insns), .len = size / sizeof(struct sock_filter) };
        return 0;
}

int policy_compile(const Policy *p, PolicyKillMode mode, int channel_fd, BpfProgram *ret) {
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        uint32_t def = scmp_action(p->default_action, p->default_errno, mode);
        int r;

        ctx = seccomp_init(def);
        if (!ctx)
                return -ENOMEM;
        /* The child sets NO_NEW_PRIVS itself; the attribute only matters for seccomp_load(). */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        if (r >= 0)
                r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r >= 0) /* a binary tree of system call numbers: long allow-lists stay cheap */
                r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
        if (r < 0)
                return log_debug_errno(r, "Policy %s: cannot set filter attributes: %m", p->name);
        r = compile_rules(ctx, p, def, mode, channel_fd);
        if (r < 0)
                return r;
        return compile_export(ctx, ret);
}

void bpf_program_done(BpfProgram *b) {
        if (!b)
                return;
        free(b->insns);
        *b = (BpfProgram) {};
}

/* ---- formatting ---- */

static void format_rule(const PolicyRule *r, FILE *f) {
        char buf[32];

        fprintf(f, "  %-24s %-14s", r->name, action_to_string(r->action, r->errno_value, buf,
                                                               sizeof(buf)));
        for (unsigned i = 0; i < r->n_conditions; i++)
                fprintf(f, "%s%s", i == 0 ? " if " : " && ", r->conditions[i].text);
        if (r->reason)
                fprintf(f, "  [%s: %s]\n", r->origin, r->reason);
        else
                fprintf(f, "  [%s]\n", r->origin);
}

int policy_format(const Policy *p, FILE *f) {
        char buf[32];

        fprintf(f, "policy %s (%s)\n", p->name, p->path);
        fprintf(f, "description: %s\n", p->description);
        fprintf(f, "default action: %s\n",
                action_to_string(p->default_action, p->default_errno, buf, sizeof(buf)));
        fprintf(f, "rules (%zu; several rules of one call: any may match):\n", p->n_rules);
        for (size_t i = 0; i < p->n_rules; i++)
                format_rule(&p->rules[i], f);
        fprintf(f, "skipped (not system calls on this architecture):");
        for (size_t i = 0; p->skipped && p->skipped[i]; i++)
                fprintf(f, " %s", p->skipped[i]);
        fprintf(f, "%s\n", p->skipped && p->skipped[0] ? "" : " none");
        return ferror(f) ? -EIO : 0;
}

/* Words after an indent, wrapped before column 100. */
static void format_words(FILE *f, const char *indent, const char *const *words, size_t n) {
        size_t col = 0;

        for (size_t i = 0; i < n; i++) {
                if (col == 0 || col + 1 + strlen(words[i]) > 100) {
                        fprintf(f, "%s%s", col == 0 ? "" : "\n", indent);
                        col = strlen(indent);
                } else {
                        fputc(' ', f);
                        col++;
                }
                fputs(words[i], f);
                col += strlen(words[i]);
        }
        if (col > 0)
                fputc('\n', f);
}

static int format_group(const PolicyGroup *g, FILE *f) {
        _cleanup_free_ const char **here = NULL, **elsewhere = NULL;
        size_t n = 0, n_here = 0, n_elsewhere = 0;

        while (g->calls[n])
                n++;
        here = calloc(n + 1, sizeof(char *));
        elsewhere = calloc(n + 1, sizeof(char *));
        if (!here || !elsewhere)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (syscall_resolve(g->calls[i]) >= 0)
                        here[n_here++] = g->calls[i];
                else
                        elsewhere[n_elsewhere++] = g->calls[i];
        }
        qsort(here, n_here, sizeof(char *), string_compare);
        qsort(elsewhere, n_elsewhere, sizeof(char *), string_compare);
        fprintf(f, "%s: %s\n", g->name, g->description);
        format_words(f, "    ", here, n_here);
        if (n_elsewhere > 0) {
                fprintf(f, "  not system calls on this architecture:\n");
                format_words(f, "    ", elsewhere, n_elsewhere);
        }
        return 0;
}

int policy_groups_format(FILE *f) {
        for (size_t i = 0; i < policy_n_groups; i++) {
                int r = format_group(&policy_groups[i], f);
                if (r < 0)
                        return r;
        }
        return ferror(f) ? -EIO : 0;
}

bool policy_syscall_is_native(const char *name) {
        return syscall_resolve(name) >= 0;
}

char *policy_syscall_name(int nr) {
        char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

        if (s)
                return s;
        if (asprintf(&s, "syscall-%d", nr) < 0)
                return NULL;
        return s;
}
