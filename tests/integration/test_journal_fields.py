#!/usr/bin/env python3
"""Scenario: with TASAD_LOG_TARGET=journal the worker logs to the systemd journal with structured
fields (lib/log.c, log_to_journal -> sd_journal_sendv), and nothing about its jobs goes to its
stderr.

No journald is needed, and none on the host is used or touched: the test process enters a private
mount namespace (unshare(CLONE_NEWNS), then / made recursively private so nothing propagates
back), mounts a tmpfs on /run/systemd/journal and binds its own AF_UNIX datagram socket at
/run/systemd/journal/socket, where sd_journal_sendv sends. Every daemon the harness starts
afterwards is a child of this process and inherits the namespace. A reader thread parses
journald's native protocol: "FIELD=value\\n" lines, or "FIELD\\n" + 64-bit little-endian length +
bytes + "\\n" for a value holding a newline; an entry too big for one datagram arrives as a memfd
passed with SCM_RIGHTS (and an empty payload), which is read from the descriptor. SO_PASSCRED
gives the sender's pid with each datagram (what journald records as _PID), so each entry is
attributed to the process that sent it. Needs root (CAP_SYS_ADMIN); otherwise the test is skipped
(exit 77) with the reason.

The daemon cannot be made to send a memfd (a message is at most 4 KiB), so the collector's memfd
and binary-field paths are checked with entries the test sends itself before the daemons start.

If /run/systemd/journal (or /run/systemd) does not exist it is created, as an empty directory on
the host's /run, before the tmpfs is mounted on it, and removed again at the end."""

import array
import ctypes
import fcntl
import os
import re
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import SkipTest, check, eq, log, wait_until  # noqa: E402

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

RUN_SYSTEMD = Path("/run/systemd")
JOURNAL_DIR = RUN_SYSTEMD / "journal"
JOURNAL_SOCKET = JOURNAL_DIR / "socket"

# journald's rule for a field a client may send (journal_field_valid, protected fields refused):
# 1-64 of A-Z 0-9 _, not starting with a digit; a leading "_" is a trusted field journald drops.
FIELD_NAME_RX = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_FDS = 16


# --------------------------------------------------------------------------------------------
# The private mount namespace with a tmpfs on /run/systemd/journal


class JournalNamespace:
    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_ulong, ctypes.c_void_p]
        self.libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.created: list[Path] = []
        self.mounted = False

    def _errno(self) -> str:
        e = ctypes.get_errno()
        return f"{os.strerror(e)} (errno {e})"

    def enter(self) -> "JournalNamespace":
        # unshare(CLONE_NEWNS) moves only the calling thread: do it from the main thread, before
        # any harness thread exists, so every process started later inherits it.
        check(threading.current_thread() is threading.main_thread(),
              "the namespace must be entered from the main thread")
        if self.libc.unshare(CLONE_NEWNS) != 0:
            raise SkipTest(f"unshare(CLONE_NEWNS) failed: {self._errno()}; needs root "
                           f"(CAP_SYS_ADMIN) to fake journald in a private mount namespace")
        log("entered a private mount namespace")
        # Without this, the tmpfs below could propagate to the host's mount table: never mount
        # anything unless it succeeded.
        if self.libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise SkipTest(f"mount --make-rprivate / failed in the new namespace: {self._errno()}")
        for d in (RUN_SYSTEMD, JOURNAL_DIR):
            if not d.is_dir():
                d.mkdir(mode=0o755)
                self.created.append(d)
                log(f"created {d} (removed again at the end)")
        if self.libc.mount(b"tmpfs", str(JOURNAL_DIR).encode(), b"tmpfs",
                           MS_NOSUID | MS_NODEV | MS_NOEXEC, b"mode=0755,size=4m") != 0:
            err = self._errno()
            self.leave()
            raise SkipTest(f"mounting a tmpfs on {JOURNAL_DIR} failed: {err}")
        self.mounted = True
        log(f"tmpfs mounted on {JOURNAL_DIR} in the private namespace")
        return self

    def leave(self) -> None:
        """Unmounts the tmpfs (it would go with the namespace anyway) so the directories this
        test created on the host's /run can be removed."""
        if self.mounted:
            if self.libc.umount2(str(JOURNAL_DIR).encode(), MNT_DETACH) != 0:
                print(f"  warning: umount {JOURNAL_DIR}: {self._errno()}")
            self.mounted = False
        for d in reversed(self.created):
            try:
                d.rmdir()
            except OSError as e:
                print(f"  warning: could not remove {d}, created by this test: {e}")
        self.created = []


