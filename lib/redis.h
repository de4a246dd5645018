/* One Redis connection driven by an sd-event loop: hiredis 0.14's async API attached through its
 * five event hooks, reconnection with exponential backoff, AUTH/SELECT/SCRIPT LOAD on every
 * connect, and a per-command timeout measured with an sd-event timer (hiredis 0.14 has none).
 *
 * Reconnecting: the delay grows with the outage's age (1/8 of it, 100 ms to 5 s, +-20%), so a
 * short restart is bridged within a few hundred ms. Connecting and the setup must finish
 * within 3 s. TCP connections use keepalive probes (5 s idle, 2 s apart, 3 of them) and
 * TCP_USER_TIMEOUT. A READONLY error (the server became a replica) drops the connection, and
 * the reconnect resolves the name again.
 *
 * Callbacks: every accepted command gets exactly one callback. `reply` is the server's reply
 * (valid only during the callback: copy what you need) and `error` is 0, or reply is NULL and
 * `error` says why: -ECONNRESET (connection lost), -ETIMEDOUT (no answer in time),
 * -ECANCELED (the connection is being freed). A reply of type ERROR is passed with error = -EIO.
 * Never free the RedisConn from inside one of its own callbacks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "scripts.h"

typedef struct sd_event sd_event;
typedef struct redisReply redisReply;
typedef struct RedisAddress RedisAddress;
typedef struct RedisConn RedisConn;

typedef void (*RedisCallback)(RedisConn *c, const redisReply *reply, int error, void *userdata);
/* Called on transitions only: up=true after a successful (re)connect and setup; up=false on the
 * first failure after being up or on the first failed attempt ever (error says why). */
typedef void (*RedisStateCallback)(RedisConn *c, bool up, int error, void *userdata);

int redis_conn_new(sd_event *e, const RedisAddress *addr, const char *name, RedisConn **ret);
RedisConn *redis_conn_free(RedisConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(RedisConn *, redis_conn_free);

void redis_conn_set_state_callback(RedisConn *c, RedisStateCallback cb, void *userdata);
/* Per-command timeout; 0 disables (for a connection that only issues blocking commands). */
void redis_conn_set_timeout(RedisConn *c, uint64_t usec);
/* Starts connecting (asynchronously). */
int redis_conn_start(RedisConn *c);
bool redis_conn_is_up(const RedisConn *c);
const char *redis_conn_name(const RedisConn *c);
/* What a state callback's error means, for a log line: e.g. "authentication failed (...)",
 * with the server's own error text when it gave one. Valid until the next call. */
const char *redis_conn_error_text(RedisConn *c, int error);
/* Drops the connection now: pending commands fail with -ECONNRESET; reconnects with backoff. */
void redis_conn_reset(RedisConn *c);
/* Number of commands sent and not yet answered. */
size_t redis_conn_pending(const RedisConn *c);

/* -ENOTCONN (no callback) while the connection is not up. */
int redis_command(RedisConn *c, RedisCallback cb, void *userdata, const char *format, ...);
int redis_command_argv(RedisConn *c, RedisCallback cb, void *userdata, int argc,
                       const char **argv, const size_t *argvlen);
/* EVALSHA of an embedded script: argv holds KEYS (nkeys of them) then ARGV. */
int redis_script(RedisConn *c, ScriptId id, RedisCallback cb, void *userdata, int nkeys, int argc,
                 const char **argv, const size_t *argvlen);

/* Reply helpers (NULL/0 when the element is missing or of another type). */
const redisReply *redis_reply_element(const redisReply *r, size_t i);
const char *redis_reply_string(const redisReply *r, size_t *ret_len);
int redis_reply_integer(const redisReply *r, long long *ret);
