#!/usr/bin/env python3
"""Hosts that vanish or are cut off, and Redis restarts under a short lease (issue #12):

- an idle worker host that vanishes without its connection ever resetting (SIGSTOP: Redis keeps
  serving its blocked BLMOVE) loses no job: what Redis moved into its proc list after the
  reaper saw it dead is reclaimed and runs elsewhere;
- a worker host cut off from Redis (every packet dropped, nothing reset) stops its running job
  before its lease can expire by Redis' clock, so the copy started elsewhere never runs beside
  the first one; after the network heals it takes jobs again within seconds;
- a cut shorter than the fence's tolerance does not rerun anything;
- Redis restarted (down about a second) three times under a 3 s lease while jobs run: no job
  runs twice, none is lost."""

import os
import socket
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, pid_alive, wait_until  # noqa: E402


def fetch_client_idle(env, worker):
    """The idle time (s) of the worker's client blocked in BLMOVE, or None."""
    out = env.redis_cli("CLIENT", "LIST")
    for line in out.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("cmd") == "blmove" and f.get("flags", "").find("b") >= 0:
            return int(f.get("idle", "0"))
    return None


def wait_fresh_blmove(env, timeout=20):
    """Waits until the blocked BLMOVE was issued again just now (its idle time drops from >= 1
    to 0), so that what follows happens early in its FETCH_BLOCK_SEC."""
    seen_old = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = fetch_client_idle(env, None)
        if idle is not None and idle >= 1:
            seen_old = True
        elif idle == 0 and seen_old:
            return
        time.sleep(0.02)
    raise AssertionError("the worker's BLMOVE was not seen being issued again")


def test_idle_host_vanishes(env):
    """an idle worker stopped dead in BLMOVE (no reset): the job Redis hands it runs elsewhere"""
    env.write_mark_queue("v", concurrency=1, timeout="30s", lease="2s")
    env.start_redis()
    sched = env.start_scheduler()
    env.start_results()
    wa = env.start_worker("v", "wa")
    wait_fresh_blmove(env)
    wa.signal(19)  # SIGSTOP: as if the host lost power; its connections stay open
    t_stop = time.monotonic()
    # Its liveness (lease 2 s after its last renewal) has expired and the reaper (every 1 s) has
    # seen it dead, while its BLMOVE (issued < 0.1 s before the stop) still blocks in Redis.
    time.sleep(3.3)
    wb = env.start_worker("v", "wb")
    wait_until(lambda: fetch_client_idle(env, None) is not None, 10, "wb to wait in BLMOVE")
    check(time.monotonic() - t_stop < 4.5, "the test was too slow to submit within the fetch block")
    jid = env.submit("v", "late")
    st = env.wait_state(jid, timeout=40)
    eq(st.get("state"), "done", "state of the job Redis handed to the vanished worker")
    eq([m[2] for m in env.marked("end", "late")], ["wb"], "who ran it")
    for k in env.redis_keys(env.key("v", "proc:*")):
        eq(env.redis_cli("LLEN", k).strip(), "0", f"jobs left in {k}")
    wa.kill()
    wb.check_alive()
    sched.check_alive()


def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cut_stack(env, lease, sleep):
    """Redis on the Unix socket and on TCP at the net host's peer address; scheduler and
    results on this host; worker wa on the net host (TCP)."""
    h = env.net_host()
    env.write_mark_queue("p", concurrency=1, timeout="60s", kill_grace="1s", lease=lease,
                         retries=3, backoff="1s", env=[f"TASAD_IT_SLEEP={sleep}"])
    port = free_port(h.host_ip)
    env.start_redis(tcp=(h.host_ip, port))
    env.start_scheduler()
    env.start_results()
    wa = env.start_worker("p", "wa", wrapper=h.wrapper(),
                          conf_overrides={"redis": f"redis://{h.host_ip}:{port}"})
    return h, wa


def job_pids(env, tag, worker):
    return [int(m[3]) for m in env.marks() if m[1] == tag and m[2] == worker
            and m[0] in ("start", "sleep")]