# --------------------------------------------------------------------------------------------
# journald's native protocol


class ProtocolError(Exception):
    pass


def parse_native(buf: bytes) -> list[list[tuple[str, bytes]]]:
    """Entries (lists of (field, value)) in one native-protocol message, as journald reads it: an
    empty line separates entries; a line with "=" is FIELD=value; a line without is a field name
    followed by a 64-bit little-endian length, that many bytes and a newline. Anything journald
    would drop or refuse is a ProtocolError here."""
    entries, cur, i = [], [], 0
    while i < len(buf):
        nl = buf.find(b"\n", i)
        if nl < 0:
            raise ProtocolError(f"unterminated line at offset {i}: {buf[i:i + 80]!r}")
        line = buf[i:nl]
        if not line:
            if cur:
                entries.append(cur)
                cur = []
            i = nl + 1
            continue
        eqpos = line.find(b"=")
        if eqpos >= 0:
            name, value, i = line[:eqpos], line[eqpos + 1:], nl + 1
        else:
            name = line
            if nl + 9 > len(buf):
                raise ProtocolError(f"binary field {name!r}: no 64-bit length after the name")
            (n,) = struct.unpack_from("<Q", buf, nl + 1)
            start, end = nl + 9, nl + 9 + n
            if end >= len(buf) or buf[end] != 0x0A:
                raise ProtocolError(f"binary field {name!r}: length {n} overruns the message or "
                                    f"is not followed by a newline")
            value, i = buf[start:end], end + 1
        try:
            sname = name.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(f"field name {name!r} is not ASCII") from None
        if not FIELD_NAME_RX.fullmatch(sname):
            raise ProtocolError(f"field name {sname!r} is not one journald accepts from a client")
        cur.append((sname, value))
    if cur:
        entries.append(cur)
    return entries


class Entry:
    def __init__(self, pid: int | None, fields: list[tuple[str, bytes]], via_fd: bool):
        self.pid = pid
        self.fields = fields
        self.via_fd = via_fd
        self.t = time.monotonic()

    def values(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for k, v in self.fields if k == name]

    def get(self, name: str) -> str | None:
        v = self.values(name)
        return v[0] if len(v) == 1 else None

    def names(self) -> list[str]:
        return [k for k, _ in self.fields]

    def __repr__(self) -> str:
        kv = " ".join(f"{k}={v.decode('utf-8', 'replace')!r}" for k, v in self.fields)
        return f"<pid {self.pid}{' memfd' if self.via_fd else ''}: {kv}>"


