#include "scripts.h"

#include "lua-scripts.h"
#include "macro.h"

static const char *const sources[_SCRIPT_MAX] = {
        [SCRIPT_SUBMIT] = lua_submit,   [SCRIPT_START] = lua_start,
        [SCRIPT_RENEW] = lua_renew,     [SCRIPT_FINISH] = lua_finish,
        [SCRIPT_RELEASE] = lua_release, [SCRIPT_REAP] = lua_reap,
        [SCRIPT_PROMOTE] = lua_promote, [SCRIPT_CANCEL] = lua_cancel,
        [SCRIPT_REQUEUE] = lua_requeue, [SCRIPT_TAKE] = lua_take,
        [SCRIPT_SUBMIT_BATCH] = lua_submit_batch, [SCRIPT_TRIM] = lua_trim,
        [SCRIPT_SET_ASIDE] = lua_set_aside,
        [SCRIPT_BATCH_STAGE] = lua_batch_stage,     [SCRIPT_BATCH_COMMIT] = lua_batch_commit,
        [SCRIPT_BATCH_DELIVER] = lua_batch_deliver, [SCRIPT_BATCH_ABANDON] = lua_batch_abandon,
};

static const char *const shas[_SCRIPT_MAX] = {
        [SCRIPT_SUBMIT] = lua_submit_sha,   [SCRIPT_START] = lua_start_sha,
        [SCRIPT_RENEW] = lua_renew_sha,     [SCRIPT_FINISH] = lua_finish_sha,
        [SCRIPT_RELEASE] = lua_release_sha, [SCRIPT_REAP] = lua_reap_sha,
        [SCRIPT_PROMOTE] = lua_promote_sha, [SCRIPT_CANCEL] = lua_cancel_sha,
        [SCRIPT_REQUEUE] = lua_requeue_sha, [SCRIPT_TAKE] = lua_take_sha,
        [SCRIPT_SUBMIT_BATCH] = lua_submit_batch_sha, [SCRIPT_TRIM] = lua_trim_sha,
        [SCRIPT_SET_ASIDE] = lua_set_aside_sha,
        [SCRIPT_BATCH_STAGE] = lua_batch_stage_sha,
        [SCRIPT_BATCH_COMMIT] = lua_batch_commit_sha,
        [SCRIPT_BATCH_DELIVER] = lua_batch_deliver_sha,
        [SCRIPT_BATCH_ABANDON] = lua_batch_abandon_sha,
};

const char *script_source(ScriptId id) {
        return sources[id];
}

/* Computed at build time by embed-lua.py. */
const char *script_sha(ScriptId id) {
        return shas[id];
}
