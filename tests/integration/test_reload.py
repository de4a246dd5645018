#!/usr/bin/env python3
"""SIGHUP: the worker reloads its queue file without dropping jobs. A job running across the
reload finishes and is recorded; the new settings apply afterwards (concurrency 1 -> 2, seen in
STATUS= and in two jobs running side by side); a broken file is refused and the old settings
stay."""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, wait_until  # noqa: E402

STATUS = re.compile(r"(\d+)/(\d+) running")


def test_sighup_reloads_queue_file(env):
    """SIGHUP mid-job: the job completes; the new concurrency applies; a bad file is refused"""
    keys = dict(concurrency=1, timeout="30s", kill_grace="1s", lease="3s")
    env.write_mark_queue("q", **keys)
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    w = env.start_worker("q", "w")
    wait_until(lambda: (m := STATUS.search(w.last_status() or "")) and m.group(2) == "1", 10,
               "STATUS= showing concurrency 1")

    a = env.submit("q", "a", "2")
    wait_until(lambda: env.marked("start", "a"), 15, "job a to start")
    # New settings: concurrency 2, written to the worker's own copy of the queue file.
    env.write_mark_queue("q", **dict(keys, concurrency=2))
    env.worker_conf("w", "q")
    w.signal(signal.SIGHUP)
    wait_until(lambda: (m := STATUS.search(w.last_status() or "")) and m.group(2) == "2", 10,
               "STATUS= showing concurrency 2 after SIGHUP")
    w.check_alive("after SIGHUP")
    st = env.wait_state(a, timeout=20)
    eq((st.get("state"), st.get("outcome")), ("done", "exit:0"), "job running across the reload")
    eq(len(env.marked("start", "a")), 1, "job a ran once (not restarted by the reload)")

    # Two 2s jobs now run side by side.
    b, c = env.submit("q", "b", "2"), env.submit("q", "c", "2")
    wait_until(lambda: env.marked("start", "b") and env.marked("start", "c")
               and not env.marked("end", "b") and not env.marked("end", "c"), 10,
               "b and c to run at the same time (concurrency 2 after reload)")
    env.wait_state(b)
    env.wait_state(c)

    # A broken file: refused, the worker keeps running with the settings it has.
    qfile = env.tmp / "queues-w" / "q.conf"
    qfile.write_text(qfile.read_text() + "no_such_key = 1;\n")
    size = w.log_size()
    w.signal(signal.SIGHUP)
    wait_until(lambda: "q.conf:" in w.log_text(size), 10,
               "the worker to log the bad queue file with file:line")
    w.check_alive("after SIGHUP with a broken queue file")
    d = env.submit("q", "d", "0")
    eq(env.wait_state(d, timeout=20).get("state"), "done", "a job after the refused reload")
    m = STATUS.search(w.last_status() or "")
    check(m and m.group(2) == "2", f"concurrency after the refused reload: {w.last_status()!r}")


def test_shorter_lease_on_reload(env):
    """a reload that shortens `lease` (30s -> 2s) mid-job makes the worker renew sooner at
    once: the running job keeps its lease and finishes in its first attempt"""
    keys = dict(concurrency=1, timeout="40s", kill_grace="1s", lease="30s")
    env.write_mark_queue("q", **keys)
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    w = env.start_worker("q", "w")
    a = env.submit("q", "a", "16")
    wait_until(lambda: env.marked("start", "a"), 15, "job a to start")
    env.write_mark_queue("q", **dict(keys, lease="2s"))
    env.worker_conf("w", "q")
    size = w.log_size()
    w.signal(signal.SIGHUP)
    wait_until(lambda: "Reloaded queue" in w.log_text(size), 10, "the reload")
    st = env.wait_state(a, timeout=45)
    eq((st.get("state"), st.get("outcome"), st.get("attempt")), ("done", "exit:0", 1),
       f"job running across a lease-shortening reload ({st.get('detail')})")
    eq(len(env.marked("start", "a")), 1, "job a ran once")


if __name__ == "__main__":
    tasadtest.main(globals())
