/* Configuration files (see config.h and docs/configuration.md).
 *
 * Each file type is described by one schema table of ConfigItem rows: key, type, field, default,
 * bounds and an optional validator. Loading a file is the same for every type:
 *   1. apply every default (so a half-loaded object is always complete and freeable),
 *   2. reject keys that are not in the table (fail closed, citing file:line),
 *   3. walk the table in order: parse the key if present (type check, bounds), then run the
 *      row's validator. Validators may look at fields of rows above them (the command's {N}
 *      placeholders are checked against max_args), so the table order is part of the contract.
 * Every string is copied out of libconfig before config_destroy(). */
#include "strutil.h"
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libconfig.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/un.h>

#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)
#define SECRET_SIZE_MAX (64U * 1024U)
#define ENV_NAME_RULE "[A-Za-z_][A-Za-z0-9_]*"

/* ---- errors ---- */

/* What went wrong while handling one item: the setting to cite (NULL for a default value or a
 * missing key: no line) and the message, without the "file:line: key: " prefix. */
typedef struct Problem {
        const config_setting_t *where;
        char *msg;
} Problem;

_printf_(3, 4) static int problem(Problem *p, const config_setting_t *where, const char *fmt, ...) {
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&p->msg, fmt, ap);
        va_end(ap);
        if (k < 0) {
                p->msg = NULL;
                return -ENOMEM;
        }
        p->where = where;
        return -EINVAL;
}

/* The key a setting is known by: its name, or "parent[index]" for an element of an array. */
static void setting_key(const config_setting_t *s, char *buf, size_t size) {
        const config_setting_t *parent = config_setting_parent(s);

        if (config_setting_name(s))
                snprintf(buf, size, "%s", config_setting_name(s));
        else if (parent && config_setting_name(parent))
                snprintf(buf, size, "%s[%d]", config_setting_name(parent), config_setting_index(s));
        else
                snprintf(buf, size, "?");
}

/* The directory part of path, for @include directives ("." for a bare file name). */
static char *path_dirname(const char *path) {
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        return strndup(path, slash == path ? 1 : (size_t) (slash - path));
}

/* The file to cite for a setting or syntax error: libconfig names the loaded stream NULL (it is
 * path) and an @include'd file as written, relative to path's directory. */
static char *source_name(const char *path, const char *file) {
        _cleanup_free_ char *dir = NULL;
        char *s;

        if (!file || file[0] == '/')
                return strdup(file ?: path);
        dir = path_dirname(path);
        if (!dir || asprintf(&s, "%s/%s", dir, file) < 0)
                return NULL;
        return s;
}

/* Turns a Problem into "<file>:<line>: <key>: <msg>" (or "<file>: <key>: <msg>"). */
static int problem_report(Problem *p, int r, const char *path, const char *key, char **ret_error) {
        _cleanup_free_ char *msg = TAKE_PTR(p->msg), *file = NULL;
        char name[128];

        if (!msg)
                return error_setf(ret_error, r, "%s: %s: Out of memory", path, key);
        if (!p->where)
                return error_setf(ret_error, r, "%s: %s: %s", path, key, msg);
        file = source_name(path, config_setting_source_file(p->where));
        setting_key(p->where, name, sizeof(name));
        return error_setf(ret_error, r, "%s:%u: %s: %s", file ?: path,
                            config_setting_source_line(p->where), name, msg);
}

/* ---- schema ---- */

typedef enum ConfigType {
        CONFIG_STRING,    /* char *, NULL when unset and without default */
        CONFIG_UINT,      /* unsigned; a libconfig integer */
        CONFIG_COUNT,     /* uint64_t; a libconfig integer (or "infinity" with .infinity) */
        CONFIG_DURATION,  /* uint64_t usec; "30s" or an integer number of seconds */
        CONFIG_SIZE,      /* uint64_t bytes; "1M" or an integer number of bytes */
        CONFIG_STRV,      /* char **, NULL-terminated; an array or list of strings */
        CONFIG_REDIS_URL, /* RedisAddress */
        CONFIG_BOOL,      /* bool; true or false */
} ConfigType;

typedef struct ConfigItem ConfigItem;

/* Checks the stored value (s: the setting, NULL when the default is in use) and may derive
 * fields from it (args_mode, the compiled regex). The whole object is passed for cross-checks
 * against rows above this one in the table. */
typedef int (*ConfigValidator)(const ConfigItem *it, void *obj, const config_setting_t *s,
                               Problem *p);

struct ConfigItem {
        const char *key;
        ConfigType type;
        size_t offset;
        bool required;
        uint64_t def;                  /* UINT, DURATION, SIZE */
        const char *def_str;           /* STRING, REDIS_URL */
        const char *const *def_strv;   /* STRV */
        uint64_t min, max;             /* UINT, DURATION, SIZE: inclusive bounds */
        bool infinity;                 /* DURATION, SIZE: "infinity" is UINT64_MAX */
        ConfigValidator validate;
};

static void *item_field(const ConfigItem *it, void *obj) {
        return (uint8_t *) obj + it->offset;
}

static const char *format_uint(char *buf, size_t size, uint64_t v) {
        snprintf(buf, size, "%" PRIu64, v);
        return buf;
}

static const char *format_duration_any(char *buf, size_t size, uint64_t v) {
        return format_duration(buf, size, v) ?: "?";
}

