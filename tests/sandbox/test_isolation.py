#!/usr/bin/env python3
"""Isolation layers: descriptors, environment, working directory, account and namespaces.
Each assertion is paired with the opposite observation on a queue without the layer, so a
layer that silently stopped working fails the test."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import sandboxtest
from sandboxtest import check, eq, expect, run, stdout, tasadtest

SECRET = "TASAD_TEST_WORKER_SECRET=hunter2"


def parse_ns(out: str) -> dict:
    d = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if k == "ns":
            name, _, link = v.partition(" ")
            d[name] = link
        else:
            d[k] = v
    return d


def host_ns(name: str) -> str:
    return os.readlink(f"/proc/self/ns/{name}")


def test_descriptors_environment_workdir(env):
    """no descriptor above 2, only the queue's variables plus PATH and TASAD_*, the worker's
    environment unreadable, a fresh per-job directory owned by the job's user, removed after"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("iso", [hostile], user="nobody", env=["GREETING=hello"])
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    # The worker inherits a descriptor without O_CLOEXEC, as a daemon started carelessly might:
    # only closing every descriptor in the child keeps it from the job.
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_r, True)
    try:
        env.start_worker("iso", extra_env={SECRET.split("=")[0]: SECRET.split("=")[1]},
                         pass_fds=(leak_r,))
    finally:
        os.close(leak_r)
        os.close(leak_w)
    st = run(env, "iso", "fds")
    expect(st, "done", "exit:0")
    eq(stdout(env, st), "no inherited descriptors\n", "descriptors the job found above 2")
    st = run(env, "iso", "env")
    expect(st, "done", "exit:0")
    out = stdout(env, st)
    names = sorted(l[4:].split("=")[0] for l in out.splitlines() if l.startswith("env "))
    # TASAD_IT_TMP and TASAD_IT_WORKER are in the queue's env (the harness adds them).
    eq(names, sorted(["GREETING", "PATH", "TASAD_ATTEMPT", "TASAD_IT_TMP", "TASAD_IT_WORKER",
                      "TASAD_JOB_ID", "TASAD_QUEUE"]), "the job's environment variables")
    check(f"env TASAD_JOB_ID={st['id']}" in out, "TASAD_JOB_ID is not the job's id")
    check("parent environment not readable" in out, f"the job read the worker's environment: {out!r}")
    check("hunter2" not in out, "the worker's secret reached the job")

    st = run(env, "iso", "ns")
    d = parse_ns(stdout(env, st))
    nobody = pwd.getpwnam("nobody")
    eq(d.get("uid"), str(nobody.pw_uid), "uid of the job (user = nobody)")
    eq(d.get("gid"), str(nobody.pw_gid), "gid of the job")
    workdir = Path(env.tmp) / "work" / "iso" / f"{st['id']}.1"
    eq(d.get("cwd"), str(workdir), "the job's working directory")
    check(not workdir.exists(), f"{workdir} still exists after the job")


