/* Unit tests for lib/policy.c and lib/policy-groups.c: the tables, the fixtures in
 * tests/unit/fixtures/policy/ (good/ loads to known rule sets, each file of bad/ has exactly one
 * error), the shipped profiles in policy/ (resolved sets), and real programs run under the
 * compiled filters: a forked child sets NO_NEW_PRIVS, installs the program and execs (or makes
 * one call). The notify test re-executes this binary ("--call NAME") as the program that makes
 * the forbidden call. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "macro.h"
#include "policy-internal.h"
#include "policy.h"
#include "strutil.h"

#define FIXTURE(p) TEST_FIXTURES "/policy/" p
#define SHIPPED_DIR TEST_FIXTURES "/../../../policy"
#define PYTHON3 "/usr/bin/python3"
#define NMAP "/usr/bin/nmap"

static char *const good_dirs[] = { (char *) FIXTURE("good"), NULL };
static char *const bad_dirs[] = { (char *) FIXTURE("bad"), NULL };
static char *const shipped_dirs[] = { (char *) SHIPPED_DIR, NULL };
static const char *const shipped[] = { "default", "network-client", "nmap", "strict" };

static Policy *load(char *const *dirs, const char *name) {
        _cleanup_free_ char *err = NULL;
        Policy *p = NULL;
        int r = policy_load(dirs, name, &p, &err);

        ck_assert_msg(r == 0, "%s: %d %s", name, r, err ?: "(no message)");
        ck_assert_ptr_null(err);
        ck_assert_ptr_nonnull(p);
        return p;
}

/* "name action[ if c1 && c2] [origin]", the shape the expectations below are written in. */
static char *rule_string(const PolicyRule *r) {
        static const char *const actions[] = { "allow", "kill", "errno" };
        char *s = NULL, *t;

        ck_assert_int_ge(asprintf(&s, "%s %s", r->name, actions[r->action]), 0);
        if (r->action == POLICY_ERRNO) {
                ck_assert_int_ge(asprintf(&t, "%s:%s", s, policy_errno_to_name(r->errno_value)), 0);
                free(s);
                s = t;
        }
        for (unsigned i = 0; i < r->n_conditions; i++) {
                ck_assert_int_ge(asprintf(&t, "%s%s%s", s, i == 0 ? " if " : " && ",
                                          r->conditions[i].text), 0);
                free(s);
                s = t;
        }
        ck_assert_int_ge(asprintf(&t, "%s [%s]", s, r->origin), 0);
        free(s);
        return t;
}

/* The rules other than the always-denied ones, in order, equal want (NULL-terminated). */
static void assert_rules(const Policy *p, const char *const *want) {
        size_t k = 0;

        for (size_t i = 0; i < p->n_rules; i++) {
                _cleanup_free_ char *got = NULL;

                if (policy_always_denied_reason(p->rules[i].name))
                        continue;
                got = rule_string(&p->rules[i]);
                ck_assert_msg(want[k], "%s: unexpected rule \"%s\"", p->name, got);
                ck_assert_str_eq(got, want[k]);
                k++;
        }
        ck_assert_msg(!want[k], "%s: missing rule \"%s\"", p->name, want[k]);
}

/* Every always-denied call of this architecture: one kill rule by tasad, with its reason. */
static void assert_always_denied(const Policy *p) {
        for (size_t i = 0; i < policy_n_always_denied; i++) {
                const PolicyDenied *d = &policy_always_denied[i];
                const PolicyRule *r;
                size_t n;

                if (seccomp_syscall_resolve_name(d->name) < 0)
                        continue;
                r = policy_find(p, d->name, &n);
                ck_assert_msg(r && n == 1, "%s: %s has %zu rules", p->name, d->name, n);
                ck_assert_int_eq(r->action, POLICY_KILL);
                ck_assert_int_eq(r->n_conditions, 0);
                ck_assert_str_eq(r->origin, "tasad");
                ck_assert_ptr_eq(r->reason, d->reason);
        }
}

static void assert_sorted(const Policy *p) {
        for (size_t i = 1; i < p->n_rules; i++)
                ck_assert_int_le(strcmp(p->rules[i - 1].name, p->rules[i].name), 0);
        for (size_t i = 0; i < p->n_rules; i++)
                ck_assert_int_eq(p->rules[i].nr, seccomp_syscall_resolve_name(p->rules[i].name));
}

#define CLONE_RULES                                                                               \
        "clone allow if arg0 & (CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|"          \
        "CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWTIME) == 0 [tasad]",                    \
                "clone kill if arg0 & CLONE_NEWNS == CLONE_NEWNS [tasad]",                        \
                "clone kill if arg0 & CLONE_NEWCGROUP == CLONE_NEWCGROUP [tasad]",                \
                "clone kill if arg0 & CLONE_NEWUTS == CLONE_NEWUTS [tasad]",                      \
                "clone kill if arg0 & CLONE_NEWIPC == CLONE_NEWIPC [tasad]",                      \
                "clone kill if arg0 & CLONE_NEWUSER == CLONE_NEWUSER [tasad]",                    \
                "clone kill if arg0 & CLONE_NEWPID == CLONE_NEWPID [tasad]",                      \
                "clone kill if arg0 & CLONE_NEWNET == CLONE_NEWNET [tasad]",                      \
                "clone kill if arg0 & CLONE_NEWTIME == CLONE_NEWTIME [tasad]"
#define CLONE3_RULE "clone3 errno:ENOSYS [tasad]"
#define PERSONALITY_RULES                                                                         \
        "personality allow if arg0 == 0xffffffff [tasad]",                                        \
                "personality allow if arg0 & ADDR_NO_RANDOMIZE == 0 [tasad]"

/* ---- tables ---- */

START_TEST(test_groups_valid) {
        for (size_t g = 0; g < policy_n_groups; g++) {
                const PolicyGroup *grp = &policy_groups[g];

                ck_assert_msg(grp->name[0] == '@', "%s", grp->name);
                ck_assert_ptr_eq(policy_group_find(grp->name), grp);
                ck_assert_ptr_nonnull(grp->description);
                for (size_t i = 0; grp->calls[i]; i++) {
                        const char *c = grp->calls[i];

                        /* known to libseccomp on some architecture: catches typos */
                        ck_assert_msg(seccomp_syscall_resolve_name(c) != __NR_SCMP_ERROR,
                                      "%s: %s is no system call anywhere", grp->name, c);
                        ck_assert_msg(!policy_always_denied_reason(c),
                                      "%s contains the always-denied %s", grp->name, c);
                        for (size_t j = 0; j < i; j++)
                                ck_assert_msg(!streq(grp->calls[j], c), "%s: %s twice",
                                              grp->name, c);
                }
        }
}
END_TEST

/* A call in two groups would make "allow @a; deny @b" an error for no visible reason. */
START_TEST(test_groups_disjoint) {
        for (size_t a = 0; a < policy_n_groups; a++)
                for (size_t b = a + 1; b < policy_n_groups; b++)
                        for (size_t i = 0; policy_groups[a].calls[i]; i++)
                                for (size_t j = 0; policy_groups[b].calls[j]; j++)
                                        ck_assert_msg(!streq(policy_groups[a].calls[i],
                                                             policy_groups[b].calls[j]),
                                                      "%s in %s and %s", policy_groups[a].calls[i],
                                                      policy_groups[a].name, policy_groups[b].name);
}
END_TEST

START_TEST(test_groups_required) {
        static const char *const names[] = {
                "@basic-io", "@file-read", "@file-write", "@memory", "@process", "@signal",
                "@time", "@system-info", "@ipc", "@network-client", "@network-server",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                ck_assert_msg(policy_group_find(names[i]), "%s", names[i]);
        ck_assert_ptr_null(policy_group_find("@bogus"));
        ck_assert_ptr_null(policy_group_find("basic-io"));
}
END_TEST

START_TEST(test_groups_format) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(policy_groups_format(f), 0);
        fclose(f);
        for (size_t g = 0; g < policy_n_groups; g++) {
                _cleanup_free_ char *head = NULL;

                ck_assert_int_ge(asprintf(&head, "%s: %s\n", policy_groups[g].name,
                                          policy_groups[g].description), 0);
                ck_assert_msg(strstr(buf, head), "%s", head);
        }
        ck_assert_ptr_nonnull(strstr(buf, "@network-server: bind, listen, accept\n"
                                          "    accept accept4 bind listen\n"));
}
END_TEST

