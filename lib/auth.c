/* Group-membership checks for peer-credential authorization (see auth.h). */
#include "auth.h"

#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>

#include "macro.h"

/* NSS buffers start here and double on ERANGE up to the cap (groups with huge member lists). */
#define NSS_BUFFER_START 4096U
#define NSS_BUFFER_MAX (16U * 1024U * 1024U)
#define GROUPS_START 64

/* getpw*_r/getgr*_r report "no such entry" as 0 with a NULL result, or with one of these. */
static bool nss_not_found(int r) {
        return r == 0 || r == ENOENT || r == ESRCH;
}

/* The user's name and primary gid; -ENOENT when uid has no passwd entry. */
static int user_lookup(uid_t uid, char **ret_name, gid_t *ret_gid) {
        for (size_t size = NSS_BUFFER_START;; size *= 2) {
                _cleanup_free_ char *buf = malloc(size);
                struct passwd pw, *result = NULL;
                char *name;
                int r;

                if (!buf)
                        return -ENOMEM;
                r = getpwuid_r(uid, &pw, buf, size, &result);
                if (r == ERANGE && size < NSS_BUFFER_MAX)
                        continue;
                if (!result)
                        return nss_not_found(r) ? -ENOENT : -r;
                name = strdup(pw.pw_name);
                if (!name)
                        return -ENOMEM;
                *ret_name = name;
                *ret_gid = pw.pw_gid;
                return 0;
        }
}

/* The gid of group `name`: 1 found, 0 no such group, -errno on lookup failure. */
static int group_lookup(const char *name, gid_t *ret_gid) {
        for (size_t size = NSS_BUFFER_START;; size *= 2) {
                _cleanup_free_ char *buf = malloc(size);
                struct group gr, *result = NULL;
                int r;

                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(name, &gr, buf, size, &result);
                if (r == ERANGE && size < NSS_BUFFER_MAX)
                        continue;
                if (!result)
                        return nss_not_found(r) ? 0 : -r;
                *ret_gid = gr.gr_gid;
                return 1;
        }
}

/* All groups of user `name` (primary included), plus `extra` in the last slot. */
static int user_groups(const char *name, gid_t primary, gid_t extra, gid_t **ret, size_t *ret_n) {
        int n = GROUPS_START;

        for (;;) {
                _cleanup_free_ gid_t *gids = calloc((size_t) n + 1, sizeof(gid_t));
                int m = n;

                if (!gids)
                        return -ENOMEM;
                if (getgrouplist(name, primary, gids, &m) >= 0) {
                        gids[m] = extra;
                        *ret = TAKE_PTR(gids);
                        *ret_n = (size_t) m + 1;
                        return 0;
                }
                /* -1: too small; m now holds the number needed (glibc). */
                if (n > NGROUPS_MAX)
                        return -E2BIG;
                n = m > n ? m : n * 2;
        }
}

/* The gids that count for the client: its own gid and, if it has a passwd entry, the user's
 * primary and supplementary groups. */
static int client_gids(uid_t uid, gid_t gid, gid_t **ret, size_t *ret_n) {
        _cleanup_free_ char *name = NULL;
        gid_t primary = (gid_t) -1;
        int r;

        r = user_lookup(uid, &name, &primary);
        if (r == -ENOENT) {
                gid_t *one = malloc(sizeof(gid_t));
                if (!one)
                        return -ENOMEM;
                one[0] = gid;
                *ret = one;
                *ret_n = 1;
                return 0;
        }
        if (r < 0)
                return r;
        return user_groups(name, primary, gid, ret, ret_n);
}

static bool gid_in(gid_t g, const gid_t *gids, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (gids[i] == g)
                        return true;
        return false;
}

int auth_uid_in_groups(uid_t uid, gid_t gid, char *const *groups) {
        _cleanup_free_ gid_t *gids = NULL;
        size_t n_gids = 0;
        int r;

        if (uid == 0)
                return 1;
        if (strv_length(groups) == 0)
                return 0;

        r = client_gids(uid, gid, &gids, &n_gids);
        if (r < 0)
                return r;

        for (char *const *g = groups; *g; g++) {
                gid_t want = (gid_t) -1;

                r = group_lookup(*g, &want);
                if (r < 0)
                        return r;
                if (r > 0 && gid_in(want, gids, n_gids))
                        return 1;
        }
        return 0;
}