def test_no_new_privileges(env):
    """a set-uid-root program started by a job of user nobody runs with the job's uid
    (PR_SET_NO_NEW_PRIVS); the same program started as nobody outside tasad gets uid 0"""
    if not shutil.which("setpriv"):
        raise tasadtest.SkipTest("setpriv (util-linux) is not installed")
    d = Path(tempfile.mkdtemp(prefix="tasad-suid-"))
    try:
        os.chmod(d, 0o755)
        prog = d / "id"
        shutil.copy("/usr/bin/id", prog)
        os.chmod(prog, 0o4755)
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            str(prog), "-u"], capture_output=True, text=True, timeout=30)
        if r.stdout.strip() != "0":
            raise tasadtest.SkipTest(f"set-uid programs do not work here ({r.stdout.strip()!r}, "
                                     f"{r.stderr.strip()!r}): nothing to prove")
        env.write_queue("suid", [str(prog), "-u"], user="nobody")
        env.start_stack("suid")
        st = run(env, "suid")
        expect(st, "done", "exit:0")
        eq(stdout(env, st).strip(), str(pwd.getpwnam("nobody").pw_uid),
           "effective uid of a set-uid-root program run by a job")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_namespaces(env):
    """network = false: an empty network namespace (connecting to a port open on the host's
    127.0.0.1 is refused; nothing arrives); private_ipc, private_tmp: own IPC and mount
    namespaces, a file in /tmp stays invisible to the host. The same jobs on a queue without
    those keys share the host's namespaces and do connect."""
    hostile = sandboxtest.require_hostile()
    # A private /tmp (and /var/tmp) hides the host's, and the build directory may be under
    # /tmp (CI clones there): run a copy from /var/lib.
    bindir = Path(tempfile.mkdtemp(prefix="tasad-hostile-", dir="/var/lib"))
    try:
        os.chmod(bindir, 0o755)
        shutil.copy(hostile, bindir / "hostile")
        namespaces_with(env, str(bindir / "hostile"))
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


def namespaces_with(env, hostile: str) -> None:
    env.write_queue("closed", [hostile], user="nobody", policy="network-client", network=False,
                    private_ipc=True, private_tmp=True, concurrency=2)
    env.write_queue("open", [hostile], user="nobody", policy="network-client")
    stack = env.start_stack("closed", "open")
    # A privileged worker has a mount namespace of its own (the tmpfs it mounts on job
    # directories stay there); jobs of the open queue share it, not one of their own.
    worker_mnt = os.readlink(f"/proc/{stack['open'].proc.pid}/ns/mnt")

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    accepted = []

    def accept_loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            accepted.append(c)
    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        st = run(env, "closed", "connect", str(port))
        expect(st, "failed", "exit:3")
        check("Connection refused" in stdout(env, st) or "unreachable" in stdout(env, st),
              f"connect from network = false: {stdout(env, st)!r}")
        eq(len(accepted), 0, "connections that reached the host from network = false")
        st = run(env, "open", "connect", str(port))
        expect(st, "done", "exit:0")
        tasadtest.wait_until(lambda: len(accepted) == 1, 5, "the open queue's connection")
    finally:
        srv.close()
        for c in accepted:
            c.close()

    closed = parse_ns(stdout(env, run(env, "closed", "ns")))
    opened = parse_ns(stdout(env, run(env, "open", "ns")))
    for name in ("net", "ipc", "mnt"):
        check(closed[name] != host_ns(name), f"{name} namespace of the closed queue is the host's")
        eq(opened[name], worker_mnt if name == "mnt" else host_ns(name),
           f"{name} namespace of the open queue")
    check(closed["mnt"] != worker_mnt, "the closed queue's job shares its worker's mounts")
    # Two jobs alive at once (a namespace's number is reused once it is gone).
    a, b = env.submit("closed", "ns", "2"), env.submit("closed", "ns", "2")
    both = []
    for jid in (a, b):
        st = env.wait_state(jid, timeout=30)
        st["id"] = jid
        expect(st, "done", "exit:0")
        both.append(parse_ns(stdout(env, st)))
    eq(both[0]["net"], both[1]["net"], "the empty network namespace is made once per worker")
    check(both[0]["ipc"] != both[1]["ipc"], "two jobs at once share an IPC namespace")
    check(both[0]["mnt"] != both[1]["mnt"], "two jobs at once share a mount namespace")

    name = f"tasad-sandbox-probe-{os.getpid()}"
    try:
        expect(run(env, "closed", "tmp", name), "done", "exit:0")
        check(not Path("/tmp", name).exists(), "a file the job made in its private /tmp is on the host")
        expect(run(env, "open", "tmp", name), "done", "exit:0")
        check(Path("/tmp", name).exists(), "control: the open queue's /tmp is not the host's")
    finally:
        Path("/tmp", name).unlink(missing_ok=True)


if __name__ == "__main__":
    tasadtest.main(globals())
