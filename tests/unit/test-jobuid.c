/* lib/jobuid.c: UIDs of the range are handed out once per running job and reused after release;
 * two holders (two workers) never get the same UID; a UID of an existing account is skipped;
 * job_uid_reap() kills exactly the processes of its UID, also one in its own session; the
 * guardian reaps every UID of a holder that is gone. Needs root (it switches UIDs); skipped
 * otherwise, and says so. */
#include <check.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobuid.h"
#include "macro.h"

#define FIRST 400100

static char lock_dir[64];

static void setup(void) {
        snprintf(lock_dir, sizeof(lock_dir), "/tmp/tasad-test-jobuid.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(lock_dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", lock_dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* A process running as uid in its own session, sleeping. */
static pid_t sleeper(uid_t uid) {
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* Like a job: none of the test's descriptors (a guardian's channel among them). */
                (void) close_range(3, ~0U, 0);
                setsid();
                if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(1);
                pause();
                _exit(0);
        }
        return pid;
}

/* Reaps pid (our child) and says whether SIGKILL ended it, waiting up to 5 s. */
static bool killed(pid_t pid) {
        int status;

        for (int i = 0; i < 500; i++) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
                usleep(10000);
        }
        return false;
}

START_TEST(test_acquire_release_reuse) {
        _cleanup_(job_uids_freep) JobUids *a = NULL, *b = NULL;
        uid_t u1, u2, u3, v1;

        ck_assert_int_eq(job_uids_new(lock_dir, FIRST, 3, &a), 0);
        ck_assert_int_eq(job_uids_new(lock_dir, FIRST, 3, &b), 0);
        ck_assert_int_eq(job_uids_acquire(a, &u1), 0);
        ck_assert_int_eq(job_uids_acquire(a, &u2), 0);
        ck_assert_int_ne(u1, u2);
        ck_assert(u1 >= FIRST && u1 < FIRST + 3 && u2 >= FIRST && u2 < FIRST + 3);
        /* The other holder gets the third, then none: the range is shared. */
        ck_assert_int_eq(job_uids_acquire(b, &v1), 0);
        ck_assert(v1 != u1 && v1 != u2);
        ck_assert_int_eq(job_uids_acquire(b, &u3), -EUSERS);
        ck_assert_int_eq(job_uids_acquire(a, &u3), -EUSERS);
        /* Released, it serves the same holder's next job. */
        job_uids_release(a, u2);
        ck_assert_int_eq(job_uids_acquire(a, &u3), 0);
        ck_assert_int_eq(u3, u2);
}
END_TEST

START_TEST(test_reap_kills_only_its_uid) {
        pid_t mine = sleeper(FIRST + 7), other = sleeper(FIRST + 8);

        usleep(100000); /* both have switched */
        ck_assert_int_eq(job_uid_reap(FIRST + 7), 0);
        ck_assert(killed(mine));
        ck_assert_int_eq(waitpid(other, NULL, WNOHANG), 0); /* still alive */
        ck_assert_int_eq(job_uid_reap(FIRST + 8), 0);
        ck_assert(killed(other));
        /* Nothing left: still a success. */
        ck_assert_int_eq(job_uid_reap(FIRST + 8), 0);
        ck_assert_int_eq(job_uid_reap(0), -EINVAL);
}
END_TEST

START_TEST(test_guardian_reaps_after_holder) {
        _cleanup_(job_uids_freep) JobUids *a = NULL;
        uid_t u;
        pid_t left;

        ck_assert_int_eq(job_uids_new(lock_dir, FIRST + 20, 1, &a), 0);
        ck_assert_int_eq(job_uids_acquire(a, &u), 0);
        left = sleeper(u); /* what a job left behind */
        usleep(100000);
        a = job_uids_free(a); /* the holder is gone: its guardian reaps u, then frees it */
        ck_assert(killed(left));
        ck_assert_int_eq(job_uids_new(lock_dir, FIRST + 20, 1, &a), 0);
        ck_assert_int_eq(job_uids_acquire(a, &u), 0);
        ck_assert_int_eq(u, FIRST + 20);
}
END_TEST