/* How the numeric types differ: string syntax, meaning of a bare integer, display, storage. */
typedef struct NumberType {
        int (*parse)(const char *s, uint64_t *ret); /* NULL: strings are a type error */
        const char *what;                            /* "not a valid <what>" */
        const char *expected;                        /* type error message */
        uint64_t int_unit;                           /* a plain integer is this many units */
        const char *(*format)(char *buf, size_t size, uint64_t v);
} NumberType;

static const NumberType *number_type(ConfigType t) {
        static const NumberType uint_type = {
                NULL, "integer", "expected an integer", 1, format_uint,
        };
        static const NumberType duration_type = {
                parse_duration, "duration",
                "expected a duration: a string such as \"30s\" or an integer number of seconds",
                USEC_PER_SEC, format_duration_any,
        };
        static const NumberType size_type = {
                parse_size, "size",
                "expected a size: a string such as \"1M\" or an integer number of bytes", 1,
                format_size,
        };

        return t == CONFIG_DURATION ? &duration_type : t == CONFIG_SIZE ? &size_type : &uint_type;
}

static int range_problem(const ConfigItem *it, const config_setting_t *s, const char *shown,
                         Problem *p) {
        const NumberType *nt = number_type(it->type);
        char a[32], b[32];

        return problem(p, s, "%s is out of range (%s..%s)", shown, nt->format(a, sizeof(a), it->min),
                       nt->format(b, sizeof(b), it->max));
}

static int number_from_string(const ConfigItem *it, const config_setting_t *s, uint64_t *ret,
                              Problem *p) {
        const NumberType *nt = number_type(it->type);
        const char *str = config_setting_get_string(s);
        int r;

        if (it->infinity && streq(str, "infinity")) {
                *ret = UINT64_MAX;
                return 0;
        }
        if (!nt->parse)
                return problem(p, s, "%s", nt->expected);
        r = nt->parse(str, ret);
        if (r == -ERANGE)
                return range_problem(it, s, str, p);
        if (r < 0)
                return problem(p, s, "\"%s\" is not a valid %s", str, nt->what);
        return 0;
}

static int number_from_int(const ConfigItem *it, const config_setting_t *s, uint64_t *ret,
                           Problem *p) {
        long long v = config_setting_get_int64(s);
        char shown[32];

        snprintf(shown, sizeof(shown), "%lld", v);
        if (v < 0 || __builtin_mul_overflow((uint64_t) v, number_type(it->type)->int_unit, ret))
                return range_problem(it, s, shown, p);
        return 0;
}

static int parse_number_setting(const ConfigItem *it, const config_setting_t *s, void *field,
                                Problem *p) {
        const NumberType *nt = number_type(it->type);
        uint64_t v;
        char shown[32];
        int r;

        switch (config_setting_type(s)) {
        case CONFIG_TYPE_STRING:
                r = number_from_string(it, s, &v, p);
                break;
        case CONFIG_TYPE_INT:
        case CONFIG_TYPE_INT64:
                r = number_from_int(it, s, &v, p);
                break;
        default:
                r = problem(p, s, "%s", nt->expected);
        }
        if (r < 0)
                return r;
        if (v < it->min || (v > it->max && !(it->infinity && v == UINT64_MAX)))
                return range_problem(it, s, nt->format(shown, sizeof(shown), v), p);
        if (it->type == CONFIG_UINT)
                *(unsigned *) field = (unsigned) v;
        else
                *(uint64_t *) field = v;
        return 0;
}

static int parse_string_setting(const ConfigItem *it, const config_setting_t *s, void *field,
                                Problem *p) {
        char **v = field, *copy;

        if (config_setting_type(s) != CONFIG_TYPE_STRING)
                return problem(p, s, "expected a string");
        copy = strdup(config_setting_get_string(s));
        if (!copy)
                return -ENOMEM;
        free(*v);
        *v = copy;
        return 0;
}

static int parse_strv_setting(const ConfigItem *it, const config_setting_t *s, void *field,
                              Problem *p) {
        _cleanup_strv_free_ char **l = NULL;
        char ***v = field;
        int n;

        if (!config_setting_is_array(s) && !config_setting_is_list(s))
                return problem(p, s, "expected an array of strings");
        n = config_setting_length(s);
        l = calloc((size_t) n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                const config_setting_t *e = config_setting_get_elem(s, (unsigned) i);

                if (config_setting_type(e) != CONFIG_TYPE_STRING)
                        return problem(p, e, "expected a string");
                l[i] = strdup(config_setting_get_string(e));
                if (!l[i])
                        return -ENOMEM;
        }
        strv_free(*v);
        *v = TAKE_PTR(l);
        return 0;
}

static int parse_bool_setting(const ConfigItem *it, const config_setting_t *s, void *field,
                              Problem *p) {
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return problem(p, s, "expected true or false");
        *(bool *) field = config_setting_get_bool(s);
        return 0;
}

static int parse_redis_setting(const ConfigItem *it, const config_setting_t *s, void *field,
                               Problem *p) {
        RedisAddress a;
        int r;

        if (config_setting_type(s) != CONFIG_TYPE_STRING)
                return problem(p, s, "expected a string");
        /* The URL is not repeated in the message: it may hold a password. */
        r = redis_address_parse(config_setting_get_string(s), &a);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return problem(p, s, "not a valid Redis URL (expected "
                                     "redis://[user[:password]@]host[:port][/db] or "
                                     "unix:///path[?db=N][&password=...])");
        redis_address_done(field);
        *(RedisAddress *) field = a;
        return 0;
}

