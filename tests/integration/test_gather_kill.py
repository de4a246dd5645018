#!/usr/bin/env python3
"""A gathered result is never lost: tasad-results is killed with SIGKILL over and over while it
gathers many short jobs (each killed instance is replaced at once), and in the end every job's
files on disk are exactly what the job printed, its result.json and status agree with them,
no temporary directory is left and nothing is pending in the done stream (issue #12)."""

import json
import os
import random
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import REDIS_CLI, check, eq, http_unix, wait_until  # noqa: E402

N = 2000
MIN_KILLS = 40
Q = "k"


def redis_pipe(env, commands: list[list[str]]) -> list[str]:
    """Many commands through one redis-cli (one reply line each: none may be multi-line)."""
    data = "".join(" ".join(f'"{a}"' for a in c) + "\n" for c in commands).encode()
    r = subprocess.run([REDIS_CLI, "-s", str(env.redis_sock), "--raw"], input=data,
                       capture_output=True, timeout=120)
    check(r.returncode == 0, f"redis-cli pipe failed: {r.stderr.decode()}")
    out = r.stdout.decode().split("\n")
    return out[:len(commands)]


def done_count(env) -> int:
    v = env.redis_cli("HGET", env.key(Q, "stats"), "done").strip()
    return int(v or 0)


def group_settled(env) -> bool:
    """Every entry of the done stream delivered to the gatherer and acknowledged."""
    info = env.redis_cli("XINFO", "GROUPS", env.key(Q, "done")).split("\n")
    fields = dict(zip(info[0::2], info[1::2]))
    last = env.redis_cli("XINFO", "STREAM", env.key(Q, "done")).split("\n")
    sfields = dict(zip(last[0::2], last[1::2]))
    return fields.get("pending") == "0" and fields.get("last-delivered-id") == sfields.get("last-generated-id")


