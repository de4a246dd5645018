#!/usr/bin/env python3
"""`tasactl policy check` and `tasad-worker --check-config` validate profiles and print the
resolved system calls; bad profiles and missing ones are reported with file:line."""

import json
import os
import subprocess

import sandboxtest
from sandboxtest import check, eq, tasadtest


def test_tasactl_policy_check(env):
    """check default (text and --json), a file with an error, an unknown name"""
    rc, out, err = env.tasactl("policy", "check", "default")
    eq(rc, 0, f"tasactl policy check default ({err.strip()})")
    text = out.decode()
    for word in ("read", "execve", "ptrace", "socket"):
        check(word in text, f"'{word}' missing from the resolved default policy:\n{text[:3000]}")
    rc, out, err = env.tasactl("policy", "check", "default", json_out=True)
    eq(rc, 0, "tasactl --json policy check default")
    p = json.loads(out)
    rules = {(r["syscall"], r["action"]) for r in p["rules"]}
    check(("read", "allow") in rules, "read is not allowed by default")
    check(("ptrace", "kill") in rules, "ptrace is not killed by default")
    ptrace = [r for r in p["rules"] if r["syscall"] == "ptrace"][0]
    eq(ptrace["origin"], "tasad", "origin of the always-denied ptrace rule")
    sock = [r for r in p["rules"] if r["syscall"] == "socket"]
    check(sock and all(r["when"] for r in sock), f"socket is not conditional under default: {sock}")

    bad = env.tmp / "mine.policy"
    bad.write_text('version = 1;\ndescription = "x";\ndefault_action = "kill";\n'
                   'allow = [ "read", "ptrace" ];\n')
    rc, out, err = env.tasactl("policy", "check", str(bad))
    eq(rc, 1, "exit status for a profile allowing ptrace")
    check(f"{bad}:4:" in err and "ptrace" in err and "always denied" in err,
          f"error for allow ptrace: {err!r}")
    rc, out, err = env.tasactl("policy", "check", "no-such-policy")
    eq(rc, 1, "exit status for an unknown policy")
    check("no-such-policy" in err, f"error for an unknown policy: {err!r}")
    rc, out, err = env.tasactl("policy", "groups")
    eq(rc, 0, "tasactl policy groups")
    check("@basic-io" in out.decode(), "no @basic-io in the groups")


def test_worker_check_config(env):
    """--check-config prints the host's sandbox and the resolved policy; a missing profile is
    an error naming it"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("q", [hostile], policy="strict")
    conf, _ = env.worker_conf("q", "q")
    argv = [str(tasadtest.BINARIES["worker"]), "-c", str(conf), "--check-config", "q"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env.base_environ(), timeout=60)
    eq(r.returncode, 0, f"--check-config of a good queue ({r.stderr.strip()})")
    check("Job sandbox on this host:" in r.stdout, f"no sandbox line: {r.stdout[:2000]}")
    check("strict" in r.stdout and "exit_group" in r.stdout, f"no resolved policy: {r.stdout[:3000]}")
    env.write_queue("q", [hostile], policy="nonexistent")
    conf, _ = env.worker_conf("q", "q")
    r = subprocess.run(argv, capture_output=True, text=True, env=env.base_environ(), timeout=60)
    eq(r.returncode, 1, "--check-config with a missing policy")
    check('no profile "nonexistent"' in r.stderr, f"error for a missing policy: {r.stderr!r}")


def test_override_and_unusable_profiles(env):
    """a profile in the first policy directory overrides the shipped one of that name; a
    profile without execve is refused by the worker (no job could start)"""
    hostile = sandboxtest.require_hostile()
    mine = env.tmp / "policy"
    mine.mkdir()
    (mine / "strict.policy").write_text(
        'version = 1;\ndescription = "site override";\nextends = "default";\n')
    (mine / "noexec.policy").write_text(
        'version = 1;\ndescription = "cannot start";\nextends = "default";\n'
        'deny = [ "execve" ];\n')
    conf = env.write_conf(policy_dirs=[str(mine), str(tasadtest.POLICY_DIR)])
    rc, out, err = env.tasactl("policy", "check", "strict", conf=conf, json_out=True)
    eq(rc, 0, f"policy check of the override ({err.strip()})")
    p = json.loads(out)
    eq(p["path"], str(mine / "strict.policy"), "the profile found first")
    eq(p["description"], "site override", "description of the override")

    env.write_queue("q", [hostile], policy="noexec")
    wconf, _ = env.worker_conf("q", "q")
    text = wconf.read_text().replace(f'"{tasadtest.POLICY_DIR}"',
                                     f'"{mine}", "{tasadtest.POLICY_DIR}"')
    wconf.write_text(text)
    argv = [str(tasadtest.BINARIES["worker"]), "-c", str(wconf), "--check-config", "q"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env.base_environ(), timeout=60)
    eq(r.returncode, 1, "--check-config of a queue whose policy denies execve")
    check('does not allow execve' in r.stderr, f"error for a policy without execve: {r.stderr!r}")


if __name__ == "__main__":
    tasadtest.main(globals())