static int strv_copy(const char *const *l, char ***ret) {
        size_t n = strv_length((char *const *) l);
        _cleanup_strv_free_ char **c = calloc(n + 1, sizeof(char *));

        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(l[i])))
                        return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static int item_set_default(const ConfigItem *it, void *obj) {
        void *field = item_field(it, obj);

        switch (it->type) {
        case CONFIG_STRING:
                if (!it->def_str)
                        return 0;
                *(char **) field = strdup(it->def_str);
                return *(char **) field ? 0 : -ENOMEM;
        case CONFIG_UINT:
                *(unsigned *) field = (unsigned) it->def;
                return 0;
        case CONFIG_BOOL:
                *(bool *) field = it->def != 0;
                return 0;
        case CONFIG_COUNT:
        case CONFIG_DURATION:
        case CONFIG_SIZE:
                *(uint64_t *) field = it->def;
                return 0;
        case CONFIG_STRV:
                return it->def_strv ? strv_copy(it->def_strv, field) : 0;
        case CONFIG_REDIS_URL:
                return redis_address_parse(it->def_str, field);
        }
        return -EINVAL;
}

static int item_parse(const ConfigItem *it, const config_setting_t *s, void *obj, Problem *p) {
        void *field = item_field(it, obj);

        switch (it->type) {
        case CONFIG_STRING:
                return parse_string_setting(it, s, field, p);
        case CONFIG_UINT:
        case CONFIG_COUNT:
        case CONFIG_DURATION:
        case CONFIG_SIZE:
                return parse_number_setting(it, s, field, p);
        case CONFIG_BOOL:
                return parse_bool_setting(it, s, field, p);
        case CONFIG_STRV:
                return parse_strv_setting(it, s, field, p);
        case CONFIG_REDIS_URL:
                return parse_redis_setting(it, s, field, p);
        }
        return -EINVAL;
}

static int schema_apply_defaults(const ConfigItem *items, size_t n, void *obj) {
        for (size_t i = 0; i < n; i++) {
                int r = item_set_default(&items[i], obj);
                if (r < 0)
                        return r;
        }
        return 0;
}

static const ConfigItem *schema_find(const ConfigItem *items, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (streq(items[i].key, key))
                        return &items[i];
        return NULL;
}

static int schema_check_unknown(const ConfigItem *items, size_t n, const config_setting_t *root,
                                Problem *p) {
        int len = config_setting_length(root);

        for (int i = 0; i < len; i++) {
                const config_setting_t *s = config_setting_get_elem(root, (unsigned) i);
                if (!schema_find(items, n, config_setting_name(s)))
                        return problem(p, s, "unknown key");
        }
        return 0;
}

static int schema_apply_item(const ConfigItem *it, const config_setting_t *root, void *obj,
                             Problem *p) {
        const config_setting_t *s = config_setting_get_member(root, it->key);
        int r;

        if (!s && it->required)
                return problem(p, NULL, "required key is missing");
        if (s) {
                r = item_parse(it, s, obj, p);
                if (r < 0)
                        return r;
        }
        return it->validate ? it->validate(it, obj, s, p) : 0;
}

/* ---- reading files ---- */

void config_file_freep(config_t **c) {
        if (*c) {
                config_destroy(*c);
                free(*c);
        }
}

static int config_parse_stream(FILE *f, const char *path, config_t **ret, char **ret_error) {
        _cleanup_(config_file_freep) config_t *cfg = malloc(sizeof(config_t));
        _cleanup_free_ char *dir = path_dirname(path), *file = NULL;

        if (!cfg || !dir)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", path);
        config_init(cfg);
        /* Relative @include paths are taken relative to the including file, not to our cwd. */
        config_set_include_dir(cfg, dir);
        if (!config_read(cfg, f)) {
                file = source_name(path, config_error_file(cfg));
                return error_setf(ret_error, -EINVAL, "%s:%d: %s", file ?: path,
                                    config_error_line(cfg), config_error_text(cfg));
        }
        *ret = TAKE_PTR(cfg);
        return 0;
}

int config_file_read(const char *path, config_t **ret, char **ret_error) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        struct stat st;
        int r;

        if (!f) {
                r = negative_errno();
                return error_setf(ret_error, r, "%s: %s", path, strerror(-r));
        }
        if (fstat(fileno(f), &st) < 0) {
                r = negative_errno();
                return error_setf(ret_error, r, "%s: %s", path, strerror(-r));
        }
        if (S_ISDIR(st.st_mode))
                return error_setf(ret_error, -EISDIR, "%s: %s", path, strerror(EISDIR));
        if (!S_ISREG(st.st_mode))
                return error_setf(ret_error, -EINVAL, "%s: not a regular file", path);
        return config_parse_stream(f, path, ret, ret_error);
}

/* Loads path into obj, whose defaults have been applied, following the schema. */
static int schema_load(const ConfigItem *items, size_t n, const char *path, void *obj,
                       char **ret_error) {
        _cleanup_(config_file_freep) config_t *cfg = NULL;
        const config_setting_t *root;
        Problem p = {};
        int r;

        r = config_file_read(path, &cfg, ret_error);
        if (r < 0)
                return r;
        root = config_root_setting(cfg);
        r = schema_check_unknown(items, n, root, &p);
        if (r < 0)
                return problem_report(&p, r, path, "?", ret_error);
        for (size_t i = 0; i < n; i++) {
                r = schema_apply_item(&items[i], root, obj, &p);
                if (r < 0)
                        return problem_report(&p, r, path, items[i].key, ret_error);
        }
        return 0;
}

/* ---- validators ---- */

static bool char_in_ranges(char c, const char *extra) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr(extra, c));
}

