#!/usr/bin/env python3
"""Scenario: the worker's per-job log lines. With TASAD_LOG_TARGET=stderr (the harness' default)
every line about a job ends with the journal fields in the stderr form of lib/log.c
(log_to_stderr): ` [queue=Q job=ID attempt=N]`, plus ` exit=OUTCOME` once the attempt has an
outcome. Each message names the job: its start is "Job ID: started, pid N.", its end "Job ID:
finished: OUTCOME." (done) or "Job ID: failed: OUTCOME…"; the
outcome is exit:N for an exit status and timeout for a job killed at its deadline, and attempt
counts the job's attempts (a retry logs attempt=2)."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, wait_until  # noqa: E402

# "<ident>[<pid>]: <level>: <message> [k=v k=v ...]" - one line per log call.
LINE_RX = re.compile(r"^(?P<ident>[^\[\s]+)\[(?P<pid>\d+)\]: (?P<level>[a-z]+): (?P<msg>.*?)"
                     r"(?: \[(?P<fields>[^\[\]]*)\])?$")


def job_lines(worker, jid):
    """(level, message, fields dict, raw line) of every line of the worker's stderr whose fields
    name job jid."""
    out = []
    for raw in worker.log_text().splitlines():
        m = LINE_RX.match(raw)
        if not m or not m.group("fields"):
            continue
        fields = dict(kv.split("=", 1) for kv in m.group("fields").split(" ") if "=" in kv)
        if fields.get("job") == jid:
            out.append((m.group("level"), m.group("msg"), fields, raw))
    return out


def lines_starting(worker, jid, word):
    """The lines about jid whose message is "Job <jid>: <word>…"."""
    return [l for l in job_lines(worker, jid) if l[1].startswith(f"Job {jid}: {word}")]


def expect_attempt_lines(worker, queue, jid, attempt, end_prefix, outcome):
    """Waits for the end line of that attempt of jid, then checks its start and end lines."""
    def ended():
        return [l for l in lines_starting(worker, jid, end_prefix)
                if l[2].get("attempt") == str(attempt)]

    try:
        end = wait_until(ended, 15, f"a '{end_prefix}' line for job {jid} attempt {attempt} in "
                         f"{worker.name}'s stderr")
    except AssertionError as e:
        found = "\n".join("    " + l[3] for l in job_lines(worker, jid)) or "    (none)"
        raise AssertionError(f"{e}; lines naming the job:\n{found}") from None
    eq(len(end), 1, f"'{end_prefix}' lines for job {jid} attempt {attempt}: {[l[3] for l in end]}")
    level, msg, fields, raw = end[0]
    eq(fields, {"queue": queue, "job": jid, "attempt": str(attempt), "exit": outcome},
       f"fields of the line {raw!r}")
    check(raw.endswith(f" [queue={queue} job={jid} attempt={attempt} exit={outcome}]"),
          f"the line {raw!r} does not end with the stderr field form "
          f"' [queue={queue} job={jid} attempt={attempt} exit={outcome}]'")

    started = [l for l in lines_starting(worker, jid, "started, pid ")
               if l[2].get("attempt") == str(attempt)]
    eq(len(started), 1, f"'Job started' lines for job {jid} attempt {attempt}: "
       f"{[l[3] for l in lines_starting(worker, jid, 'started, pid ')]}")
    level, msg, fields, raw = started[0]
    eq(fields, {"queue": queue, "job": jid, "attempt": str(attempt)},
       f"fields of the line {raw!r} (no exit= before the job ended)")
    check(raw.endswith(f" [queue={queue} job={jid} attempt={attempt}]"),
          f"the line {raw!r} does not end with ' [queue={queue} job={jid} attempt={attempt}]'")
    check(job_lines(worker, jid).index(started[0]) < job_lines(worker, jid).index(end[0]),
          f"'Job started' logged after '{end_prefix}' for job {jid} attempt {attempt}")
    return end[0]


def test_job_log_fields(env):
    """started/finished/failed lines carry queue, job, attempt and exit=exit:0/exit:3/timeout"""
    keys = dict(concurrency=1, kill_grace="1s", lease="3s")
    env.write_queue("ok", [env.job("echo.sh")], timeout="20s", **keys)
    env.write_queue("fail", [env.job("exit.sh")], timeout="20s", retries=1, backoff="200ms",
                    **keys)
    env.write_mark_queue("slow", timeout="1s", **keys)
    d = env.start_stack("ok", "fail", "slow")

    ok = env.submit("ok", "hello")
    fail = env.submit("fail", "3")
    slow = env.submit("slow", "t", "30")

    eq(env.wait_state(ok).get("outcome"), "exit:0", "outcome of the succeeding job")
    expect_attempt_lines(d["ok"], "ok", ok, 1, "finished: ", "exit:0")

    st = env.wait_state(fail, timeout=30)
    eq((st.get("state"), st.get("outcome"), st.get("attempt")), ("failed", "exit:3", 2),
       "state/outcome/attempt of the job exiting 3 (retries 1)")
    expect_attempt_lines(d["fail"], "fail", fail, 1, "failed: ", "exit:3")
    expect_attempt_lines(d["fail"], "fail", fail, 2, "failed: ", "exit:3")

    st = env.wait_state(slow, timeout=20)
    eq((st.get("state"), st.get("outcome")), ("failed", "timeout"), "state/outcome of the 30 s job "
       "with a 1 s timeout")
    expect_attempt_lines(d["slow"], "slow", slow, 1, "failed: ", "timeout")

    # Each worker logged only its own queue's job.
    for q, jid in (("ok", ok), ("fail", fail), ("slow", slow)):
        for other_q, other in (("ok", ok), ("fail", fail), ("slow", slow)):
            if other_q != q:
                eq(job_lines(d[q], other), [], f"lines about job {other} ({other_q}) in worker-{q}'s stderr")


if __name__ == "__main__":
    tasadtest.main(globals())
