#!/usr/bin/env python3
"""Scenario 10: cancelling. A queued job is cancelled at once and never runs; a running job
(sleep 30) is killed by its worker within lease/3 + kill_grace and recorded as cancelled, and its
processes are gone. Cancelling a finished or unknown job is refused."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, one_line_error, pid_alive, wait_until  # noqa: E402


def test_cancel_queued_and_running(env):
    """cancel a queued job (never runs) and a running sleep 30 (killed, outcome cancelled)"""
    env.write_mark_queue("sleepy", concurrency=1, timeout="60s", kill_grace="1s", lease="3s")
    env.start_stack("sleepy")
    r = env.submit("sleepy", "r", "30")
    wait_until(lambda: env.marked("sleep", "r"), 15, "the running job to start its sleep")
    shell_pid = int(env.marked("start", "r")[0][3])
    sleep_pid = int(env.marked("sleep", "r")[0][3])
    q = env.submit("sleepy", "q", "0")
    eq(env.status(q).get("state"), "queued", "state of the second job (concurrency 1)")

    # Queued: cancelled at once.
    env.tasactl_ok("cancel", q)
    eq(env.status(q).get("state"), "cancelled", "state right after cancelling a queued job")

    # Running: the worker kills it at its next lease renewal (every 1s), TERM then KILL after 1s.
    t0 = time.monotonic()
    env.tasactl_ok("cancel", r)
    st = env.wait_state(r, timeout=15)
    took = time.monotonic() - t0
    eq((st.get("state"), st.get("outcome")), ("cancelled", "cancelled"),
       "state/outcome of the cancelled running job")
    check(took < 6, f"the running job took {took:.1f}s to be cancelled (lease/3 = 1s, grace 1s)")
    wait_until(lambda: not pid_alive(shell_pid) and not pid_alive(sleep_pid), 5,
               "the cancelled job's processes to be gone")
    check(not env.marked("end", "r"), "the cancelled job ran to its end")

    # The worker is free again; the cancelled queued job never runs.
    z = env.submit("sleepy", "z", "0")
    eq(env.wait_state(z, timeout=20).get("state"), "done", "a job after the cancellations")
    check(not env.marked("start", "q"), "the job cancelled while queued was run")
    eq(env.status(q).get("state"), "cancelled", "state of the cancelled queued job at the end")

    # Refusals: finished job (409), unknown job (404): non-zero, one line.
    before = env.status(z)
    rc, _, err = env.tasactl("cancel", z)
    one_line_error(rc, err, "cancel of a finished job")
    eq(env.status(z).get("state"), before.get("state"), "state of a finished job after a refused cancel")
    rc, _, err = env.tasactl("cancel", "no-such-job")
    one_line_error(rc, err, "cancel of an unknown job")
    env.daemons[-1].check_alive()


if __name__ == "__main__":
    tasadtest.main(globals())