static int validate_prefix(const ConfigItem *it, void *obj, const config_setting_t *s,
                           Problem *p) {
        const char *v = *(char **) item_field(it, obj);
        size_t n = strlen(v);
        bool ok = n >= 1 && n <= 32;

        for (size_t i = 0; ok && i < n; i++)
                ok = char_in_ranges(v[i], "_.-");
        if (!ok)
                return problem(p, s, "\"%s\" must match [A-Za-z0-9_.-]{1,32}", v);
        return 0;
}

static int check_absolute_path(const char *v, const config_setting_t *where, Problem *p) {
        if (v[0] != '/')
                return problem(p, where, "\"%s\" is not an absolute path", v);
        return 0;
}

static int validate_absolute_path(const ConfigItem *it, void *obj, const config_setting_t *s,
                                  Problem *p) {
        return check_absolute_path(*(char **) item_field(it, obj), s, p);
}

static int validate_socket_path(const ConfigItem *it, void *obj, const config_setting_t *s,
                                Problem *p) {
        const char *v = *(char **) item_field(it, obj);
        int r = check_absolute_path(v, s, p);

        if (r < 0)
                return r;
        if (strlen(v) > SOCKET_PATH_MAX)
                return problem(p, s, "\"%s\" is longer than %zu bytes, the limit for a socket path",
                               v, SOCKET_PATH_MAX);
        return 0;
}

static const config_setting_t *elem_where(const config_setting_t *s, size_t i) {
        return s ? config_setting_get_elem(s, (unsigned) i) : NULL;
}

