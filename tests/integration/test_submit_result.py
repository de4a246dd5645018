#!/usr/bin/env python3
"""Scenario 1: submit -> result. Arguments reach the job as argv (no shell), stdout/stderr come
back byte for byte through tasactl and on disk under <results_dir>/<queue>/<id>/, result.json
classifies the outcome, a binary payload round-trips through stdin, and `submit --wait` passes
the job's exit status through (N, 124 for a timeout, 128+signal)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import BINARIES, check, eq, holds_for, wait_until  # noqa: E402

QUEUE_KEYS = dict(concurrency=2, timeout="20s", kill_grace="1s", lease="3s")


def setup(env):
    env.write_queue("echo", [env.job("echo.sh")], **QUEUE_KEYS)
    env.write_queue("exit", [env.job("exit.sh")],
                    env=[f"TASAD_IT_MARK={env.tmp / 'runs'}"], **QUEUE_KEYS)


def wait_result_files(env, queue, jid, stdout, stderr):
    d = env.results_dir / queue / jid

    def gathered():
        if not (d / "result.json").is_file():
            return None
        if (d / "stdout").read_bytes() != stdout or (d / "stderr").read_bytes() != stderr:
            return None
        return json.loads((d / "result.json").read_text())

    try:
        return wait_until(gathered, 20, f"{d}/{{stdout,stderr,result.json}} with the job's output")
    except AssertionError:
        listing = sorted(p.name for p in d.iterdir()) if d.is_dir() else "missing"
        detail = ""
        if (d / "stdout").is_file():
            detail = f"; stdout on disk {(d / 'stdout').read_bytes()[:200]!r}"
        raise AssertionError(f"results not gathered as expected in {d} (contents: {listing}){detail}")


def test_args_stdout_stderr_and_files(env):
    """args as argv, stdout/stderr via tasactl and on disk, status and result.json"""
    setup(env)
    env.start_stack("echo")
    args = ["hello", "two words", "$HOME;*", "wörld"]
    jid = env.submit("echo", *args)
    rc, out, err = env.tasactl("wait", jid)
    eq(rc, 0, f"tasactl wait exit status (stderr: {err.strip()})")
    st = env.status(jid)
    for k, v in dict(id=jid, queue="echo", state="done", outcome="exit:0", exit_code=0,
                     attempt=1, args=args).items():
        eq(st.get(k), v, f"status field {k}")
    expected = "".join(f"arg:{a}\n" for a in args).encode()
    eq(env.tasactl_ok("result", jid), expected, "tasactl result (stdout bytes)")
    eq(env.tasactl_ok("result", "--stderr", jid), b"echo.sh on stderr\n", "tasactl result --stderr")
    eq(st.get("stdout_bytes"), len(expected), "status stdout_bytes")
    eq(st.get("stdout_truncated"), False, "status stdout_truncated")
    rj = wait_result_files(env, "echo", jid, expected, b"echo.sh on stderr\n")
    eq(rj.get("outcome"), "exit:0", "result.json outcome")
    eq(rj.get("exit_code"), 0, "result.json exit_code")
    # TASAD_CONF selects the configuration file as -c does.
    e = env.base_environ()
    e["TASAD_CONF"] = str(env.conf)
    r = subprocess.run([str(BINARIES["tasactl"]), "--json", "status", jid], env=e,
                       capture_output=True, timeout=30)
    eq(r.returncode, 0, f"tasactl status with TASAD_CONF and no -c ({r.stderr.decode().strip()})")
    eq(json.loads(r.stdout).get("state"), "done", "state through TASAD_CONF")


def test_binary_payload_round_trip(env):
    """every byte value through --stdin and --payload-file reaches the job's stdin unchanged"""
    setup(env)
    env.start_stack("echo")
    payload = bytes(range(256)) * 3 + b"\x00\r\n\xff no newline at end"
    jid = env.submit("echo", opts=["--stdin"], input=payload)
    eq(env.tasactl("wait", jid)[0], 0, "tasactl wait")
    eq(env.tasactl_ok("result", jid), payload, "stdout of a job echoing its binary payload")
    eq(env.status(jid).get("stdout_bytes"), len(payload), "status stdout_bytes")
    wait_result_files(env, "echo", jid, payload, b"echo.sh on stderr\n")

    pf = env.tmp / "payload.bin"
    pf.write_bytes(payload[::-1])
    jid2 = env.submit("echo", opts=["--payload-file", str(pf)])
    eq(env.tasactl("wait", jid2)[0], 0, "tasactl wait (payload file)")
    eq(env.tasactl_ok("result", jid2), payload[::-1], "stdout of the --payload-file job")

    rc, out, err = env.tasactl("submit", "--wait", "--stdin", "echo", input=payload)
    eq(rc, 0, f"submit --wait --stdin exit status ({err.strip()})")
    eq(out, payload, "stdout printed by submit --wait")


