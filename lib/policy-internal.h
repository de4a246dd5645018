/* Tables shared by policy.c and policy-groups.c (and the policy unit suite): the syscall groups,
 * the calls tasad always denies, the symbolic constants of conditions and the errno names.
 * Every table is static data; lookups fail closed (NULL or -EINVAL for an unknown name). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PolicyGroup {
        const char *name;           /* "@basic-io" */
        const char *description;    /* one sentence, for policy_groups_format and the docs */
        const char *const *calls;   /* NULL-terminated; may name calls of other architectures */
} PolicyGroup;

typedef struct PolicyConstant {
        const char *name;
        uint64_t value;
} PolicyConstant;

typedef struct PolicyDenied {
        const char *name;
        const char *reason;         /* static; becomes PolicyRule.reason */
} PolicyDenied;

extern const PolicyGroup policy_groups[];
extern const size_t policy_n_groups;
extern const PolicyDenied policy_always_denied[];
extern const size_t policy_n_always_denied;
/* The namespace flags of clone (CLONE_NEWNS … CLONE_NEWTIME): what the built-in clone rule
 * refuses. */
extern const PolicyConstant policy_clone_ns_flags[];
extern const size_t policy_n_clone_ns_flags;

/* "@name" → its group, or NULL. */
const PolicyGroup *policy_group_find(const char *name);
/* The reason a call is always denied, or NULL when it is not. */
const char *policy_always_denied_reason(const char *name);

/* A symbolic constant usable in conditions ("AF_UNIX", "O_CREAT", …). 0 or -EINVAL. */
int policy_constant_find(const char *name, uint64_t *ret);
/* "EPERM" → EPERM, or -EINVAL for a name not in the table. */
int policy_errno_from_name(const char *name);

/* The argument that holds clone's flags on the native architecture (s390 swaps the first two). */
#if defined(__s390__) || defined(__s390x__) || defined(__CRIS__)
#define POLICY_CLONE_FLAGS_ARG 1U
#else
#define POLICY_CLONE_FLAGS_ARG 0U
#endif