def test_sigkill_while_gathering(env):
    """2000 jobs, tasad-results SIGKILLed every ~100 ms and restarted: every result complete"""
    env.write_queue(Q, [env.job("echo.sh")], concurrency=4, timeout="30s", lease="5s")
    env.start_redis()
    env.start_scheduler()
    env.start_worker(Q, "w")
    tags = [f"t{i:05d}-{random.getrandbits(32):08x}" for i in range(N)]
    ids = env.submit_each(Q, tags)
    by_id = dict(zip(ids, tags))
    # Half of the jobs finish before tasad-results first starts (a backlog of pending work, as
    # after an outage), the rest while it is being killed.
    wait_until(lambda: done_count(env) >= N // 2, 120, f"{N // 2} jobs to finish", interval=0.2)

    rnd = random.Random(12)
    kills = 0
    instance = 0
    deadline = time.monotonic() + 240
    # Kill at random moments after READY, so that every step of a gathering round (reading,
    # writing, renaming, updating the record, acknowledging) is hit some time.
    while True:
        instance += 1
        d = env.start_results(name=f"results-{instance}")
        time.sleep(rnd.uniform(0.02, 0.18))
        if done_count(env) >= N and kills >= MIN_KILLS and group_settled(env):
            break  # everything gathered: this instance stays
        d.kill()
        kills += 1
        check(time.monotonic() < deadline, f"not all gathered after {kills} kills")
        if done_count(env) >= N and kills >= MIN_KILLS + 60:
            break
    tasadtest.log(f"{kills} SIGKILLs of tasad-results while gathering {N} jobs")
    check(kills >= MIN_KILLS, f"only {kills} kills")
    if not env.daemons[-1].alive():
        env.start_results(name="results-final")
    wait_until(lambda: group_settled(env), 60, "the done stream to be gathered and acknowledged",
               interval=0.2)

    qdir = env.results_dir / Q
    leftovers = sorted(p.name for p in qdir.iterdir() if p.name.startswith("."))
    check(not leftovers, f"{len(leftovers)} temporary entries left in {qdir}: {leftovers[:10]}")
    bad = []
    for jid, tag in by_id.items():
        want = f"arg:{tag}\n".encode()
        d = qdir / jid
        try:
            got = (d / "stdout").read_bytes()
            err = (d / "stderr").read_bytes()
            rj = json.loads((d / "result.json").read_text())
        except (OSError, ValueError) as e:
            bad.append(f"{jid}: {e}")
            continue
        if got != want or err != b"echo.sh on stderr\n":
            bad.append(f"{jid}: stdout {got!r} stderr {err!r}, expected {want!r}")
        elif rj.get("stdout_bytes") != len(want) or rj.get("state") != "done":
            bad.append(f"{jid}: result.json says {rj.get('state')} {rj.get('stdout_bytes')} bytes")
    check(not bad, f"{len(bad)} of {N} results damaged after {kills} kills: {bad[:8]}")

    # Redis holds no output any more (moved to disk), and the status agrees with the files.
    outs = redis_pipe(env, [["HEXISTS", env.key(Q, f"job:{j}"), "out"] for j in ids])
    kept = [j for j, v in zip(ids, outs) if v != "0"]
    check(not kept, f"{len(kept)} records still hold their stdout: {kept[:8]}")
    for jid in rnd.sample(ids, 200):
        status, body = http_unix(str(env.results_socket), "GET", f"/v1/jobs/{jid}")
        st = json.loads(body)
        eq((status, st.get("state"), st.get("stdout_bytes")),
           (200, "done", len(by_id[jid]) + 5), f"status of {jid}")
        status, body = http_unix(str(env.results_socket), "GET", f"/v1/jobs/{jid}/stdout")
        eq((status, body), (200, f"arg:{by_id[jid]}\n".encode()), f"stdout of {jid}")


def test_each_kill_point(env):
    """the state each kill point leaves, made by hand: gathered again without loss"""
    env.write_queue(Q, [env.job("echo.sh")], concurrency=2, timeout="30s")
    env.start_redis()
    env.start_scheduler()
    env.start_worker(Q, "w")
    env.redis_cli("XGROUP", "CREATE", env.key(Q, "done"), "gatherer", "0", "MKSTREAM")
    tags = ["tmp-left", "renamed", "hdel-no-ack"]
    ids = dict(zip(tags, env.submit_each(Q, tags)))
    wait_until(lambda: done_count(env) >= 3, 30, "the three jobs to finish")
    # The entries are delivered to tasad-results' consumer (this host's name) and not acked,
    # as an instance killed in the middle of its round leaves them.
    env.redis_cli("XREADGROUP", "GROUP", "gatherer", socket.gethostname(), "COUNT", "10",
                  "STREAMS", env.key(Q, "done"), ">")
    qdir = env.results_dir / Q
    qdir.mkdir()
    # 1. killed while writing: a partial .<id>.tmp is left.
    tmp = qdir / f".{ids['tmp-left']}.tmp"
    tmp.mkdir()
    (tmp / "stdout").write_bytes(b"partial")
    # 3. killed after the rename, before HSET/HDEL: a complete directory, the record intact.
    d = qdir / ids["renamed"]
    d.mkdir()
    for f, v in (("stdout", b"arg:renamed\n"), ("stderr", b"echo.sh on stderr\n"),
                 ("result.json", b"{}")):
        (d / f).write_bytes(v)
    # 4. killed after HDEL, before XACK: a complete directory, the outputs gone from Redis.
    d = qdir / ids["hdel-no-ack"]
    d.mkdir()
    for f, v in (("stdout", b"arg:hdel-no-ack\n"), ("stderr", b"echo.sh on stderr\n"),
                 ("result.json", b'{"kept": true}')):
        (d / f).write_bytes(v)
    jk = env.key(Q, f"job:{ids['hdel-no-ack']}")
    env.redis_cli("HSET", jk, "gathered", "1", "out_len", "16", "err_len", "18")
    env.redis_cli("HDEL", jk, "out", "err")
    inode = d.stat().st_ino

    env.start_results()
    wait_until(lambda: group_settled(env), 20, "the three entries to be acknowledged")
    for tag, jid in ids.items():
        eq((qdir / jid / "stdout").read_bytes(), f"arg:{tag}\n".encode(), f"stdout of {tag}")
        eq((qdir / jid / "stderr").read_bytes(), b"echo.sh on stderr\n", f"stderr of {tag}")
    leftovers = [p.name for p in qdir.iterdir() if p.name.startswith(".")]
    eq(leftovers, [], "temporary directories left")
    eq(json.loads((qdir / ids["renamed"] / "result.json").read_text()).get("stdout_bytes"), 12,
       "result.json of the job gathered again")
    # Never replaced from a record without outputs.
    eq((d / "result.json").read_bytes(), b'{"kept": true}', "result.json of the acked-only job")
    eq(d.stat().st_ino, inode, "the directory of the acked-only job")
    st = json.loads(http_unix(str(env.results_socket), "GET", f"/v1/jobs/{ids['hdel-no-ack']}")[1])
    eq(st.get("stdout_bytes"), 16, "status of the acked-only job")


if __name__ == "__main__":
    tasadtest.main(globals())