def test_cut_during_job_no_second_copy(env):
    """a worker cut off for 8 s stops its job before another worker starts it; recovers fast"""
    h, wa = cut_stack(env, lease="3s", sleep=25)
    jid = env.submit("p", "long")
    wait_until(lambda: len(job_pids(env, "long", "wa")) == 2, 20, "wa to run the job")
    wb = env.start_worker("p", "wb")
    time.sleep(1.5)  # a few renewals went through
    pids = job_pids(env, "long", "wa")
    h.cut()
    t_cut = time.monotonic()
    t_dead = t_second = None
    while time.monotonic() - t_cut < 20:
        now = time.monotonic()
        if t_dead is None and not any(pid_alive(p) for p in pids):
            t_dead = now
        if t_second is None and env.marked("start", "long") and any(
                m[2] == "wb" for m in env.marked("start", "long")):
            t_second = now
            check(t_dead is not None, "wb started the job while wa's copy was still running "
                  f"({time.monotonic() - t_cut:.2f}s after the cut)")
        if t_dead is not None and t_second is not None and now - t_cut > 8:
            break  # and the cut lasted a while: long enough for wa's connections to time out
        time.sleep(0.005)
    check(t_dead is not None, "wa's copy still runs 20 s into the cut")
    check(t_second is not None, "the job was not handed to wb during the cut")
    tasadtest.log(f"wa's copy stopped {t_dead - t_cut:.2f}s after the cut, wb started it "
                  f"{t_second - t_cut:.2f}s after")
    check(t_dead - t_cut >= 1.0, f"wa stopped its job only {t_dead - t_cut:.2f}s into the cut")
    check("lease" in wa.log_text() and "stopping the job before its lease can expire"
          in wa.log_text(), "wa's log does not say why it stopped the job")
    h.heal()
    t_heal = time.monotonic()
    # wb runs "long" for 25 s: a new job can only run on wa, and must, soon after the heal.
    jid2 = env.submit("p", "after")
    wait_until(lambda: env.marked("start", "after"), 20, "wa to take a job after the heal")
    tasadtest.log(f"wa took a job {time.monotonic() - t_heal:.2f}s after the heal")
    eq(env.marked("start", "after")[0][2], "wa", "who took the job after the heal")
    st = env.wait_state(jid2, timeout=30)
    eq(st.get("state"), "done", "state of the job after the heal")
    wa.check_alive()
    wb.check_alive()
    del jid


def test_short_cut_no_rerun(env):
    """a cut of 3 s under an 8 s lease: the job goes on, runs once, nobody else starts it"""
    h, wa = cut_stack(env, lease="8s", sleep=9)
    jid = env.submit("p", "steady")
    wait_until(lambda: len(job_pids(env, "steady", "wa")) == 2, 20, "wa to run the job")
    env.start_worker("p", "wb")
    time.sleep(2)
    h.cut()
    time.sleep(3)
    h.heal()
    st = env.wait_state(jid, timeout=40)
    eq(st.get("state"), "done", "state of the job")
    eq(st.get("attempt"), 1, "attempts of the job")
    eq([m[2] for m in env.marked("start", "steady")], ["wa"], "who started the job")
    eq([m[2] for m in env.marked("end", "steady")], ["wa"], "who ended the job")


def test_redis_restarts_short_lease(env):
    """Redis down ~1 s, three times, under a 3 s lease: every job runs exactly once"""
    n = 240
    env.write_mark_queue("r", concurrency=3, timeout="30s", lease="3s",
                         env=["TASAD_IT_SLEEP=0.25"])
    env.start_redis()
    daemons = [env.start_scheduler(), env.start_results(), env.start_worker("r", "wa"),
               env.start_worker("r", "wb")]
    tags = [f"r{i}" for i in range(n)]
    ids = env.submit_each("r", tags)
    for _ in range(3):
        wait_until(lambda: len(env.marked("start")) < n, 5, "jobs still to run")
        time.sleep(1.5)
        env.restart_redis(down_for=1.0)
    wait_until(lambda: env.tasactl("status", ids[0])[0] == 0, 20, "the daemons to reconnect")
    for jid in ids:
        eq(env.wait_state(jid, timeout=120).get("state"), "done", f"state of {jid}")
    starts = Counter(m[1] for m in env.marked("start"))
    twice = {t: c for t, c in starts.items() if c > 1}
    check(not twice, f"jobs run more than once while their worker lived: {twice}")
    eq(len(starts), n, "jobs that ran")
    for d in daemons:
        d.check_alive("after three Redis restarts")


if __name__ == "__main__":
    tasadtest.main(globals())
