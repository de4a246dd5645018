#include "fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "macro.h"

#define RM_MAX_DEPTH 256

int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int rm_children(int fd, dev_t dev, unsigned depth);

static int rm_entry(int dirfd, const char *name, dev_t dev, unsigned depth) {
        struct stat st;
        int fd, r;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
        if (st.st_dev != dev)
                return -EXDEV;
        if (depth >= RM_MAX_DEPTH)
                return -ELOOP;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = rm_children(fd, dev, depth + 1); /* takes fd */
        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && r >= 0)
                r = -errno;
        return r;
}

int dir_for_each(int fd, int (*f)(int dirfd, const char *name, void *userdata), void *userdata) {
        DIR *d = fdopendir(fd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                int k;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                k = f(dirfd(d), de->d_name, userdata);
                if (k < 0 && r >= 0)
                        r = k;
        }
        if (errno != 0 && r >= 0)
                r = -errno;
        closedir(d);
        return r;
}

typedef struct RmContext {
        dev_t dev;
        unsigned depth;
} RmContext;

static int rm_one(int dirfd, const char *name, void *userdata) {
        const RmContext *c = userdata;

        return rm_entry(dirfd, name, c->dev, c->depth);
}

/* Removes everything in the directory fd (which it closes). */
static int rm_children(int fd, dev_t dev, unsigned depth) {
        return dir_for_each(fd, rm_one, &(RmContext){ dev, depth });
}

int rm_rf_at(int dirfd, const char *name) {
        struct stat st;

        /* Most job directories are left empty: one call then. */
        if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
                return 0;
        if (errno == ENOENT)
                return -ENOENT;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        return rm_entry(dirfd, name, st.st_dev, 0);
}

int fd_send(int sock, int fd, const void *data, size_t len) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}
