/* API tokens: who may use the HTTP APIs over TCP, where there are no peer credentials.
 *
 * They come from a systemd credential (tasad.conf `api_tokens_credential`), one token a line:
 *
 *     # NAME   GROUPS            SECRET
 *     ci       tasad,builders    8c1f0b3e6d0c4a7e9d2b5f1a3c7e9b0d
 *
 * NAME is [A-Za-z0-9_.-]{1,64} and names the client in logs and errors; GROUPS is a
 * comma-separated list of group names (the request may do what members of these groups may:
 * each queue's submit_groups and read_groups); SECRET is 32..256 characters of
 * [A-Za-z0-9_.~+/=-]. Blank lines and lines starting with '#' are skipped. Names and secrets
 * are unique. A request carries its secret as `Authorization: Bearer SECRET`. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ApiToken {
        char *name;
        char **groups;          /* NULL-terminated, non-empty */
        uint8_t digest[32];     /* SHA-256 of the secret; the secret itself is not kept */
} ApiToken;

typedef struct ApiTokens {
        ApiToken *tokens;
        size_t n_tokens;
} ApiTokens;

/* Parses the text of a token file. Errors: -EINVAL with "<path>:<line>: <what is wrong>"
 * in *ret_error (the secret itself never appears in a message). An empty file gives no tokens. */
int api_tokens_parse(const char *text, const char *path, ApiTokens **ret, char **ret_error);
ApiTokens *api_tokens_free(ApiTokens *t);

/* The tokens of the credential named by c->api_tokens_credential (NULL in *ret when none is
 * configured). A file without any token is an error, as every other problem of it. */
typedef struct TasadConfig TasadConfig;
int api_tokens_load(const TasadConfig *c, ApiTokens **ret, char **ret_error);

/* The token whose secret is `secret` (compared in constant time over all tokens), or NULL. */
const ApiToken *api_tokens_find(const ApiTokens *t, const char *secret);

/* The secret of an "Authorization" header value "Bearer SECRET" (case-insensitive scheme,
 * one or more spaces), or NULL. */
const char *api_tokens_bearer(const char *authorization);

/* Whether the token may act on something guarded by `groups` (NULL-terminated group names):
 * one of its groups is named there. */
bool api_token_in_groups(const ApiToken *tok, char *const *groups);
