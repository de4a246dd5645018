#!/usr/bin/env python3
"""Scenario 8: malformed and oversize submissions are refused with a clear error and store
nothing. Through tasactl (non-zero exit, one line on stderr) and straight over the scheduler's
Unix socket (status code and {"error": {"code", "message"}} per docs/api.md). After every refusal
the Redis state of the queue is compared with the state before; valid submissions at the end
show the comparison does see a stored job."""

import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, http_unix, one_line_error  # noqa: E402

Q = "strict"


def stored(env):
    """What a submission would change: job and batch keys, the ready list, the number of keys
    of the queue (all under its hash tag) and the number of keys with the prefix."""
    keys = env.redis_keys(f"{env.prefix}:*")
    jobs = {k for k in keys if ":job:" in k or ":batch:" in k}
    ready = env.redis_cli("LLEN", env.key(Q, "ready")).strip()
    queue_keys = len([k for k in keys if k.startswith(f"{env.prefix}:{{{Q}}}:")])
    return {"job/batch keys": jobs, "ready": ready, "queue keys": queue_keys,
            "prefix keys": len(keys)}


def assert_unchanged(env, before, what):
    after = stored(env)
    for k in before:
        if before[k] != after[k]:
            diff = after[k] - before[k] if isinstance(after[k], set) else after[k]
            raise AssertionError(f"{what}: refused but something was stored ({k}: "
                                 f"{before[k] if not isinstance(before[k], set) else len(before[k])} -> {diff})")


def setup(env):
    env.write_queue(Q, [env.job("echo.sh")], concurrency=1, timeout="20s", lease="3s",
                    arg_pattern="^[a-z0-9]+$", max_args=3, max_arg_len=16, max_payload="1k")
    env.start_redis()
    env.start_scheduler()
    env.start_results()


def test_tasactl_refusals(env):
    """tasactl: unknown queue, bad/too many/too long args, big payload, bad batch line"""
    setup(env)
    big = env.tmp / "big.bin"
    big.write_bytes(b"x" * 2048)
    ok_payload = env.tmp / "ok.bin"
    ok_payload.write_bytes(b"y" * 1024)
    cases = [
        ("unknown queue", ["submit", "nosuch", "a"], None, ["nosuch"]),
        ("argument not matching the pattern", ["submit", Q, "ok", "BAD!"], None, ["pattern", "args[1]"]),
        ("too many arguments", ["submit", Q, "a", "b", "c", "d"], None, ["arg"]),
        ("argument too long", ["submit", Q, "a" * 17], None, ["arg"]),
        ("payload above max_payload", ["submit", "--payload-file", str(big), Q], None, ["payload", "large", "max"]),
        ("stdin payload above max_payload", ["submit", "--stdin", Q], b"z" * 1025, ["payload", "large", "max"]),
        ("timeout above the queue's", ["submit", "--timeout", "1h", Q, "a"], None, ["timeout"]),
        ("invalid id", ["submit", "--id", "-bad id", Q, "a"], None, ["id"]),
        ("batch with one bad line", ["submit", "--each", Q], b"ok1\nBAD!\nok2\n", ["pattern"]),
        ("batch with too many args on a line", ["submit", "--each", Q], b"a\nb c d e\n", ["arg"]),
    ]
    # A refused batch names the bad job: its input line or its index.
    names_job = {"batch with one bad line": ("line 2", "jobs[1]"),
                 "batch with too many args on a line": ("line 2", "jobs[1]")}
    failures = []
    for what, args, stdin, words in cases:
        before = stored(env)
        rc, out, err = env.tasactl(*args, input=stdin)
        try:
            msg = one_line_error(rc, err, what)
            check(any(w.lower() in msg.lower() for w in words),
                  f"{what}: error should say what is wrong (one of {words}): {msg!r}")
            if what in names_job:
                check(any(n in msg for n in names_job[what]),
                      f"{what}: error should name the bad job (one of {names_job[what]}): {msg!r}")
            eq(out.strip(), b"", f"{what}: stdout of a refused submission")
            assert_unchanged(env, before, what)
        except AssertionError as e:
            failures.append(str(e))
    check(not failures, "\n    ".join(failures))

    # Positive control: the same check sees a valid submission (at the payload limit).
    before = stored(env)
    jid = env.submit(Q, "ok", opts=["--payload-file", str(ok_payload)])
    after = stored(env)
    check(any(jid in k for k in after["job/batch keys"] - before["job/batch keys"]),
          f"valid job {jid} left no job key: {after['job/batch keys'] - before['job/batch keys']}")
    eq(int(after["ready"]), int(before["ready"]) + 1, "ready list after a valid submission")
    ids = env.submit_each(Q, ["a1", "b2 c3"])
    eq(int(stored(env)["ready"]), int(before["ready"]) + 3, "ready list after a valid batch of 2")
    check(all(env.status(i).get("state") == "queued" for i in ids), "batch jobs queued")
    stray = env.redis_keys("*") - env.redis_keys(f"{env.prefix}:*")
    check(not stray, f"keys outside the configured prefix {env.prefix!r}: {sorted(stray)[:10]}")


def post(env, path, body, raw=False):
    data = body if raw else json.dumps(body).encode()
    status, resp = http_unix(str(env.scheduler_socket), "POST", path, data)
    try:
        j = json.loads(resp) if resp else None
    except ValueError:
        j = None
    return status, j, resp


