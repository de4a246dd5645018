#!/usr/bin/env python3
"""`--check-config` of every daemon: a good configuration exits 0 without Redis; a bad queue
file or a bad tasad.conf exits non-zero with <file>:<line> in the message."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import BINARIES, check, eq  # noqa: E402


def run(env, kind, conf, *extra):
    argv = [str(BINARIES[kind]), "-c", str(conf), "--check-config", *extra]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=20, env=env.base_environ(),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{' '.join(argv)} did not finish in 20s (does it wait for Redis?)") from None
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    tasadtest.log(f"{kind} --check-config {' '.join(extra)} -> {r.returncode}: {out.strip()[:300]}")
    return r.returncode, out


DAEMONS = [("worker", ("q",)), ("scheduler", ()), ("results", ())]


def good_queue(env):
    env.write_queue("q", [env.job("exit.sh")], concurrency=2, timeout="10s", lease="3s",
                    arg_pattern="^[a-z0-9]+$")


def test_good_config_passes(env):
    """valid tasad.conf and queue file: exit 0 for all three daemons, Redis not running"""
    env.require("worker", "scheduler", "results")
    good_queue(env)
    failures = []
    for kind, extra in DAEMONS:
        rc, out = run(env, kind, env.conf, *extra)
        if rc != 0:
            failures.append(f"{kind} --check-config of a valid configuration exited {rc}: {out.strip()}")
    check(not failures, "\n    ".join(failures))


def expect_file_line(env, conf, path, line, what, daemons=DAEMONS):
    failures = []
    want = f"{path.name}:{line}"
    for kind, extra in daemons:
        rc, out = run(env, kind, conf, *extra)
        if rc == 0:
            failures.append(f"{kind} --check-config accepted {what}")
        elif want not in out:
            failures.append(f"{kind} --check-config on {what}: message lacks {want!r}: {out.strip()!r}")
    return failures


def test_bad_queue_file(env):
    """queue file with an unknown key, a wrong type, a bad value, a bad regex: file:line"""
    env.require("worker", "scheduler", "results")
    p = env.queues_dir / "q.conf"
    cmd = f'command = ["{env.job("exit.sh")}"];\n'
    head = cmd + 'concurrency = 2;\n'
    cases = [
        ("an unknown key", head + 'timeout = "10s";\nbogus_key = 1;\n', 4),
        ("a wrong type", head + 'timeout = "10s";\nretries = "two";\n', 4),
        ("a bad duration", head + 'lease = "3 fortnights";\n', 3),
        ("concurrency out of range", cmd + 'timeout = "10s";\nconcurrency = 0;\n', 3),
        ("an invalid regex", head + 'arg_pattern = "([a-z";\n', 3),
        ("a relative command path", 'concurrency = 1;\ncommand = ["exit.sh"];\n', 2),
        ("a syntax error", head + 'timeout = "10s";\nlease = ;\n', 4),
    ]
    failures = []
    for what, text, line in cases:
        p.write_text(text)
        failures += expect_file_line(env, env.conf, p, line, f"a queue file with {what}")
    check(not failures, "\n    ".join(failures))


def test_bad_tasad_conf(env):
    """tasad.conf with an unknown key or a bad Redis URL: file:line"""
    env.require("worker", "scheduler", "results")
    good_queue(env)
    good = env.conf.read_text().splitlines()
    cases = [
        ("an unknown key", "no_such_setting = 1;"),
        ("a bad redis URL", 'redis = "http://example.invalid";'),
        ("a bad prefix", 'prefix = "no spaces allowed";'),
    ]
    failures = []
    for what, setting in cases:
        # Replace the setting (a duplicate key would be an error of its own), as the last line.
        key = setting.split("=")[0].strip()
        lines = [l for l in good if not l.startswith(key + " ")] + [setting]
        bad = env.tmp / "bad.conf"
        bad.write_text("\n".join(lines) + "\n")
        failures += expect_file_line(env, bad, bad, len(lines), f"a tasad.conf with {what}")
    check(not failures, "\n    ".join(failures))


def test_credential_outside_units(env):
    """with redis_password_credential set, --check-config from a shell (no
    $CREDENTIALS_DIRECTORY) checks the rest and says it did not read the credential; given the
    directory, it reads it and names a missing file; a real start without it fails clearly"""
    env.require("worker", "scheduler", "results")
    good_queue(env)
    conf = env.write_conf(env.tmp / "cred.conf", redis_password_credential="tasad_redis-password")
    failures = []
    for kind, extra in DAEMONS:
        rc, out = run(env, kind, conf, *extra)
        if rc != 0 or "Not reading credential 'tasad_redis-password'" not in out:
            failures.append(f"{kind} --check-config without credentials: {rc}: {out.strip()[-300:]}")
    check(not failures, "\n    ".join(failures))
    creds = env.tmp / "creds"
    creds.mkdir()
    e = dict(env.base_environ(), CREDENTIALS_DIRECTORY=str(creds))
    r = subprocess.run([str(BINARIES["scheduler"]), "-c", str(conf), "--check-config"],
                       capture_output=True, timeout=20, env=e, stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    check(r.returncode != 0 and f"{creds}/tasad_redis-password" in out,
          f"--check-config with an empty credentials directory: {r.returncode}: {out.strip()[-300:]}")
    r = subprocess.run([str(BINARIES["scheduler"]), "-c", str(conf)], capture_output=True,
                       timeout=20, env=env.base_environ(), stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    check(r.returncode == 1 and "$CREDENTIALS_DIRECTORY is not set" in out,
          f"a start without credentials: {r.returncode}: {out.strip()[-300:]}")


if __name__ == "__main__":
    tasadtest.main(globals())