static int validate_path_list(const ConfigItem *it, void *obj, const config_setting_t *s,
                              Problem *p) {
        char **l = *(char ***) item_field(it, obj);

        if (strv_length(l) == 0)
                return problem(p, s, "must not be empty");
        for (size_t i = 0; l[i]; i++) {
                int r = check_absolute_path(l[i], elem_where(s, i), p);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int validate_credential_name(const ConfigItem *it, void *obj, const config_setting_t *s,
                                    Problem *p) {
        const char *v = *(char **) item_field(it, obj);

        if (v && (!v[0] || strchr(v, '/') || streq(v, ".") || streq(v, "..")))
                return problem(p, s, "\"%s\" is not a valid credential name (a file name)", v);
        return 0;
}

static int validate_policy_name(const ConfigItem *it, void *obj, const config_setting_t *s,
                                Problem *p) {
        const char *v = *(char **) item_field(it, obj);

        if (!queue_name_is_valid(v))
                return problem(p, s, "\"%s\" is not a valid policy name ([A-Za-z0-9_-]{1,64})", v);
        return 0;
}

/* Whether a command element is a placeholder: "{args}" or "{" digits "}". Anything else,
 * "--port={1}" included, is passed literally. */
static bool is_placeholder(const char *e) {
        size_t n = strlen(e);

        return streq(e, "{args}") ||
               (n >= 3 && e[0] == '{' && e[n - 1] == '}' && strspn(e + 1, "0123456789") == n - 2);
}

/* N of "{N}", saturated at UINT32_MAX. */
static uint64_t placeholder_number(const char *e) {
        uint64_t v = 0;

        for (e++; *e != '}'; e++)
                v = MIN(v * 10 + (uint64_t) (*e - '0'), UINT32_MAX);
        return v;
}

static int validate_command(const ConfigItem *it, void *obj, const config_setting_t *s,
                            Problem *p) {
        QueueConfig *q = obj;
        char **cmd = q->command;

        if (strv_length(cmd) == 0)
                return problem(p, s, "must not be empty");
        if (cmd[0][0] != '/')
                return problem(p, elem_where(s, 0), "\"%s\" is not an absolute path", cmd[0]);
        q->args_mode = ARGS_APPEND;
        for (size_t i = 1; cmd[i]; i++) {
                uint64_t n;

                if (!is_placeholder(cmd[i]))
                        continue;
                q->args_mode = ARGS_SUBSTITUTE;
                if (streq(cmd[i], "{args}"))
                        continue;
                n = placeholder_number(cmd[i]);
                if (n < 1 || n > q->max_args)
                        return problem(p, elem_where(s, i),
                                       "\"%s\": a placeholder must be {args} or {1}..{%u} "
                                       "(max_args = %u)",
                                       cmd[i], q->max_args, q->max_args);
        }
        return 0;
}

/* p points at '['; returns the bracket expression's closing ']', or NULL. Inside a bracket
 * expression parentheses and backslashes are literal; "[:alpha:]"-style classes may hold ']'. */
static const char *ere_skip_bracket(const char *p) {
        p++;
        if (*p == '^')
                p++;
        if (*p == ']')
                p++;
        for (; *p; p++) {
                if (*p == ']')
                        return p;
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                        const char *end = p + 2;
                        while (*end && !(end[0] == p[1] && end[1] == ']'))
                                end++;
                        if (!*end)
                                return NULL;
                        p = end + 1;
                }
        }
        return NULL;
}

/* Whether every ')' closes a '(' of the pattern itself. Otherwise "a)|(b" wrapped as
 * "^(a)|(b)$" would compile but no longer be anchored at both ends. */
static bool ere_parens_balanced(const char *p) {
        unsigned depth = 0;

        for (; *p; p++) {
                if (*p == '\\') {
                        if (!*++p)
                                return false;
                } else if (*p == '[') {
                        p = ere_skip_bracket(p);
                        if (!p)
                                return false;
                } else if (*p == '(')
                        depth++;
                else if (*p == ')') {
                        if (depth == 0)
                                return false;
                        depth--;
                }
        }
        return depth == 0;
}

static int compile_arg_pattern(QueueConfig *q, const config_setting_t *s, Problem *p) {
        _cleanup_free_ char *anchored = NULL;
        char err[256];
        int r;

        if (q->arg_pattern[0] == '\0')
                return problem(p, s, "must not be empty");
        if (!ere_parens_balanced(q->arg_pattern))
                return problem(p, s, "unbalanced parentheses or brackets, or a trailing backslash");
        if (asprintf(&anchored, "^(%s)$", q->arg_pattern) < 0)
                return -ENOMEM;
        r = regcomp(&q->arg_regex, anchored, REG_EXTENDED | REG_NOSUB);
        if (r == REG_ESPACE)
                return -ENOMEM;
        if (r != 0) {
                regerror(r, NULL, err, sizeof(err));
                return problem(p, s, "invalid regular expression: %s", err);
        }
        return 0;
}

static int validate_arg_pattern(const ConfigItem *it, void *obj, const config_setting_t *s,
                                Problem *p) {
        QueueConfig *q = obj;
        int r;

        if (!q->arg_pattern)
                return 0;
        r = compile_arg_pattern(q, s, p);
        if (r < 0) { /* arg_regex is only valid (and freed) when arg_pattern is set */
                free(q->arg_pattern);
                q->arg_pattern = NULL;
        }
        return r;
}

static size_t env_name_length(const char *e) {
        size_t n = 0;

        if (!char_in_ranges(e[0], "_") || (e[0] >= '0' && e[0] <= '9'))
                return 0;
        while (char_in_ranges(e[n], "_"))
                n++;
        return e[n] == '=' ? n : 0;
}

static int validate_env(const ConfigItem *it, void *obj, const config_setting_t *s, Problem *p) {
        char **env = *(char ***) item_field(it, obj);

        for (size_t i = 0; env && env[i]; i++) {
                size_t n = env_name_length(env[i]);

                /* The value is not echoed: environment entries often carry secrets. */
                if (n == 0)
                        return problem(p, elem_where(s, i),
                                       "not NAME=value with NAME matching " ENV_NAME_RULE);
                for (size_t j = 0; j < i; j++)
                        if (strncmp(env[j], env[i], n + 1) == 0)
                                return problem(p, elem_where(s, i), "%.*s is set more than once",
                                               (int) n, env[i]);
        }
        return 0;
}

static int validate_groups(const ConfigItem *it, void *obj, const config_setting_t *s,
                           Problem *p) {
        char **groups = *(char ***) item_field(it, obj);

        for (size_t i = 0; groups && groups[i]; i++) {
                const char *g = groups[i];

                if (g[0] == '\0' || g[strcspn(g, " \t\n\r\f\v:")] != '\0')
                        return problem(p, elem_where(s, i),
                                       "\"%s\" is not a valid group name (non-empty, no "
                                       "whitespace or ':')",
                                       g);
        }
        return 0;
}

static int validate_user(const ConfigItem *it, void *obj, const config_setting_t *s,
                         Problem *p) {
        const char *v = *(char **) item_field(it, obj);

        /* Whether the account exists is checked where jobs run (the worker's host). */
        if (v && (v[0] == '\0' || strlen(v) > 32 || v[strcspn(v, " \t\n\r\f\v:/")] != '\0'))
                return problem(p, s, "\"%s\" is not a valid user name", v);
        return 0;
}

/* RLIMIT_CPU counts whole seconds. */
static int validate_whole_seconds(const ConfigItem *it, void *obj, const config_setting_t *s,
                                  Problem *p) {
        uint64_t v = *(uint64_t *) item_field(it, obj);

        if (v != UINT64_MAX && v % USEC_PER_SEC != 0)
                return problem(p, s, "must be a whole number of seconds");
        return 0;
}

static int validate_backoff_max(const ConfigItem *it, void *obj, const config_setting_t *s,
                                Problem *p) {
        QueueConfig *q = obj;
        char a[32], b[32];

        if (q->backoff_max_usec < q->backoff_usec)
                return problem(p, s, "%s is less than backoff (%s)",
                               format_duration_any(a, sizeof(a), q->backoff_max_usec),
                               format_duration_any(b, sizeof(b), q->backoff_usec));
        return 0;
}

/* The bodies held at once include any one body; unset, it grows with max_request. */
static int validate_max_request_buffered(const ConfigItem *it, void *obj,
                                         const config_setting_t *s, Problem *p) {
        TasadConfig *c = obj;
        char a[32], b[32];

        if (!s && c->max_request_buffered < c->max_request)
                c->max_request_buffered = c->max_request;
        if (c->max_request_buffered < c->max_request)
                return problem(p, s, "%s is less than max_request (%s)",
                               format_size(a, sizeof(a), c->max_request_buffered),
                               format_size(b, sizeof(b), c->max_request));
        return 0;
}

/* ---- tasad.conf ---- */

#define SEC(n) ((n) * USEC_PER_SEC)
#define MIN_(n) SEC((n) * 60)
#define HOUR(n) MIN_((n) * 60)
#define DAY(n) HOUR((n) * 24)
#define KIB(n) ((uint64_t) (n) << 10)
#define MIB(n) ((uint64_t) (n) << 20)
#define GIB(n) ((uint64_t) (n) << 30)

#define T(f) offsetof(TasadConfig, f)
static const char *const default_policy_dirs[] = {
        "/etc/tasad/policy",
        "/usr/share/tasad/policy",
        NULL,
};
static const ConfigItem tasad_schema[] = {
        { "redis", CONFIG_REDIS_URL, T(redis), .def_str = "unix:///run/redis/redis-server.sock" },
        { "redis_password_credential", CONFIG_STRING, T(redis_password_credential),
          .validate = validate_credential_name },
        { "api_tokens_credential", CONFIG_STRING, T(api_tokens_credential),
          .validate = validate_credential_name },
        { "prefix", CONFIG_STRING, T(prefix), .def_str = "tasad", .validate = validate_prefix },
        { "queues_dir", CONFIG_STRING, T(queues_dir), .def_str = TASAD_QUEUES_DIR_DEFAULT,
          .validate = validate_absolute_path },
        { "results_dir", CONFIG_STRING, T(results_dir), .def_str = "/var/lib/tasad/results",
          .validate = validate_absolute_path },
        { "scheduler_socket", CONFIG_STRING, T(scheduler_socket),
          .def_str = "/run/tasad/scheduler.sock", .validate = validate_socket_path },
        { "results_socket", CONFIG_STRING, T(results_socket), .def_str = "/run/tasad/results.sock",
          .validate = validate_socket_path },
        { "worker_socket_dir", CONFIG_STRING, T(worker_socket_dir), .def_str = "/run/tasad/worker",
          .validate = validate_absolute_path },
        { "work_dir", CONFIG_STRING, T(work_dir), .def_str = "/var/lib/tasad/work",
          .validate = validate_absolute_path },
        { "policy_dirs", CONFIG_STRV, T(policy_dirs), .def_strv = default_policy_dirs,
          .validate = validate_path_list },
        { "retention", CONFIG_DURATION, T(retention_usec), .def = DAY(7), .min = SEC(1),
          .max = DAY(365) },
        { "max_request", CONFIG_SIZE, T(max_request), .def = MIB(64), .min = KIB(1),
          .max = GIB(1) },
        { "max_request_buffered", CONFIG_SIZE, T(max_request_buffered), .def = MIB(256),
          .min = KIB(1), .max = GIB(64), .validate = validate_max_request_buffered },
        { "http_timeout", CONFIG_DURATION, T(http_timeout_usec), .def = SEC(10),
          .min = 10 * USEC_PER_MSEC, .max = MIN_(10) },
        { "http_max_connections", CONFIG_UINT, T(http_max_connections), .def = 512, .min = 1,
          .max = 65536 },
        { "http_max_connections_per_host", CONFIG_UINT, T(http_max_connections_per_host),
          .def = 64, .min = 1, .max = 65536 },
        { "redis_timeout", CONFIG_DURATION, T(redis_timeout_usec), .def = SEC(10),
          .min = USEC_PER_MSEC, .max = MIN_(10) },
        { "batch_abandon_after", CONFIG_DURATION, T(batch_abandon_after_usec), .def = MIN_(10),
          .min = SEC(1), .max = DAY(7) },
        /* Not allocated by adduser (65536 and up), below systemd-nspawn's container ranges
         * (524288 and up) and apart from systemd's DynamicUser= range (61184-65519). */
        { "job_uid_first", CONFIG_UINT, T(job_uid_first), .def = 400000, .min = 1000,
          .max = 2000000000 },
        { "job_uid_count", CONFIG_UINT, T(job_uid_count), .def = 1024, .min = 1, .max = 65536 },
};
#undef T

static int tasad_config_new_empty(TasadConfig **ret) {
        _cleanup_(tasad_config_freep) TasadConfig *c = calloc(1, sizeof(TasadConfig));
        int r;

        if (!c)
                return -ENOMEM;
        r = schema_apply_defaults(tasad_schema, ELEMENTSOF(tasad_schema), c);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int tasad_config_new_default(TasadConfig **ret) {
        return tasad_config_new_empty(ret);
}

int tasad_config_load(const char *path, TasadConfig **ret, char **ret_error) {
        _cleanup_(tasad_config_freep) TasadConfig *c = NULL;
        int r;

        r = tasad_config_new_empty(&c);
        if (r < 0)
                return error_setf(ret_error, r, "%s: Out of memory", path);
        c->path = strdup(path);
        if (!c->path)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", path);
        r = schema_load(tasad_schema, ELEMENTSOF(tasad_schema), path, c, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

TasadConfig *tasad_config_free(TasadConfig *c) {
        if (!c)
                return NULL;
        free(c->path);
        redis_address_done(&c->redis);
        free(c->redis_password_credential);
        free(c->api_tokens_credential);
        free(c->prefix);
        free(c->queues_dir);
        free(c->results_dir);
        free(c->scheduler_socket);
        free(c->results_socket);
        free(c->worker_socket_dir);
        strv_free(c->policy_dirs);
        free(c->work_dir);
        free(c);
        return NULL;
}

/* ---- queue files ---- */

/* Order matters: validators see the rows above them (command checks {N} against max_args,
 * backoff_max compares with backoff). */
#define Q(f) offsetof(QueueConfig, f)
static const char *const default_groups[] = { "tasad", NULL };
static const ConfigItem queue_schema[] = {
        { "concurrency", CONFIG_UINT, Q(concurrency), .def = 1, .min = 1, .max = 1024 },
        { "prefetch", CONFIG_UINT, Q(prefetch), .def = 1, .min = 0, .max = 1024 },
        { "timeout", CONFIG_DURATION, Q(timeout_usec), .def = HOUR(1), .min = USEC_PER_MSEC,
          .max = DAY(365) },
        { "kill_grace", CONFIG_DURATION, Q(kill_grace_usec), .def = SEC(5), .max = HOUR(1) },
        { "lease", CONFIG_DURATION, Q(lease_usec), .def = SEC(15), .min = SEC(1), .max = HOUR(1) },
        { "drain_timeout", CONFIG_DURATION, Q(drain_timeout_usec), .def = SEC(30), .max = DAY(1) },
        { "retries", CONFIG_UINT, Q(retries), .def = 0, .max = 100 },
        { "backoff", CONFIG_DURATION, Q(backoff_usec), .def = SEC(1), .max = DAY(1) },
        { "backoff_max", CONFIG_DURATION, Q(backoff_max_usec), .def = MIN_(10), .max = DAY(30),
          .validate = validate_backoff_max },
        { "max_redeliveries", CONFIG_UINT, Q(max_redeliveries), .def = 5, .max = 1000 },
        { "max_output", CONFIG_SIZE, Q(max_output), .def = MIB(1), .max = MIB(512) },
        { "max_payload", CONFIG_SIZE, Q(max_payload), .def = MIB(1), .max = MIB(512) },
        { "max_args", CONFIG_UINT, Q(max_args), .def = 16, .max = 4096 },
        /* Linux refuses a single argv string of MAX_ARG_STRLEN (128K) bytes or more. */
        { "max_arg_len", CONFIG_SIZE, Q(max_arg_len), .def = 4096, .min = 1,
          .max = KIB(128) - 1 },
        { "command", CONFIG_STRV, Q(command), .required = true, .validate = validate_command },
        { "arg_pattern", CONFIG_STRING, Q(arg_pattern), .validate = validate_arg_pattern },
        { "policy", CONFIG_STRING, Q(policy), .def_str = "default",
          .validate = validate_policy_name },
        { "env", CONFIG_STRV, Q(env), .validate = validate_env },
        { "user", CONFIG_STRING, Q(user), .validate = validate_user },
        { "limit_cpu", CONFIG_DURATION, Q(limit_cpu_usec), .def = UINT64_MAX, .min = SEC(1),
          .max = DAY(365), .infinity = true, .validate = validate_whole_seconds },
        { "limit_memory", CONFIG_SIZE, Q(limit_memory), .def = GIB(1), .min = MIB(16),
          .max = UINT64_C(1) << 50, .infinity = true },
        { "limit_address_space", CONFIG_SIZE, Q(limit_address_space), .def = UINT64_MAX,
          .min = MIB(16), .max = UINT64_C(1) << 50, .infinity = true },
        { "limit_processes", CONFIG_COUNT, Q(limit_processes), .def = 512, .min = 1,
          .max = 1 << 22, .infinity = true },
        { "limit_open_files", CONFIG_COUNT, Q(limit_open_files), .def = 1024, .min = 16,
          .max = 1 << 20 },
        { "limit_file_size", CONFIG_SIZE, Q(limit_file_size), .def = GIB(1), .min = 0,
          .max = UINT64_C(1) << 50, .infinity = true },
        { "limit_work_dir", CONFIG_SIZE, Q(limit_work_dir), .def = GIB(1), .min = MIB(1),
          .max = UINT64_C(1) << 50, .infinity = true },
        { "network", CONFIG_BOOL, Q(network), .def = true },
        { "private_ipc", CONFIG_BOOL, Q(private_ipc), .def = false },
        { "private_tmp", CONFIG_BOOL, Q(private_tmp), .def = false },
        { "private_tmp_size", CONFIG_SIZE, Q(private_tmp_size), .def = MIB(64), .min = MIB(1),
          .max = GIB(64) },
        { "allow_degraded", CONFIG_BOOL, Q(allow_degraded), .def = false },
        { "submit_groups", CONFIG_STRV, Q(submit_groups), .def_strv = default_groups,
          .validate = validate_groups },
        { "read_groups", CONFIG_STRV, Q(read_groups), .def_strv = default_groups,
          .validate = validate_groups },
};
#undef Q

/* "<dir>/<name>.conf" -> "<name>", validated. */
static int queue_name_from_path(const char *path, char **ret, char **ret_error) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t n = strlen(base);
        _cleanup_free_ char *name = NULL;

        if (n <= strlen(".conf") || !streq(base + n - strlen(".conf"), ".conf"))
                return error_setf(ret_error, -EINVAL,
                                    "%s: the file name of a queue must be <queue>.conf", path);
        name = strndup(base, n - strlen(".conf"));
        if (!name)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", path);
        if (!queue_name_is_valid(name))
                return error_setf(ret_error, -EINVAL,
                                    "%s: \"%s\" is not a valid queue name "
                                    "([A-Za-z0-9_-]{1,64}, taken from the file name)",
                                    path, name);
        *ret = TAKE_PTR(name);
        return 0;
}

int queue_config_load(const char *path, QueueConfig **ret, char **ret_error) {
        _cleanup_(queue_config_freep) QueueConfig *q = calloc(1, sizeof(QueueConfig));
        int r;

        if (!q || !(q->path = strdup(path)))
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", path);
        r = queue_name_from_path(path, &q->name, ret_error);
        if (r < 0)
                return r;
        r = schema_apply_defaults(queue_schema, ELEMENTSOF(queue_schema), q);
        if (r < 0)
                return error_setf(ret_error, r, "%s: Out of memory", path);
        r = schema_load(queue_schema, ELEMENTSOF(queue_schema), path, q, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(q);
        return 0;
}

QueueConfig *queue_config_free(QueueConfig *q) {
        if (!q)
                return NULL;
        free(q->name);
        free(q->path);
        strv_free(q->command);
        if (q->arg_pattern)
                regfree(&q->arg_regex);
        free(q->arg_pattern);
        free(q->policy);
        strv_free(q->env);
        free(q->user);
        strv_free(q->submit_groups);
        strv_free(q->read_groups);
        free(q);
        return NULL;
}

/* ---- queue sets ---- */

static int conf_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);

        /* Like the shell's *.conf: hidden files do not match. */
        return d->d_name[0] != '.' && n > strlen(".conf") &&
               streq(d->d_name + n - strlen(".conf"), ".conf");
}

static int conf_compare(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int queue_compare(const void *a, const void *b) {
        return strcmp((*(QueueConfig *const *) a)->name, (*(QueueConfig *const *) b)->name);
}

static int queue_set_add(QueueSet *set, const char *dir, const char *file, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        QueueConfig *q;
        int r;

        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", dir);
        r = queue_config_load(path, &q, ret_error);
        if (r < 0)
                return r;
        set->queues[set->n_queues++] = q;
        return 0;
}

static void dirents_free(struct dirent **l, int n) {
        for (int i = 0; i < n; i++)
                free(l[i]);
        free(l);
}

static int queue_set_fill(QueueSet *set, const char *dir, struct dirent **l, int n,
                          char **ret_error) {
        set->queues = calloc((size_t) n + 1, sizeof(QueueConfig *));
        if (!set->queues)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", dir);
        for (int i = 0; i < n; i++) {
                int r = queue_set_add(set, dir, l[i]->d_name, ret_error);
                if (r < 0)
                        return r;
        }
        qsort(set->queues, set->n_queues, sizeof(QueueConfig *), queue_compare);
        return 0;
}

int queue_set_load(const char *dir, QueueSet **ret, char **ret_error) {
        _cleanup_(queue_set_freep) QueueSet *set = calloc(1, sizeof(QueueSet));
        struct dirent **l = NULL;
        int n, r;

        if (!set)
                return error_setf(ret_error, -ENOMEM, "%s: Out of memory", dir);
        n = scandir(dir, &l, conf_filter, conf_compare);
        if (n < 0 && errno == ENOENT) {
                *ret = TAKE_PTR(set);
                return 0;
        }
        if (n < 0) {
                r = negative_errno();
                return error_setf(ret_error, r, "%s: %s", dir, strerror(-r));
        }
        r = queue_set_fill(set, dir, l, n, ret_error);
        dirents_free(l, n);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(set);
        return 0;
}

QueueSet *queue_set_free(QueueSet *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_queues; i++)
                queue_config_free(s->queues[i]);
        free(s->queues);
        free(s);
        return NULL;
}

QueueConfig *queue_set_find(const QueueSet *s, const char *name) {
        for (size_t i = 0; s && name && i < s->n_queues; i++)
                if (streq(s->queues[i]->name, name))
                        return s->queues[i];
        return NULL;
}

/* ---- credentials ---- */

static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, free_secret);

/* Reads a whole small file as a string: -EFBIG above SECRET_SIZE_MAX, -EBADMSG on a NUL byte. */
static int read_secret_file(const char *path, char **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_(free_secretp) char *buf = NULL;
        size_t n = 0;
        ssize_t k;

        if (fd < 0)
                return negative_errno();
        buf = calloc(SECRET_SIZE_MAX + 2, 1);
        if (!buf)
                return -ENOMEM;
        while ((k = read(fd, buf + n, SECRET_SIZE_MAX + 1 - n)) != 0) {
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                n += (size_t) k;
                if (n > SECRET_SIZE_MAX)
                        return -EFBIG;
        }
        if (memchr(buf, '\0', n))
                return -EBADMSG;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int credential_problem(char **ret_error, int r, const char *key, const char *path) {
        const char *what = r == -EFBIG     ? "larger than 64K"
                           : r == -EBADMSG ? "contains a NUL byte"
                                           : strerror(-r);
        return error_setf(ret_error, r, "%s: %s: cannot use: %s", path, key, what);
}

int tasad_config_read_credential(const TasadConfig *c, const char *key, const char *name,
                                 char **ret_path, char **ret, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        const char *dir = secure_getenv("CREDENTIALS_DIRECTORY");
        int r;

        if (!dir || !dir[0])
                return error_setf(ret_error, -ENXIO,
                                    "%s: %s: \"%s\" is configured but "
                                    "$CREDENTIALS_DIRECTORY is not set (the tasad units "
                                    "load /etc/tasad/credentials/<file> as tasad_<file>; "
                                    "elsewhere use LoadCredential=%s:<file>)",
                                    c->path ?: "(defaults)", key, name, name);
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return error_setf(ret_error, -ENOMEM, "Out of memory");
        r = read_secret_file(path, ret);
        if (r < 0)
                return credential_problem(ret_error, r, key, path);
        *ret_path = TAKE_PTR(path);
        return 0;
}

int tasad_config_load_credentials(TasadConfig *c, char **ret_error) {
        _cleanup_(free_secretp) char *secret = NULL;
        _cleanup_free_ char *path = NULL;
        size_t n;
        int r;

        if (c->redis_password_credential) {
                r = tasad_config_read_credential(c, "redis_password_credential",
                                                 c->redis_password_credential, &path, &secret,
                                                 ret_error);
                if (r < 0)
                        return r;
                n = strlen(secret);
                if (n > 0 && secret[n - 1] == '\n')
                        secret[--n] = '\0';
                if (n == 0)
                        return error_setf(ret_error, -EINVAL,
                                          "%s: redis_password_credential: cannot use: empty", path);
                free_secret(c->redis.password);
                c->redis.password = TAKE_PTR(secret);
        }
        return 0;
}
