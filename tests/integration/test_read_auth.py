#!/usr/bin/env python3
"""Reads by id say nothing about jobs the client may not see (issue #12): `?queue=` (and
tasactl --queue) restricts the lookup also once a result is on disk or only on disk, and a
client outside a queue's read_groups gets the 404 of an unknown id, never a 403 naming the
queue, from tasad-results (status, outputs, wait, batches) and from the scheduler (cancel).
Requests as another user go through `setpriv --reuid=nobody --regid=nogroup`; queue `pub`
lets nogroup read and submit, as the positive control."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, http_unix, wait_until  # noqa: E402

# A plain HTTP/1.1 request over a Unix socket, for the system's python3 run as another user.
CLIENT = r"""
import http.client, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(f"{sys.argv[2]} {sys.argv[3]} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
r = http.client.HTTPResponse(s, method=sys.argv[2])
r.begin()
sys.stdout.write(f"{r.status}\n" + r.read().decode())
"""


def as_nobody(sock, method, path):
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "/usr/bin/python3", "-c", CLIENT, str(sock), method, path],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"request as nobody failed: {r.stderr.strip()}")
    status, _, body = r.stdout.partition("\n")
    return int(status), json.loads(body) if body.startswith("{") else body


def as_root(sock, method, path, body=None):
    status, data = http_unix(str(sock), method, path,
                             json.dumps(body).encode() if body is not None else None)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def not_found(reply, what):
    status, body = reply
    eq(status, 404, f"{what}: HTTP status (body {body!r})")
    eq(body.get("error", {}).get("code"), "not-found", f"{what}: error code")
    return body["error"]["message"]


def setup(env):
    if not shutil.which("setpriv") or not os.access("/usr/bin/python3", os.X_OK):
        raise tasadtest.SkipTest("setpriv or /usr/bin/python3 is missing")
    env.write_queue("sh", [env.job("echo.sh")], concurrency=2, timeout="20s")
    env.write_queue("idle", [env.job("echo.sh")], concurrency=1, timeout="20s")
    env.write_queue("pub", [env.job("echo.sh")], concurrency=1, timeout="20s",
                    read_groups=["nogroup"], submit_groups=["nogroup"])
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    env.start_worker("sh", "wsh")
    env.start_worker("pub", "wpub")
    for d in (env.tmp, env.run_dir):
        os.chmod(d, 0o755)


def with_queue(path, q):
    return f"{path}{'&' if '?' in path else '?'}queue={q}"


def gathered(env, queue, jid):
    wait_until(lambda: (env.results_dir / queue / jid / "result.json").is_file(), 20,
               f"{jid} to be gathered")


def test_queue_hint_restricts(env):
    """?queue= naming another or no queue is 404, in Redis, gathered and on disk only"""
    setup(env)
    rs = env.results_socket
    jid = env.submit("sh", "hello")
    env.wait_state(jid)
    gathered(env, "sh", jid)
    for phase in ("gathered", "on disk only"):
        for path in (f"/v1/jobs/{jid}", f"/v1/jobs/{jid}/stdout", f"/v1/jobs/{jid}/stderr",
                     f"/v1/jobs/{jid}/wait?timeout=0"):
            for q in ("idle", "nosuch"):
                not_found(as_root(rs, "GET", with_queue(path, q)), f"{phase}: GET {path} in {q}")
            status, body = as_root(rs, "GET", with_queue(path, "sh"))
            eq(status, 200, f"{phase}: GET {path} in sh ({body!r})")
            eq(as_root(rs, "GET", path)[0], 200, f"{phase}: GET {path} without ?queue=")
        rc, out, err = env.tasactl("--queue", "idle", "status", jid)
        check(rc != 0 and "no job" in err, f"{phase}: tasactl --queue idle status: {rc} {err!r}")
        rc, out, err = env.tasactl("--queue", "idle", "result", jid)
        check(rc != 0 and out == b"", f"{phase}: tasactl --queue idle result: {rc} {out!r}")
        eq(env.tasactl_ok("--queue", "sh", "result", jid), b"arg:hello\n", f"{phase}: --queue sh")
        # Retention expired: the record is gone, the results directory still has the job.
        env.redis_cli("DEL", env.key("sh", f"job:{jid}"))


def test_outsider_gets_404(env):
    """a client outside read_groups gets the 404 of an unknown id, never a 403"""
    setup(env)
    rs, ss = env.results_socket, env.scheduler_socket
    done = env.submit("sh", "secret")
    env.wait_state(done)
    gathered(env, "sh", done)
    queued = env.submit("idle", "waits")      # no worker: stays queued
    status, b = as_root(ss, "POST", "/v1/queues/sh/batches",
                        {"jobs": [{"args": ["b1"]}]})
    eq(status, 201, f"batch submission ({b!r})")
    batch = b["batch"]
    pub = env.submit("pub", "public")
    env.wait_state(pub)
    # One id in two queues: the outsider sees only the one it may read.
    for q in ("sh", "pub"):
        env.submit(q, "dup", opts=["--id", "dup-1"])

    unknown = not_found(as_nobody(rs, "GET", "/v1/jobs/nosuchid0000000000"), "unknown id")
    eq(unknown, "no job 'nosuchid0000000000'", "message for an unknown id")
    for phase in ("in Redis", "on disk only"):
        for path in (f"/v1/jobs/{done}", f"/v1/jobs/{done}/stdout", f"/v1/jobs/{done}/stderr",
                     f"/v1/jobs/{done}/wait?timeout=0", f"/v1/jobs/{done}?queue=sh",
                     f"/v1/jobs/{queued}"):
            msg = not_found(as_nobody(rs, "GET", path), f"{phase}: GET {path} as nobody")
            check("sh" not in msg.replace(done, "") and "idle" not in msg,
                  f"{phase}: the 404 names the queue: {msg!r}")
        if phase == "in Redis":
            env.redis_cli("DEL", env.key("sh", f"job:{done}"))
    not_found(as_nobody(rs, "GET", f"/v1/batches/{batch}"), "GET batch of sh as nobody")
    not_found(as_nobody(ss, "DELETE", f"/v1/jobs/{queued}"), "cancel a job of idle as nobody")
    eq(env.status(queued).get("state"), "queued", "the job nobody tried to cancel")

    # Positive controls: nobody reads (and could cancel) in pub; root sees everything.
    status, body = as_nobody(rs, "GET", f"/v1/jobs/{pub}")
    eq((status, body.get("state")), (200, "done"), f"nobody reads a job of pub ({body!r})")
    status, body = as_nobody(rs, "GET", "/v1/jobs/dup-1")
    eq((status, body.get("queue")), (200, "pub"), f"nobody and the id in sh and pub ({body!r})")
    eq(as_root(rs, "GET", "/v1/jobs/dup-1")[0], 409, "root and the id in sh and pub")
    eq(as_root(rs, "GET", f"/v1/batches/{batch}")[0], 200, "root reads the batch")
    eq(as_root(ss, "DELETE", f"/v1/jobs/{queued}")[0], 200, "root cancels the queued job")
    eq(as_root(rs, "GET", f"/v1/jobs/{done}/stdout"), (200, b"arg:secret\n"),
       "root reads the result from disk")


if __name__ == "__main__":
    tasadtest.main(globals())
