/* The Lua scripts of docs/protocol.md, embedded at build time, with their SHA1 for EVALSHA. */
#pragma once

typedef enum ScriptId {
        SCRIPT_SUBMIT,
        SCRIPT_START,
        SCRIPT_RENEW,
        SCRIPT_FINISH,
        SCRIPT_RELEASE,
        SCRIPT_REAP,
        SCRIPT_PROMOTE,
        SCRIPT_CANCEL,
        SCRIPT_REQUEUE,
        SCRIPT_TAKE,
        SCRIPT_SUBMIT_BATCH,
        SCRIPT_TRIM,
        SCRIPT_SET_ASIDE,
        SCRIPT_BATCH_STAGE,
        SCRIPT_BATCH_COMMIT,
        SCRIPT_BATCH_DELIVER,
        SCRIPT_BATCH_ABANDON,
        _SCRIPT_MAX,
} ScriptId;

const char *script_source(ScriptId id);
/* 40 lowercase hex digits. */
const char *script_sha(ScriptId id);
