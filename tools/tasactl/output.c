#include "output.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <time.h>

/* Keys of daemon objects that hold seconds since the epoch (docs/api.md). */
static const char *const time_keys[] = { "created", "started", "finished" };

/* Copies s, escaping ASCII control characters (and DEL) as \xNN. */
static int escape(const char *s, char **ret) {
        size_t n = strlen(s);
        char *e = malloc(n * 4 + 1), *p = e;

        if (!e)
                return -ENOMEM;
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (*c < 0x20 || *c == 0x7f)
                        p += sprintf(p, "\\x%02x", *c);
                else
                        *p++ = (char) *c;
        }
        *p = 0;
        *ret = e;
        return 0;
}

void output_line(const char *text) {
        _cleanup_free_ char *e = NULL;

        fprintf(stderr, "tasactl: %s\n", escape(text, &e) >= 0 ? e : "out of memory");
}

int output_error(int error, const char *format, ...) {
        char buf[4096];
        va_list ap;

        if (error < 0)
                error = -error;
        errno = error; /* for %m */
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        /* One write, so the line is not torn by other writers of the same terminal. */
        output_line(buf);
        return error > 0 ? -error : -EINVAL;
}

int output_oom(void) {
        return output_error(ENOMEM, "out of memory");
}

int output_json(const json_t *v) {
        /* 16 significant digits keep the daemons' millisecond timestamps as they were sent. */
        if (json_dumpf(v, stdout, JSON_COMPACT | JSON_REAL_PRECISION(16) | JSON_ENCODE_ANY) < 0)
                return output_error(EIO, "cannot write JSON to standard output");
        fputc('\n', stdout);
        return 0;
}

/* Compact JSON text with the escapes of control characters (\n, \t, \u001b, …, \u007f) as
 * \xNN, as control characters are shown everywhere else in human output; every other escape
 * (\", \\, \u00e9) stays. NULL when out of memory. */
static char *json_controls_as_hex(const char *j) {
        static const char short_forms[] = "b\bf\fn\nr\rt\t";
        char *out = malloc(strlen(j) * 2 + 1), *w = out; /* \n (2) becomes \x0a (4) */

        if (!out)
                return NULL;
        for (const char *r = j; *r;) {
                const char *f = r[0] == '\\' && r[1] ? strchr(short_forms, r[1]) : NULL;
                unsigned code = 0;

                if (f && (f - short_forms) % 2 == 0) {
                        w += sprintf(w, "\\x%02x", (unsigned char) f[1]);
                        r += 2;
                } else if (r[0] == '\\' && r[1] == 'u' &&
                           strspn(r + 2, "0123456789abcdefABCDEF") >= 4 &&
                           sscanf(r + 2, "%4x", &code) == 1 && (code < 0x20 || code == 0x7f)) {
                        w += sprintf(w, "\\x%02x", code);
                        r += 6;
                } else if (r[0] == '\\' && r[1]) {
                        *w++ = *r++;
                        *w++ = *r++;
                } else
                        *w++ = *r++;
        }
        *w = '\0';
        return out;
}

static int value_to_string(const json_t *v, char **ret) {
        char *s = NULL;

        switch (v ? json_typeof(v) : JSON_NULL) {
        case JSON_STRING:
                return escape(json_string_value(v), ret);
        case JSON_INTEGER:
                if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
                        return -ENOMEM;
                break;
        case JSON_REAL:
                if (asprintf(&s, "%.16g", json_real_value(v)) < 0)
                        return -ENOMEM;
                break;
        case JSON_TRUE:
        case JSON_FALSE:
                s = strdup(json_is_true(v) ? "yes" : "no");
                break;
        case JSON_NULL:
                s = strdup("-");
                break;
        default: {
                _cleanup_free_ char *j = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(16)),
                                    *x = j ? json_controls_as_hex(j) : NULL;
                if (!x)
                        return -ENOMEM;
                return escape(x, ret);
        }
        }
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int output_value(const json_t *v, char **ret) {
        int r = value_to_string(v, ret);
        return r < 0 ? output_oom() : r;
}

