#!/usr/bin/env python3
"""One record cannot stop the gatherer (issue #12): records written straight into Redis, as a
producer in another language can — an id holding '/', an id with '..', a job key that is not a
hash, a result whose place on disk is taken by a file — are followed by normal jobs of two
queues. The normal jobs are gathered at once, also after a restart of tasad-results while the
bad ones are still being retried; the bad ones are set aside (reason in the record's
gather_error, id in <prefix>:{q}:gather-failed, one LOG_ERR line each, acknowledged), nothing is
written outside the results directory, and a set-aside record keeps its output in Redis."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, http_unix, wait_until  # noqa: E402

BAD_IDS = ["bad/id", "../escape"]          # invalid: set aside at once
WRONGTYPE = "strkey"                      # not a hash: reading fails, retried, set aside
BLOCKED = "blocked1"                      # valid, but a file sits where its directory goes
SET_ASIDE = "set aside, its result is not gathered"


def inject(env, queue, jid, record=True):
    now = str(int(time.time() * 1000))
    if record:
        env.redis_cli("HSET", env.key(queue, f"job:{jid}"), "v", "1", "state", "done",
                      "created", now, "args", "", "attempt", "1", "outcome", "exit:0",
                      "exit_code", "0", "finished", now, "out", f"out of {jid}\n", "err", "")
    env.redis_cli("XADD", env.key(queue, "done"), "*", "id", jid, "state", "done")


def gathered(env, queue, jid, want: bytes) -> bool:
    d = env.results_dir / queue / jid
    return (d / "result.json").is_file() and (d / "stdout").read_bytes() == want


def pending(env, queue) -> int:
    return int(env.redis_cli("XPENDING", env.key(queue, "done"), "gatherer").split("\n")[0] or 0)


def all_logs(env) -> str:
    return "".join(d.log_text() for d in env.daemons if d.kind == "results")


def submit_and_check_gathered(env, what, timeout=15):
    ja = env.submit("a", f"{what}-a")
    jb = env.submit("b", f"{what}-b")
    for q, j in (("a", ja), ("b", jb)):
        wait_until(lambda q=q, j=j: gathered(env, q, j, f"arg:{what}-{q}\n".encode()), timeout,
                   f"the normal job {j} of queue {q} ({what}) to be gathered")
    return ja, jb


def test_poisoned_records(env):
    """bad ids, a non-hash key, an unwritable result: the others are gathered, these set aside"""
    for q in ("a", "b"):
        env.write_queue(q, [env.job("echo.sh")], concurrency=2, timeout="20s")
    env.start_redis()
    env.start_scheduler()
    for q in ("a", "b"):
        env.start_worker(q, f"w{q}")
    # The groups exist as tasad-results makes them; the bad entries come first in the stream.
    for q in ("a", "b"):
        env.redis_cli("XGROUP", "CREATE", env.key(q, "done"), "gatherer", "0", "MKSTREAM")
    for jid in BAD_IDS:
        inject(env, "a", jid)
    env.redis_cli("SET", env.key("a", f"job:{WRONGTYPE}"), "not a hash")
    inject(env, "a", WRONGTYPE, record=False)
    (env.results_dir / "a").mkdir()
    (env.results_dir / "a" / BLOCKED).write_text("in the way\n")
    inject(env, "a", BLOCKED)
    r1 = env.start_results("results-1")
    t0 = time.monotonic()

    # Normal jobs of both queues are gathered while the bad ones fail.
    submit_and_check_gathered(env, "first", timeout=10)
    # The invalid ids are set aside at once and never touch the file system.
    for jid in BAD_IDS:
        wait_until(lambda jid=jid: f"Job {jid} of queue 'a': {SET_ASIDE}" in r1.log_text(), 10,
                   f"{jid!r} to be set aside")
    check(not (env.tmp / "escape").exists() and not (env.results_dir / "escape").exists(),
          "an id with '..' wrote outside the queue's directory")
    check("retrying in 1s" in r1.log_text(), "the first failed attempt is logged with its retry")
    check(time.monotonic() - t0 < 12, "the records still being retried held up others")

    # A restart while the two others are still retried: gathering goes on at once.
    r1.kill()
    r2 = env.start_results("results-2")
    submit_and_check_gathered(env, "after-restart", timeout=10)
    for jid in (WRONGTYPE, BLOCKED):
        wait_until(lambda jid=jid: f"Job {jid} of queue 'a': {SET_ASIDE}" in r2.log_text(), 40,
                   f"{jid!r} to be set aside after its retries")
    wait_until(lambda: pending(env, "a") == 0 and pending(env, "b") == 0, 10,
               "every entry to be acknowledged")
    logs = all_logs(env)
    for jid in BAD_IDS + [WRONGTYPE, BLOCKED]:
        eq(logs.count(f"Job {jid} of queue 'a': {SET_ASIDE}"), 1,
           f"set-aside lines for {jid!r} (logged once)")
        check(f"error: Job {jid} of queue 'a': {SET_ASIDE}" in logs,
              f"the set-aside line of {jid!r} is at LOG_ERR")

    # Where an operator finds them.
    aside = env.redis_cli("ZRANGE", env.key("a", "gather-failed"), "0", "-1").split()
    eq(sorted(aside), sorted(BAD_IDS + [WRONGTYPE, BLOCKED]), "ids in gather-failed")
    eq(env.redis_cli("ZCARD", env.key("b", "gather-failed")).strip(), "0", "gather-failed of b")
    for jid in BAD_IDS + [BLOCKED]:
        reason = env.redis_cli("HGET", env.key("a", f"job:{jid}"), "gather_error").strip()
        check(reason, f"no gather_error on the record of {jid!r}")
    check("invalid job id" in env.redis_cli("HGET", env.key("a", "job:bad/id"), "gather_error"),
          "the reason of bad/id")
    check("WRONGTYPE" in logs, "the reason of the non-hash key is logged")
    eq(env.redis_cli("GET", env.key("a", f"job:{WRONGTYPE}")).strip(), "not a hash",
       "the non-hash key is left alone")
    # The set-aside result is not lost: its output stays in Redis and is served from there.
    eq(env.redis_cli("HGET", env.key("a", f"job:{BLOCKED}"), "out"), f"out of {BLOCKED}\n\n",
       "the output of the set-aside record")
    status, body = http_unix(str(env.results_socket), "GET", f"/v1/jobs/{BLOCKED}")
    st = json.loads(body)
    check(status == 200 and "Not a directory" in st.get("gather_error", ""),
          f"status of {BLOCKED}: {body!r}")
    status, body = http_unix(str(env.results_socket), "GET", f"/v1/jobs/{BLOCKED}/stdout")
    eq((status, body), (200, f"out of {BLOCKED}\n".encode()), "its stdout, from Redis")
    status, body = http_unix(str(env.results_socket), "GET", "/v1/queues")
    counts = {q["name"]: q.get("gather_failed") for q in json.loads(body)["queues"]}
    eq(counts, {"a": 4, "b": 0}, "gather_failed in GET /v1/queues")

    # Set aside for good: a new instance does not try them again.
    r2.stop()
    r3 = env.start_results("results-3")
    submit_and_check_gathered(env, "third")
    time.sleep(1.5)
    check("failed to gather" not in r3.log_text() and SET_ASIDE not in r3.log_text(),
          f"a set-aside record was tried again: {r3.log_text()[-600:]}")

    # The operator removes the cause and adds an entry for the job: it is gathered after all.
    (env.results_dir / "a" / BLOCKED).unlink()
    inject(env, "a", BLOCKED, record=False)
    wait_until(lambda: gathered(env, "a", BLOCKED, f"out of {BLOCKED}\n".encode()), 10,
               f"{BLOCKED} to be gathered once its place is free")
    wait_until(lambda: env.redis_cli("HEXISTS", env.key("a", f"job:{BLOCKED}"),
                                     "gather_error").strip() == "0", 5, "gather_error to go")
    check(BLOCKED not in env.redis_cli("ZRANGE", env.key("a", "gather-failed"), "0", "-1").split(),
          f"{BLOCKED} still in gather-failed after it was gathered")


def test_worker_refuses_invalid_id(env):
    """a queued record whose id holds '/' (written straight into Redis) is finished as invalid
    by the worker, which makes no directory for it; the next job runs"""
    env.write_queue("w", [env.job("echo.sh")], timeout="30s")
    env.start_stack("w")
    jid = "../evil/x"
    env.redis_cli("HSET", env.key("w", f"job:{jid}"), "v", "1", "state", "queued",
                  "created", "1", "args", "")
    env.redis_cli("LPUSH", env.key("w", "ready"), jid)
    tasadtest.wait_until(lambda: env.redis_cli("HGET", env.key("w", f"job:{jid}"),
                                               "state").strip() == "failed", 20,
                         "the worker to finish the record")
    eq(env.redis_cli("HGET", env.key("w", f"job:{jid}"), "outcome").strip(), "invalid",
       "outcome of the record with an invalid id")
    check(not (env.tmp / "evil").exists() and not (env.tmp / "work" / "evil").exists(),
          "a directory was made for the invalid id")
    st = env.wait_state(env.submit("w", "after"), timeout=20)
    eq(st.get("state"), "done", "the next job")


if __name__ == "__main__":
    tasadtest.main(globals())
