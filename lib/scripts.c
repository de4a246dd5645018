#include "scripts.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "lua-scripts.h"
#include "macro.h"

static const char *const sources[_SCRIPT_MAX] = {
        [SCRIPT_SUBMIT] = lua_submit,   [SCRIPT_START] = lua_start,
        [SCRIPT_RENEW] = lua_renew,     [SCRIPT_FINISH] = lua_finish,
        [SCRIPT_RELEASE] = lua_release, [SCRIPT_REAP] = lua_reap,
        [SCRIPT_PROMOTE] = lua_promote, [SCRIPT_CANCEL] = lua_cancel,
        [SCRIPT_REQUEUE] = lua_requeue, [SCRIPT_TAKE] = lua_take,
        [SCRIPT_SUBMIT_BATCH] = lua_submit_batch,
};

static char shas[_SCRIPT_MAX][41];

const char *script_source(ScriptId id) {
        return sources[id];
}

const char *script_sha(ScriptId id) {
        if (!shas[id][0]) {
                unsigned char md[SHA_DIGEST_LENGTH];

                /* SHA1 is what Redis names scripts by; it is not used for security here. */
                SHA1((const unsigned char *) sources[id], strlen(sources[id]), md);
                for (size_t i = 0; i < SHA_DIGEST_LENGTH; i++)
                        snprintf(shas[id] + 2 * i, 3, "%02x", md[i]);
        }
        return shas[id];
}
