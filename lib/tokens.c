/* API tokens (tokens.h). */
#include "tokens.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "macro.h"
#include "strutil.h"

#define SECRET_MIN 32
#define SECRET_MAX 256
#define NAME_MAX_LEN 64

static bool name_valid(const char *s) {
        size_t n = strlen(s);

        return n >= 1 && n <= NAME_MAX_LEN &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static bool secret_valid(const char *s) {
        size_t n = strlen(s);

        return n >= SECRET_MIN && n <= SECRET_MAX &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~+/=-") == n;
}

static int sha256(const char *s, uint8_t out[32]) {
        unsigned len = 0;

        return EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -EIO;
}

/* Splits "a,b,c" into a NULL-terminated list; -EINVAL on an empty element. */
static int split_groups(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;

        for (const char *p = s;; ) {
                size_t k = strcspn(p, ",");
                char **m;

                if (k == 0)
                        return -EINVAL;
                m = realloc(l, (n + 2) * sizeof(char *));
                if (!m)
                        return -ENOMEM;
                l = m;
                l[n] = strndup(p, k);
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
                if (p[k] == '\0')
                        break;
                p += k + 1;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static void token_done(ApiToken *t) {
        free(t->name);
        strv_free(t->groups);
        explicit_bzero(t->digest, sizeof(t->digest));
}

ApiTokens *api_tokens_free(ApiTokens *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_tokens; i++)
                token_done(&t->tokens[i]);
        free(t->tokens);
        free(t);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(ApiTokens *, api_tokens_free);

/* One line split in place into at most 4 whitespace-separated fields; returns their number. */
static size_t fields(char *line, char *f[4]) {
        size_t n = 0;

        for (char *p = line; *p && n < 4; ) {
                p += strspn(p, " \t\r");
                if (!*p)
                        break;
                f[n++] = p;
                p += strcspn(p, " \t\r");
                if (*p)
                        *p++ = '\0';
        }
        return n;
}

static int parse_line(ApiTokens *t, char *line, const char *path, unsigned lineno, char **ret_error) {
        char *f[4];
        size_t n = fields(line, f);
        ApiToken tok = {};
        ApiToken *m;
        int r;

        if (n == 0 || f[0][0] == '#')
                return 0;
        if (n != 3)
                return error_setf(ret_error, -EINVAL, "%s:%u: expected NAME GROUPS SECRET, found %zu "
                                  "field(s)", path, lineno, n);
        if (!name_valid(f[0]))
                return error_setf(ret_error, -EINVAL, "%s:%u: \"%s\" is not a valid token name "
                                  "([A-Za-z0-9_.-], 1-64)", path, lineno, f[0]);
        if (f[1][strcspn(f[1], ":")] != '\0')
                r = -EINVAL;
        else
                r = split_groups(f[1], &tok.groups);
        if (r == -ENOMEM)
                return error_setf(ret_error, r, "Out of memory");
        if (r < 0)
                return error_setf(ret_error, -EINVAL, "%s:%u: token %s: \"%s\" is not a "
                                  "comma-separated list of group names", path, lineno, f[0], f[1]);
        if (!secret_valid(f[2])) {
                strv_free(tok.groups);
                return error_setf(ret_error, -EINVAL, "%s:%u: token %s: the secret must be %d-%d "
                                  "characters of [A-Za-z0-9_.~+/=-]", path, lineno, f[0],
                                  SECRET_MIN, SECRET_MAX);
        }
        tok.name = strdup(f[0]);
        if (!tok.name || sha256(f[2], tok.digest) < 0) {
                token_done(&tok);
                return error_setf(ret_error, -ENOMEM, "Out of memory");
        }
        for (size_t i = 0; i < t->n_tokens; i++)
                if (streq(t->tokens[i].name, tok.name) ||
                    memcmp(t->tokens[i].digest, tok.digest, sizeof(tok.digest)) == 0) {
                        r = error_setf(ret_error, -EINVAL, "%s:%u: token %s: %s as token %s", path,
                                       lineno, tok.name,
                                       streq(t->tokens[i].name, tok.name) ? "same name"
                                                                          : "same secret",
                                       t->tokens[i].name);
                        token_done(&tok);
                        return r;
                }
        m = realloc(t->tokens, (t->n_tokens + 1) * sizeof(ApiToken));
        if (!m) {
                token_done(&tok);
                return error_setf(ret_error, -ENOMEM, "Out of memory");
        }
        t->tokens = m;
        t->tokens[t->n_tokens++] = tok;
        return 0;
}

int api_tokens_parse(const char *text, const char *path, ApiTokens **ret, char **ret_error) {
        _cleanup_(api_tokens_freep) ApiTokens *t = calloc(1, sizeof(ApiTokens));
        char *copy, *line, *save = NULL;
        unsigned lineno = 0;
        int r = 0;

        if (!t || !(copy = strdup(text)))
                return error_setf(ret_error, -ENOMEM, "Out of memory");
        /* strsep keeps empty lines, so line numbers stay right. */
        save = copy;
        while (r >= 0 && (line = strsep(&save, "\n")))
                r = parse_line(t, line, path, ++lineno, ret_error);
        explicit_bzero(copy, strlen(text));
        free(copy);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

const ApiToken *api_tokens_find(const ApiTokens *t, const char *secret) {
        const ApiToken *found = NULL;
        uint8_t d[32];

        if (!t || !secret || sha256(secret, d) < 0)
                return NULL;
        /* Every token is compared, whatever matched, so timing says nothing about which. */
        for (size_t i = 0; i < t->n_tokens; i++)
                if (CRYPTO_memcmp(t->tokens[i].digest, d, sizeof(d)) == 0)
                        found = &t->tokens[i];
        explicit_bzero(d, sizeof(d));
        return found;
}

const char *api_tokens_bearer(const char *authorization) {
        const char *p;

        if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
                return NULL;
        p = authorization + 7;
        p += strspn(p, " ");
        return *p ? p : NULL;
}

bool api_token_in_groups(const ApiToken *tok, char *const *groups) {
        for (size_t i = 0; tok && groups && groups[i]; i++)
                for (char **g = tok->groups; *g; g++)
                        if (streq(*g, groups[i]))
                                return true;
        return false;
}

int api_tokens_load(const TasadConfig *c, ApiTokens **ret, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        ApiTokens *t = NULL;
        char *text = NULL;
        int r;

        if (!c->api_tokens_credential) {
                *ret = NULL;
                return 0;
        }
        r = tasad_config_read_credential(c, "api_tokens_credential", c->api_tokens_credential,
                                         &path, &text, ret_error);
        if (r < 0)
                return r;
        r = api_tokens_parse(text, path, &t, ret_error);
        explicit_bzero(text, strlen(text)); /* the secrets */
        free(text);
        if (r < 0)
                return r;
        if (t->n_tokens == 0) {
                api_tokens_free(t);
                return error_setf(ret_error, -EINVAL,
                                  "%s: api_tokens_credential: no token in the file", path);
        }
        *ret = t;
        return 0;
}