START_TEST(test_always_denied_table) {
        static const char *const required[] = {
                "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load",
                "kexec_file_load", "init_module", "finit_module", "delete_module", "mount",
                "umount2", "pivot_root", "chroot", "swapon", "swapoff", "reboot", "bpf",
                "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "unshare",
                "setns", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
                "mount_setattr", "io_uring_setup", "io_uring_enter", "io_uring_register", "acct",
                "quotactl", "lookup_dcookie", "iopl", "ioperm", "vhangup", "syslog",
                "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
                "setdomainname", "name_to_handle_at", "open_by_handle_at",
        };

        ck_assert_uint_eq(policy_n_always_denied, ELEMENTSOF(required));
        for (size_t i = 0; i < ELEMENTSOF(required); i++)
                ck_assert_msg(policy_always_denied_reason(required[i]), "%s", required[i]);
        ck_assert_ptr_null(policy_always_denied_reason("read"));
}
END_TEST

START_TEST(test_constants) {
        uint64_t v = 0;

        ck_assert_int_eq(policy_constant_find("AF_UNIX", &v), 0);
        ck_assert_uint_eq(v, AF_UNIX);
        ck_assert_int_eq(policy_constant_find("O_CREAT", &v), 0);
        ck_assert_uint_eq(v, O_CREAT);
        ck_assert_int_eq(policy_constant_find("CLONE_NEWTIME", &v), 0);
        ck_assert_uint_eq(v, 0x80);
        ck_assert_int_eq(policy_constant_find("ADDR_NO_RANDOMIZE", &v), 0);
        ck_assert_uint_eq(v, ADDR_NO_RANDOMIZE);
        ck_assert_int_eq(policy_constant_find("TIOCSTI", &v), 0);
        ck_assert_uint_eq(v, TIOCSTI);
        ck_assert_int_eq(policy_constant_find("SOCK_TYPE_MASK", &v), 0);
        ck_assert_uint_eq(v, 0xf);
        ck_assert_int_eq(policy_constant_find("AF_BOGUS", &v), -EINVAL);
        ck_assert_int_eq(policy_constant_find("af_unix", &v), -EINVAL);
        ck_assert_uint_eq(policy_n_clone_ns_flags, 8);
}
END_TEST

START_TEST(test_errno_names) {
        ck_assert_int_eq(policy_errno_from_name("EPERM"), EPERM);
        ck_assert_int_eq(policy_errno_from_name("ENOSYS"), ENOSYS);
        ck_assert_int_eq(policy_errno_from_name("ENOTTY"), ENOTTY);
        ck_assert_int_eq(policy_errno_from_name("EBOGUS"), -EINVAL);
        ck_assert_int_eq(policy_errno_from_name("eperm"), -EINVAL);
        ck_assert_str_eq(policy_errno_to_name(EACCES), "EACCES");
        ck_assert_ptr_null(policy_errno_to_name(4095));
}
END_TEST

START_TEST(test_syscall_name) {
        _cleanup_free_ char *a = policy_syscall_name(__NR_ptrace);
        _cleanup_free_ char *b = policy_syscall_name(99999);

        ck_assert_str_eq(a, "ptrace");
        ck_assert_str_eq(b, "syscall-99999");
}
END_TEST

START_TEST(test_name_valid) {
        ck_assert(policy_name_is_valid("default"));
        ck_assert(policy_name_is_valid("network-client"));
        ck_assert(policy_name_is_valid("A_b-9"));
        ck_assert(!policy_name_is_valid(""));
        ck_assert(!policy_name_is_valid("../default"));
        ck_assert(!policy_name_is_valid("a.policy"));
        ck_assert(!policy_name_is_valid("a b"));
        ck_assert(policy_name_is_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        ck_assert(!policy_name_is_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}
END_TEST

/* ---- good fixtures ---- */

START_TEST(test_small) {
        static const char *const want[] = {
                "accept allow [small]",
                "accept4 allow [small]",
                "bind allow [small]",
                CLONE_RULES,
                CLONE3_RULE,
                "exit_group allow [small]",
                "getpid errno:ENOSYS [small]",
                "kill kill [small]",
                "listen allow [small]",
                "openat allow if arg2 & (O_WRONLY|O_RDWR|O_CREAT|O_TRUNC) == 0 [small]",
                PERSONALITY_RULES,
                "read allow [small]",
                "sched_setaffinity errno:EPERM [small]",
                "socket allow if arg0 == AF_UNIX [small]",
                "socket allow if arg0 == AF_INET && arg1 & SOCK_TYPE_MASK == SOCK_STREAM [small]",
                "write allow [small]",
                NULL,
        };
        _cleanup_(policy_freep) Policy *p = load(good_dirs, "small");

        ck_assert_str_eq(p->name, "small");
        ck_assert_str_eq(p->path, FIXTURE("good") "/small.policy");
        ck_assert_str_eq(p->description, "A small profile for the unit suite.");
        ck_assert_int_eq(p->default_action, POLICY_KILL);
        assert_rules(p, want);
        assert_always_denied(p);
        assert_sorted(p);
        ck_assert_str_eq(p->skipped[0], "fake_errno_call");
        ck_assert_str_eq(p->skipped[1], "not_a_syscall_xyz");
        ck_assert_ptr_null(p->skipped[2]);
}
END_TEST

START_TEST(test_small_conditions) {
        _cleanup_(policy_freep) Policy *p = load(good_dirs, "small");
        const PolicyRule *r;
        size_t n;

        r = policy_find(p, "socket", &n);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(r[0].nr, __NR_socket);
        ck_assert_int_eq(r[0].action, POLICY_ALLOW);
        ck_assert_uint_eq(r[0].n_conditions, 1);
        ck_assert_uint_eq(r[0].conditions[0].arg, 0);
        ck_assert_int_eq(r[0].conditions[0].op, POLICY_CMP_EQ);
        ck_assert_uint_eq(r[0].conditions[0].value, AF_UNIX);
        ck_assert_uint_eq(r[1].n_conditions, 2);
        ck_assert_uint_eq(r[1].conditions[1].arg, 1);
        ck_assert_int_eq(r[1].conditions[1].op, POLICY_CMP_MASKED_EQ);
        ck_assert_uint_eq(r[1].conditions[1].mask, 0xf);
        ck_assert_uint_eq(r[1].conditions[1].value, SOCK_STREAM);
        r = policy_find(p, "openat", &n);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(r->conditions[0].arg, 2);
        ck_assert_uint_eq(r->conditions[0].mask, O_WRONLY | O_RDWR | O_CREAT | O_TRUNC);
        ck_assert_uint_eq(r->conditions[0].value, 0);
        r = policy_find(p, "getpid", &n);
        ck_assert_int_eq(r->errno_value, ENOSYS);
        ck_assert_ptr_null(r->reason);
        r = policy_find(p, "clone3", &n);
        ck_assert_str_eq(r->reason, "its flags are out of the filter's sight; glibc falls back to clone");
        ck_assert_ptr_null(policy_find(p, "mmap", &n));
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_null(policy_find(p, "aaa", NULL));
        ck_assert_ptr_null(policy_find(p, "zzz", NULL));
}
END_TEST

START_TEST(test_child_overrides) {
        static const char *const want[] = {
                "accept allow [small]",
                "accept4 allow [small]",
                "bind allow [small]",
                CLONE_RULES,
                CLONE3_RULE,
                "exit_group allow [small]",
                "getpid errno:EPERM [child]",            /* was errno:ENOSYS */
                "kill allow [child]",                    /* was denied */
                "listen allow [small]",
                "openat allow if arg2 & (O_WRONLY|O_RDWR|O_CREAT|O_TRUNC) == 0 [small]",
                PERSONALITY_RULES,
                "read allow [small]",
                "sched_setaffinity errno:EPERM [small]",
                "socket allow if arg0 == AF_INET6 [child]", /* replaces both of small's */
                "write kill [child]",                    /* was allowed */
                NULL,
        };
        _cleanup_(policy_freep) Policy *p = load(good_dirs, "child");

        ck_assert_str_eq(p->name, "child");
        ck_assert_str_eq(p->description, "Extends small: overrides.");
        ck_assert_int_eq(p->default_action, POLICY_ERRNO);
        ck_assert_int_eq(p->default_errno, EACCES);
        assert_rules(p, want);
        assert_always_denied(p);
        ck_assert_str_eq(p->skipped[0], "fake_errno_call");
        ck_assert_str_eq(p->skipped[1], "not_a_syscall_xyz");
        ck_assert_ptr_null(p->skipped[2]);
}
END_TEST

START_TEST(test_grandchild_inherits_default) {
        _cleanup_(policy_freep) Policy *p = load(good_dirs, "grandchild");
        const PolicyRule *r;
        size_t n;

        ck_assert_int_eq(p->default_action, POLICY_ERRNO);
        ck_assert_int_eq(p->default_errno, EACCES);
        r = policy_find(p, "write", &n);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(r->action, POLICY_ALLOW);
        ck_assert_str_eq(r->origin, "grandchild");
        r = policy_find(p, "kill", &n);
        ck_assert_str_eq(r->origin, "child");
        r = policy_find(p, "read", &n);
        ck_assert_str_eq(r->origin, "small");
}
END_TEST

START_TEST(test_conditions) {
        static const struct {
                const char *call;
                unsigned rule, cond, arg;
                PolicyCompare op;
                uint64_t mask, value;
        } want[] = {
                { "read", 0, 0, 0, POLICY_CMP_EQ, 0, 0 },
                { "read", 0, 1, 1, POLICY_CMP_NE, 0, 0x10 },
                { "read", 0, 2, 2, POLICY_CMP_LT, 0, UINT64_MAX },
                { "write", 0, 0, 0, POLICY_CMP_LE, 0, 2 },
                { "write", 0, 1, 1, POLICY_CMP_GT, 0, 0 },
                { "write", 0, 2, 2, POLICY_CMP_GE, 0, 1 },
                { "socket", 0, 0, 0, POLICY_CMP_MASKED_EQ, AF_UNIX | AF_INET, AF_UNIX },
                { "socket", 0, 1, 1, POLICY_CMP_EQ, 0, SOCK_STREAM | SOCK_CLOEXEC },
                { "socket", 0, 2, 5, POLICY_CMP_EQ, 0, 0xff },
                { "openat", 0, 5, 5, POLICY_CMP_EQ, 0, 6 },
        };
        _cleanup_(policy_freep) Policy *p = load(good_dirs, "conditions");

        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                const PolicyRule *r = policy_find(p, want[i].call, NULL);
                const PolicyCondition *c;

                ck_assert_ptr_nonnull(r);
                c = &r[want[i].rule].conditions[want[i].cond];
                ck_assert_msg(c->arg == want[i].arg && c->op == want[i].op &&
                                      c->mask == want[i].mask && c->value == want[i].value,
                              "%s: \"%s\"", want[i].call, c->text);
        }
        ck_assert_str_eq(policy_find(p, "write", NULL)->conditions[0].text, "  arg0 <= 2");
        ck_assert_uint_eq(policy_find(p, "openat", NULL)->n_conditions, 6);
}
END_TEST

START_TEST(test_first_dir_wins) {
        char *const dirs[] = { (char *) FIXTURE("good/override"), (char *) FIXTURE("good"), NULL };
        _cleanup_(policy_freep) Policy *p = load(dirs, "small");

        ck_assert_str_eq(p->description, "The override.");
        ck_assert_str_eq(p->path, FIXTURE("good/override") "/small.policy");
}
END_TEST

START_TEST(test_load_file) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *err = NULL;

        /* the name comes from the file name; extends is looked up in dirs */
        ck_assert_int_eq(policy_load_file(good_dirs, FIXTURE("good/child.policy"), &p, &err), 0);
        ck_assert_str_eq(p->name, "child");
        ck_assert_str_eq(policy_find(p, "read", NULL)->origin, "small");
}
END_TEST

