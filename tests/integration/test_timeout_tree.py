#!/usr/bin/env python3
"""Scenario 5: a job's deadline kills its whole process tree. The job (jobs/tree.sh) ignores
SIGTERM, forks a child and an orphaned grandchild in its process group and records their pids;
with timeout 1s and kill_grace 1s the worker must TERM the group, wait the grace, KILL it, and
record outcome "timeout". Afterwards none of the recorded processes exists."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, pid_alive, wait_until  # noqa: E402


def test_timeout_kills_process_tree(env):
    """timeout 1s on a TERM-ignoring job with a grandchild: outcome timeout, whole tree gone"""
    env.write_queue("tree", [env.job("tree.sh")], concurrency=1, timeout="1s", kill_grace="1s",
                    lease="3s", retries=0)
    env.start_stack("tree")
    t0 = time.monotonic()
    jid = env.submit("tree")
    pidfile = env.tmp / "tree.pids"
    wait_until(pidfile.exists, 15, "the job to record its pids")
    job_pid, child, orphan = (int(x) for x in pidfile.read_text().split())
    tasadtest.log(f"job {job_pid}, child {child}, orphan grandchild {orphan}")
    check(pid_alive(orphan), "the grandchild exited on its own before the timeout")
    eq(os.getpgid(orphan), os.getpgid(job_pid), "process group of the grandchild (job's group)")
    check(os.getpgid(job_pid) != os.getpgid(0), "the job runs in the harness' process group")

    st = env.wait_state(jid, timeout=20)
    elapsed = time.monotonic() - t0
    eq(st.get("state"), "failed", "state of a timed-out job (retries = 0)")
    eq(st.get("outcome"), "timeout", "outcome of a job past its deadline")
    check(elapsed < 15, f"the job took {elapsed:.1f}s to be stopped (timeout 1s + grace 1s)")
    wait_until(lambda: not any(pid_alive(p) for p in (job_pid, child, orphan)), 5,
               "every process of the timed-out job to be gone")
    wall = st.get("wall_ms")
    if wall is not None:
        check(900 <= wall <= 10000, f"wall_ms {wall} of a job killed after 1s + 1s grace")
    rc, out, _ = env.tasactl("result", jid)
    eq((rc, out), (0, b"started\n"), "stdout the job wrote before it was killed")


if __name__ == "__main__":
    tasadtest.main(globals())
