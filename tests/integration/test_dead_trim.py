#!/usr/bin/env python3
"""What is left of expired jobs leaves the dead-letter list (issue #12): once a dead job's
record expired with the retention, tasad-results removes its id from <prefix>:{q}:dead (and a
set-aside id from gather-failed), so GET /v1/queues stops counting it; a dead id whose record
still exists stays however old it is, and so does a young one."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import eq, http_unix, wait_until  # noqa: E402

Q = "d"


def dead_count(env) -> int:
    status, body = http_unix(str(env.results_socket), "GET", "/v1/queues")
    eq(status, 200, "GET /v1/queues")
    return next(q for q in json.loads(body)["queues"] if q["name"] == Q)["dead"]


def dead_listed(env) -> set:
    status, body = http_unix(str(env.results_socket), "GET", f"/v1/queues/{Q}/dead")
    return {j["id"] for j in json.loads(body)["jobs"]}


def test_dead_ids_trimmed_after_retention(env):
    """retention 2s: the dead id leaves the dead zset once its record expired"""
    # Every daemon's configuration (the workers' too: they set the records' TTL) says 2s.
    write_conf = env.write_conf
    env.write_conf = lambda path=None, **kw: write_conf(path, **{"retention": "2s", **kw})
    env.conf = env.write_conf()
    env.write_queue(Q, [env.job("exit.sh")], concurrency=1, timeout="10s", retries=0)
    env.start_stack(Q)
    jid = env.submit(Q, "3")
    eq(env.wait_state(jid, ("failed",), timeout=20).get("outcome"), "exit:3", "outcome")
    # Seen as dead while its record lives.
    eq(dead_count(env), 1, "dead count while the record exists")
    eq(dead_listed(env), {jid}, "dead listing while the record exists")
    # An old dead id whose record still exists (no TTL) stays.
    old = str(int(time.time() * 1000) - 3600 * 1000)
    env.redis_cli("HSET", env.key(Q, "job:kept-1"), "v", "1", "state", "failed", "outcome",
                  "exit:1")
    env.redis_cli("ZADD", env.key(Q, "dead"), old, "kept-1")
    env.redis_cli("ZADD", env.key(Q, "gather-failed"), old, "gone/1")

    wait_until(lambda: env.redis_cli("EXISTS", env.key(Q, f"job:{jid}")).strip() == "0", 10,
               "the dead job's record to expire")
    wait_until(lambda: dead_count(env) == 1, 10, "the expired dead id to be trimmed", interval=0.2)
    eq(env.redis_cli("ZRANGE", env.key(Q, "dead"), "0", "-1").split(), ["kept-1"],
       "the dead zset after the trim")
    eq(dead_listed(env), {"kept-1"}, "dead listing after the trim")
    eq(env.redis_cli("ZCARD", env.key(Q, "gather-failed")).strip(), "0",
       "gather-failed after the trim")
    rc, out, err = env.tasactl("requeue", Q, jid)
    eq(rc != 0 and "not in the dead-letter list" in err, True, f"requeue after the trim: {err!r}")


if __name__ == "__main__":
    tasadtest.main(globals())