START_TEST(test_not_found) {
        _cleanup_free_ char *err = NULL, *err2 = NULL, *err3 = NULL;
        Policy *p = (Policy *) 0x1;

        ck_assert_int_eq(policy_load(good_dirs, "nonexistent", &p, &err), -ENOENT);
        ck_assert_str_eq(err, "no profile \"nonexistent\" (nonexistent.policy) in " FIXTURE("good"));
        ck_assert_ptr_eq(p, (Policy *) 0x1);
        ck_assert_int_eq(policy_load(good_dirs, "../good/small", &p, &err2), -EINVAL);
        ck_assert_str_eq(err2, "\"../good/small\" is not a valid policy name ([A-Za-z0-9_-]{1,64})");
        ck_assert_int_eq(policy_load_file(good_dirs, FIXTURE("good/nonexistent.policy"), &p, &err3),
                         -ENOENT);
        ck_assert_str_eq(err3, FIXTURE("good/nonexistent.policy") ": No such file or directory");
        ck_assert_int_eq(policy_load(good_dirs, "nonexistent", &p, NULL), -ENOENT);
        ck_assert_ptr_eq(p, (Policy *) 0x1);
}
END_TEST

/* A chain of generated profiles p0 -> p1 -> ... -> p9: at most 8 levels of extends. */
START_TEST(test_depth) {
        char dir[] = "/tmp/test-policy-XXXXXX", cmd[64];
        char *const dirs[] = { dir, NULL };
        _cleanup_free_ char *err = NULL, *want = NULL;
        Policy *p = NULL;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        for (int i = 0; i <= 9; i++) {
                _cleanup_free_ char *path = NULL;
                FILE *f;

                ck_assert_int_ge(asprintf(&path, "%s/p%d.policy", dir, i), 0);
                f = fopen(path, "we");
                ck_assert_ptr_nonnull(f);
                fprintf(f, "version = 1;\ndescription = \"level %d\";\n", i);
                if (i < 9)
                        fprintf(f, "extends = \"p%d\";\n", i + 1);
                else
                        fprintf(f, "default_action = \"kill\";\n");
                fclose(f);
        }
        ck_assert_int_eq(policy_load(dirs, "p1", &p, &err), 0); /* 8 levels */
        p = policy_free(p);
        ck_assert_int_eq(policy_load(dirs, "p0", &p, &err), -EINVAL);
        ck_assert_int_ge(asprintf(&want, "%s/p8.policy:3: extends: more than 8 levels of extends: "
                                         "p0 -> p1 -> p2 -> p3 -> p4 -> p5 -> p6 -> p7 -> p8 -> p9",
                                  dir), 0);
        ck_assert_str_eq(err, want);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_format) {
        _cleanup_(policy_freep) Policy *p = load(good_dirs, "small");
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(policy_format(p, f), 0);
        fclose(f);
        ck_assert(startswith(buf, "policy small (" FIXTURE("good") "/small.policy)\n"
                                  "description: A small profile for the unit suite.\n"
                                  "default action: kill\n"));
        ck_assert_ptr_nonnull(strstr(buf, "\n  socket                   allow          if arg0 == "
                                          "AF_INET && arg1 & SOCK_TYPE_MASK == SOCK_STREAM  "
                                          "[small]\n"));
        ck_assert_ptr_nonnull(strstr(buf, "\n  getpid                   errno:ENOSYS    [small]\n"));
        ck_assert_ptr_nonnull(strstr(buf, "\n  ptrace                   kill            [tasad: "
                                          "traces and controls other processes]\n"));
        ck_assert(strstr(buf, "\nskipped (not system calls on this architecture): "
                              "fake_errno_call not_a_syscall_xyz\n"));
}
END_TEST

/* ---- bad fixtures ---- */

