/* lib/tokens.c: the API token file, lookup by secret, the Bearer header, group checks. */
#include <check.h>

#include "macro.h"
#include "tokens.h"

#define S1 "0123456789abcdef0123456789abcdef"
#define S2 "ABCDEFGHIJKLMNOPQRSTUVWXYZ_.~+/=-0"

static void parse_fails(const char *text, const char *msg) {
        ApiTokens *t = (ApiTokens *) 0x1;
        _cleanup_free_ char *err = NULL;

        ck_assert_int_eq(api_tokens_parse(text, "tok", &t, &err), -EINVAL);
        ck_assert_ptr_eq(t, (ApiTokens *) 0x1);
        ck_assert_str_eq(err, msg);
}

START_TEST(test_parse_good) {
        ApiTokens *t = NULL;
        char *err = NULL;

        ck_assert_int_eq(api_tokens_parse("# a comment\n\n  ci \t tasad,builders  " S1 "\n"
                                          "ops tasad " S2, "tok", &t, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_uint_eq(t->n_tokens, 2);
        ck_assert_str_eq(t->tokens[0].name, "ci");
        ck_assert_str_eq(t->tokens[0].groups[0], "tasad");
        ck_assert_str_eq(t->tokens[0].groups[1], "builders");
        ck_assert_ptr_null(t->tokens[0].groups[2]);
        ck_assert_str_eq(t->tokens[1].name, "ops");
        ck_assert_ptr_eq(api_tokens_find(t, S1), &t->tokens[0]);
        ck_assert_ptr_eq(api_tokens_find(t, S2), &t->tokens[1]);
        ck_assert_ptr_null(api_tokens_find(t, S1 "x"));
        ck_assert_ptr_null(api_tokens_find(t, ""));
        ck_assert_ptr_null(api_tokens_find(t, NULL));
        ck_assert(api_token_in_groups(&t->tokens[0], (char *[]){ (char *) "x", (char *) "builders", NULL }));
        ck_assert(!api_token_in_groups(&t->tokens[1], (char *[]){ (char *) "builders", NULL }));
        ck_assert(!api_token_in_groups(&t->tokens[1], NULL));
        api_tokens_free(t);
        ck_assert_int_eq(api_tokens_parse("", "tok", &t, &err), 0);
        ck_assert_uint_eq(t->n_tokens, 0);
        api_tokens_free(t);
}
END_TEST

START_TEST(test_parse_bad) {
        parse_fails("ci tasad", "tok:1: expected NAME GROUPS SECRET, found 2 field(s)");
        parse_fails("\n\nci tasad " S1 " extra", "tok:3: expected NAME GROUPS SECRET, found 4 field(s)");
        parse_fails("c/i tasad " S1, "tok:1: \"c/i\" is not a valid token name ([A-Za-z0-9_.-], 1-64)");
        parse_fails("ci tasad,,x " S1, "tok:1: token ci: \"tasad,,x\" is not a comma-separated list of group names");
        parse_fails("ci a:b " S1, "tok:1: token ci: \"a:b\" is not a comma-separated list of group names");
        parse_fails("ci tasad short", "tok:1: token ci: the secret must be 32-256 characters of [A-Za-z0-9_.~+/=-]");
        parse_fails("ci tasad " S1 "\xc3\xa9", "tok:1: token ci: the secret must be 32-256 characters of [A-Za-z0-9_.~+/=-]");
        parse_fails("ci tasad " S1 "\nci x " S2, "tok:2: token ci: same name as token ci");
        parse_fails("ci tasad " S1 "\nops x " S1, "tok:2: token ops: same secret as token ci");
}
END_TEST

START_TEST(test_bearer) {
        ck_assert_str_eq(api_tokens_bearer("Bearer abc"), "abc");
        ck_assert_str_eq(api_tokens_bearer("bearer   abc"), "abc");
        ck_assert_ptr_null(api_tokens_bearer("Basic abc"));
        ck_assert_ptr_null(api_tokens_bearer("Bearer "));
        ck_assert_ptr_null(api_tokens_bearer("Bearerabc"));
        ck_assert_ptr_null(api_tokens_bearer(NULL));
}
END_TEST

int main(void) {
        Suite *s = suite_create("tokens");
        TCase *tc = tcase_create("tokens");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_parse_good);
        tcase_add_test(tc, test_parse_bad);
        tcase_add_test(tc, test_bearer);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? 1 : 0;
}