START_TEST(test_skips_existing_accounts) {
        _cleanup_(job_uids_freep) JobUids *a = NULL;
        struct passwd *pw = getpwnam("nobody");
        uid_t u;

        ck_assert_ptr_nonnull(pw);
        ck_assert_int_eq(job_uids_new(lock_dir, pw->pw_uid, 1, &a), 0);
        ck_assert_int_eq(job_uids_acquire(a, &u), -EUSERS);
}
END_TEST

/* Makes path (a directory when dir) owned by uid. */
static void make(const char *base, const char *name, bool dir, uid_t uid) {
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", base, name);
        if (dir)
                ck_assert_int_eq(mkdir(path, 0777), 0);
        else {
                int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                ck_assert_int_ge(fd, 0);
                close(fd);
        }
        ck_assert_int_eq(lchown(path, uid, uid), 0);
}

static bool exists(const char *base, const char *name) {
        char path[256];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", base, name);
        return lstat(path, &st) == 0;
}

START_TEST(test_sweep_removes_only_the_uids) {
        const uid_t job = FIRST + 7, other = FIRST + 8;
        char a[128], b[128], link[256], missing[160];
        char *dirs[] = { a, b, missing, NULL };
        unsigned n = 99;

        snprintf(a, sizeof(a), "%s/a", lock_dir);
        snprintf(b, sizeof(b), "%s/b", lock_dir);
        snprintf(missing, sizeof(missing), "%s/no-such-dir", lock_dir);
        ck_assert_int_eq(mkdir(a, 01777), 0);
        ck_assert_int_eq(mkdir(b, 01777), 0);
        make(a, "file", false, job);
        make(a, "tree", true, job);
        make(a, "tree/deep", true, job);
        make(a, "tree/deep/f", false, job);
        make(a, "others", false, other);
        make(a, "ww", true, 0);
        ck_assert_int_eq(chmod(strcat(strcpy(link, a), "/ww"), 01777), 0);
        make(a, "ww/mine", false, job);
        make(a, "ww/theirs", false, other);
        make(a, "closed", true, 0);                /* not world-writable: not descended */
        make(a, "closed/mine", false, job);
        make(b, "target", false, other);
        snprintf(link, sizeof(link), "%s/link", b);
        ck_assert_int_eq(symlink("target", link), 0);
        ck_assert_int_eq(lchown(link, job, job), 0);
        make(b, "ww2", true, other);
        ck_assert_int_eq(chmod(strcat(strcpy(link, b), "/ww2"), 0777), 0);
        make(b, "ww2/sub", true, 0);
        ck_assert_int_eq(chmod(strcat(strcpy(link, b), "/ww2/sub"), 0777), 0);
        make(b, "ww2/sub/mine", false, job); /* two levels down: out of reach */

        ck_assert_int_eq(job_uid_sweep(dirs, job, &n), 0);
        ck_assert_uint_eq(n, 4); /* a/file, a/tree, a/ww/mine, b/link */
        ck_assert(!exists(a, "file") && !exists(a, "tree") && !exists(a, "ww/mine"));
        ck_assert(!exists(b, "link"));
        ck_assert(exists(a, "others") && exists(a, "ww/theirs") && exists(a, "closed/mine"));
        ck_assert(exists(b, "target") && exists(b, "ww2/sub/mine"));
        ck_assert_int_eq(job_uid_sweep(dirs, 0, NULL), -EINVAL);
}
END_TEST

static Suite *jobuid_suite(void) {
        Suite *s = suite_create("jobuid");
        TCase *tc = tcase_create("jobuid");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_acquire_release_reuse);
        tcase_add_test(tc, test_reap_kills_only_its_uid);
        tcase_add_test(tc, test_guardian_reaps_after_holder);
        tcase_add_test(tc, test_skips_existing_accounts);
        tcase_add_test(tc, test_sweep_removes_only_the_uids);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr;
        int failed;

        if (geteuid() != 0) {
                printf("skipped: switching to the job UIDs needs root\n");
                return 77;
        }
        sr = srunner_create(jobuid_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
