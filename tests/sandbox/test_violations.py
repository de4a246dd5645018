#!/usr/bin/env python3
"""A job that makes a system call its policy forbids is stopped, recorded as
`sandbox-violation` with the call's name, not retried, and logged at warning level with the
job's fields; the worker goes on serving the next job. One worker of a queue with the `default`
policy runs tests/sandbox/hostile.c in each mode in turn, as user nobody."""

import sandboxtest
from sandboxtest import check, eq, expect, run, stdout, tasadtest

# mode -> the system call named in the result
VIOLATIONS = {
    "ptrace": "ptrace",
    "mount": "mount",
    "unshare": "unshare",
    "clone-ns": "clone",
    "kexec": "kexec_load",
    "bpf": "bpf",
    "keyctl": "keyctl",
    "socket": "socket",
}


def test_each_forbidden_call_is_a_named_violation(env):
    """ptrace, mount, unshare, clone(CLONE_NEWNET), kexec_load, bpf, keyctl, an AF_INET socket
    under `default`: sandbox-violation naming the call, one attempt of three allowed"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("hostile", [hostile], policy="default", user="nobody", retries=2,
                    backoff="1s", timeout="30s")
    stack = env.start_stack("hostile")
    worker = stack["hostile"]
    st = run(env, "hostile", "ok")
    expect(st, "done", "exit:0")
    ids = {}
    for mode, call in VIOLATIONS.items():
        st = run(env, "hostile", mode)
        expect(st, "failed", "sandbox-violation", f"system call {call} ", attempts=1)
        ids[mode] = st["id"]
        out = stdout(env, st)
        check("returned" not in out, f"{mode}: the call returned to the job: {out!r}")
        # The worker is still there and takes the next job at once.
        worker.check_alive(f"after the {mode} job")
        expect(run(env, "hostile", "ok"), "done", "exit:0")
    log = worker.log_text().splitlines()
    for mode, call in VIOLATIONS.items():
        lines = [l for l in log if f"job={ids[mode]} " in l and f"Job {ids[mode]}: failed" in l]
        check(len(lines) == 1, f"{mode}: expected one 'Job failed' line for job {ids[mode]}, "
                               f"got {lines!r}")
        check(f": warning: Job {ids[mode]}: failed: sandbox-violation, system call {call} "
              in lines[0] and
              "exit=sandbox-violation]" in lines[0],
              f"{mode}: not a warning with the call and the job's fields: {lines[0]!r}")


def test_network_client_allows_what_default_forbids(env):
    """control: the same socket() call is allowed under `network-client` (the violation above
    comes from the policy, not from something else in the sandbox)"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("net", [hostile], policy="network-client", user="nobody")
    env.start_stack("net")
    st = run(env, "net", "socket")
    expect(st, "failed", "exit:2")
    check("socket(AF_INET) returned" in stdout(env, st), "socket() did not return under network-client")


def test_unconfined_installs_no_filter(env):
    """policy = "unconfined" (the benchmark's reference, an operator's explicit opt-out): the job
    runs without a seccomp filter (Seccomp: 0, where `default` gives 2), every other layer stays
    (NoNewPrivs: 1, user nobody), a call `default` forbids returns, and the worker says so once
    at start as a warning; --check-config names it"""
    hostile = sandboxtest.require_hostile()
    status = ["/bin/grep", "-E", "^(Seccomp|NoNewPrivs|Uid):", "/proc/self/status"]
    env.write_queue("free", status, policy="unconfined", user="nobody", max_args=0)
    env.write_queue("confined", status, policy="default", user="nobody", max_args=0)
    env.write_queue("hostile", [hostile], policy="unconfined", user="nobody")
    stack = env.start_stack("free", "confined", "hostile")
    st = run(env, "free")
    expect(st, "done", "exit:0")
    fields = dict(l.split(":\t", 1) for l in stdout(env, st).splitlines())
    eq(fields.get("Seccomp"), "0", f"Seccomp of an unconfined job ({fields})")
    eq(fields.get("NoNewPrivs"), "1", f"NoNewPrivs of an unconfined job ({fields})")
    nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
    eq(fields.get("Uid", "").split("\t")[0], nobody, f"uid of an unconfined job ({fields})")
    st = run(env, "confined")
    expect(st, "done", "exit:0")
    check("Seccomp:\t2" in stdout(env, st), "control: a `default` job has a filter")
    st = run(env, "hostile", "ptrace")
    check(st.get("outcome") != "sandbox-violation", f"ptrace was stopped without a filter: {st}")
    check("returned" in stdout(env, st), f"ptrace did not return to the job: {stdout(env, st)!r}")
    warn = [l for l in stack["free"].log_text().splitlines() if "unconfined" in l]
    check(len(warn) == 1 and ": warning: " in warn[0] and "without a seccomp filter" in warn[0],
          f"expected one warning about the missing filter, got {warn!r}")
    conf, _ = env.worker_conf("free", "free")
    r = sandboxtest.subprocess_run([str(tasadtest.BINARIES["worker"]), "-c", str(conf),
                                    "--check-config", "free"], env)
    eq(r.returncode, 0, f"--check-config of an unconfined queue ({r.stderr.strip()})")
    check("Policy: unconfined (no seccomp filter)." in r.stdout, f"--check-config: {r.stdout!r}")


if __name__ == "__main__":
    tasadtest.main(globals())