typedef struct BadCase {
        const char *file;   /* under bad/ */
        const char *cited;  /* file named in the message, when not `file` itself */
        const char *msg;    /* what follows the cited file name */
} BadCase;

static const BadCase bad[] = {
        { "unknown-key.policy", NULL, ":4: allwo: unknown key" },
        { "bad-version.policy", NULL, ":1: version: unknown version 2 (only 1 is known)" },
        { "version-string.policy", NULL, ":1: version: expected an integer" },
        { "allow-ptrace.policy", NULL,
          ":4: allow[1]: \"ptrace\" is always denied by tasad and cannot be allowed" },
        { "errno-mount.policy", NULL,
          ":4: errno.EPERM[0]: \"mount\" is always denied by tasad and cannot be allowed" },
        { "allow-and-deny.policy", NULL, ":5: deny[0]: \"kill\" is already listed in allow" },
        { "group-and-deny.policy", NULL,
          ":5: deny[0]: \"read\" is already listed in allow (from @basic-io)" },
        { "group-in-deny.policy", NULL,
          ":5: deny[0]: \"openat\" (from @file-read) is already listed in allow" },
        { "two-errnos.policy", NULL,
          ":6: errno.ENOSYS[0]: \"getpid\" is already listed in errno.EPERM" },
        { "bad-condition.policy", NULL,
          ":6: allow_if[0].when[0]: \"arg0 = 1\": expected one of == != < <= > >= or & MASK ==" },
        { "unknown-constant.policy", NULL,
          ":5: allow_if[0].when[1]: \"arg1 == AF_BOGUS\": unknown constant AF_BOGUS" },
        { "arg-index.policy", NULL,
          ":4: allow_if[0].when[0]: \"arg6 == 1\": argument index must be 0..5" },
        { "same-arg.policy", NULL,
          ":4: allow_if[0].when[1]: \"arg1 != TIOCSTI\": arg1 is already compared in this entry "
          "(one comparison per argument; add another allow_if entry)" },
        { "mask-value.policy", NULL,
          ":4: allow_if[0].when[0]: \"arg2 & 0x3 == 4\": the value has bits outside the mask, it "
          "can never match" },
        { "trailing.policy", NULL,
          ":4: allow_if[0].when[0]: \"arg0 == 1 2\": unexpected \"2\" after the value" },
        { "too-many-conditions.policy", NULL, ":6: allow_if[0].when: more than 6 conditions" },
        { "empty-when.policy", NULL,
          ":4: allow_if[0].when: must not be empty (use allow for an unconditional rule)" },
        { "allow-if-clone.policy", NULL,
          ":4: allow_if[0].syscall: \"clone\": its conditions are set by tasad, allow it "
          "unconditionally" },
        { "allow-if-unknown-key.policy", NULL, ":6: allow_if[0].action: unknown key" },
        { "allow-if-no-syscall.policy", NULL,
          ":4: allow_if[0]: syscall: required key is missing" },
        { "allow-if-group.policy", NULL,
          ":4: allow_if[0].syscall: \"@basic-io\": allow_if takes one system call, not a group" },
        { "cycle-a.policy", "cycle-b.policy", ":3: extends: cycle: cycle-a -> cycle-b -> cycle-a" },
        { "self.policy", NULL, ":3: extends: cycle: self -> self" },
        { "missing-parent.policy", NULL,
          ":3: extends: no profile \"no-such-profile\" (no-such-profile.policy) in " FIXTURE("bad") },
        { "bad-extends.policy", NULL,
          ":3: extends: \"../default\" is not a valid policy name ([A-Za-z0-9_-]{1,64})" },
        { "parent-error.policy", "unknown-key.policy", ":4: allwo: unknown key" },
        { "default-allow.policy", NULL,
          ":3: default_action: \"allow\" is refused: a profile is an allow-list (use \"kill\" or "
          "\"errno:NAME\")" },
        { "bad-action.policy", NULL,
          ":3: default_action: \"trap\" is not an action (expected \"kill\" or \"errno:NAME\")" },
        { "unknown-errno.policy", NULL, ":5: errno.EBOGUS: unknown errno name \"EBOGUS\"" },
        { "unknown-errno-default.policy", NULL,
          ":3: default_action: unknown errno name \"EBOGUS\"" },
        { "unknown-group.policy", NULL, ":4: allow[1]: unknown group \"@bogus\"" },
        { "bad-name.policy", NULL,
          ":4: allow[1]: \"Write\" is not a system call name ([a-z0-9_]{1,64})" },
        { "allow-not-array.policy", NULL,
          ":4: allow: expected an array of system call names and @groups" },
        { "missing-default.policy", NULL,
          ": default_action: required key is missing (only a profile with extends may leave it "
          "out)" },
        { "missing-description.policy", NULL, ": description: required key is missing" },
        { "syntax-error.policy", NULL, ":4: syntax error" },
        { "include.policy", NULL,
          ": allow: comes from @include \"include.inc\": profiles do not support @include (use "
          "extends)" },
};

START_TEST(test_bad) {
        const BadCase *bc = &bad[_i];
        _cleanup_free_ char *path = NULL, *err = NULL, *want = NULL;
        Policy *p = (Policy *) 0x1;

        ck_assert_int_ge(asprintf(&path, FIXTURE("bad") "/%s", bc->file), 0);
        ck_assert_int_ge(asprintf(&want, FIXTURE("bad") "/%s%s", bc->cited ?: bc->file, bc->msg), 0);
        ck_assert_int_eq(policy_load_file(bad_dirs, path, &p, &err), -EINVAL);
        ck_assert_ptr_nonnull(err);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_eq(p, (Policy *) 0x1); /* untouched on failure */
        ck_assert_int_eq(policy_load_file(bad_dirs, path, &p, NULL), -EINVAL);
}
END_TEST

/* Every file of bad/ is in the table (a new fixture without an expectation is a mistake). */
START_TEST(test_bad_complete) {
        static const char *const helpers[] = { "cycle-b.policy", "include.inc" };
        _cleanup_free_ char *cmd = NULL;
        char line[256];
        size_t n = 0;
        FILE *f;

        ck_assert_int_ge(asprintf(&cmd, "ls '%s'", FIXTURE("bad")), 0);
        f = popen(cmd, "re");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f)) {
                bool found = false;

                line[strcspn(line, "\n")] = '\0';
                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        found = found || streq(bad[i].file, line);
                for (size_t i = 0; i < ELEMENTSOF(helpers); i++)
                        found = found || streq(helpers[i], line);
                ck_assert_msg(found, "bad/%s has no expected message", line);
                n++;
        }
        ck_assert_int_eq(pclose(f), 0);
        ck_assert_uint_eq(n, ELEMENTSOF(bad) + ELEMENTSOF(helpers));
}
END_TEST

/* ---- shipped profiles: resolved sets ---- */

START_TEST(test_shipped_load) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, shipped[_i]);
        const PolicyRule *r;
        size_t n;

        ck_assert_str_eq(p->name, shipped[_i]);
        ck_assert_int_gt(strlen(p->description), 20);
        ck_assert_int_eq(p->default_action, POLICY_KILL);
        for (size_t i = 0; p->skipped[i]; i++)
                ck_assert_int_lt(seccomp_syscall_resolve_name(p->skipped[i]), 0);
#if defined(__x86_64__)
        if (streq(p->name, "network-client") || streq(p->name, "nmap")) {
                ck_assert_str_eq(p->skipped[0], "recv");
                ck_assert_str_eq(p->skipped[1], "recvmmsg_time64");
                ck_assert_str_eq(p->skipped[2], "send");
                ck_assert_ptr_null(p->skipped[3]);
        } else
                ck_assert_ptr_null(p->skipped[0]);
#endif
        assert_always_denied(p);
        assert_sorted(p);
        r = policy_find(p, "clone3", &n);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(r->action, POLICY_ERRNO);
        ck_assert_int_eq(r->errno_value, ENOSYS);
        ck_assert_str_eq(r->origin, "tasad");
        ck_assert_ptr_nonnull(policy_find(p, "execve", NULL)); /* the job's own exec */
        ck_assert_int_eq(policy_find(p, "execve", NULL)->action, POLICY_ALLOW);
        ck_assert_ptr_null(policy_find(p, "listen", NULL));
        ck_assert_ptr_null(policy_find(p, "accept4", NULL));
}
END_TEST

