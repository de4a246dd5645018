/* tasactl's output: error lines on stderr, human tables and "key: value" blocks, --json lines,
 * and raw bytes. Everything that reaches a terminal from the daemons goes through here, so
 * control characters in job data (arguments, ids, outcomes) are escaped in human output. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "macro.h"

typedef struct json_t json_t;

/* One line "tasactl: MESSAGE" on stderr. If error != 0, errno is set to |error| first so %m
 * works. Returns -|error| (or -EINVAL when error is 0) for `return output_error(r, "…%m");`. */
int output_error(int error, const char *format, ...) _printf_(2, 3);

/* "tasactl: TEXT" on stderr, TEXT's control characters (and DEL) escaped as \xNN, so that
 * neither a daemon's message nor an argument quoted back can drive the terminal or split the
 * line. output_error() and usage errors print through it. */
void output_line(const char *text);

/* Out of memory: reports it and returns -ENOMEM. */
int output_oom(void);

/* v as one compact JSON line on stdout. */
int output_json(const json_t *v);

/* A daemon object as aligned "key: value" lines (object key order), times made readable. */
int output_object(const json_t *obj);

/* A JSON value as a short human string: strings as they are (control characters escaped),
 * numbers, yes/no, "-" for null or missing, anything else as compact JSON. Owned by caller. */
int output_value(const json_t *v, char **ret);

/* A number of seconds since the epoch (a daemon timestamp) as local time,
 * "2025-11-23 13:33:20.123 CET"; "-" for null or missing. Owned by caller. */
int output_time(const json_t *v, char **ret);

/* len bytes verbatim to f. */
int output_bytes(FILE *f, const void *data, size_t len);

/* Flushes stdout; a write error (full disk, closed pipe) is reported and returned. */
int output_flush(void);

/* A text table with a header row; columns are padded to their widest cell. */
typedef struct TableColumn {
        const char *header;
        bool right;             /* right-aligned (numbers) */
} TableColumn;

typedef struct Table Table;

int table_new(const TableColumn *columns, size_t n_columns, Table **ret);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
/* Appends one row of n_columns cells; takes ownership of each cell (also on failure). */
int table_add_row(Table *t, char **cells);
int table_print(const Table *t, FILE *f);
