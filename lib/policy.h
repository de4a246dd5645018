/* Seccomp policies (docs/policy.md): profile files in libconfig syntax, found by name in the
 * configured policy directories (the first directory that has <name>.policy wins), resolved into
 * a flat list of rules and compiled once per queue to a BPF program that the job's child
 * process only installs.
 *
 * A profile is an allow-list: its default action is "kill" or "errno:NAME", never "allow".
 * Named groups ("@basic-io", "@process", …) expand to fixed syscall lists (policy_groups_format
 * prints them). Whatever a profile says, tasad adds its own rules ("built-in" below): the calls
 * that are always denied (ptrace, mount, bpf, …) are killed; clone is allowed only without
 * namespace flags; clone3 fails with ENOSYS (its flags are out of the filter's sight, glibc then
 * falls back to clone); personality only without ADDR_NO_RANDOMIZE. A profile that allows an
 * always-denied call is an error.
 *
 * Errors: -errno and, on failure, a malloc'd message in *ret_error of the form
 * "<file>:<line>: <key>: <what is wrong>" (line omitted when there is none). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

struct sock_filter;

typedef enum PolicyAction {
        POLICY_ALLOW,
        POLICY_KILL,    /* the job is stopped and the violation reported (see PolicyKillMode) */
        POLICY_ERRNO,   /* the call fails with errno_value and the job goes on */
} PolicyAction;

typedef enum PolicyCompare {
        POLICY_CMP_EQ,
        POLICY_CMP_NE,
        POLICY_CMP_LT,
        POLICY_CMP_LE,
        POLICY_CMP_GT,
        POLICY_CMP_GE,
        POLICY_CMP_MASKED_EQ, /* (arg & mask) == value */
} PolicyCompare;

typedef struct PolicyCondition {
        unsigned arg;           /* 0..5 */
        PolicyCompare op;
        uint64_t mask;          /* POLICY_CMP_MASKED_EQ only */
        uint64_t value;
        char *text;             /* as written in the profile (or built in), for display */
} PolicyCondition;

#define POLICY_MAX_CONDITIONS 6

typedef struct PolicyRule {
        char *name;             /* the system call's name */
        int nr;                 /* its number on the native architecture */
        PolicyAction action;
        int errno_value;        /* POLICY_ERRNO */
        PolicyCondition conditions[POLICY_MAX_CONDITIONS]; /* all must hold (AND) */
        unsigned n_conditions;  /* 0: unconditional */
        char *origin;           /* profile that set the rule, or "tasad" for a built-in rule */
        const char *reason;     /* built-in rules: why (static string); else NULL */
} PolicyRule;

typedef struct Policy {
        char *name;
        char *path;             /* the file it was loaded from */
        char *description;
        PolicyAction default_action; /* POLICY_KILL or POLICY_ERRNO */
        int default_errno;
        /* Sorted by name; the rules of one system call are adjacent, and several conditional
         * rules of one call are OR-ed. A call has either one unconditional rule or only
         * conditional ones. Calls without a rule get the default action. */
        PolicyRule *rules;
        size_t n_rules;
        char **skipped;         /* names listed but not system calls here, NULL-terminated */
} Policy;

/* [A-Za-z0-9_-]{1,64}, like a queue name. */
bool policy_name_is_valid(const char *name);

/* The reserved name of a queue's `policy` that installs no seccomp filter at all (as Docker's
 * seccomp=unconfined): every other layer of the sandbox still applies. Never a profile file. */
#define POLICY_UNCONFINED "unconfined"

/* Finds <name>.policy in the first of dirs (NULL-terminated) that has it and loads it; a
 * profile's "extends" is looked up the same way. -ENOENT when no directory has it. */
int policy_load(char *const *dirs, const char *name, Policy **ret, char **ret_error);
/* Loads one file (the policy's name is the file name without ".policy"); "extends" is
 * resolved in dirs. */
int policy_load_file(char *const *dirs, const char *path, Policy **ret, char **ret_error);
Policy *policy_free(Policy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Policy *, policy_free);

/* The rules of one system call, or NULL (count 0) when it has none (default action). */
const PolicyRule *policy_find(const Policy *p, const char *syscall, size_t *ret_count);

/* What a rule with action POLICY_KILL (and a default action of kill) compiles to. */
typedef enum PolicyKillMode {
        /* SECCOMP_RET_USER_NOTIF: the call is held and the worker, holding the filter's
         * listener, learns the call and the pid, stops the job and names the call. Calls of a
         * non-native ABI are killed by the kernel (SIGSYS). */
        POLICY_KILL_NOTIFY,
        /* SECCOMP_RET_KILL_PROCESS: the kernel kills the process at once with SIGSYS. */
        POLICY_KILL_PROCESS,
} PolicyKillMode;

typedef struct BpfProgram {
        struct sock_filter *insns;
        size_t len;
} BpfProgram;

/* Compiles the policy for the native architecture (binary-tree optimised). With
 * POLICY_KILL_NOTIFY and channel_fd >= 0, sendmsg(channel_fd, …) is also allowed, whatever
 * the profile says about sendmsg: the child passes the filter's listener to the worker over
 * that descriptor between installing the filter and execve. */
int policy_compile(const Policy *p, PolicyKillMode mode, int channel_fd, BpfProgram *ret);
void bpf_program_done(BpfProgram *b);

/* The resolved policy for people: header, default action, one line per rule and the skipped
 * names. */
int policy_format(const Policy *p, FILE *f);
/* Every group and the system calls in it. */
int policy_groups_format(FILE *f);
/* "allow", "kill" or "errno". */
const char *policy_action_name(PolicyAction a);
/* The symbolic name of an errno value profiles may use ("EPERM"), or NULL. */
const char *policy_errno_to_name(int e);

/* Whether name is a system call of the native architecture (what policy_groups_format lists
 * as a group's calls; the others are "not system calls on this architecture"). */
bool policy_syscall_is_native(const char *name);
/* The name of a native system call number, malloc'd ("syscall-N" when unknown); NULL on OOM. */
char *policy_syscall_name(int nr);