def test_http_refusals(env):
    """scheduler API: bad JSON, unknown key, wrong types, limits, bad batch -> 4xx, nothing stored"""
    setup(env)
    jobs = f"/v1/queues/{Q}/jobs"
    batches = f"/v1/queues/{Q}/batches"
    b64 = base64.b64encode(b"\x00" * 1025).decode()
    cases = [
        ("body not JSON", jobs, b'{"args": ["a"', True, 400, {"bad-request"}, None),
        ("body not an object", jobs, b"[]", True, 400, {"bad-request"}, None),
        ("empty body", jobs, b"", True, 400, {"bad-request"}, None),
        ("unknown key", jobs, {"args": ["a"], "bogus": 1}, False, 400, {"bad-request"}, "bogus"),
        ("args not strings", jobs, {"args": [1]}, False, 400, {"bad-request", "invalid-argument"}, None),
        ("arg not matching the pattern", jobs, {"args": ["ok", "BAD!"]}, False, 400,
         {"invalid-argument"}, "args[1]"),
        ("too many args", jobs, {"args": ["a", "b", "c", "d"]}, False, 413, {"too-large"}, None),
        ("arg too long", jobs, {"args": ["a" * 17]}, False, 413, {"too-large"}, "args[0]"),
        ("payload above max_payload", jobs, {"payload": "x" * 1025}, False, 413, {"too-large"}, None),
        ("payload_b64 above max_payload", jobs, {"payload_b64": b64}, False, 413, {"too-large"}, None),
        ("payload and payload_b64", jobs, {"payload": "a", "payload_b64": "YQ=="}, False, 400,
         {"bad-request", "invalid-argument"}, None),
        ("invalid id", jobs, {"id": ".hidden"}, False, 400, {"bad-request", "invalid-argument"}, None),
        ("timeout above the queue's", jobs, {"timeout": "1h"}, False, 400,
         {"bad-request", "invalid-argument"}, None),
        ("unknown queue", "/v1/queues/nosuch/jobs", {"args": ["a"]}, False, 404, {"not-found"}, None),
        ("batch with one bad job", batches,
         {"jobs": [{"args": ["ok"]}, {"args": ["BAD!"]}, {"args": ["ok2"]}]}, False, 400,
         {"invalid-argument"}, "jobs[1]"),
        ("batch with one oversize payload", batches,
         {"jobs": [{"args": ["ok"]}, {"args": ["ok"]}, {"payload": "x" * 1025}]}, False, 413,
         {"too-large"}, "jobs[2]"),
        ("batch with an unknown key in one job", batches,
         {"jobs": [{"args": ["ok"]}, {"args": ["ok"], "nope": True}]}, False, 400, {"bad-request"}, "jobs[1]"),
        ("empty batch", batches, {"jobs": []}, False, 400, {"bad-request", "invalid-argument"}, None),
        ("batch not JSON", batches, b'{"jobs": [', True, 400, {"bad-request"}, None),
    ]
    failures = []
    for what, path, body, raw, want_status, codes, in_msg in cases:
        before = stored(env)
        status, j, resp = post(env, path, body, raw)
        try:
            eq(status, want_status, f"{what}: HTTP status (body {resp[:200]!r})")
            check(isinstance(j, dict) and isinstance(j.get("error"), dict),
                  f"{what}: body is not {{\"error\": {{…}}}}: {resp[:200]!r}")
            code, msg = j["error"].get("code"), j["error"].get("message")
            check(code in codes, f"{what}: error code {code!r}, expected one of {sorted(codes)}")
            check(isinstance(msg, str) and msg.strip(), f"{what}: empty error message")
            if in_msg:
                check(in_msg in msg, f"{what}: message should name {in_msg!r}: {msg!r}")
            assert_unchanged(env, before, what)
        except AssertionError as e:
            failures.append(str(e))

    # Routing errors.
    status, _ = http_unix(str(env.scheduler_socket), "GET", "/v1/no/such/path")
    if status != 404:
        failures.append(f"unknown path: HTTP {status}, expected 404")
    status, _ = http_unix(str(env.scheduler_socket), "PUT", jobs, b"{}")
    if status != 405:
        failures.append(f"known path with another method: HTTP {status}, expected 405")
    check(not failures, "\n    ".join(failures))

    # Positive control over the same socket: a valid batch is stored whole.
    before = stored(env)
    status, j, resp = post(env, batches, {"jobs": [{"args": ["ok"]}, {"args": ["ok2"], "payload": "p"}]})
    eq(status, 201, f"valid batch ({resp[:200]!r})")
    eq(j.get("count"), 2, "count of the valid batch")
    eq(int(stored(env)["ready"]), int(before["ready"]) + 2, "ready list after a valid batch")
    status, j, resp = post(env, jobs, {"args": ["ok"], "id": "dup-1"})
    eq(status, 201, f"valid job with id ({resp[:200]!r})")
    before = stored(env)
    status, j, resp = post(env, jobs, {"args": ["ok"], "id": "dup-1"})
    eq((status, j.get("existing")), (200, True), f"resubmission of id dup-1 ({resp[:200]!r})")
    assert_unchanged(env, before, "resubmission of an existing id")


if __name__ == "__main__":
    tasadtest.main(globals())