static void assert_call(const Policy *p, const char *call, const char *const *want) {
        size_t n, k = 0;
        const PolicyRule *r = policy_find(p, call, &n);

        for (; k < n; k++) {
                _cleanup_free_ char *got = rule_string(&r[k]);
                ck_assert_msg(want[k], "%s: unexpected rule \"%s\"", p->name, got);
                ck_assert_str_eq(got, want[k]);
        }
        ck_assert_msg(!want[k], "%s: missing rule \"%s\"", p->name, want[k]);
}

START_TEST(test_shipped_default) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "default");

        assert_call(p, "socket", (const char *const[]) { "socket allow if arg0 == AF_UNIX [default]",
                                                         NULL });
        assert_call(p, "socketpair",
                    (const char *const[]) { "socketpair allow if arg0 == AF_UNIX [default]", NULL });
        assert_call(p, "clone", (const char *const[]) { CLONE_RULES, NULL });
        assert_call(p, "personality", (const char *const[]) { PERSONALITY_RULES, NULL });
        assert_call(p, "ioctl", (const char *const[]) { "ioctl allow [default]", NULL });
        assert_call(p, "openat", (const char *const[]) { "openat allow [default]", NULL });
        assert_call(p, "mkdir", (const char *const[]) { "mkdir allow [default]", NULL });
        assert_call(p, "connect", (const char *const[]) { "connect allow [default]", NULL });
        assert_call(p, "bind", (const char *const[]) { NULL });
        assert_call(p, "sendmmsg", (const char *const[]) { NULL });
        assert_call(p, "seccomp", (const char *const[]) { NULL });
}
END_TEST

static const char *const network_client_socket[] = {
        "socket allow if arg0 == AF_UNIX [network-client]",
        "socket allow if arg0 == AF_INET && arg1 & SOCK_TYPE_MASK == SOCK_STREAM [network-client]",
        "socket allow if arg0 == AF_INET && arg1 & SOCK_TYPE_MASK == SOCK_DGRAM [network-client]",
        "socket allow if arg0 == AF_INET6 && arg1 & SOCK_TYPE_MASK == SOCK_STREAM [network-client]",
        "socket allow if arg0 == AF_INET6 && arg1 & SOCK_TYPE_MASK == SOCK_DGRAM [network-client]",
        "socket allow if arg0 == AF_NETLINK && arg1 & SOCK_TYPE_MASK == SOCK_RAW && arg2 == "
        "NETLINK_ROUTE [network-client]",
        NULL,
};

START_TEST(test_shipped_network_client) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "network-client");

        assert_call(p, "socket", network_client_socket);
        assert_call(p, "socketpair",
                    (const char *const[]) { "socketpair allow if arg0 == AF_UNIX [default]", NULL });
        assert_call(p, "bind", (const char *const[]) { "bind allow [network-client]", NULL });
        assert_call(p, "sendmmsg", (const char *const[]) { "sendmmsg allow [network-client]", NULL });
        assert_call(p, "connect", (const char *const[]) { "connect allow [network-client]", NULL });
        assert_call(p, "read", (const char *const[]) { "read allow [default]", NULL });
        assert_call(p, "clone", (const char *const[]) { CLONE_RULES, NULL });
        assert_call(p, "listen", (const char *const[]) { NULL });
}
END_TEST

START_TEST(test_shipped_nmap) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "nmap");

        assert_call(p, "socket", network_client_socket);
        assert_call(p, "clone", (const char *const[]) { "clone kill [nmap]", NULL });
        assert_call(p, "fork", (const char *const[]) { "fork kill [nmap]", NULL });
        assert_call(p, "execve", (const char *const[]) { "execve allow [default]", NULL });
        assert_call(p, "mkdir", (const char *const[]) { "mkdir errno:EPERM [nmap]", NULL });
        assert_call(p, "unlinkat", (const char *const[]) { "unlinkat errno:EPERM [nmap]", NULL });
        assert_call(p, "openat", (const char *const[]) { "openat allow [default]", NULL });
        assert_call(p, "setsockopt",
                    (const char *const[]) { "setsockopt allow [network-client]", NULL });
        assert_call(p, "pselect6", (const char *const[]) { "pselect6 allow [default]", NULL });
}
END_TEST

START_TEST(test_shipped_strict) {
        static const char *const want[] = {
                "access allow [strict]", "arch_prctl allow [strict]", "brk allow [strict]",
                "clock_getres allow [strict]", "clock_gettime allow [strict]",
                "clock_nanosleep allow [strict]", CLONE3_RULE, "close allow [strict]",
                "copy_file_range allow [strict]", "execve allow [strict]",
                "exit allow [strict]", "exit_group allow [strict]", "fadvise64 allow [strict]",
                "fstat allow [strict]", "futex allow [strict]", "getrandom allow [strict]",
                "gettimeofday allow [strict]", "ioctl errno:ENOTTY [strict]",
                "lseek allow [strict]", "madvise allow [strict]", "mmap allow [strict]",
                "mprotect allow [strict]", "mremap allow [strict]", "munmap allow [strict]",
                "nanosleep allow [strict]", "newfstatat allow [strict]",
                "open allow if arg1 & (O_WRONLY|O_RDWR|O_CREAT|O_TRUNC) == 0 [strict]",
                "openat allow if arg2 & (O_WRONLY|O_RDWR|O_CREAT|O_TRUNC) == 0 [strict]",
                "openat2 errno:ENOSYS [strict]",
                "prctl allow if arg0 == PR_CAPBSET_READ [strict]", "pread64 allow [strict]",
                "prlimit64 allow if arg0 == 0 [strict]", "read allow [strict]", "readv allow [strict]",
                "rseq allow [strict]", "rt_sigaction allow [strict]",
                "rt_sigprocmask allow [strict]", "rt_sigreturn allow [strict]",
                "set_robust_list allow [strict]", "set_tid_address allow [strict]",
                "sigaltstack allow [strict]", "statx allow [strict]", "time allow [strict]",
                "write allow [strict]", "writev allow [strict]",
                NULL,
        };
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "strict");

        assert_rules(p, want);
}
END_TEST

START_TEST(test_shipped_compile) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, shipped[_i]);

        for (int mode = POLICY_KILL_NOTIFY; mode <= POLICY_KILL_PROCESS; mode++) {
                BpfProgram b = {};

                ck_assert_int_eq(policy_compile(p, mode, mode == POLICY_KILL_NOTIFY ? 3 : -1, &b), 0);
                ck_assert_ptr_nonnull(b.insns);
                ck_assert_uint_gt(b.len, 10);
                ck_assert_uint_le(b.len, BPF_MAXINSNS);
                /* the last instruction returns (the default action) */
                ck_assert_uint_eq(BPF_CLASS(b.insns[b.len - 1].code), BPF_RET);
                bpf_program_done(&b);
                ck_assert_ptr_null(b.insns);
                ck_assert_uint_eq(b.len, 0);
        }
        bpf_program_done(NULL);
}
END_TEST

/* ---- running programs under the filters ---- */

typedef void (*ChildFunc)(const void *userdata);

/* Ends a filtered child. A macro around syscall(), not a noreturn function: before a call to a
 * function known not to return, ASAN runs __asan_handle_no_return(), whose system calls
 * (sigaltstack, gettid) a filter may refuse. */
#define child_exit(code) syscall(SYS_exit_group, (code))

/* Forks a child that moves stdin/stdout/cwd as asked, installs the program with
 * PR_SET_SECCOMP and runs fn (which execs or calls child_exit). */
