#!/usr/bin/env python3
"""Jobs are apart (DESIGN.md §3, issue #12): every running job of a queue without `user` has an
account of its own, so a job of one queue cannot read another job's environment, stdin or
memory, enter its directory, or signal it, and kill(-1) reaches only its own processes; and
every process a job started dies with it when it ends, times out, is cancelled, or its worker
is killed. Each observation is paired with a queue whose jobs share one account (user =
"nobody"), where the spy does succeed: a layer that silently stopped working fails."""

import os
import time

import sandboxtest
from sandboxtest import check, eq, expect, stdout, tasadtest
from tasadtest import wait_until


def proc_args(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def proc_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1


def find_job(env, mode: str, timeout: float = 20) -> int:
    def look():
        return [p for p in env.job_processes() if proc_args(p)[1:2] == [mode]]
    pids = wait_until(look, timeout, f"a running job in mode {mode}")
    return pids[0]


def spy_on(env, victim_q: str, spy_q: str) -> tuple[dict, dict, str]:
    victim = env.submit(victim_q, "--", "victim", "6", opts=["--stdin"],
                        input=b"the victim's payload")
    pid = find_job(env, "victim")
    st = sandboxtest.run(env, spy_q, "spy", str(pid))
    expect(st, "done", "exit:0")
    lines = dict(l.split(" ", 1) for l in stdout(env, st).splitlines())
    vst = env.wait_state(victim, timeout=30)
    vst["id"] = victim
    return lines, vst, str(pid)


def test_jobs_cannot_see_or_signal_each_other(env):
    """a spy job cannot read, write or signal a job of another queue; kill(-1) spares it"""
    hostile = sandboxtest.require_hostile()
    secret = ["GREETING=the-victim-secret"]
    env.write_queue("victim", [hostile], user=None, env=secret, timeout="60s")
    env.write_queue("spy", [hostile], user=None, timeout="60s")
    env.start_stack("victim", "spy")
    lines, vst, pid = spy_on(env, "victim", "spy")
    for what in ("environ", "stdin", "mem", "cwd", "signal"):
        check(lines.get(what, "").startswith("denied"),
              f"the spy's {what} attempt on pid {pid}: {lines.get(what)!r} (expected denied)")
    expect(vst, "done", "exit:0")  # the spy's kill(-1, SIGKILL) did not reach it
    eq(stdout(env, vst).strip(), "the victim's payload", "the victim's payload after the spy")


def test_shared_account_is_not_apart(env):
    """the opposite observation: two queues whose jobs share user = nobody do see each other"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("victim", [hostile], user="nobody", env=["GREETING=x"], timeout="60s")
    env.write_queue("spy", [hostile], user="nobody", timeout="60s")
    env.start_stack("victim", "spy")
    lines, vst, pid = spy_on(env, "victim", "spy")
    eq(lines.get("environ"), "ok", "a job of the same account reads /proc/PID/environ")
    eq(lines.get("signal"), "ok", "a job of the same account may signal")
    eq(vst.get("state"), "failed", "the victim, killed by the spy's kill(-1)")


def test_own_account_per_running_job(env):
    """two jobs running at once have different accounts from the reserved range, and the
    range's next jobs reuse them"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("pair", [hostile], user=None, concurrency=2, timeout="60s")
    env.start_stack("pair")
    ids = [env.submit("pair", "--", "victim", "3") for _ in range(2)]
    wait_until(lambda: len([p for p in env.job_processes() if proc_args(p)[1:2] == ["victim"]])
               == 2, 20, "both jobs running")
    uids = {proc_uid(p) for p in env.job_processes() if proc_args(p)[1:2] == ["victim"]}
    eq(len(uids), 2, f"accounts of two running jobs ({uids})")
    check(all(400000 <= u < 400000 + 1024 for u in uids), f"accounts outside the range: {uids}")
    for jid in ids:
        eq(env.wait_state(jid, timeout=30).get("state"), "done", f"state of {jid}")


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def orphans(env) -> list[int]:
    return [p for p in env.job_processes() if comm(p) == "tasad-orphan"]


def no_job_processes(env, what: str) -> None:
    wait_until(lambda: not env.job_processes(), 10,
               f"every process of the job to be gone after {what} "
               f"(left: {[(p, proc_args(p)) for p in env.job_processes()]})")


def orphan_queue(env, **keys):
    hostile = sandboxtest.require_hostile()
    env.write_queue("orph", [hostile], user=None, kill_grace="1s", **keys)


def test_orphan_dies_when_job_ends(env):
    """a grandchild in its own session does not outlive its job's normal end"""
    orphan_queue(env, timeout="60s")
    env.start_stack("orph")
    st = sandboxtest.run(env, "orph", "orphan", "60", "0")
    expect(st, "done", "exit:0")
    no_job_processes(env, "the job ended")


def test_orphan_dies_on_timeout(env):
    """... nor its timeout"""
    orphan_queue(env, timeout="2s")
    env.start_stack("orph")
    st = sandboxtest.run(env, "orph", "orphan", "60", "60")
    expect(st, "failed", "timeout")
    no_job_processes(env, "the timeout")


def test_orphan_dies_on_cancel(env):
    """... nor a cancel"""
    orphan_queue(env, timeout="60s")
    env.start_stack("orph")
    jid = env.submit("orph", "--", "orphan", "60", "60")
    wait_until(lambda: orphans(env), 20, "the job to leave its orphan")
    env.tasactl_ok("cancel", jid)
    eq(env.wait_state(jid, timeout=30).get("state"), "cancelled", "state after the cancel")
    no_job_processes(env, "the cancel")


def test_orphan_dies_with_its_worker(env):
    """... nor the SIGKILL of its worker: the job and its orphan die, the job runs again"""
    orphan_queue(env, timeout="60s", lease="2s")
    daemons = env.start_stack("orph")
    jid = env.submit("orph", "--", "orphan", "60", "60")
    wait_until(lambda: orphans(env), 20, "the job to leave its orphan")
    daemons["orph"].kill()
    no_job_processes(env, "the worker was killed")
    del jid


if __name__ == "__main__":
    tasadtest.main(globals())
