#!/usr/bin/env python3
"""Scenario 3: a worker is SIGKILLed while it runs a job (the job sleeps 3s, the lease is 2s).
After the lease expires the job is redelivered to the other worker and completes there; its
status shows the second attempt; no job of the batch is lost. While the first worker was alive
and renewing, nobody else ran its job."""

import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, wait_until  # noqa: E402


def test_sigkill_worker_mid_job(env):
    """SIGKILL the worker running a job: it completes on the other worker, attempt 2, none lost"""
    env.write_mark_queue("slow", concurrency=1, timeout="30s", kill_grace="1s", lease="2s",
                         env=["TASAD_IT_SLEEP=3"])
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    workers = {"wa": env.start_worker("slow", "wa"), "wb": env.start_worker("slow", "wb")}

    tags = [f"j{i}" for i in range(4)]
    ids = dict(zip(tags, env.submit_each("slow", tags)))

    # Wait until both workers are running a job, then kill the one that started first.
    wait_until(lambda: {m[2] for m in env.marked("start")} >= {"wa", "wb"}, 20,
               "both workers to start a job")
    first = env.marked("start")[0]
    victim_tag, victim_worker = first[1], first[2]
    survivor = "wb" if victim_worker == "wa" else "wa"
    check(not env.marked("end", victim_tag), f"job {victim_tag} already ended before the kill")
    t_kill = time.monotonic()
    workers[victim_worker].kill()
    tasadtest.log(f"killed {victim_worker} while it ran {victim_tag} ({ids[victim_tag]})")

    # The victim's job must complete on the survivor.
    wait_until(lambda: any(m[2] == survivor for m in env.marked("end", victim_tag)), 40,
               f"job {victim_tag} to be redelivered to {survivor} and complete there")
    redelivered_after = time.monotonic() - t_kill
    tasadtest.log(f"{victim_tag} completed on {survivor} {redelivered_after:.1f}s after the kill")

    for tag, jid in ids.items():
        st = env.wait_state(jid, timeout=40)
        eq(st.get("state"), "done", f"final state of {tag} ({jid})")
    st = env.status(ids[victim_tag])
    check(st.get("attempt", 0) >= 2 or st.get("redeliveries", 0) >= 1,
          f"status of the redelivered job should show a second attempt: {st}")
    eq(st.get("outcome"), "exit:0", "outcome of the redelivered job")

    ends = Counter(m[1] for m in env.marked("end"))
    missing = [t for t in tags if ends[t] == 0]
    check(not missing, f"jobs lost after the worker was killed: {missing}")
    # Only the killed worker's job may have started twice; everything else exactly once.
    starts = Counter(m[1] for m in env.marked("start"))
    extra = {t: c for t, c in starts.items() if c > 1 and t != victim_tag}
    check(not extra, f"jobs started more than once although no worker running them died: {extra}")
    eq(starts[victim_tag], 2, f"runs of {victim_tag} (killed once, redelivered once)")
    workers[survivor].check_alive("after taking over the dead worker's job")


if __name__ == "__main__":
    tasadtest.main(globals())