static pid_t spawn_filtered(const BpfProgram *b, ChildFunc fn, const void *userdata, int in_fd,
                            int out_fd, const char *dir) {
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct sock_fprog prog = { .len = (unsigned short) b->len, .filter = b->insns };

                if ((in_fd >= 0 && dup2(in_fd, 0) < 0) || (out_fd >= 0 && dup2(out_fd, 1) < 0) ||
                    (dir && chdir(dir) < 0) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                        _exit(125);
                fn(userdata);
                child_exit(126);
        }
        return pid;
}

static int wait_status(pid_t pid) {
        int status;

        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        return status;
}

static int run_filtered(const BpfProgram *b, ChildFunc fn, const void *userdata, int in_fd,
                        int out_fd, const char *dir) {
        return wait_status(spawn_filtered(b, fn, userdata, in_fd, out_fd, dir));
}

static void compile(const Policy *p, BpfProgram *b) {
        ck_assert_int_eq(policy_compile(p, POLICY_KILL_PROCESS, -1, b), 0);
}

/* Runs fn under a profile (shipped, or a good fixture) in POLICY_KILL_PROCESS mode. */
static int run_under(const char *profile, ChildFunc fn, const void *userdata) {
        char *const dirs[] = { (char *) SHIPPED_DIR, (char *) FIXTURE("good"), NULL };
        _cleanup_(policy_freep) Policy *p = load(dirs, profile);
        BpfProgram b = {};
        int status;

        compile(p, &b);
        status = run_filtered(&b, fn, userdata, -1, -1, NULL);
        bpf_program_done(&b);
        return status;
}

static void assert_killed(int status, const char *what) {
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
                      "%s: expected SIGSYS, got %s %d", what,
                      WIFSIGNALED(status) ? "signal" : "exit",
                      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void assert_exited(int status, int code, const char *what) {
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == code,
                      "%s: expected exit %d, got %s %d", what, code,
                      WIFSIGNALED(status) ? "signal" : "exit",
                      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void exec_argv(const void *userdata) {
        char *const *argv = userdata;

        execv(argv[0], argv);
        child_exit(127);
}

/* One system call with up to 5 arguments; exits 0 when it returns at all. */
typedef struct Call {
        const char *name;
        long nr;
        unsigned long a[5];
} Call;

static void make_call(const void *userdata) {
        const Call *c = userdata;

        syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]);
        child_exit(0);
}

/* Exits 0 when the call fails with the expected errno (a[4] is unused by these calls). */
typedef struct ErrnoCall {
        long nr;
        unsigned long a[4];
        int want;
} ErrnoCall;

static void make_errno_call(const void *userdata) {
        const ErrnoCall *c = userdata;
        long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3]);

        child_exit(r >= 0 ? 1 : errno == c->want ? 0 : 2);
}

static const Call always_denied_calls[] = {
        { "ptrace", __NR_ptrace, { PTRACE_TRACEME } },
        /* harmless if it ever ran: the mount point does not exist */
        { "mount", __NR_mount,
          { (unsigned long) "none", (unsigned long) "/nonexistent-tasad-test", (unsigned long) "tmpfs",
            MS_RDONLY } },
        { "unshare", __NR_unshare, { CLONE_NEWUSER } },
};

START_TEST(test_run_always_denied) {
        const char *profile = shipped[_i / ELEMENTSOF(always_denied_calls)];
        const Call *c = &always_denied_calls[_i % ELEMENTSOF(always_denied_calls)];
        _cleanup_free_ char *what = NULL;

        ck_assert_int_ge(asprintf(&what, "%s under %s", c->name, profile), 0);
        assert_killed(run_under(profile, make_call, c), what);
}
END_TEST

START_TEST(test_run_default_shell) {
        static const char *const argv[] = {
                "/bin/sh", "-c",
                "ls / | sort | head -3 >/dev/null; cat /etc/hostname >/dev/null; mkdir t; rm -r t",
                NULL,
        };
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "default");
        char dir[] = "/tmp/test-policy-XXXXXX";
        struct stat st;
        BpfProgram b = {};

        ck_assert_ptr_nonnull(mkdtemp(dir));
        compile(p, &b);
        assert_exited(run_filtered(&b, exec_argv, argv, -1, -1, dir), 0, "sh pipeline");
        bpf_program_done(&b);
        ck_assert_int_eq(rmdir(dir), 0); /* t was removed by the job: dir is empty */
        ck_assert_int_lt(stat(dir, &st), 0);
}
END_TEST

/* Runs argv under profile with stdin from `input` and returns what it wrote to stdout. */
static char *run_capture(const char *profile, const char *const *argv, const char *input,
                         int *ret_status) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, profile);
        int in[2], out[2];
        size_t size = 0, n;
        char *buf = NULL, chunk[4096];
        BpfProgram b = {};
        FILE *f = open_memstream(&buf, &size);
        ssize_t k;
        pid_t pid;

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        n = strlen(input);
        ck_assert_int_eq(write(in[1], input, n), (ssize_t) n); /* fits the pipe */
        close(in[1]);
        compile(p, &b);
        pid = spawn_filtered(&b, exec_argv, argv, in[0], out[1], NULL);
        close(out[1]); /* the child has its copy: EOF comes when it is gone */
        close(in[0]);
        while ((k = read(out[0], chunk, sizeof(chunk))) > 0)
                fwrite(chunk, 1, (size_t) k, f);
        close(out[0]);
        fclose(f);
        *ret_status = wait_status(pid);
        bpf_program_done(&b);
        return buf;
}

START_TEST(test_run_default_python) {
        static const char *const argv[] = { PYTHON3, "-c", "print(1)", NULL };
        _cleanup_free_ char *out = NULL;
        int status;

        if (access(PYTHON3, X_OK) < 0) {
                fprintf(stderr, "SKIP test_run_default_python: " PYTHON3 " is not installed\n");
                return;
        }
        out = run_capture("default", argv, "", &status);
        assert_exited(status, 0, "python3 -c print(1)");
        ck_assert_str_eq(out, "1\n");
}
END_TEST

START_TEST(test_run_default_no_network) {
        static const Call inet = { "socket", __NR_socket, { AF_INET, SOCK_STREAM } };
        static const Call inet6 = { "socket", __NR_socket, { AF_INET6, SOCK_DGRAM } };
        static const Call netlink = { "socket", __NR_socket, { AF_NETLINK, SOCK_RAW } };
        static const Call unix_ = { "socket", __NR_socket, { AF_UNIX, SOCK_STREAM } };
        static const Call bind_ = { "bind", __NR_bind, { 0 } };

        assert_killed(run_under("default", make_call, &inet), "socket(AF_INET)");
        assert_killed(run_under("default", make_call, &inet6), "socket(AF_INET6)");
        assert_killed(run_under("default", make_call, &netlink), "socket(AF_NETLINK)");
        assert_killed(run_under("default", make_call, &bind_), "bind");
        assert_exited(run_under("default", make_call, &unix_), 0, "socket(AF_UNIX)");
}
END_TEST

static void clone_and_wait(const void *userdata) {
        const unsigned long *flags = userdata;
        int status = 0;
        long pid = syscall(SYS_clone, *flags | SIGCHLD, 0, 0, 0, 0);

        if (pid == 0)
                child_exit(7);
        if (pid < 0 || syscall(SYS_wait4, pid, &status, 0, NULL) != pid)
                child_exit(1);
        child_exit(WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : 2);
}

static void glibc_fork(const void *userdata) {
        int status = 0;
        pid_t pid = fork();

        if (pid == 0)
                child_exit(7);
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
                child_exit(1);
        child_exit(WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : 2);
}

START_TEST(test_run_clone) {
        static const unsigned long plain = 0, newuser = CLONE_NEWUSER, newnet = CLONE_NEWNET,
                                   thread_flags = CLONE_FS | CLONE_FILES;

        assert_exited(run_under("default", clone_and_wait, &plain), 0, "clone(SIGCHLD)");
        assert_exited(run_under("default", clone_and_wait, &thread_flags), 0,
                      "clone(CLONE_FS|CLONE_FILES)");
        assert_exited(run_under("default", glibc_fork, NULL), 0, "fork()");
        assert_killed(run_under("default", clone_and_wait, &newuser), "clone(CLONE_NEWUSER)");
        assert_killed(run_under("default", clone_and_wait, &newnet), "clone(CLONE_NEWNET)");
        /* with an errno default the namespace flags still kill */
        assert_exited(run_under("errno-default", clone_and_wait, &plain), 0,
                      "clone(SIGCHLD) under errno-default");
        assert_killed(run_under("errno-default", clone_and_wait, &newuser),
                      "clone(CLONE_NEWUSER) under errno-default");
}
END_TEST

