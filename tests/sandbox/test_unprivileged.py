#!/usr/bin/env python3
"""The sandbox without privileges. A worker running as nobody with no capabilities makes its
namespaces inside its own user namespace and runs jobs as itself; a worker that cannot make
namespaces at all refuses a queue that asks for them, unless the queue allows degrading, and
then says so in its log."""

import os
import pwd
import shutil
from pathlib import Path

import sandboxtest
from sandboxtest import check, eq, expect, run, stdout, tasadtest
from test_isolation import host_ns, parse_ns

WRAP = str(Path(__file__).resolve().parent / "userns-wrap.py")


def open_up_for(env, user: str) -> None:
    """Lets an unprivileged worker read its configuration, reach Redis, and write its work
    directory and its control socket's directory in this test's temporary directory."""
    pw = pwd.getpwnam(user)
    os.chmod(env.tmp, 0o755)
    for d in (Path(env.tmp) / "work", env.run_dir / "w-worker"):
        d.mkdir(exist_ok=True)
        os.chown(d, pw.pw_uid, pw.pw_gid)


def test_unprivileged_worker_uses_a_user_namespace(env):
    """worker as nobody, all capabilities dropped: network = false, private_ipc and
    limit_work_dir still hold (inside the worker's user namespace), jobs run as nobody, the
    worker's log says so"""
    hostile = sandboxtest.require_hostile()
    if not shutil.which("setpriv"):
        raise tasadtest.SkipTest("setpriv (util-linux) is not installed")
    open_up_for(env, "nobody")
    env.write_queue("unpriv", [hostile], user=None, network=False, private_ipc=True,
                    limit_work_dir="32M")
    env.start_redis(socket_perm="777")
    env.start_scheduler()
    env.start_results()
    old = os.umask(0)  # the worker's notify socket must be writable by nobody
    try:
        w = env.start_worker("unpriv", wrapper=["setpriv", "--reuid=nobody", "--regid=nogroup",
                                                "--clear-groups", "--inh-caps=-all",
                                                "--bounding-set=-all", "--"])
    finally:
        os.umask(old)
    check("Job sandbox: unprivileged" in w.log_text(), "the worker did not log its mode:\n"
          + w.log_text()[-2000:])
    st = run(env, "unpriv", "ns")
    expect(st, "done", "exit:0")
    d = parse_ns(stdout(env, st))
    nobody = pwd.getpwnam("nobody")
    eq(d.get("uid"), str(nobody.pw_uid), "uid of a job of an unprivileged worker")
    check(d["user"] != host_ns("user"), "the job is not in the worker's user namespace")
    check(d["net"] != host_ns("net"), "network = false did not hold without privileges")
    check(d["ipc"] != host_ns("ipc"), "private_ipc did not hold without privileges")
    st = run(env, "unpriv", "env")
    check("parent environment not readable" in stdout(env, st),
          "a job running as the worker's own user read the worker's environment")
    # limit_work_dir without privileges: the job mounts the tmpfs in a mount namespace of its
    # own (in the worker's user namespace).
    st = run(env, "unpriv", "fill", "3", "1")
    expect(st, "done", "exit:0")
    check(f"fs tmpfs {32 << 20}" in stdout(env, st),
          f"the job's directory is not a 32 MiB tmpfs: {stdout(env, st)!r}")
    expect(run(env, "unpriv", "ptrace"), "failed", "sandbox-violation", "system call ptrace ")
    expect(run(env, "unpriv", "unshare"), "failed", "sandbox-violation", "system call unshare ")


def test_unavailable_layer_refuses_the_queue(env):
    """no namespaces possible (a user namespace with max_*_namespaces = 0): network = false is
    refused with a message naming the layer; with allow_degraded the worker runs, warns, and
    the job has the host's network"""
    sandboxtest.require_hostile()
    hostile = sandboxtest.HOSTILE
    env.write_queue("strictq", [hostile], network=False)
    env.write_queue("degraded", [hostile], network=False, private_tmp=True, allow_degraded=True)
    env.start_stack()
    w = env.start_worker("strictq", wrapper=[WRAP], ready=False)
    rc = w.wait_exit(30)
    eq(rc, 1, "exit status of a worker refusing its queue")
    log = w.log_text()
    check("network = false (an empty network namespace) is requested but unavailable" in log and
          "allow_degraded" in log, f"the refusal does not name the layer:\n{log[-2000:]}")

    w = env.start_worker("degraded", name="worker-degraded", wrapper=[WRAP])
    log = w.log_text()
    check(": warning: Queue 'degraded': network = false (an empty network namespace) is "
          "unavailable" in log, f"no warning about the dropped layer:\n{log[-2000:]}")
    check("private_tmp is unavailable" in log, f"no warning about private_tmp:\n{log[-2000:]}")
    st = run(env, "degraded", "ns")
    expect(st, "done", "exit:0")
    eq(parse_ns(stdout(env, st))["net"], host_ns("net"), "network of a degraded job")


if __name__ == "__main__":
    tasadtest.main(globals())