int output_time(const json_t *v, char **ret) {
        char date[64], zone[16], *s;
        struct tm tm;
        double t, whole;
        time_t sec;
        int ms;

        if (!json_is_number(v))
                return output_value(v, ret);
        t = json_number_value(v);
        ms = (int) lround(modf(t, &whole) * 1000);
        sec = (time_t) whole;
        if (ms >= 1000) {
                sec++;
                ms -= 1000;
        }
        if (!localtime_r(&sec, &tm) || strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm) == 0 ||
            strftime(zone, sizeof(zone), "%Z", &tm) == 0)
                return output_value(v, ret);
        if (asprintf(&s, "%s.%03d %s", date, ms, zone) < 0)
                return output_oom();
        *ret = s;
        return 0;
}

static bool is_time_key(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(time_keys); i++)
                if (streq(key, time_keys[i]))
                        return true;
        return false;
}

int output_object(const json_t *obj) {
        const char *key;
        json_t *v;
        int width = 0;

        json_object_foreach((json_t *) obj, key, v)
                width = MAX(width, (int) strlen(key) + 1);

        json_object_foreach((json_t *) obj, key, v) {
                _cleanup_free_ char *k = NULL, *s = NULL, *label = NULL;
                int r;

                r = is_time_key(key) ? output_time(v, &s) : output_value(v, &s);
                if (r < 0)
                        return r;
                if (escape(key, &k) < 0 || asprintf(&label, "%s:", k) < 0)
                        return output_oom();
                printf("%-*s %s\n", width, label, s);
        }
        return 0;
}

int output_bytes(FILE *f, const void *data, size_t len) {
        if (len > 0 && fwrite(data, 1, len, f) != len)
                return output_error(errno ?: EIO, "cannot write to %s: %m",
                                    f == stderr ? "standard error" : "standard output");
        return 0;
}

int output_flush(void) {
        if (fflush(stdout) != 0 || ferror(stdout))
                return output_error(errno ?: EIO, "cannot write to standard output: %m");
        return 0;
}

struct Table {
        const TableColumn *columns;
        size_t n_columns;
        char **cells;           /* n_rows * n_columns, row-major */
        size_t n_rows;
};

int table_new(const TableColumn *columns, size_t n_columns, Table **ret) {
        Table *t = calloc(1, sizeof(Table));

        if (!t)
                return output_oom();
        t->columns = columns;
        t->n_columns = n_columns;
        *ret = t;
        return 0;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

int table_add_row(Table *t, char **cells) {
        char **n = reallocarray(t->cells, (t->n_rows + 1) * t->n_columns, sizeof(char *));

        if (!n) {
                for (size_t i = 0; i < t->n_columns; i++)
                        free(cells[i]);
                return output_oom();
        }
        t->cells = n;
        memcpy(t->cells + t->n_rows * t->n_columns, cells, t->n_columns * sizeof(char *));
        t->n_rows++;
        return 0;
}

static void table_print_row(const Table *t, const int *widths, const char *const *row, FILE *f) {
        for (size_t c = 0; c < t->n_columns; c++) {
                bool last = c + 1 == t->n_columns;

                if (t->columns[c].right)
                        fprintf(f, "%*s", widths[c], row[c]);
                else
                        fprintf(f, "%-*s", last ? 0 : widths[c], row[c]);
                fputs(last ? "\n" : "  ", f);
        }
}

int table_print(const Table *t, FILE *f) {
        _cleanup_free_ int *widths = calloc(t->n_columns, sizeof(int));
        _cleanup_free_ const char **header = calloc(t->n_columns, sizeof(char *));

        if (!widths || !header)
                return output_oom();
        for (size_t c = 0; c < t->n_columns; c++) {
                header[c] = t->columns[c].header;
                widths[c] = (int) strlen(header[c]);
                for (size_t r = 0; r < t->n_rows; r++)
                        widths[c] = MAX(widths[c], (int) strlen(t->cells[r * t->n_columns + c]));
        }
        table_print_row(t, widths, header, f);
        for (size_t r = 0; r < t->n_rows; r++)
                table_print_row(t, widths, (const char *const *) t->cells + r * t->n_columns, f);
        return 0;
}