START_TEST(test_run_clone3) {
        /* struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, ... (v2: 88 bytes) */
        static const uint64_t args[11] = { [4] = SIGCHLD };
        static const ErrnoCall c = { __NR_clone3, { (unsigned long) args, sizeof(args) }, ENOSYS };

        assert_exited(run_under("default", make_errno_call, &c), 0, "clone3 → ENOSYS");
        assert_exited(run_under("strict", make_errno_call, &c), 0, "clone3 → ENOSYS (strict)");
}
END_TEST

static void personality_query(const void *userdata) {
        long r = syscall(SYS_personality, 0xffffffffUL);

        child_exit(r >= 0 && (r & ADDR_NO_RANDOMIZE) == 0 ? 0 : 1);
}

START_TEST(test_run_personality) {
        static const Call norandom = { "personality", __NR_personality, { ADDR_NO_RANDOMIZE } };
        static const Call linux_ = { "personality", __NR_personality, { PER_LINUX } };

        assert_killed(run_under("default", make_call, &norandom), "personality(ADDR_NO_RANDOMIZE)");
        assert_exited(run_under("default", personality_query, NULL), 0, "personality(query)");
        assert_exited(run_under("default", make_call, &linux_), 0, "personality(PER_LINUX)");
}
END_TEST

START_TEST(test_run_strict_cat) {
        static const char *const argv[] = { "/bin/cat", NULL };
        _cleanup_free_ char *out = NULL;
        int status;

        out = run_capture("strict", argv, "hello, strict\n", &status);
        assert_exited(status, 0, "cat under strict");
        ck_assert_str_eq(out, "hello, strict\n");
}
END_TEST

START_TEST(test_run_strict_refuses) {
        static const char *const tee_argv[] = { "/usr/bin/tee", "written", NULL };
        static const ErrnoCall tty = { __NR_ioctl, { 0, TCGETS, 0 }, ENOTTY };
        static const Call creat = { "openat", __NR_openat,
                                    { (unsigned long) AT_FDCWD, (unsigned long) "x",
                                      O_RDONLY | O_CREAT, 0600 } };
        static const Call sock = { "socket", __NR_socket, { AF_UNIX, SOCK_STREAM } };
        static const unsigned long plain = 0;
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "strict");
        char dir[] = "/tmp/test-policy-XXXXXX";
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        BpfProgram b = {};

        ck_assert_int_ge(devnull, 0);
        ck_assert_ptr_nonnull(mkdtemp(dir));
        compile(p, &b);
        /* tee opens its file for writing: killed, and the file does not exist */
        assert_killed(run_filtered(&b, exec_argv, tee_argv, devnull, -1, dir), "tee FILE");
        assert_killed(run_filtered(&b, make_call, &creat, -1, -1, dir), "openat(O_CREAT)");
        ck_assert_int_eq(rmdir(dir), 0); /* nothing was created */
        bpf_program_done(&b);
        close(devnull);
        assert_killed(run_under("strict", clone_and_wait, &plain), "clone under strict");
        assert_killed(run_under("strict", make_call, &sock), "socket under strict");
        assert_exited(run_under("strict", make_errno_call, &tty), 0, "ioctl → ENOTTY");
}
END_TEST

START_TEST(test_run_errno_default) {
        static const ErrnoCall getppid_ = { __NR_getppid, {}, EPERM };
        static const Call ptrace_ = { "ptrace", __NR_ptrace, { PTRACE_TRACEME } };

        assert_exited(run_under("errno-default", make_errno_call, &getppid_), 0, "getppid → EPERM");
        /* the built-in kill rules are violations whatever the default action */
        assert_killed(run_under("errno-default", make_call, &ptrace_), "ptrace under errno-default");
}
END_TEST

START_TEST(test_run_network_client) {
        static const char script[] =
                "import socket, sys\n"
                "socket.getaddrinfo('localhost', None, flags=socket.AI_ADDRCONFIG)\n"
                "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
                "s.sendall(b'x')\n"
                "s.close()\n";
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        char port[16], got = 0;
        const char *argv[] = { PYTHON3, "-c", script, port, NULL };
        _cleanup_close_ int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -EBADF;
        _cleanup_free_ char *out = NULL;
        int status;

        if (access(PYTHON3, X_OK) < 0) {
                fprintf(stderr, "SKIP test_run_network_client: " PYTHON3 " is not installed\n");
                return;
        }
        ck_assert_int_ge(l, 0);
        ck_assert_int_eq(bind(l, (struct sockaddr *) &a, sizeof(a)), 0);
        ck_assert_int_eq(listen(l, 1), 0);
        ck_assert_int_eq(getsockname(l, (struct sockaddr *) &a, &len), 0);
        snprintf(port, sizeof(port), "%u", ntohs(a.sin_port));
        /* the same script under default: getaddrinfo's netlink socket is a violation, which
         * shows that the script exercises network-client's AF_NETLINK rule */
        free(run_capture("default", argv, "", &status));
        assert_killed(status, "python3 getaddrinfo(AI_ADDRCONFIG) under default");
        out = run_capture("network-client", argv, "", &status);
        assert_exited(status, 0, "python3 connect under network-client");
        c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ck_assert_int_ge(c, 0);
        ck_assert_int_eq(read(c, &got, 1), 1);
        ck_assert_int_eq(got, 'x');
}
END_TEST

START_TEST(test_run_network_client_refuses) {
        static const Call raw = { "socket", __NR_socket, { AF_INET, SOCK_RAW, IPPROTO_ICMP } };
        static const Call raw6 = { "socket", __NR_socket, { AF_INET6, SOCK_RAW | SOCK_CLOEXEC } };
        static const Call packet = { "socket", __NR_socket, { AF_PACKET, SOCK_DGRAM } };
        static const Call audit = { "socket", __NR_socket, { AF_NETLINK, SOCK_RAW, 9 } };
        static const Call listen_ = { "listen", __NR_listen, { 0, 1 } };
        static const Call accept_ = { "accept4", __NR_accept4, { 0 } };
        static const Call tcp = { "socket", __NR_socket, { AF_INET6, SOCK_STREAM | SOCK_NONBLOCK } };

        assert_killed(run_under("network-client", make_call, &raw), "socket(SOCK_RAW)");
        assert_killed(run_under("network-client", make_call, &raw6), "socket(AF_INET6, SOCK_RAW)");
        assert_killed(run_under("network-client", make_call, &packet), "socket(AF_PACKET)");
        assert_killed(run_under("network-client", make_call, &audit), "socket(NETLINK_AUDIT)");
        assert_killed(run_under("network-client", make_call, &listen_), "listen");
        assert_killed(run_under("network-client", make_call, &accept_), "accept4");
        assert_exited(run_under("network-client", make_call, &tcp), 0, "socket(AF_INET6 stream)");
}
END_TEST

START_TEST(test_run_nmap) {
        /* Only ever 127.0.0.1. */
        static const char *const argv[] = {
                NMAP, "--unprivileged", "-sT", "-Pn", "-n", "-oX", "-", "-p", "1-1024", "127.0.0.1",
                NULL,
        };
        static const Call fork_ = { "fork", __NR_fork, {} };
        static const ErrnoCall mkdir_ = { __NR_mkdir, { (unsigned long) "/nonexistent/x", 0700 },
                                          EPERM };
        _cleanup_free_ char *out = NULL;
        int status;

        assert_killed(run_under("nmap", make_call, &fork_), "fork under nmap");
        assert_exited(run_under("nmap", make_errno_call, &mkdir_), 0, "mkdir → EPERM under nmap");
        if (access(NMAP, X_OK) < 0) {
                fprintf(stderr, "SKIP test_run_nmap (the scan): " NMAP " is not installed\n");
                return;
        }
        out = run_capture("nmap", argv, "", &status);
        assert_exited(status, 0, "nmap under nmap");
        ck_assert_msg(strstr(out, "<nmaprun ") && strstr(out, "<address addr=\"127.0.0.1\"") &&
                              strstr(out, "exit=\"success\"") && strstr(out, "</nmaprun>"),
                      "nmap output: %s", out);
}
END_TEST

