/* A job's result on disk: <results_dir>/<queue>/<id>/ holding stdout, stderr and result.json
 * (docs/protocol.md, "Gathered results"). A result directory is written whole under a
 * temporary name, made durable, and only then renamed into place, so a reader (or a crash at
 * any moment) finds a complete old directory, a complete new one, or none; never a part. All
 * functions take the queue's directory as an fd and an id that passed job_id_is_valid(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct ResultFiles {
        const char *out, *err, *json;   /* out and err may be NULL: empty */
        size_t out_len, err_len, json_len;
} ResultFiles;

/* Whether <qfd>/<id> holds a complete result: result.json is written last and a directory is
 * renamed into place only once complete, so result.json there means every file is. */
bool result_dir_complete(int qfd, const char *id);

/* Writes the files into a fresh <qfd>/.<id>.tmp (what a crash left there is removed first),
 * fsyncs each file and the directory, then renames it to <qfd>/<id>; an older result there is
 * exchanged atomically (RENAME_EXCHANGE) and then removed. The queue directory is not fsynced
 * here: the caller does that once for every result of a round (result_dir_sync) before it
 * drops anything from Redis. -errno; *ret_stage says which step failed ("create": making the
 * temporary directory, "clean": removing one a crash left, "write", "rename"), for the caller
 * to tell a results directory that takes nothing from one bad record. */
int result_dir_write(int qfd, const char *id, const ResultFiles *f, const char **ret_stage);

/* fsync of the queue's directory: the renames of result_dir_write() become durable. */
int result_dir_sync(int qfd);

/* Removes <qfd>/.<id>.tmp if a crash left it (0 when there is none). */
int result_dir_discard_tmp(int qfd, const char *id);