def test_wait_exit_code_passthrough(env):
    """submit --wait exits with the job's code; failed jobs are classified exit:N / signal:NAME"""
    setup(env)
    env.write_mark_queue("slow", timeout="20s", kill_grace="1s", lease="3s")
    env.start_stack("exit", "slow")
    for code in (0, 3, 42):
        rc, out, err = env.tasactl("submit", "--wait", "exit", str(code))
        eq(rc, code, f"submit --wait of a job exiting {code} (stderr: {err.strip()})")
        eq(out, f"exiting with {code}\n".encode(), f"stdout printed by submit --wait (code {code})")
    rc, out, err = env.tasactl("submit", "--wait", "exit", "sig:KILL")
    eq(rc, 128 + 9, f"submit --wait of a job killed by SIGKILL (stderr: {err.strip()})")
    rc, out, err = env.tasactl("submit", "--wait", "--timeout", "1s", "slow", "t", "30")
    eq(rc, 124, f"submit --wait --timeout 1s of a job sleeping 30s (stderr: {err.strip()})")

    jid = env.submit("exit", "3")
    rc, _, err = env.tasactl("wait", jid)
    eq(rc, 1, f"tasactl wait of a failed job ({err.strip()})")
    st = env.status(jid)
    for k, v in dict(state="failed", outcome="exit:3", exit_code=3, attempt=1).items():
        eq(st.get(k), v, f"status field {k} of a job exiting 3")
    rj = wait_result_files(env, "exit", jid, b"exiting with 3\n", b"")
    eq(rj.get("outcome"), "exit:3", "result.json outcome")
    eq(rj.get("exit_code"), 3, "result.json exit_code")

    jid = env.submit("exit", "sig:KILL")
    st = env.wait_state(jid)
    eq((st.get("state"), st.get("outcome")), ("failed", "signal:KILL"), "state/outcome of a job killed by SIGKILL")


def test_argument_substitution(env):
    """"{1}" and "{args}" elements of the command are replaced by the job's arguments"""
    env.write_queue("one", [env.job("echo.sh"), "pre", "{1}", "post"], **QUEUE_KEYS)
    env.write_queue("all", [env.job("echo.sh"), "a", "{args}", "z"], **QUEUE_KEYS)
    env.start_stack("one", "all")
    j1 = env.submit("one", "x y")
    j2 = env.submit("all", "1", "2", "3")
    eq(env.tasactl("wait", j1, j2)[0], 0, "tasactl wait of both")
    eq(env.tasactl_ok("result", j1), b"arg:pre\narg:x y\narg:post\n", "{1} substituted")
    eq(env.tasactl_ok("result", j2), b"arg:a\narg:1\narg:2\narg:3\narg:z\n", "{args} substituted")


def test_idempotency_key(env):
    """--id: a second submission with the same id stores nothing and runs nothing"""
    setup(env)
    env.start_stack("exit")
    eq(env.submit("exit", "0", opts=["--id", "key-1"]), "key-1", "id printed for --id key-1")
    eq(env.tasactl("wait", "key-1")[0], 0, "wait key-1")
    eq(env.submit("exit", "0", opts=["--id", "key-1"]), "key-1", "id printed for the repeat")
    runs = env.tmp / "runs"
    holds_for(lambda: len(runs.read_text().splitlines()) == 1, 2.0,
              "the job with id key-1 ran exactly once")
    eq(env.status("key-1").get("attempt"), 1, "attempt of key-1")


if __name__ == "__main__":
    tasadtest.main(globals())
