#!/usr/bin/env python3
"""Scenario 7: graceful stop. A worker (concurrency 1) gets SIGTERM while a 2s job runs and a
second job waits in the queue: it sends STOPPING=1, lets the running job finish and records it,
does not start the queued job, and exits 0. The queued job stays queued and runs when a worker
starts again. Also: a job that outlives drain_timeout is given back, not lost."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, wait_until  # noqa: E402


def test_sigterm_drains_running_job(env):
    """SIGTERM mid-job: job finishes and is recorded, queued job untouched, exit 0, STOPPING=1"""
    env.write_mark_queue("drain", concurrency=1, timeout="30s", kill_grace="1s", lease="3s",
                         drain_timeout="15s")
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    w = env.start_worker("drain", "w1")
    a = env.submit("drain", "a", "2")
    wait_until(lambda: env.marked("start", "a"), 15, "job a to start")
    b = env.submit("drain", "b", "0")
    eq(env.status(b).get("state"), "queued", "state of b while a runs (concurrency 1)")

    idx = w.notify.count()
    t_term = time.monotonic()
    w.signal(signal.SIGTERM)
    w.notify.wait("STOPPING", "^1$", since=idx, timeout=5, what="after SIGTERM")
    rc = w.wait_exit(25)
    took = time.monotonic() - t_term
    eq(rc, 0, "worker exit status after SIGTERM")
    check(env.marked("end", "a"), "the running job a did not finish before the worker exited")
    check(took >= 1.0, f"worker exited {took:.2f}s after SIGTERM, before its 2s job could end")
    st = env.wait_state(a, timeout=15)
    eq((st.get("state"), st.get("outcome")), ("done", "exit:0"), "state/outcome of the drained job a")
    check(not env.marked("start", "b"), "queued job b was started by a worker that was stopping")
    eq(env.status(b).get("state"), "queued", "state of b after the worker stopped")

    w2 = env.start_worker("drain", "w2")
    st = env.wait_state(b, timeout=20)
    eq(st.get("state"), "done", "b after a worker started again")
    eq([m[2] for m in env.marked("end", "b")], ["w2"], "b ran once, on the new worker")
    eq(len(env.marked("start", "a")), 1, "a ran exactly once")
    w2.check_alive()


def test_drain_timeout_gives_job_back(env):
    """a job longer than drain_timeout is stopped and given back to the queue, then completes"""
    env.write_mark_queue("drain", concurrency=1, timeout="60s", kill_grace="1s", lease="3s",
                         drain_timeout="1s")
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    w = env.start_worker("drain", "w1")
    a = env.submit("drain", "a", "8")
    wait_until(lambda: env.marked("start", "a"), 15, "job a to start")
    idx = w.notify.count()
    t_term = time.monotonic()
    w.signal(signal.SIGTERM)
    w.notify.wait("STOPPING", "^1$", since=idx, timeout=5, what="after SIGTERM")
    rc = w.wait_exit(15)
    took = time.monotonic() - t_term
    eq(rc, 0, "worker exit status after SIGTERM with a job past drain_timeout")
    check(took < 5.0, f"worker took {took:.1f}s to exit with drain_timeout 1s and grace 1s")
    check(not env.marked("end", "a"), "job a ended although it was still running at drain_timeout")
    st = env.status(a)
    check(st.get("state") in ("queued", "delayed"),
          f"a job stopped by drain_timeout must go back to the queue, got {st}")
    env.start_worker("drain", "w2")
    eq(env.wait_state(a, timeout=30).get("state"), "done", "a after a worker started again")
    eq([m[2] for m in env.marked("end", "a")], ["w2"], "a completed on the new worker")


if __name__ == "__main__":
    tasadtest.main(globals())
