/* lib/auth: group membership through the real NSS. The system's own root and nobody, and — in a
 * private mount namespace with fixture /etc/passwd and /etc/group bind-mounted over the real
 * ones — users with supplementary groups, a group too large for the first lookup buffer, and
 * a user whose passwd gid differs from the gid its process runs with. */
#include <check.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include "auth.h"
#include "macro.h"

#define NOBODY 65534

START_TEST(test_root_always) {
        char *none[] = { NULL };
        char *other[] = { "no-such-group-tasad", NULL };

        ck_assert_int_eq(auth_uid_in_groups(0, 0, NULL), 1);
        ck_assert_int_eq(auth_uid_in_groups(0, 0, none), 1);
        ck_assert_int_eq(auth_uid_in_groups(0, NOBODY, other), 1);
}
END_TEST

START_TEST(test_nobody) {
        char *nogroup[] = { "nogroup", NULL };
        char *root[] = { "root", NULL };
        char *missing[] = { "no-such-group-tasad", NULL };
        char *several[] = { "no-such-group-tasad", "root", "nogroup", NULL };
        char *none[] = { NULL };

        ck_assert_int_eq(auth_uid_in_groups(NOBODY, NOBODY, nogroup), 1);
        ck_assert_int_eq(auth_uid_in_groups(NOBODY, NOBODY, root), 0);
        ck_assert_int_eq(auth_uid_in_groups(NOBODY, NOBODY, missing), 0);
        ck_assert_int_eq(auth_uid_in_groups(NOBODY, NOBODY, several), 1);
        ck_assert_int_eq(auth_uid_in_groups(NOBODY, NOBODY, none), 0);
        ck_assert_int_eq(auth_uid_in_groups(NOBODY, NOBODY, NULL), 0);
        /* The process's gid counts even when it is not one of the user's groups. */
        ck_assert_int_eq(auth_uid_in_groups(NOBODY, 0, root), 1);
}
END_TEST

START_TEST(test_uid_without_passwd_entry) {
        char *nogroup[] = { "nogroup", NULL };

        /* Judged by its gid alone. */
        ck_assert_int_eq(auth_uid_in_groups(4000000, 4000000, nogroup), 0);
        ck_assert_int_eq(auth_uid_in_groups(4000000, NOBODY, nogroup), 1);
}
END_TEST

/* ---- fixture users in a private mount namespace --------------------------------------- */

static const char fixture_passwd[] =
        "root:x:0:0:root:/root:/bin/sh\n"
        "alice:x:5001:5001::/nonexistent:/usr/sbin/nologin\n"
        "bob:x:5002:5300::/nonexistent:/usr/sbin/nologin\n"
        "carol:x:5003:5003::/nonexistent:/usr/sbin/nologin\n";

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                _exit(100);
}

/* /etc/group with "big" holding 3000 members, alice last: well over the first 4 KiB buffer. */
static void write_group(const char *path) {
        FILE *f = fopen(path, "we");

        if (!f)
                _exit(100);
        fputs("root:x:0:\nalice:x:5001:\ncarol:x:5003:\nops:x:5100:bob,alice\n"
              "dev:x:5200:carol\nstaff:x:5300:\nbig:x:5400:", f);
        for (int i = 0; i < 3000; i++)
                fprintf(f, "member%04d,", i);
        fputs("alice\n", f);
        if (fclose(f) != 0)
                _exit(100);
}

static void bind_over(const char *src, const char *dst) {
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
                _exit(101);
}

typedef struct Case {
        uid_t uid;
        gid_t gid;
        const char *group;
        int want;
} Case;

static const Case cases[] = {
        { 5001, 5001, "ops", 1 },       /* supplementary */
        { 5001, 5001, "alice", 1 },     /* primary */
        { 5001, 5001, "big", 1 },       /* supplementary, in a huge group */
        { 5001, 5001, "dev", 0 },
        { 5001, 5001, "staff", 0 },
        { 5002, 5002, "staff", 1 },     /* passwd's primary gid, not the process's */
        { 5002, 5002, "ops", 1 },
        { 5002, 5002, "dev", 0 },
        { 5003, 5003, "dev", 1 },
        { 5003, 5003, "ops", 0 },
        { 5003, 5100, "ops", 1 },       /* the process's own gid */
};

/* Child: private mounts, fixture files, every case; exit status = index of the first wrong
 * case + 1, 0 when all are right, >= 100 when the set-up failed. */
static int run_cases_in_namespace(const char *dir) {
        char passwd[256], group[256];

        if (unshare(CLONE_NEWNS) < 0)
                _exit(errno == EPERM ? 102 : 103);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                _exit(104);
        snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
        snprintf(group, sizeof(group), "%s/group", dir);
        write_file(passwd, fixture_passwd);
        write_group(group);
        bind_over(passwd, "/etc/passwd");
        bind_over(group, "/etc/group");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *groups[] = { (char *) cases[i].group, NULL };
                if (auth_uid_in_groups(cases[i].uid, cases[i].gid, groups) != cases[i].want)
                        _exit((int) i + 1);
        }
        _exit(0);
}

START_TEST(test_fixture_users) {
        char dir[] = "/tmp/test-auth-XXXXXX", cmd[64];
        int status;
        pid_t pid;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP test_fixture_users: needs root for a private mount "
                                "namespace with fixture /etc/passwd and /etc/group\n");
                return;
        }
        ck_assert_ptr_nonnull(mkdtemp(dir));
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                run_cases_in_namespace(dir);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
        ck_assert(WIFEXITED(status));
        ck_assert_msg(WEXITSTATUS(status) < 100, "namespace set-up failed: %d",
                      WEXITSTATUS(status));
        if (WEXITSTATUS(status) != 0) {
                const Case *c = &cases[WEXITSTATUS(status) - 1];
                ck_abort_msg("uid %u gid %u group %s: expected %d", (unsigned) c->uid,
                             (unsigned) c->gid, c->group, c->want);
        }
}
END_TEST

static Suite *auth_suite(void) {
        Suite *s = suite_create("auth");
        TCase *tc = tcase_create("groups");

        tcase_add_test(tc, test_root_always);
        tcase_add_test(tc, test_nobody);
        tcase_add_test(tc, test_uid_without_passwd_entry);
        tcase_add_test(tc, test_fixture_users);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(auth_suite());
        int failed;

        srunner_run_all(sr, CK_VERBOSE);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
