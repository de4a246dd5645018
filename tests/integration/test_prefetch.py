#!/usr/bin/env python3
"""Scenario: prefetch (queue key `prefetch`, docs/configuration.md). While a worker's jobs are
short it takes the next job ahead of a free slot (state "ready" in its status, leased, not
started); such a job that is cancelled ends as cancelled without ever running, and one held when
the worker drains goes back to the queue with its attempt not counted and runs elsewhere. Once
its jobs are long the worker takes none ahead, so that an idle worker gets them."""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, wait_until  # noqa: E402


def worker_jobs(env, w, queue):
    out = env.tasactl_ok("worker", "status", queue, conf=w.conf, json_out=True)
    return {j["id"]: j["state"] for j in json.loads(out)["jobs"]}


def started(env, tag):
    return [m for m in env.marks() if m[0] == "start" and m[1] == tag]


def test_prefetch_cancel_drain_and_long_jobs(env):
    """short jobs: one job waits "ready" behind the running one; cancelled it never runs; held at
    drain it goes back and runs on another worker; after long jobs nothing is prefetched"""
    env.write_mark_queue("p", concurrency=1, prefetch=1, timeout="60s", lease="3s",
                         drain_timeout="30s", retries=0)
    stack = env.start_stack("p")
    w1 = stack["p"]
    # A short job first: nothing is prefetched before the worker has seen one end.
    env.wait_state(env.submit("p", "short"))

    env.submit("p", "long1", "3")
    wait_until(lambda: started(env, "long1"), 10, "long1 to start")
    b = env.submit("p", "b")
    c = env.submit("p", "c")
    wait_until(lambda: worker_jobs(env, w1, "p").get(b) == "ready", 10, f"{b} to wait ready")
    eq(env.status(c)["state"], "queued", "the job after the prefetched one (prefetch = 1)")

    # Cancelled while it waits: it ends at the next lease renewal without having run.
    rc, out, err = env.tasactl("cancel", b)
    eq(rc, 0, f"tasactl cancel {b} ({err.strip()})")
    st = env.wait_state(b, timeout=15)
    eq((st["state"], st["outcome"]), ("cancelled", "cancelled"), f"state/outcome of {b}")
    eq(started(env, "b"), [], "marks of the cancelled job (it never ran)")

    # Its slot went to c, which now waits ready behind long1; a drain gives it back.
    wait_until(lambda: worker_jobs(env, w1, "p").get(c) == "ready", 10, f"{c} to wait ready")
    w1.signal(signal.SIGTERM)
    eq(w1.wait_exit(40), 0, "exit status of the drained worker")
    long1 = [m for m in env.marks() if m[0] == "end" and m[1] == "long1"]
    eq(len(long1), 1, "long1 finished within the drain")
    st = env.status(c)
    eq((st["state"], st.get("attempt")), ("queued", 0), f"{c} given back without an attempt")
    eq(started(env, "c"), [], f"{c} did not run on the drained worker")

    # Another worker runs it (once).
    w2 = env.start_worker("p", name="w2")
    eq(env.wait_state(c)["state"], "done", f"state of {c} on the second worker")
    eq([m[2] for m in started(env, "c")], ["w2"], f"where {c} ran")

    # Long jobs: after one, the worker takes nothing ahead; an idle worker gets the next job.
    env.wait_state(env.submit("p", "long2", "2"))
    env.submit("p", "long3", "4")
    wait_until(lambda: started(env, "long3"), 10, "long3 to start")
    e = env.submit("p", "e")
    holds_for(lambda: env.status(e)["state"] == "queued" and e not in worker_jobs(env, w2, "p"),
              1.5, f"{e} stays in the queue while long3 runs (no prefetch after long jobs)")
    env.start_worker("p", name="w3")
    eq(env.wait_state(e)["state"], "done", f"state of {e}")
    eq([m[2] for m in started(env, "e")], ["w3"], f"{e} ran on the idle worker")
    check(not [m for m in env.marks() if m[0] == "end" and m[1] == "long3"],
          "long3 was still running when e finished elsewhere")
    w2.check_alive()


if __name__ == "__main__":
    tasadtest.main(globals())
