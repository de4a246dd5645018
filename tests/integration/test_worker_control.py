#!/usr/bin/env python3
"""The worker's control socket (<worker_socket_dir>/<queue>.sock) through tasactl: status shows
the running jobs; pause stops taking jobs while running ones go on; resume takes them again;
drain finishes the running job and exits 0. A user who is neither root nor the worker's user
may read but not change (403). A second worker on the same socket is refused."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, wait_until  # noqa: E402


def worker_status(env, w) -> dict:
    # Each harness worker has its own worker_socket_dir, as on its own host: ask with its conf.
    out = env.tasactl_ok("worker", "status", "ctl", json_out=True, conf=w.conf)
    return json.loads(out)


def test_pause_resume_drain(env):
    """status, pause (a queued job waits, the running one finishes), resume, drain"""
    env.write_mark_queue("ctl", concurrency=1, timeout="60s")
    stack = env.start_stack("ctl")
    w = stack["ctl"]
    st = worker_status(env, w)
    eq((st["queue"], st["state"], st["concurrency"], st["jobs_running"]), ("ctl", "running", 1, 0),
       "status of an idle worker")
    long_job = env.submit("ctl", "long", "2")
    wait_until(lambda: env.marked("start", "long"), 15, "the long job to start")
    st = worker_status(env, w)
    eq([j["id"] for j in st["jobs"]], [long_job], "jobs listed by status")
    check(st["jobs"][0].get("pid", 0) > 0, f"no pid in {st['jobs'][0]}")

    eq(env.tasactl_ok("worker", "pause", "ctl", conf=w.conf).decode(), "ctl paused\n", "tasactl worker pause")
    waiting = env.submit("ctl", "waiting")
    env.wait_state(long_job, ("done",), timeout=20)
    holds_for(lambda: not env.marked("start", "waiting"), 1.5,
              "a paused worker not to take the queued job")
    eq(env.status(waiting).get("state"), "queued", "state of the job queued while paused")
    check(any("paused" in s for s in w.statuses()), f"STATUS= never said paused: {w.statuses()[-5:]}")

    eq(env.tasactl_ok("worker", "resume", "ctl", conf=w.conf).decode(), "ctl running\n", "tasactl worker resume")
    env.wait_state(waiting, ("done",), timeout=20)

    last = env.submit("ctl", "last", "1")
    wait_until(lambda: env.marked("start", "last"), 15, "the last job to start")
    eq(env.tasactl_ok("worker", "drain", "ctl", conf=w.conf).decode(), "ctl draining\n", "tasactl worker drain")
    eq(w.wait_exit(30), 0, "exit status of a drained worker")
    eq(env.status(last).get("state"), "done", "the job running during the drain")


def test_permissions_and_errors(env):
    """a user outside root and the worker's user gets 403 on pause; no worker: a clear error"""
    if not shutil.which("setpriv"):
        raise tasadtest.SkipTest("setpriv (util-linux) is not installed")
    env.write_mark_queue("ctl")
    w = env.start_stack("ctl")["ctl"]
    sock = env.run_dir / "w-worker-ctl" / "ctl.sock"
    check(sock.is_socket(), f"no control socket at {sock}")
    for d in (env.tmp, env.run_dir, sock.parent):
        os.chmod(d, 0o755)
    base = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "curl", "-s",
            "--unix-socket", str(sock)]
    r = subprocess.run(base + ["-X", "POST", "http://tasad/v1/worker/pause"], capture_output=True,
                       text=True, timeout=30)
    check('"forbidden"' in r.stdout, f"pause by nobody: {r.stdout!r} {r.stderr!r}")
    eq(worker_status(env, w)["state"], "running", "state after a refused pause")
    rc, out, err = env.tasactl("worker", "status", "nosuchqueue", conf=w.conf)
    eq(rc, 1, "tasactl worker status for a queue without a worker here")
    check("cannot reach tasad-worker@nosuchqueue" in err, f"error without a worker: {err!r}")
    rc, out, err = env.tasactl("worker", "frobnicate", "ctl")
    eq(rc, 2, "tasactl worker with an unknown command")


def test_second_worker_refused(env):
    """a second worker of the queue on the same worker_socket_dir refuses to start and says
    why; the first keeps its control socket"""
    env.write_mark_queue("ctl", concurrency=1, timeout="60s")
    stack = env.start_stack("ctl")
    w = stack["ctl"]
    second = env._start("second", "worker", ["ctl"], w.conf, None, lambda: False)
    rc = second.wait_exit(20)
    check(rc != 0, "the second worker exited 0")
    check("Another process serves the control socket" in second.log_text(),
          f"the second worker did not say why: {second.log_text()[-400:]}")
    eq(worker_status(env, w)["state"], "running", "the first worker's status")
    w.check_alive("after a second worker was refused")


if __name__ == "__main__":
    tasadtest.main(globals())
