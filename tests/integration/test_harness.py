#!/usr/bin/env python3
"""The harness itself, without any tasad binary: a real redis-server that replays its AOF across
a restart, the NOTIFY_SOCKET listener (fed by libsystemd's systemd-notify and by raw datagrams),
and the clean-up of processes left behind by jobs."""

import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, wait_until  # noqa: E402


def test_redis_restart_replays_aof(env):
    """redis-server on a Unix socket: data written before a SIGTERM is there after a restart"""
    env.start_redis()
    eq(env.redis_cli("SET", "tasadit:probe", "v1").strip(), "OK", "SET")
    env.redis_cli("RPUSH", "tasadit:{q}:ready", "a", "b", "c")
    rc = env.stop_redis()
    eq(rc, 0, "redis-server exit status after SIGTERM")
    check(not env.redis_ping(), "redis still answers PING after it was stopped")
    env.start_redis()
    eq(env.redis_cli("GET", "tasadit:probe").strip(), "v1", "value after AOF replay")
    eq(env.redis_cli("LRANGE", "tasadit:{q}:ready", "0", "-1").split(), ["a", "b", "c"],
       "list after AOF replay")
    eq(env.redis_keys("tasadit:*"), {"tasadit:probe", "tasadit:{q}:ready"}, "keys after replay")
    check((env.redis_dir / "appendonlydir").is_dir(), "no appendonlydir: AOF was not on")


def test_notify_listener(env):
    """NOTIFY_SOCKET listener: keeps every assignment in order, waits for patterns"""
    lst = tasadtest.NotifyListener(env.tmp / "notify-probe.sock", "probe",
                                   lambda k, v: {"seen": k})
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"STATUS=q: connecting to Redis", str(lst.path))
        s.sendto(b"READY=1\nSTATUS=q: 0/2 running, 0 done, 0 failed", str(lst.path))
        s.close()
        m = lst.wait("READY", "^1$", timeout=5)
        eq(m[3], {"seen": "READY"}, "on_message result kept with the message")
        lst.wait("STATUS", r"0/2 running", timeout=5)
        eq([v for _, k, v, _ in lst.snapshot() if k == "STATUS"],
           ["q: connecting to Redis", "q: 0/2 running, 0 done, 0 failed"], "STATUS order")
        # libsystemd's own sender, as the daemons use it.
        e = dict(os.environ, NOTIFY_SOCKET=str(lst.path))
        r = subprocess.run(["/usr/bin/systemd-notify", "STOPPING=1", "STATUS=bye"], env=e,
                           capture_output=True, timeout=10)
        eq(r.returncode, 0, f"systemd-notify exit ({r.stderr.decode().strip()})")
        lst.wait("STOPPING", "^1$", timeout=5)
        lst.wait("STATUS", "^bye$", timeout=5)
        try:
            lst.wait("WATCHDOG", timeout=0.3)
        except AssertionError:
            pass
        else:
            raise AssertionError("wait() returned a message that was never sent")
    finally:
        lst.close()


def test_leaked_job_cleanup(env):
    """processes carrying this test's TASAD_IT_TMP are found and killed by pid"""
    e = dict(os.environ, TASAD_IT_TMP=str(env.tmp))
    p = subprocess.Popen(["/bin/sleep", "60"], env=e, start_new_session=True)
    other = subprocess.Popen(["/bin/sleep", "60"])
    try:
        wait_until(lambda: p.pid in env.job_processes(), 5, "the sleep to be found")
        check(other.pid not in env.job_processes(), "a process without the marker was matched")
        eq(env.kill_leaked_jobs(), [p.pid], "pids killed")
        p.wait(5)
        eq(p.returncode, -signal.SIGKILL, "status of the killed process")
        check(not tasadtest.pid_alive(p.pid), "killed process still alive")
    finally:
        for q in (p, other):
            if q.poll() is None:
                q.kill()
                q.wait()


def test_wait_helpers(env):
    """wait_until fails with the condition's name; holds_for fails when it breaks"""
    t = time.monotonic()
    try:
        wait_until(lambda: False, 0.3, "something impossible")
    except AssertionError as e:
        check("something impossible" in str(e), f"message: {e}")
    else:
        raise AssertionError("wait_until did not fail")
    check(time.monotonic() - t >= 0.3, "wait_until returned before its timeout")
    deadline = time.monotonic() + 0.2
    try:
        tasadtest.holds_for(lambda: time.monotonic() < deadline, 2, "clock")
    except AssertionError:
        pass
    else:
        raise AssertionError("holds_for did not fail")


if __name__ == "__main__":
    tasadtest.main(globals())