/* ---- notify mode ---- */

#define NOTIFY_CHANNEL_FD 3

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

static int helper_call(const char *call);

/* In the child: install the notify program with a new listener and send the listener to the
 * parent over NOTIFY_CHANNEL_FD with sendmsg, which only the channel exception allows; then
 * exec this binary to make the forbidden call. A sanitizer build cannot start under strict
 * (ASAN's start-up reads /proc/self/exe with readlink), so there the child makes the call
 * itself. */
static void notify_child(const BpfProgram *b, int channel, const char *call) {
        struct sock_fprog prog = { .len = (unsigned short) b->len, .filter = b->insns };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        char byte = 'L';
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        const char *argv[] = { "/proc/self/exe", "--call", call, NULL };
        int listener;

        /* dies with the test: a call held by a listener nobody reads would wait forever */
        if (dup2(channel, NOTIFY_CHANNEL_FD) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                _exit(125);
        listener = (int) syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                 SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (listener < 0)
                _exit(124);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &listener, sizeof(int));
        if (sendmsg(NOTIFY_CHANNEL_FD, &mh, MSG_NOSIGNAL) != 1)
                child_exit(123);
#ifdef SANITIZED
        child_exit(helper_call(call));
#endif
        execv(argv[0], (char **) argv);
        child_exit(127);
}

static int receive_fd(int sock) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        char byte = 0;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct pollfd pfd = { .fd = sock, .events = POLLIN };
        struct cmsghdr *c;
        int fd;

        /* a child whose sendmsg on the channel is held by its own filter never sends */
        ck_assert_msg(poll(&pfd, 1, 10 * 1000) == 1 && (pfd.revents & POLLIN),
                      "no listener from the child: was its sendmsg on the channel refused?");
        ck_assert_int_eq(recvmsg(sock, &mh, MSG_CMSG_CLOEXEC), 1);
        c = CMSG_FIRSTHDR(&mh);
        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(c->cmsg_type, SCM_RIGHTS);
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        return fd;
}

/* The first notification of the child's filter: its system call number. */
static int notify_first_call(int listener, pid_t pid) {
        struct seccomp_notif req = {};
        struct pollfd pfd = { .fd = listener, .events = POLLIN };
        int status;

        ck_assert_int_eq(poll(&pfd, 1, 30 * 1000), 1);
        if (!(pfd.revents & POLLIN)) { /* the child is gone without a notification */
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                ck_abort_msg("no notification; child %s %d", WIFSIGNALED(status) ? "signal" : "exit",
                             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
        ck_assert_int_eq(ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req), 0);
        ck_assert_int_eq((int) req.pid, (int) pid);
        return req.data.nr;
}

static const struct {
        const char *call;
        int nr;
} notify_cases[] = {
        { "ptrace", __NR_ptrace },
        { "sendmsg", __NR_sendmsg }, /* on another descriptor than the channel */
};

START_TEST(test_notify) {
        _cleanup_(policy_freep) Policy *p = load(shipped_dirs, "strict");
        _cleanup_close_ int listener = -EBADF;
        _cleanup_free_ char *name = NULL;
        BpfProgram b = {};
        int pair[2], status, nr;
        pid_t pid;

        ck_assert_ptr_null(policy_find(p, "sendmsg", NULL)); /* strict does not allow it */
        ck_assert_int_eq(policy_compile(p, POLICY_KILL_NOTIFY, NOTIFY_CHANNEL_FD, &b), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
#ifdef SANITIZED
        fprintf(stderr, "NOTE test_notify: sanitizer build, the child makes the call without "
                        "exec'ing this binary (ASAN's start-up needs calls strict refuses)\n");
#endif
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                notify_child(&b, pair[1], notify_cases[_i].call);
        close(pair[1]);
        listener = receive_fd(pair[0]);
        close(pair[0]);
        nr = notify_first_call(listener, pid);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        bpf_program_done(&b);
        name = policy_syscall_name(nr);
        ck_assert_msg(nr == notify_cases[_i].nr, "expected %s, the child made %s",
                      notify_cases[_i].call, name);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

/* "--call NAME": what the notify test's child execs; makes the forbidden call at once. */
static int helper_call(const char *call) {
        if (streq(call, "ptrace"))
                syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
        else if (streq(call, "sendmsg")) {
                struct msghdr mh = {};
                syscall(SYS_sendmsg, 1, &mh, 0);
        }
        return 99; /* only reached when the call was not held */
}

static Suite *policy_suite(void) {
        Suite *s = suite_create("policy");
        TCase *tc;

        tc = tcase_create("tables");
        tcase_add_test(tc, test_groups_valid);
        tcase_add_test(tc, test_groups_disjoint);
        tcase_add_test(tc, test_groups_required);
        tcase_add_test(tc, test_groups_format);
        tcase_add_test(tc, test_always_denied_table);
        tcase_add_test(tc, test_constants);
        tcase_add_test(tc, test_errno_names);
        tcase_add_test(tc, test_syscall_name);
        tcase_add_test(tc, test_name_valid);
        suite_add_tcase(s, tc);

        tc = tcase_create("good");
        tcase_add_test(tc, test_small);
        tcase_add_test(tc, test_small_conditions);
        tcase_add_test(tc, test_child_overrides);
        tcase_add_test(tc, test_grandchild_inherits_default);
        tcase_add_test(tc, test_conditions);
        tcase_add_test(tc, test_first_dir_wins);
        tcase_add_test(tc, test_load_file);
        tcase_add_test(tc, test_not_found);
        tcase_add_test(tc, test_depth);
        tcase_add_test(tc, test_format);
        suite_add_tcase(s, tc);

        tc = tcase_create("bad");
        tcase_add_loop_test(tc, test_bad, 0, ELEMENTSOF(bad));
        tcase_add_test(tc, test_bad_complete);
        suite_add_tcase(s, tc);

        tc = tcase_create("shipped");
        tcase_add_loop_test(tc, test_shipped_load, 0, ELEMENTSOF(shipped));
        tcase_add_test(tc, test_shipped_default);
        tcase_add_test(tc, test_shipped_network_client);
        tcase_add_test(tc, test_shipped_nmap);
        tcase_add_test(tc, test_shipped_strict);
        tcase_add_loop_test(tc, test_shipped_compile, 0, ELEMENTSOF(shipped));
        suite_add_tcase(s, tc);

        tc = tcase_create("run");
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_run_always_denied, 0,
                            ELEMENTSOF(shipped) * ELEMENTSOF(always_denied_calls));
        tcase_add_test(tc, test_run_default_shell);
        tcase_add_test(tc, test_run_default_python);
        tcase_add_test(tc, test_run_default_no_network);
        tcase_add_test(tc, test_run_clone);
        tcase_add_test(tc, test_run_clone3);
        tcase_add_test(tc, test_run_personality);
        tcase_add_test(tc, test_run_strict_cat);
        tcase_add_test(tc, test_run_strict_refuses);
        tcase_add_test(tc, test_run_errno_default);
        tcase_add_test(tc, test_run_network_client);
        tcase_add_test(tc, test_run_network_client_refuses);
        tcase_add_test(tc, test_run_nmap);
        tcase_add_loop_test(tc, test_notify, 0, ELEMENTSOF(notify_cases));
        suite_add_tcase(s, tc);
        return s;
}

int main(int argc, char **argv) {
        SRunner *sr;
        int failed;

        if (argc == 3 && streq(argv[1], "--call"))
                return helper_call(argv[2]);
        sr = srunner_create(policy_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
