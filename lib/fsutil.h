/* File-system helpers for the worker's job directories. */
#pragma once

#include <sys/types.h>

/* Creates path and its missing parents with mode (existing directories are left as they are). */
int mkdir_parents(const char *path, mode_t mode);

/* Removes dirfd/name and everything below it without following symbolic links or crossing
 * into other file systems' mount points (a job cannot make removal leave its directory).
 * Returns 0, or the first error (-errno; what could be removed is removed). -ENOENT when
 * name does not exist. Directory trees deeper than 256 levels fail with -ELOOP. */
int rm_rf_at(int dirfd, const char *name);
