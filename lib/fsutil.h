/* File-system helpers for the worker's job directories. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Creates path and its missing parents with mode (existing directories are left as they are). */
int mkdir_parents(const char *path, mode_t mode);

/* Removes dirfd/name and everything below it without following symbolic links or crossing
 * into other file systems' mount points (a job cannot make removal leave its directory).
 * Returns 0, or the first error (-errno; what could be removed is removed). -ENOENT when
 * name does not exist. Directory trees deeper than 256 levels fail with -ELOOP. */
int rm_rf_at(int dirfd, const char *name);

/* Calls f for each entry of the directory fd (which it takes and closes) but "." and "..".
 * Returns 0, or the first error of f or of reading (-errno); every entry is visited anyway. */
int dir_for_each(int fd, int (*f)(int dirfd, const char *name, void *userdata), void *userdata);

/* Sends one message of data (len bytes) carrying fd (SCM_RIGHTS) over the socket sock.
 * 0 or -errno. No allocation: safe in a child that shares its parent's memory. */
int fd_send(int sock, int fd, const void *data, size_t len);
