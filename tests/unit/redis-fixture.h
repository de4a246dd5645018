/* A real redis-server for the unit tests (STYLE.md "Tests": no mock Redis). /usr/bin/redis-server
 * listens only on a Unix socket in a fresh mkdtemp() directory, with the AOF on and RDB snapshots
 * off. One server per test process at a time; every function that can fail asserts (check).
 *
 * Cleaning up when a test fails: in check's fork mode a failed assertion _exit()s the test
 * process, skipping checked teardowns and atexit handlers. So the runner process (the parent of
 * the test processes) owns the base directory and the last word:
 *  - redis_fixture_init() (an unchecked setup, or main) creates the base directory, makes the
 *    runner a child subreaper (servers orphaned by a failed test are reparented to it and can be
 *    reaped) and registers redis_fixture_cleanup() with atexit;
 *  - each server runs with PR_SET_PDEATHSIG(SIGTERM) and its pid is recorded in <dir>/fixture.pid;
 *  - redis_fixture_cleanup() (an unchecked teardown, and atexit in the runner) terminates and
 *    reaps every server still recorded and removes the base directory. */
#pragma once

#include <sys/types.h>

typedef struct redisContext redisContext;

void redis_fixture_init(void);
void redis_fixture_cleanup(void);

/* Starts a server in a new directory under the base directory and waits until it answers PING.
 * extra_args (NULL-terminated, may be NULL) are appended to the command line and kept for
 * redis_fixture_restart(). */
void redis_fixture_start(const char *const *extra_args);
/* SIGTERM and waitpid; the directory (AOF, log) stays. */
void redis_fixture_stop(void);
/* Starts the server again in the same directory with the same arguments. */
void redis_fixture_restart(void);
/* Stops the server if it runs and removes its directory (a checked teardown). */
void redis_fixture_teardown(void);

const char *redis_fixture_socket(void);
const char *redis_fixture_dir(void);
pid_t redis_fixture_pid(void);

/* A blocking connection (10 s timeout) to the running server; free with redisFree(). */
redisContext *redis_fixture_connect(void);
