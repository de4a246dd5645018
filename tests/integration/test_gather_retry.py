#!/usr/bin/env python3
"""The gatherer survives a results directory it cannot write: the result stays in Redis (status
and output still answered from there), tasad-results logs the failure, does not spin re-reading
the entry, and writes the result once the directory is writable again."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, wait_until  # noqa: E402


def test_unwritable_results_dir(env):
    """a file where the queue's results directory belongs: retried (pauses of 1s doubling to 5s) until it is gone"""
    env.write_mark_queue("g", concurrency=1, timeout="30s")
    # mkdir of <results_dir>/g succeeds (EEXIST) but nothing can be created below a file.
    blocker = env.results_dir / "g"
    blocker.write_text("not a directory\n")
    daemons = env.start_stack("g")
    results = next(d for d in daemons.values() if d.kind == "results")
    job = env.submit("g", "x", "0")
    st = env.wait_state(job, timeout=20)
    eq(st.get("state"), "done", "state of the job while its result cannot be written")
    eq(env.tasactl_ok("result", job), b"x\n", "stdout served from Redis before it is gathered")
    wait_until(lambda: "Failed to write the result" in results.log_text(), 10,
               "tasad-results to log the failed write")
    # No tight loop, and the failure is logged once until writing works again: within 3 s at
    # most one more line.
    n0 = results.log_text().count("Failed to write the result")
    holds_for(lambda: results.log_text().count("Failed to write the result") <= n0 + 1, 3,
              "the failed write not to be retried in a tight loop")
    results.check_alive("after the failed write")

    blocker.unlink()
    t0 = time.monotonic()
    final = env.results_dir / "g" / job / "result.json"
    wait_until(final.exists, 15, "the result to be written once the directory is writable")
    took = time.monotonic() - t0
    check(took < 12, f"the retry took {took:.1f}s (pauses at most 5s)")
    for f in ("stdout", "stderr", "result.json"):
        check((env.results_dir / "g" / job / f).exists(), f"{f} of the gathered job")
    eq(env.status(job).get("state"), "done", "state after gathering")


if __name__ == "__main__":
    tasadtest.main(globals())
