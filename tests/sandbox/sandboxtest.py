"""Shared by the `sandbox` suite: the hostile job program and small helpers on top of the
integration harness (tests/integration/tasadtest.py)."""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
import tasadtest  # noqa: E402,F401
from tasadtest import check, eq  # noqa: E402,F401

HOSTILE = os.environ.get("TASAD_HOSTILE") or str(tasadtest.BUILD_DIR / "tests/sandbox/hostile")


def subprocess_run(argv: list[str], env, timeout: float = 60):
    """Runs a tasad binary by hand (as --check-config) with the harness' environment."""
    return subprocess.run(argv, capture_output=True, text=True, env=env.base_environ(),
                          timeout=timeout)


def require_hostile() -> str:
    if not os.access(HOSTILE, os.X_OK):
        raise tasadtest.SkipTest(f"not built yet: {HOSTILE}")
    return HOSTILE


def run(env, queue: str, *args: str, timeout: float = 60) -> dict:
    """Submits one job and returns its final status (tasactl --json status)."""
    jid = env.submit(queue, "--", *args)
    st = env.wait_state(jid, timeout=timeout)
    st["id"] = jid
    return st


def stdout(env, st: dict) -> str:
    rc, out, err = env.tasactl("result", st["id"])
    eq(rc, 0, f"tasactl result {st['id']} ({err.strip()})")
    return out.decode("utf-8", "replace")


def stderr(env, st: dict) -> str:
    rc, out, err = env.tasactl("result", "--stderr", st["id"])
    eq(rc, 0, f"tasactl result --stderr {st['id']} ({err.strip()})")
    return out.decode("utf-8", "replace")


def expect(st: dict, state: str, outcome: str, detail_has: str | None = None,
           attempts: int | None = None) -> None:
    what = f"job {st.get('id')} ({' '.join(st.get('args') or [])})"
    eq(st.get("state"), state, f"state of {what}")
    eq(st.get("outcome"), outcome, f"outcome of {what}")
    if detail_has is not None:
        check(detail_has in (st.get("detail") or ""),
              f"detail of {what} is {st.get('detail')!r}, expected it to mention {detail_has!r}")
    if attempts is not None:
        eq(st.get("attempt"), attempts, f"attempts of {what}")
