/* Authorization by group membership, for clients identified by SO_PEERCRED.
 *
 * The lookups go through NSS (getpwuid_r, getgrouplist, getgrnam_r). With /etc files that is
 * fast; with a remote directory (LDAP, sssd) it can block, so a daemon serving many clients
 * should keep such lookups cheap or cache their answers. */
#pragma once

#include <sys/types.h>

/* Whether the client (uid, gid) may act on something guarded by `groups`, a NULL-terminated
 * list of group names (NULL or empty: nobody but root).
 *
 * Returns 1 if uid is 0, or if `gid` (the client's own gid), the user's primary group or one
 * of the user's supplementary groups is named in `groups`; 0 if not. A uid without a passwd
 * entry is judged by `gid` alone. A group name that does not exist matches nobody.
 * Returns -errno when a lookup fails (e.g. -EIO from NSS, -ENOMEM). */
int auth_uid_in_groups(uid_t uid, gid_t gid, char *const *groups);
