#include "resultdir.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "job.h"
#include "macro.h"
#include "strutil.h"

#define TMP_NAME_MAX (JOB_ID_MAX + 6) /* ".<id>.tmp" */

static void tmp_name(const char *id, char buf[static TMP_NAME_MAX]) {
        snprintf(buf, TMP_NAME_MAX, ".%s.tmp", id);
}

bool result_dir_complete(int qfd, const char *id) {
        char path[JOB_ID_MAX + 16];
        struct stat st;

        snprintf(path, sizeof(path), "%s/result.json", id);
        return fstatat(qfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

int result_dir_discard_tmp(int qfd, const char *id) {
        char tmp[TMP_NAME_MAX];
        int r;

        tmp_name(id, tmp);
        r = rm_rf_at(qfd, tmp);
        return r == -ENOENT ? 0 : r;
}

/* A fresh, empty <qfd>/<tmp>. */
static int make_tmp_dir(int qfd, const char *tmp, const char **ret_stage) {
        int r;

        *ret_stage = "create";
        if (mkdirat(qfd, tmp, 0750) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        *ret_stage = "clean";
        r = rm_rf_at(qfd, tmp); /* left by a crash */
        if (r < 0 && r != -ENOENT)
                return r;
        *ret_stage = "create";
        return mkdirat(qfd, tmp, 0750) < 0 ? -errno : 0;
}

static int write_file_synced(int dirfd, const char *name, const void *data, size_t len) {
        _cleanup_close_ int fd = openat(dirfd, name,
                                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
        int r;

        if (fd < 0)
                return -errno;
        r = write_all(fd, data, len);
        if (r < 0)
                return r;
        return fsync(fd) < 0 ? -errno : 0;
}

static int write_files(int qfd, const char *tmp, const ResultFiles *f) {
        _cleanup_close_ int dfd = openat(qfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int r;

        if (dfd < 0)
                return -errno;
        r = write_file_synced(dfd, "stdout", f->out ? f->out : "", f->out ? f->out_len : 0);
        if (r >= 0)
                r = write_file_synced(dfd, "stderr", f->err ? f->err : "", f->err ? f->err_len : 0);
        if (r >= 0) /* last: its presence says the directory is complete */
                r = write_file_synced(dfd, "result.json", f->json, f->json_len);
        if (r >= 0 && fsync(dfd) < 0)
                r = -errno;
        return r;
}

/* Moves the complete <tmp> to <id>. An older result there (a requeued job ran again, or this
 * one is gathered again after a crash before its entry was acknowledged) is exchanged in one
 * step, so a reader never finds the id missing, and then removed. Only a directory is
 * replaced: anything else in the way fails (-ENOTDIR), it is not ours to remove. */
static int move_into_place(int qfd, const char *tmp, const char *id) {
        int r;

        if (renameat(qfd, tmp, qfd, id) == 0)
                return 0;
        if (errno != ENOTEMPTY && errno != EEXIST)
                return -errno;
        if (renameat2(qfd, tmp, qfd, id, RENAME_EXCHANGE) == 0) {
                (void) rm_rf_at(qfd, tmp); /* the old one; a crash here leaves it for the next try */
                return 0;
        }
        if (errno != EINVAL && errno != ENOSYS) /* a file system without RENAME_EXCHANGE */
                return -errno;
        r = rm_rf_at(qfd, id);
        if (r < 0 && r != -ENOENT)
                return r;
        return renameat(qfd, tmp, qfd, id) < 0 ? -errno : 0;
}

int result_dir_write(int qfd, const char *id, const ResultFiles *f, const char **ret_stage) {
        char tmp[TMP_NAME_MAX];
        int r;

        tmp_name(id, tmp);
        r = make_tmp_dir(qfd, tmp, ret_stage);
        if (r < 0)
                return r;
        *ret_stage = "write";
        r = write_files(qfd, tmp, f);
        if (r < 0) {
                (void) rm_rf_at(qfd, tmp);
                return r;
        }
        *ret_stage = "rename";
        r = move_into_place(qfd, tmp, id);
        if (r < 0)
                (void) rm_rf_at(qfd, tmp);
        return r;
}

int result_dir_sync(int qfd) {
        return fsync(qfd) < 0 ? -errno : 0;
}
