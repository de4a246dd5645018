#!/usr/bin/env python3
"""Scenario 2: 500 jobs submitted with `submit --each` to two worker processes (concurrency 2
each): every job runs to completion exactly once (none missing, none twice, counted in the mark
file every job appends to), both workers ran some, and the queue ends empty."""

import json
import os
import re
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, holds_for, wait_until  # noqa: E402

N = 500
STATUS_RE = re.compile(r"(\d+)/(\d+) running, (\d+) done, (\d+) failed")


def test_500_jobs_two_workers_exactly_once(env):
    """500 jobs, 2 workers x concurrency 2: each job ran exactly once, both workers took some"""
    env.write_mark_queue("many", concurrency=2, timeout="30s", kill_grace="1s", lease="3s",
                         env=["TASAD_IT_SLEEP=0.01"])
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    wa = env.start_worker("many", "wa")
    wb = env.start_worker("many", "wb")

    ids = env.submit_each("many", [str(i) for i in range(N)])
    wait_until(lambda: len(set(m[1] for m in env.marked("end"))) >= N, 180,
               f"all {N} jobs to finish (per the mark file)", interval=0.2)
    rc, out, err = env.tasactl("wait", *ids, timeout=120)
    eq(rc, 0, f"tasactl wait of all {N} ids ({err.strip()})")

    # No late duplicate: nothing more runs for two lease periods after the last job ended.
    n_lines = len(env.marks())
    holds_for(lambda: len(env.marks()) == n_lines, 6.0,
              "no job runs again after all jobs finished (a late duplicate)")

    marks = env.marks()
    ends = Counter(m[1] for m in marks if m[0] == "end")
    starts = Counter(m[1] for m in marks if m[0] == "start")
    tags = [str(i) for i in range(N)]
    missing = [t for t in tags if ends[t] == 0]
    twice = {t: c for t, c in ends.items() if c > 1}
    started_twice = {t: c for t, c in starts.items() if c > 1}
    unknown = set(ends) - set(tags)
    check(not missing, f"{len(missing)} job(s) never completed: {missing[:20]}")
    check(not twice, f"{len(twice)} job(s) completed more than once: {dict(list(twice.items())[:20])}")
    check(not started_twice, f"{len(started_twice)} job(s) started more than once: "
                             f"{dict(list(started_twice.items())[:20])}")
    check(not unknown, f"marks for tags that were never submitted: {sorted(unknown)[:20]}")

    per_worker = Counter(m[2] for m in marks if m[0] == "end")
    tasadtest.log(f"jobs per worker: {dict(per_worker)}")
    check(per_worker["wa"] > 0 and per_worker["wb"] > 0,
          f"both workers should have run jobs: {dict(per_worker)}")
    eq(sum(per_worker.values()), N, "jobs counted over both workers")

    # Every job is done per tasad itself, and the queue is empty.
    for jid in ids[:: N // 10]:
        st = env.status(jid)
        eq((st.get("state"), st.get("attempt")), ("done", 1), f"state/attempt of {jid}")
    q = json.loads(env.tasactl_ok("queues", json_out=True))
    row = next((r for r in q.get("queues", []) if r.get("name") == "many"), None)
    check(row is not None, f"queue 'many' missing from tasactl --json queues: {q}")
    for k, v in dict(ready=0, running=0, done=N, failed=0).items():
        eq(row.get(k), v, f"tasactl queues: {k}")
    eq(env.redis_cli("LLEN", env.key("many", "ready")).strip(), "0", "Redis ready list length")
    eq(env.redis_cli("ZCARD", env.key("many", "leases")).strip(), "0", "Redis leases left")

    # The workers narrate their counts in STATUS=; together they report all N done.
    def reported_done():
        total = 0
        for w in (wa, wb):
            m = STATUS_RE.search(w.last_status() or "")
            if not m:
                return None
            total += int(m.group(3))
        return total == N

    try:
        wait_until(reported_done, 10, f"the workers' STATUS= to add up to {N} done")
    except AssertionError as e:
        raise AssertionError(f"{e}: wa {wa.last_status()!r}, wb {wb.last_status()!r}") from None
    wa.check_alive()
    wb.check_alive()


if __name__ == "__main__":
    tasadtest.main(globals())
