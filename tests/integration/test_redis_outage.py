#!/usr/bin/env python3
"""Scenario 4: redis-server is stopped (SIGTERM) in the middle of a run of 100 acknowledged jobs
and started again on the same directory (AOF on) a few seconds later. Every acknowledged job
completes; the daemons stay up through the outage; the worker says so in STATUS= while Redis is
down and logs the outage once (not once per reconnection attempt); a submission during the
outage is refused with a clear error; everything works again afterwards."""

import os
import re
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, one_line_error, wait_until  # noqa: E402

N = 100
OUTAGE = 5.0
# A stderr line that reports the outage (or a failure caused by it).
OUTAGE_LINE = re.compile(r"redis|connect|refused|reset|broken pipe|unavailable|no such file|"
                         r"timed out|\bEOF\b", re.I)


def outage_lines(d, start, end):
    return [l for l in d.log_text(start, end).splitlines() if OUTAGE_LINE.search(l)]


def test_redis_restart_mid_run(env):
    """stop Redis mid-run, restart after 5s: all 100 acknowledged jobs complete, one log line"""
    env.write_mark_queue("q", concurrency=2, timeout="30s", kill_grace="1s", lease="3s",
                         env=["TASAD_IT_SLEEP=0.1"])
    env.start_redis()
    sched = env.start_scheduler()
    res = env.start_results()
    w = env.start_worker("q", "w")
    daemons = (sched, res, w)

    tags = [f"t{i}" for i in range(N)]
    ids = env.submit_each("q", tags)          # acknowledged: every id was printed
    wait_until(lambda: len(env.marked("end")) >= 10, 60, "the first 10 jobs to finish")
    done_before = len({m[1] for m in env.marked("end")})
    check(done_before < N, "every job finished before the outage began; nothing was tested")

    offsets = {d.name: d.log_size() for d in daemons}
    w_idx = w.notify.count()
    env.stop_redis()
    t_down = time.monotonic()
    tasadtest.log(f"Redis stopped with {done_before}/{N} jobs finished")

    # While Redis is down: STATUS= says so, the daemons keep running.
    m = w.notify.wait("STATUS", "redis", since=w_idx, timeout=10,
                      what="the worker's STATUS= while Redis is down")
    tasadtest.log(f"worker STATUS during outage: {m[2]!r}")
    holds_for(lambda: all(d.alive() for d in daemons), max(0.0, OUTAGE - 1.0 - (time.monotonic() - t_down)),
              "all daemons stay up while Redis is down")
    # A submission now cannot be stored: refused with one clear line, no id printed.
    sched_end = sched.log_size()
    rc, out, err = env.tasactl("submit", "q", "during-outage")
    msg = one_line_error(rc, err, "submit while Redis is down")
    eq(out.strip(), b"", f"stdout of the refused submission ({msg})")
    holds_for(lambda: all(d.alive() for d in daemons), max(0.0, OUTAGE - (time.monotonic() - t_down)),
              "all daemons stay up while Redis is down")
    ends = {d.name: d.log_size() for d in daemons}
    ends[sched.name] = sched_end
    env.start_redis()
    tasadtest.log(f"Redis back after {time.monotonic() - t_down:.1f}s")

    # Every acknowledged job completes.
    def all_done():
        return {m[1] for m in env.marked("end")} >= set(tags)

    try:
        wait_until(all_done, 120, f"all {N} acknowledged jobs to complete after the outage", interval=0.2)
    except AssertionError:
        missing = sorted(set(tags) - {m[1] for m in env.marked("end")})
        raise AssertionError(f"{len(missing)} acknowledged job(s) did not complete: {missing[:30]}") from None
    rc, _, err = env.tasactl("wait", *ids, timeout=120)
    eq(rc, 0, f"tasactl wait of all acknowledged ids ({err.strip()})")
    check("during-outage" not in {m[1] for m in env.marked("start")},
          "the submission refused during the outage ran anyway")
    runs = Counter(m[1] for m in env.marked("end"))
    dups = {t: c for t, c in runs.items() if c > 1}
    tasadtest.log(f"jobs run more than once across the outage (allowed, at-least-once): {dups}")

    for d in daemons:
        d.check_alive("after the Redis outage")
    # STATUS= no longer reports Redis down, and new work flows again.
    wait_until(lambda: not re.search("redis", w.last_status() or "redis", re.I), 15,
               "the worker's STATUS= to stop mentioning Redis after it came back")
    jid = env.submit("q", "after", "0")
    eq(env.wait_state(jid, timeout=30).get("state"), "done", "a job submitted after the outage")

    # The outage was logged once per daemon, not once per retry.
    problems = []
    for d in daemons:
        lines = outage_lines(d, offsets[d.name], ends[d.name])
        tasadtest.log(f"{d.name}: {len(lines)} line(s) about the outage: {lines}")
        if len(lines) != 1:
            problems.append(f"{d.name} logged {len(lines)} lines about the {OUTAGE:.0f}s outage "
                            f"(expected exactly 1):\n      " + "\n      ".join(lines[:20]))
    check(not problems, "\n    ".join(problems))


def test_watchdog_fed_through_outage(env):
    """with WATCHDOG_USEC=1.5s, scheduler, results and worker keep sending WATCHDOG=1 about every
    0.5 s while Redis is down for 6 s (the watchdog follows each daemon's loop, not Redis; tied
    to Redis, systemd killed every daemon during an outage), and serve again afterwards"""
    wd = {"WATCHDOG_USEC": "1500000"}
    env.write_mark_queue("w", lease="3s")
    env.start_redis()
    daemons = [env.start_scheduler(extra_env=wd), env.start_results(extra_env=wd),
               env.start_worker("w", extra_env=wd)]
    time.sleep(1.0)
    env.stop_redis()
    t0 = time.monotonic()
    time.sleep(6.0)
    t1 = time.monotonic()
    for d in daemons:
        d.check_alive("during the Redis outage")
        times = [m[0] for m in d.notify.find("WATCHDOG", "^1$") if t0 <= m[0] <= t1]
        gaps = [b - a for a, b in zip([t0] + times, times + [t1])]
        tasadtest.log(f"{d.name}: {len(times)} WATCHDOG=1 in the 6 s outage, longest gap "
                      f"{max(gaps):.2f}s")
        check(len(times) >= 6 and max(gaps) < 1.5,
              f"{d.name} sent {len(times)} WATCHDOG=1 during a 6 s Redis outage (longest gap "
              f"{max(gaps):.2f}s, watchdog 1.5 s): systemd would have killed it")
    env.start_redis()
    ok = wait_until(lambda: env.tasactl("submit", "w", "after", "0")[0] == 0 or None, 30,
                    "the scheduler to accept a submission after the outage", interval=0.5)
    jid = env.submit("w", "again", "0") if ok else None

    def done():
        try:
            return env.status(jid).get("state") == "done"
        except AssertionError:  # tasad-results may still be reconnecting
            return False

    wait_until(done, 30, "a job submitted after the outage to be done", interval=0.5)


if __name__ == "__main__":
    tasadtest.main(globals())
