#!/usr/bin/env python3
"""A job's disk use is bounded and nothing it wrote outlives it (issue #12): its working
directory is a tmpfs of limit_work_dir (30 files of 9 MiB, each within limit_file_size, no
longer fill the disk: the job fails as resource-limit naming limit_work_dir), and what a job
with an account of its own left in /tmp, /var/tmp, /dev/shm (and in a world-writable
directory under /tmp) is removed when it ends. Each observation is paired with its opposite
(no bound: all 30 files are written; a shared account: its leftovers stay), so a layer that
silently stopped working fails."""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import sandboxtest
from sandboxtest import check, eq, expect, run, stdout, tasadtest

MIB = 1 << 20


def fill_lines(env, st: dict) -> dict:
    return dict(l.split(" ", 1) for l in stdout(env, st).splitlines() if " " in l)


def test_work_dir_is_bounded(env):
    """limit_work_dir = 64M: the job's directory is a tmpfs of 64 MiB; 30 files of 9 MiB stop
    at the 8th (ENOSPC), resource-limit with limit_work_dir; with "infinity" all 30 land"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("small", [hostile], user=None, limit_work_dir="64M", limit_file_size="16M")
    env.write_queue("unbounded", [hostile], user=None, limit_work_dir="infinity",
                    limit_file_size="16M")
    env.start_stack("small", "unbounded")

    st = run(env, "small", "fill", "30", "9")
    expect(st, "failed", "resource-limit", detail_has="limit_work_dir")
    d = fill_lines(env, st)
    eq(d.get("fs"), f"tmpfs {64 * MIB}", "the bounded job's directory")
    check(d.get("error:") == "No space left on device", f"the write that failed: {d}")
    check(int(d.get("wrote", "99")) * 9 <= 64, f"files written within 64 MiB: {d}")

    st = run(env, "unbounded", "fill", "30", "9")
    expect(st, "done", "exit:0")
    d = fill_lines(env, st)
    eq(d.get("wrote"), "30", "files written without a bound")
    check(d.get("fs", "").startswith("other"), f"an unbounded job's directory is on disk: {d}")
    # Nothing of either is left on disk.
    for q in ("small", "unbounded"):
        left = list((Path(env.tmp) / "work" / q).iterdir())
        eq(left, [], f"what the jobs of {q} left in the work directory")


def test_default_bound_and_a_full_directory_that_succeeds(env):
    """the default is a 1 GiB tmpfs; a job that fills it and still exits 0 stays exit:0"""
    hostile = sandboxtest.require_hostile()
    env.write_queue("dflt", [hostile], user=None)
    env.write_queue("tiny", ["/bin/sh", "-c", "head -c 3000000 /dev/zero > f; exit 0"],
                    user=None, limit_work_dir="1M")
    env.start_stack("dflt", "tiny")
    st = run(env, "dflt", "fill", "1", "1")
    expect(st, "done", "exit:0")
    eq(fill_lines(env, st).get("fs"), f"tmpfs {1024 * MIB}", "the default job directory")
    expect(run(env, "tiny"), "done", "exit:0")


def litter(env, queue: str, *extra_dirs: Path) -> tuple[str, list[Path]]:
    name = f"tasad-litter-{uuid.uuid4().hex[:12]}"
    st = run(env, queue, "litter", name, *map(str, extra_dirs))
    expect(st, "done", "exit:0")
    out = stdout(env, st)
    paths = [Path(l.split(" ", 1)[1]) for l in out.splitlines() if l.startswith("created ")]
    check(not any(l.startswith("failed") for l in out.splitlines()),
          f"the job could not write where it should have: {out!r}")
    return name, paths


def test_leftovers_are_removed(env):
    """a job with its own account: its files in /tmp, /var/tmp, /dev/shm, a tree under /tmp
    and a file in a world-writable directory are gone when it ends; a job of a shared account
    (user = nobody) leaves them (documented), and a file of another account is untouched"""
    hostile = sandboxtest.require_hostile()
    shared = Path("/tmp") / f"tasad-ww-{uuid.uuid4().hex[:8]}"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    keep = shared / "not-the-jobs"
    keep.write_text("root's")
    try:
        env.write_queue("own", [hostile], user=None)
        env.write_queue("shared", [hostile], user="nobody")
        env.start_stack("own", "shared")

        name, paths = litter(env, "own", shared)
        eq(len(paths), 7, f"what the job created: {paths}")
        left = [p for p in paths if os.path.lexists(p)]
        eq(left, [], "what a job of its own account left in the temporary directories")
        check(keep.exists(), "a file of another account in the world-writable directory")

        name, paths = litter(env, "shared", shared)
        try:
            left = [p for p in paths if os.path.lexists(p)]
            eq(len(left), 7, "a job of a shared account keeps what it wrote (nothing owns it)")
        finally:
            for p in paths:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.lexists(p):
                    p.unlink()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_private_tmp_covers_var_tmp_and_shm(env):
    """private_tmp: /tmp, /var/tmp and /dev/shm are the job's own; nothing reaches the host's"""
    hostile = sandboxtest.require_hostile()
    # A private /tmp and /var/tmp hide the host's, and the build directory may be under /tmp
    # (CI clones there): run a copy from /var/lib.
    bindir = Path(tempfile.mkdtemp(prefix="tasad-hostile-", dir="/var/lib"))
    try:
        os.chmod(bindir, 0o755)
        shutil.copy(hostile, bindir / "hostile")
        env.write_queue("ptmp", [str(bindir / "hostile")], user="nobody", private_tmp=True)
        env.start_stack("ptmp")
        name, paths = litter(env, "ptmp")
        eq(len(paths), 6, f"what the job created: {paths}")
        left = [p for p in paths if os.path.lexists(p)]
        eq(left, [], "what a job with private_tmp wrote, seen on the host")
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


if __name__ == "__main__":
    tasadtest.main(globals())
