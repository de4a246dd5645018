#!/usr/bin/env python3
"""Scenario: batches stored in steps (docs/protocol.md, "How a batch is stored"; docs/api.md).
A batch of more than 1000 jobs, and every batch a client names with
PUT /v1/queues/{queue}/batches/{batch}, is staged 1000 jobs at a time and made visible whole by
one commit: a scheduler killed in the middle leaves nothing a reader or worker can see, the same
PUT again goes on with what was staged and commits every job exactly once, a PUT of a batch
committed before answers 200 with created 0, a batch whose staging stopped is discarded after
batch_abandon_after, and Redis answers other clients within a step's time while a large batch
is stored."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import api, check, eq, holds_for, wait_until  # noqa: E402

# Appends its one argument to $TASAD_IT_MARK: which jobs ran, and how often.
MARK_SH = 'printf "%s\\n" "$1" >>"$TASAD_IT_MARK"'


class Resp:
    """A minimal RESP2 client on the test's Redis socket: fast enough to watch a batch being
    staged step by step (redis-cli costs a process per command)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(str(path))
        self.f = self.s.makefile("rb")

    def call(self, *args):
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += f"${len(a)}\r\n".encode() + a + b"\r\n"
        self.s.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise AssertionError(f"Redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise AssertionError(f"unexpected RESP reply {line!r}")

    def close(self):
        self.f.close()
        self.s.close()


def put_batch(env, queue, batch, jobs, timeout=300.0):
    return api(env, "scheduler", "PUT", f"/v1/queues/{queue}/batches/{batch}", {"jobs": jobs},
               timeout=timeout)


def check_stored(status, body, want_status, queue, batch, n, created):
    eq(status, want_status, f"status of storing batch {batch} (body {str(body)[:300]})")
    eq((body.get("batch"), body.get("queue"), body.get("count"), body.get("created")),
       (batch, queue, n, created), "batch/queue/count/created of the reply")
    eq(body.get("ids"), [f"{batch}.{i}" for i in range(n)],
       "ids of the reply: <batch>.<index> for jobs without an id, in request order")


def write_mark_queue(env, name, **keys):
    base = dict(concurrency=2, timeout="30s", kill_grace="1s", lease="5s", retries=0, max_args=1)
    base.update(keys)
    env.write_queue(name, ["/bin/sh", "-c", MARK_SH, "job"],
                    env=[f"TASAD_IT_MARK={env.mark_path}"], **base)


def ran(env):
    try:
        return env.mark_path.read_text().split()
    except FileNotFoundError:
        return []


def test_put_batch_runs_once(env):
    """PUT of 5000 jobs: 201, every job runs exactly once; the same PUT again, while it runs and
    after, answers 200 created 0 and stores nothing; a small PUT is stored in steps too"""
    write_mark_queue(env, "m")
    env.start_stack("m")
    n = 5000
    jobs = [{"args": [str(i)]} for i in range(n)]
    status, body = put_batch(env, "m", "sweep-1", jobs)
    check_stored(status, body, 201, "m", "sweep-1", n, n)
    status, body = put_batch(env, "m", "sweep-1", jobs)
    check_stored(status, body, 200, "m", "sweep-1", n, 0)

    status, st = api(env, "results", "GET", "/v1/batches/sweep-1/wait?timeout=240", timeout=300)
    eq(status, 200, f"status of the wait on batch sweep-1 ({st})")
    eq((st.get("total"), st.get("done"), st.get("failed"), st.get("finished")),
       (n, n, 0, True), "counts of batch sweep-1 once finished")
    marks = ran(env)
    eq(len(marks), n, "jobs run for a batch of 5000 sent twice")
    eq(sorted(marks, key=int), [str(i) for i in range(n)], "every job of the batch ran once")

    status, body = put_batch(env, "m", "sweep-1", jobs)
    check_stored(status, body, 200, "m", "sweep-1", n, 0)
    jobs_in_redis = env.redis_keys(env.key("m", "job:*"))
    eq(len(jobs_in_redis), n, "job records in Redis after three PUTs of one batch")
    holds_for(lambda: len(ran(env)) == n, 2.0, "no job ran again after the third PUT")
    eq(env.status("sweep-1.4999").get("state"), "done", "state of the batch's last job")

    # A named batch of 3 jobs goes the same way: 201 once, 200 created 0 after.
    small = [{"args": ["s0"]}, {"args": ["s1"], "id": "own-id"}, {"args": ["s2"]}]
    status, body = put_batch(env, "m", "small", small)
    eq((status, body.get("created"), body.get("ids")), (201, 3, ["small.0", "own-id", "small.2"]),
       f"status/created/ids of a PUT of 3 jobs, one with its own id ({body})")
    status, st = api(env, "results", "GET", "/v1/batches/small/wait?timeout=60")
    eq((status, st.get("total"), st.get("done")), (200, 3, 3), f"batch small finished ({st})")
    status, body = put_batch(env, "m", "small", small)
    eq((status, body.get("created")), (200, 0), f"status/created of the PUT repeated ({body})")
    holds_for(lambda: len(ran(env)) == n + 3, 1.0, "the small batch ran once")


def test_tasactl_batch_id(env):
    """tasactl submit --each --batch-id: one named batch; the same command again prints the same
    ids and stores nothing; --batch-id without --each is a usage error"""
    env.write_queue("t", ["/bin/echo"], concurrency=1, max_args=1, timeout="30s")
    env.start_stack()
    r = Resp(env.redis_sock)
    env.cleanups.append(r.close)
    lines = "".join(f"{i}\n" for i in range(3000)).encode()
    first = env.tasactl_ok("submit", "t", "--each", "--batch-id", "nightly", input=lines)
    eq(first.decode().split(), [f"nightly.{i}" for i in range(3000)], "ids printed")
    again = env.tasactl_ok("submit", "t", "--each", "--batch-id", "nightly", input=lines)
    eq(again, first, "ids printed by the same command run again")
    ready = env.key("t", "ready")
    wait_until(lambda: r.call("LLEN", ready) == 3000, 60, "the batch delivered")
    holds_for(lambda: r.call("LLEN", ready) == 3000, 1.0, "nothing delivered twice")
    eq(len(env.redis_keys(env.key("t", "job:*"))), 3000, "job records after two runs")
    eq(env.status("nightly.2999").get("args"), ["2999"], "arguments of the last job")
    rc, _, err = env.tasactl("submit", "t", "--batch-id", "x", "1")
    eq(rc, 2, f"exit status of --batch-id without --each ({err})")
    check("--batch-id" in err, f"the usage error names --batch-id: {err}")
    rc, out, err = env.tasactl("submit", "t", "--each", "--batch-id", "-bad", input=b"1\n")
    eq((rc, out), (1, b""), f"exit status/output of a bad batch id ({err})")
    check("batch id" in err, f"the refusal names the batch id: {err}")


def test_put_refusals(env):
    """bad batch ids are 400 naming the rule, unknown queues 404, bad jobs 400 naming the job:
    and nothing is stored"""
    write_mark_queue(env, "m")
    env.start_stack()
    for bad in ("-lead", ".lead", "a" * 49, "sp%20ace", "semi;colon"):
        status, body = put_batch(env, "m", bad, [{"args": ["1"]}])
        eq(status, 400, f"status of PUT with batch id {bad!r} ({body})")
        eq(body.get("error", {}).get("code"), "invalid-argument", f"error code for {bad!r}")
        check("batch id" in body["error"].get("message", ""),
              f"the refusal of {bad!r} names the batch id: {body}")
    status, body = put_batch(env, "nosuch", "b1", [{"args": ["1"]}])
    eq(status, 404, f"status of PUT to an unknown queue ({body})")
    jobs = [{"args": ["1"]}] * 1500 + [{"args": [7]}]
    status, body = put_batch(env, "m", "b2", jobs)
    eq(status, 400, f"status of PUT with a job whose argument is a number ({body})")
    check("jobs[1500]" in body.get("error", {}).get("message", ""),
          f"the refusal names the bad job: {body}")
    stored = {k for k in env.redis_keys(env.key("m", "*"))
              if k.split("}:", 1)[1].split(":")[0] in ("job", "batch", "staged", "staging", "ready")}
    eq(stored, set(), "jobs, batches and lists of queue m after refused batches")


def start_put(env, queue, batch, jobs):
    """PUT in a thread: returns (thread, result list [status, body] or [exception])."""
    out = []

    def run():
        try:
            out.extend(put_batch(env, queue, batch, jobs))
        except Exception as e:  # noqa: BLE001 - a killed scheduler may reset the connection
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def kill_mid_staging(env, sched, r, queue, batch, jobs, at_least):
    """Sends the batch and SIGKILLs the scheduler once at least `at_least` jobs are staged and
    before the commit; returns how many were staged then."""
    t, out = start_put(env, queue, batch, jobs)
    lk = env.key(queue, f"staged:{batch}")
    bk = env.key(queue, f"batch:{batch}")
    deadline = time.monotonic() + 120
    while True:
        staged = r.call("LLEN", lk)
        if staged >= at_least:
            break
        check(r.call("HGET", bk, "state") in (None, "staging"),
              f"batch {batch} was committed before {at_least} jobs were staged: "
              f"the test cannot kill the scheduler in the middle")
        check(time.monotonic() < deadline, f"only {staged} jobs of {batch} staged after 120 s")
        time.sleep(0.002)
    sched.kill()
    t.join(30)
    staged = r.call("LLEN", lk)
    tasadtest.log(f"scheduler killed with {staged} of {len(jobs)} jobs of {batch} staged; "
                  f"the client saw {out[:1]!r}")
    eq(r.call("HGET", bk, "state"), "staging", f"state of batch {batch} after the kill")
    check(0 < staged < len(jobs), f"{staged} of {len(jobs)} jobs staged when the scheduler died")
    return staged


def start_without_worker(env):
    """Queue t (/bin/true), Redis, scheduler and results, no worker: (scheduler, Resp)."""
    env.write_queue("t", ["/bin/true"], concurrency=1, max_args=0, timeout="30s")
    env.start_redis()
    sched = env.start_scheduler()
    env.start_results()
    r = Resp(env.redis_sock)
    env.cleanups.append(r.close)
    return sched, r


def check_invisible(env, r, queue, batch, n):
    for url in (f"/v1/batches/{batch}", f"/v1/jobs/{batch}.0", f"/v1/jobs/{batch}.{n - 1}"):
        status, body = api(env, "results", "GET", url)
        eq(status, 404, f"GET {url} of a batch never committed ({body})")
    rc, _, err = env.tasactl("status", f"{batch}.0")
    check(rc != 0, f"tasactl status of a staged job succeeded ({err})")
    eq(r.call("LLEN", env.key(queue, "ready")), 0, "ready list while the batch is uncommitted")


def test_killed_mid_staging_commits_once(env):
    """SIGKILL the scheduler while a PUT of 200 000 jobs is staged: nothing is visible; the
    same PUT to a new scheduler commits every job exactly once and delivers each to ready once;
    a third PUT answers 200 created 0"""
    sched, r = start_without_worker(env)
    n = 200_000
    jobs = [{}] * n
    kill_mid_staging(env, sched, r, "t", "big", jobs, 20_000)
    check_invisible(env, r, "t", "big", n)

    env.start_scheduler(name="scheduler-2")
    status, body = put_batch(env, "t", "big", jobs)
    check_stored(status, body, 201, "t", "big", n, n)
    ready = env.key("t", "ready")
    wait_until(lambda: r.call("LLEN", ready) == n, 120, f"{n} jobs delivered to ready")
    holds_for(lambda: r.call("LLEN", ready) == n, 1.5, "no job delivered twice")
    ids = r.call("LRANGE", ready, 0, -1)
    eq(len(set(ids)), n, "distinct ids in ready")
    eq(set(ids), {f"big.{i}" for i in range(n)}, "the ids in ready")
    eq(ids[-1], "big.0", "the batch's first job is next to run (delivered in order)")
    eq(len(env.redis_keys(env.key("t", "job:*"))), n, "job records in Redis")
    status, st = api(env, "results", "GET", "/v1/batches/big")
    eq((status, st.get("total"), st.get("finished")), (200, n, False), f"GET the batch ({st})")
    status, st = api(env, "results", "GET", f"/v1/jobs/big.{n - 1}")
    eq((status, st.get("state")), (200, "queued"), f"GET its last job ({st})")

    status, body = put_batch(env, "t", "big", jobs)
    check_stored(status, body, 200, "t", "big", n, 0)
    eq(r.call("LLEN", ready), n, "ready after the third PUT")


def test_abandoned_staging_is_discarded(env):
    """batch_abandon_after = 2s: a batch whose scheduler died while staging is discarded (its
    staged jobs, then the batch) by the next scheduler, after which the id serves again"""
    env.conf = env.write_conf(batch_abandon_after="2s")
    sched, r = start_without_worker(env)
    n = 100_000
    staged = kill_mid_staging(env, sched, r, "t", "gone", [{}] * n, 10_000)
    sched2 = env.start_scheduler(name="scheduler-2")
    wait_until(lambda: not env.redis_keys(env.key("t", "job:*")), 60,
               "the staged jobs of the abandoned batch to be deleted")
    wait_until(lambda: r.call("EXISTS", env.key("t", "batch:gone")) == 0, 30,
               "the abandoned batch's record to be deleted")
    eq((r.call("ZCARD", env.key("t", "staging")), r.call("EXISTS", env.key("t", "staged:gone"))),
       (0, 0), "staging zset and staged list after the discard")
    wait_until(lambda: "Discarded" in sched2.log_text(), 10, "the discard to be logged")
    logged = sum(int(line.split("Discarded ")[1].split()[0])
                 for line in sched2.log_text().splitlines() if "Discarded " in line)
    eq(logged, staged, "staged jobs the scheduler says it discarded")
    check_invisible(env, r, "t", "gone", n)

    status, body = put_batch(env, "t", "gone", [{}, {}])
    check_stored(status, body, 201, "t", "gone", 2, 2)
    wait_until(lambda: r.call("LLEN", env.key("t", "ready")) == 2, 30, "the new batch delivered")


def test_large_batch_leaves_redis_responsive(env):
    """while a POST of 200 000 jobs is stored, Redis answers PING within a small part of the
    time the whole batch takes (it is stored in steps, not one transaction)"""
    _, r = start_without_worker(env)
    n = 200_000
    worst, stop = [0.0], threading.Event()

    def ping():
        p = Resp(env.redis_sock)
        while not stop.is_set():
            t0 = time.monotonic()
            p.call("PING")
            worst[0] = max(worst[0], time.monotonic() - t0)
            time.sleep(0.001)
        p.close()

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    t0 = time.monotonic()
    status, body = api(env, "scheduler", "POST", "/v1/queues/t/batches", {"jobs": [{}] * n},
                       timeout=300)
    took = time.monotonic() - t0
    stop.set()
    pinger.join(10)
    eq((status, body.get("count"), body.get("created")), (201, n, n), "POST of 200 000 jobs")
    batch = body["batch"]
    eq(body["ids"][:2], [f"{batch}.0", f"{batch}.1"], "ids of a large POSTed batch")
    tasadtest.log(f"batch of {n} stored in {took:.2f}s; slowest PING {worst[0] * 1000:.1f} ms")
    check(worst[0] < took / 4, f"a PING waited {worst[0] * 1000:.0f} ms while the batch took "
          f"{took * 1000:.0f} ms: Redis was held for a large part of the batch")
    wait_until(lambda: r.call("LLEN", env.key("t", "ready")) == n, 120, "the batch delivered")


if __name__ == "__main__":
    tasadtest.main(globals())
