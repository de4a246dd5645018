#!/usr/bin/env python3
"""Scenario 6: retries with backoff, then the dead-letter list. A job that always exits 1 on a
queue with retries = 2 and backoff 100ms runs 3 times, ends failed with attempt 3, and is listed
by `tasactl dead`; `tasactl requeue` gives it a fresh life: it runs (3 more attempts) and dies
again."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, one_line_error, wait_until  # noqa: E402


def runs(env):
    p = env.tmp / "runs"
    return p.read_text().splitlines() if p.exists() else []


def dead_ids(env, queue):
    d = json.loads(env.tasactl_ok("dead", queue, json_out=True))
    check(d.get("queue") in (queue, None), f"dead list names queue {d.get('queue')!r}")
    return {j.get("id"): j for j in d.get("jobs", [])}


def test_retries_then_dead_letter_then_requeue(env):
    """exit 1 with retries=2: 3 attempts, failed, in the dead list; requeue runs it again"""
    env.write_queue("flaky", [env.job("exit.sh")], concurrency=1, timeout="10s",
                    kill_grace="1s", lease="3s", retries=2, backoff="100ms", backoff_max="1s",
                    env=[f"TASAD_IT_MARK={env.tmp / 'runs'}"])
    env.start_stack("flaky")
    ok = env.submit("flaky", "0")
    t0 = time.monotonic()
    jid = env.submit("flaky", "1")
    st = env.wait_state(jid, ("failed",), timeout=30)
    elapsed = time.monotonic() - t0
    for k, v in dict(state="failed", attempt=3, outcome="exit:1", exit_code=1).items():
        eq(st.get(k), v, f"status field {k} after the last retry")
    holds_for(lambda: len([r for r in runs(env) if r.startswith("run 1 ")]) == 3, 1.5,
              "the failing job ran exactly 3 times (1 + retries=2)")
    # Backoff 100ms then 200ms: at least 0.3s between the first and the last attempt.
    check(elapsed >= 0.3, f"3 attempts took only {elapsed:.2f}s: no backoff between retries?")
    eq(env.wait_state(ok).get("state"), "done", "the job exiting 0 on the same queue")

    dead = wait_until(lambda: dead_ids(env, "flaky").get(jid), 10, f"{jid} in `tasactl dead flaky`")
    eq(dead.get("outcome"), "exit:1", "dead-letter entry outcome")
    eq(dead.get("attempt"), 3, "dead-letter entry attempt")
    check(ok not in dead_ids(env, "flaky"), "a successful job is in the dead-letter list")
    rc, out, _ = env.tasactl("dead", "flaky")
    eq(rc, 0, "tasactl dead (plain output)")
    check(jid.encode() in out, f"plain `tasactl dead flaky` does not list {jid}: {out!r}")

    # Requeue: it runs again with a fresh attempt count and dies again after 3 more runs.
    env.tasactl_ok("requeue", "flaky", jid)
    wait_until(lambda: len(runs(env)) >= 4 + 1, 15, "the requeued job to run again")
    st = env.wait_state(jid, ("failed",), timeout=30)
    wait_until(lambda: len([r for r in runs(env) if r.startswith("run 1 ")]) == 6, 10,
               "3 more attempts after requeue (6 runs in all)")
    eq(st.get("attempt"), 3, "attempt after the requeued job failed again (fresh count)")
    wait_until(lambda: jid in dead_ids(env, "flaky"), 10, f"{jid} back in the dead list")
    holds_for(lambda: len(runs(env)) == 7, 1.5, "no run beyond the retry budget")

    # Requeueing what is not dead is refused.
    rc, _, err = env.tasactl("requeue", "flaky", ok)
    one_line_error(rc, err, "requeue of a job that is not dead")
    rc, _, err = env.tasactl("requeue", "flaky", "no-such-job")
    one_line_error(rc, err, "requeue of an unknown job")


if __name__ == "__main__":
    tasadtest.main(globals())