class JournalCollector:
    """Binds the journal socket and reads it in a thread, keeping every entry with the sender's
    pid, and every message it could not parse (self.errors) - which fails the test."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[Entry] = []
        self.errors: list[tuple[int | None, str]] = []
        self.n_datagrams = 0
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(str(path))
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self.thread.start()
        log(f"journal collector listening on {path}")

    @staticmethod
    def _read_fd(fd: int) -> bytes:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProtocolError(f"passed descriptor is not a regular file (mode {st.st_mode:o})")
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError:
            seals = 0
        if not seals and st.st_nlink != 0:
            raise ProtocolError("passed descriptor is neither a sealed memfd nor an unlinked file")
        chunks, off = [], 0
        while True:
            b = os.pread(fd, 1 << 20, off)
            if not b:
                break
            chunks.append(b)
            off += len(b)
        return b"".join(chunks)

    def _run(self):
        anc_size = socket.CMSG_SPACE(struct.calcsize("3i")) + socket.CMSG_SPACE(MAX_FDS * 4)
        while not self.closed:
            try:
                data, anc, flags, _ = self.sock.recvmsg(1 << 20, anc_size)
            except socket.timeout:
                continue
            except OSError:
                break
            pid, fds = None, []
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("3i", cdata[:12])
                elif level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                    fds.extend(a)
            try:
                if flags & socket.MSG_TRUNC:
                    raise ProtocolError("datagram truncated (MSG_TRUNC)")
                if flags & socket.MSG_CTRUNC:
                    raise ProtocolError("ancillary data truncated (MSG_CTRUNC)")
                if fds:
                    if len(fds) != 1:
                        raise ProtocolError(f"{len(fds)} descriptors in one datagram")
                    if data:
                        raise ProtocolError("descriptor passed along with a non-empty payload")
                    entries = parse_native(self._read_fd(fds[0]))
                else:
                    entries = parse_native(data)
                if not entries:
                    raise ProtocolError("message without any field")
                with self.cond:
                    self.n_datagrams += 1
                    for f in entries:
                        self.entries.append(Entry(pid, f, bool(fds)))
                    self.cond.notify_all()
            except Exception as e:  # noqa: BLE001 - never kill the reader thread
                with self.cond:
                    self.n_datagrams += 1
                    self.errors.append((pid, f"{e}; payload {data[:200]!r}"))
                    self.cond.notify_all()
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def snapshot(self) -> list[Entry]:
        with self.cond:
            return list(self.entries)

    def from_pid(self, pid: int) -> list[Entry]:
        return [e for e in self.snapshot() if e.pid == pid]

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # --- checking the collector itself -------------------------------------------------------
    def self_check(self) -> None:
        """Sends two entries as sd_journal_sendv would - one with a newline in a value (binary
        form) as a datagram, one as a sealed memfd passed with SCM_RIGHTS - and checks both come
        back whole, attributed to this process."""
        me = os.getpid()
        text = "two\nlines"
        msg = (b"MESSAGE=collector self-check\n" + b"TASAD_SELFCHECK=datagram\n"
               + b"SELF_BINARY\n" + struct.pack("<Q", len(text)) + text.encode() + b"\n")
        big = b"x" * 300000  # too big for a datagram, as in sd_journal_sendv's memfd fallback
        memfd_msg = b"MESSAGE=" + big + b"\n" + b"TASAD_SELFCHECK=memfd\n"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = os.memfd_create("journal-selfcheck", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            s.sendto(msg, str(self.path))
            os.write(fd, memfd_msg)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            s.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))], 0,
                      str(self.path))
        finally:
            os.close(fd)
            s.close()

        def both():
            got = {e.get("TASAD_SELFCHECK"): e for e in self.from_pid(me)}
            return got if {"datagram", "memfd"} <= got.keys() or self.errors else None

        got = wait_until(both, 10, "the collector's own two test entries")
        eq(self.errors, [], "collector errors on its own test entries")
        d, m = got["datagram"], got["memfd"]
        eq((d.get("MESSAGE"), d.get("SELF_BINARY"), d.via_fd),
           ("collector self-check", text, False), "entry sent as a datagram with a binary field")
        eq((m.get("MESSAGE"), m.via_fd), (big.decode(), True), "entry sent as a memfd")
        log("collector self-check passed (datagram with a binary field, sealed memfd)")


# --------------------------------------------------------------------------------------------
# Checks


# How the format string of each job line starts in worker.c (log_wjob() prefixes "Job %s: ").
FORMAT_START = {"started": "started, pid ", "finished": "finished: ", "failed": "failed: "}


def code_location_problem(code_file: str, code_line: str, code_func: str, needle: str) -> str | None:
    """None if CODE_FILE/CODE_LINE/CODE_FUNC name the log_wjob() call whose format string starts
    with needle: CODE_FILE the worker's worker.c (resolved as the compiler saw it, relative to the
    build directory), CODE_LINE within that call's lines, CODE_FUNC the function around it.
    Otherwise what is wrong."""
    where = f"CODE_FILE={code_file!r} CODE_LINE={code_line!r} CODE_FUNC={code_func!r}"
    if not code_file.endswith("daemons/worker/worker.c"):
        return f"{where}: not the worker's daemons/worker/worker.c, where \"{needle}...\" is logged"
    p = Path(code_file)
    if not p.is_absolute():
        p = tasadtest.BUILD_DIR / p
    if not p.is_file():
        return f"{where}: no such file (looked at {p})"
    lines = p.read_text().splitlines()
    hits = [i for i, l in enumerate(lines) if f'"{needle}' in l]
    if len(hits) != 1:
        return f"{where}: {len(hits)} lines of {p} hold the format string \"{needle}...\", expected 1"
    i = hits[0]
    first = next((k for k in range(i, -1, -1) if re.search(r"\blog_w?job\(", lines[k])), i)
    last = next((k for k in range(i, len(lines)) if lines[k].rstrip().endswith(");")), i)
    func = None
    for k in range(first, -1, -1):
        m = re.match(r"^[A-Za-z_].*?\b([A-Za-z_]\w*)\(", lines[k])
        if m:
            func = m.group(1)
            break
    if not code_line.isdigit() or not first + 1 <= int(code_line) <= last + 1:
        return (f"{where}: the log call with \"{needle}...\" is at lines {first + 1}-{last + 1} "
                f"of {p}")
    if code_func != func:
        return f"{where}: the log call at line {first + 1} of {p} is in {func}()"
    return None


def job_entries(coll: JournalCollector, jid: str) -> list[Entry]:
    return [e for e in coll.snapshot() if jid in e.values("TASAD_JOB_ID")]


def describe(entries: list[Entry]) -> str:
    return "\n".join(f"    {e!r}" for e in entries) or "    (none)"


def wait_job_end(coll: JournalCollector, worker, jid: str, end_prefix: str) -> None:
    def ended():
        return [e for e in job_entries(coll, jid)
                if any(m.startswith(f"Job {jid}: {end_prefix}") for m in e.values("MESSAGE"))]

    try:
        wait_until(ended, 15, f"a '{end_prefix}' journal entry for job {jid}")
    except AssertionError as e:
        raise AssertionError(f"{e}; journal entries naming the job:\n"
                             f"{describe(job_entries(coll, jid))}\n"
                             f"  all entries from {worker.name} (pid {worker.pid}):\n"
                             f"{describe(coll.from_pid(worker.pid))}") from None


JOB_FIELDS = ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
              "TASAD_QUEUE", "TASAD_JOB_ID", "TASAD_ATTEMPT"]


def job_entry_problems(coll: JournalCollector, worker, queue: str, jid: str, end_prefix: str,
                       end_priority: int, outcome: str) -> list[str]:
    """What is wrong with the job's "Job ID: started" and end ("Job ID: <end_prefix>") entries:
    there must be one of each,
    in that order, sent by the worker, each with exactly the fields log_to_journal writes for a
    job message, each field once."""
    entries = job_entries(coll, jid)

    def with_prefix(prefix):
        return [e for e in entries if any(m.startswith(prefix) for m in e.values("MESSAGE"))]

    started, end = with_prefix(f"Job {jid}: started"), with_prefix(f"Job {jid}: {end_prefix}")
    if len(started) != 1 or len(end) != 1:
        return [f"job {jid}: {len(started)} 'Job started' and {len(end)} '{end_prefix}' entries, "
                f"expected one of each; entries naming the job:\n{describe(entries)}"]
    out = []
    if entries.index(started[0]) > entries.index(end[0]):
        out.append(f"job {jid}: 'Job started' received after '{end_prefix}'")
    for e, prefix, prio, exit_ in ((started[0], "started", 6, None),
                                   (end[0], end_prefix, end_priority, outcome)):
        what = f"job {jid} '{prefix}' entry"
        bad = []
        if e.pid != worker.pid:
            bad.append(f"sent by pid {e.pid} (SCM_CREDENTIALS), not {worker.name} (pid {worker.pid})")
        if e.via_fd:
            bad.append("came as a memfd, expected one datagram")
        want = JOB_FIELDS + (["TASAD_EXIT"] if exit_ else [])
        names = e.names()
        for n in sorted(set(names)):
            if names.count(n) > 1:
                bad.append(f"{n} sent {names.count(n)} times: {e.values(n)}")
        missing = [n for n in want if n not in names]
        extra = sorted({n for n in names if n not in want})
        if missing:
            bad.append(f"missing fields {missing}")
        if extra:
            bad.append(f"unexpected fields {extra}")
        expect = {"PRIORITY": str(prio), "SYSLOG_IDENTIFIER": "tasad-worker", "TASAD_QUEUE": queue,
                  "TASAD_JOB_ID": jid, "TASAD_ATTEMPT": "1"}
        if exit_:
            expect["TASAD_EXIT"] = exit_
        for n, v in expect.items():
            got = e.values(n)
            if got and any(g != v for g in got):
                bad.append(f"{n}={got if len(got) > 1 else got[0]!r}, expected {v!r}")
        msgs = e.values("MESSAGE")
        if prefix == "started":
            rx = re.escape(f"Job {jid}: started, pid ") + r"\d+\."
        elif prefix == "finished":
            rx = re.escape(f"Job {jid}: finished: {outcome}.")
        else:
            rx = re.escape(f"Job {jid}: failed: {outcome}") + r".*; now failed\."
        if not all(re.fullmatch(rx, m) for m in msgs):
            bad.append(f"MESSAGE={msgs} does not match /{rx}/")
        # CODE_*: the log_job() call in the worker's source that wrote this message (each
        # location sent, if the fields come more than once).
        locs = list(zip(e.values("CODE_FILE"), e.values("CODE_LINE"), e.values("CODE_FUNC")))
        for loc in locs:
            p = code_location_problem(*loc, FORMAT_START[prefix])
            if p:
                bad.append(p)
        if bad:
            out.append(f"{what} {e!r}:\n" + "\n".join(f"      - {b}" for b in bad))
    return out


def test_journal_fields(env):
    """TASAD_LOG_TARGET=journal: job entries with PRIORITY, SYSLOG_IDENTIFIER, CODE_*, TASAD_*"""
    env.require("worker", "scheduler", "results", "tasactl")
    ns = JournalNamespace().enter()
    try:
        coll = JournalCollector(JOURNAL_SOCKET)
        try:
            coll.self_check()
            keys = dict(concurrency=1, kill_grace="1s", lease="3s", timeout="20s")
            env.write_queue("ok", [env.job("echo.sh")], **keys)
            env.write_queue("fail", [env.job("exit.sh")], retries=0, **keys)
            # Redis, scheduler and results log to stderr (the harness' default); the workers
            # to the journal.
            env.start_stack()
            journal = {"TASAD_LOG_TARGET": "journal"}
            w = {q: env.start_worker(q, name=f"worker-{q}", extra_env=journal)
                 for q in ("ok", "fail")}

            ok = env.submit("ok", "hello")
            fail = env.submit("fail", "3")
            st = env.wait_state(ok)
            eq((st.get("state"), st.get("outcome")), ("done", "exit:0"), "state/outcome of the "
               "succeeding job")
            st = env.wait_state(fail)
            eq((st.get("state"), st.get("outcome"), st.get("attempt")), ("failed", "exit:3", 1),
               "state/outcome/attempt of the job exiting 3 (retries 0)")
            wait_job_end(coll, w["ok"], ok, "finished")
            wait_job_end(coll, w["fail"], fail, "failed")

            # Stop the workers (through the harness) so their stderr is complete, then check
            # everything and report every problem at once.
            for q in ("ok", "fail"):
                eq(w[q].stop(), 0, f"exit status of {w[q].name} after SIGTERM")
            problems = job_entry_problems(coll, w["ok"], "ok", ok, "finished", 6, "exit:0")
            problems += job_entry_problems(coll, w["fail"], "fail", fail, "failed", 4, "exit:3")
            for q in ("ok", "fail"):
                text = w[q].log_text()
                log(f"{w[q].name} stderr ({len(text)} bytes): {text.strip()[:300]!r}")
                for needle in (ok, fail, ": started, pid", ": finished: ", ": failed: "):
                    if needle in text:
                        problems.append(f"{w[q].name}'s stderr mentions {needle!r} with "
                                        f"TASAD_LOG_TARGET=journal:\n{text}")
            if coll.errors:
                problems.append("messages on the journal socket that journald would not accept "
                                "(sender pid, problem):\n"
                                + "\n".join(f"      {pid}: {err}" for pid, err in coll.errors))
            log(f"journal: {coll.n_datagrams} datagram(s), {len(coll.snapshot())} entries")
            if problems:
                raise AssertionError(f"{len(problems)} problem(s):\n"
                                     + "\n".join(f"  * {p}" for p in problems))
        finally:
            for d in reversed(env.daemons):
                d.stop()
            coll.close()
    finally:
        ns.leave()


if __name__ == "__main__":
    tasadtest.main(globals())
