"""Integration test harness for tasad: a real redis-server on a Unix socket in a temporary
directory, the real daemons started by hand with their own NOTIFY_SOCKET, driven through tasactl.

Python 3.11 standard library only. A test file defines functions `test_*(env)` and ends with

    if __name__ == "__main__":
        tasadtest.main(globals())

Each test function gets a fresh Env (temp dir, its own Redis, no daemon started yet). The runner
prints one PASS/FAIL/SKIP line per test and a summary, dumps the daemons' stderr, notify messages
and the Redis log for a failed test, and exits 1 if any test failed, 77 (meson's "skipped") if
every test was skipped, else 0.

Environment:
  TASAD_BUILD_DIR   build directory holding daemons/*/tasad-* and tools/tasactl/tasactl
                    (default: <source>/build-it)
  TASAD_KEEP_TMP=1  keep each test's temporary directory (its path is printed)
  TASAD_IT_VERBOSE=1  print the harness' own progress lines as they happen

Every process the harness starts is recorded and stopped (SIGTERM, then SIGKILL) on every exit
path: the Env's close(), an atexit handler, and SIGTERM/SIGINT/SIGHUP handlers that turn the
signal into an exception so the finally blocks run. Job processes left behind by the daemons are
found by the TASAD_IT_TMP=<tmpdir> variable every queue file passes to its jobs, and killed by
pid. Nothing is ever killed by name.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

SRC_DIR = Path(__file__).resolve().parent
POLICY_DIR = SRC_DIR.parent.parent / "policy"
JOBS_DIR = SRC_DIR / "jobs"
BUILD_DIR = Path(os.environ.get("TASAD_BUILD_DIR") or SRC_DIR.parent.parent / "build-it")
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"

BINARIES = {
    "worker": BUILD_DIR / "daemons/worker/tasad-worker",
    "scheduler": BUILD_DIR / "daemons/scheduler/tasad-scheduler",
    "results": BUILD_DIR / "daemons/results/tasad-results",
    "tasactl": BUILD_DIR / "tools/tasactl/tasactl",
}

FINAL_STATES = ("done", "failed", "cancelled")
VERBOSE = os.environ.get("TASAD_IT_VERBOSE") == "1"
T0 = time.monotonic()


def log(msg: str) -> None:
    """Harness progress; kept per test and printed with a failure (or live when verbose)."""
    line = f"[{time.monotonic() - T0:8.3f}] {msg}"
    if _CURRENT_ENV is not None:
        _CURRENT_ENV.trace.append(line)
    if VERBOSE:
        print(line, flush=True)


class SkipTest(Exception):
    """Raised by a test (or the harness) that cannot run here; the reason is printed."""


class Interrupted(SystemExit):
    """A signal asked the test run to stop; finally blocks still run."""


# --------------------------------------------------------------------------------------------
# Process registry: every process started by the harness, stopped on every exit path.

_PROCS: dict[int, subprocess.Popen] = {}
_PROCS_LOCK = threading.Lock()
_CURRENT_ENV: "Env | None" = None


def _register(p: subprocess.Popen) -> None:
    with _PROCS_LOCK:
        _PROCS[p.pid] = p


def _unregister(p: subprocess.Popen) -> None:
    with _PROCS_LOCK:
        _PROCS.pop(p.pid, None)


def stop_process(p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Sends sig (TERM by default) to p alone, waits up to timeout, then SIGKILLs it.
    Returns the exit status as Popen reports it (negative: killed by that signal)."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} still alive {timeout}s after signal {sig}: SIGKILL")
            p.kill()
            p.wait()
    _unregister(p)
    return p.returncode


def _stop_all_registered() -> None:
    with _PROCS_LOCK:
        procs = list(_PROCS.values())
    for p in procs:
        try:
            stop_process(p, timeout=5)
        except Exception:  # noqa: BLE001 - last-resort cleanup must go on
            pass
    if _CURRENT_ENV is not None:
        _CURRENT_ENV.kill_leaked_jobs()


def _on_signal(signum, frame):
    raise Interrupted(128 + signum)


atexit.register(_stop_all_registered)
for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


# --------------------------------------------------------------------------------------------
# Small helpers


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Polls pred until it returns something truthy (returned) or timeout expires
    (AssertionError naming `what`). The assertion is the predicate, never the sleep."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last_exc = None
        except (OSError, ValueError, KeyError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def holds_for(pred: Callable[[], object], duration: float, what: str, interval: float = 0.05):
    """Asserts pred stays truthy for the whole duration (e.g. 'no READY=1 yet')."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not pred():
            raise AssertionError(f"expected to hold for {duration}s but broke: {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (a zombie is dead, merely unreaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def check(cond: object, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def eq(actual, expected, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def one_line_error(rc: int, err: str, what: str) -> str:
    """The CLI contract for errors: non-zero exit, exactly one non-empty line on stderr."""
    check(rc != 0, f"{what}: expected a non-zero exit, got 0")
    text = err.strip("\n")
    check(text.strip() != "", f"{what}: exit {rc} but nothing on stderr")
    check("\n" not in text, f"{what}: expected one line on stderr, got {len(text.splitlines())}:\n{err}")
    return text


def libconfig_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(libconfig_value(x) for x in v) + "]"
    raise TypeError(f"no libconfig form for {v!r}")


def libconfig_text(keys: dict) -> str:
    """One `key = value;` per line, in dict order (tests rely on line numbers)."""
    return "".join(f"{k} = {libconfig_value(v)};\n" for k, v in keys.items())


def http_unix(path: str, method: str, url: str, body: bytes | None = None,
              headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a Unix socket; returns (status, body bytes).

    The request goes out in one write and a failed write (the server may answer an error and
    close before reading a body) is ignored, so the answer is still read."""
    h = {"Host": "localhost", "Connection": "close"}
    if body is not None:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    req = f"{method} {url} HTTP/1.1\r\n".encode()
    req += b"".join(f"{k}: {v}\r\n".encode() for k, v in h.items()) + b"\r\n" + (body or b"")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        return r.status, r.read()
    finally:
        s.close()


def api(env: "Env", daemon: str, method: str, url: str, body=None, timeout: float = 30.0):
    """One JSON request to the scheduler's or the results daemon's Unix socket: (status, JSON)."""
    sock = env.scheduler_socket if daemon == "scheduler" else env.results_socket
    data = json.dumps(body).encode() if body is not None else None
    status, raw = http_unix(str(sock), method, url, data, timeout=timeout)
    log(f"{daemon}: {method} {url} -> {status} {raw[:300]!r}")
    try:
        return status, json.loads(raw)
    except ValueError:
        raise AssertionError(f"{method} {url}: status {status}, body is not JSON: {raw[:300]!r}") from None


# --------------------------------------------------------------------------------------------
# sd_notify listener


class NotifyListener:
    """Binds an AF_UNIX SOCK_DGRAM socket for NOTIFY_SOCKET and reads it in a thread, keeping
    every assignment (READY=1, STATUS=…, WATCHDOG=1, STOPPING=1, …) as (monotonic time, key,
    value). `on_message(key, value)` runs in the thread at receipt (used to check, at the moment
    READY=1 arrives, that the daemon's socket exists)."""

    def __init__(self, path: Path, name: str, on_message: Callable[[str, str], dict] | None = None):
        self.path = path
        self.name = name
        self.on_message = on_message
        self.messages: list[tuple[float, str, str, dict]] = []
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path.exists():
            path.unlink()
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.closed = False
        self.thread = threading.Thread(target=self._run, name=f"notify-{name}", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            now = time.monotonic()
            for line in data.decode("utf-8", "replace").split("\n"):
                if not line:
                    continue
                k, _, v = line.partition("=")
                extra = {}
                if self.on_message:
                    try:
                        extra = self.on_message(k, v) or {}
                    except Exception as e:  # noqa: BLE001 - never kill the reader thread
                        extra = {"error": repr(e)}
                with self.cond:
                    self.messages.append((now, k, v, extra))
                    self.cond.notify_all()

    def snapshot(self) -> list[tuple[float, str, str, dict]]:
        with self.cond:
            return list(self.messages)

    def count(self) -> int:
        with self.cond:
            return len(self.messages)

    def find(self, key: str, pattern: str | None = None, since: int = 0):
        """Messages [since:] with this key (and value matching the regex, case-insensitive)."""
        rx = re.compile(pattern, re.I) if pattern is not None else None
        return [m for m in self.snapshot()[since:]
                if m[1] == key and (rx is None or rx.search(m[2]))]

    def wait(self, key: str, pattern: str | None = None, timeout: float = 15, since: int = 0,
             what: str | None = None):
        """Waits for a message with key (and value matching pattern); returns it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                rx = re.compile(pattern, re.I) if pattern is not None else None
                for m in self.messages[since:]:
                    if m[1] == key and (rx is None or rx.search(m[2])):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(f"    {k}={v}" for _, k, v, _ in self.messages[-15:])
                    raise AssertionError(
                        f"{self.name}: no {key}{'~/' + pattern + '/' if pattern else ''} within "
                        f"{timeout}s{' (' + what + ')' if what else ''}; last messages:\n{tail}")
                self.cond.wait(left)

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------------------------
# Daemons


class Daemon:
    def __init__(self, env: "Env", name: str, kind: str, argv: list[str], extra_env: dict,
                 socket_check: Callable[[], bool] | None, pass_fds: tuple = ()):
        self.env = env
        self.name = name
        self.kind = kind
        self.argv = argv
        self.log_path = env.tmp / f"{name}.log"
        self.socket_check = socket_check

        def on_message(k, v):
            if k == "READY" and self.socket_check is not None:
                return {"socket_open": self.socket_check()}
            return {}

        self.notify = NotifyListener(env.tmp / f"notify-{name}.sock", name, on_message)
        e = env.base_environ()
        e["NOTIFY_SOCKET"] = str(self.notify.path)
        e.update(extra_env)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=e, cwd=env.tmp, pass_fds=pass_fds)
        _register(self.proc)
        self.started = time.monotonic()
        log(f"started {name} pid {self.proc.pid}: {' '.join(argv)}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self, what: str = "") -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with status {self.proc.returncode}"
                                 f"{' ' + what if what else ''}")

    def wait_ready(self, timeout: float = 20) -> tuple:
        deadline = time.monotonic() + timeout
        while True:
            ms = self.notify.find("READY", "^1$")
            if ms:
                log(f"{self.name} READY=1")
                return ms[0]
            if not self.alive():
                raise AssertionError(f"{self.name} exited with status {self.proc.returncode} "
                                     f"before READY=1")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no READY=1 within {timeout}s")
            time.sleep(0.05)

    def statuses(self, since: int = 0) -> list[str]:
        return [v for _, k, v, _ in self.notify.snapshot()[since:] if k == "STATUS"]

    def last_status(self) -> str | None:
        s = self.statuses()
        return s[-1] if s else None

    def signal(self, sig: int) -> None:
        log(f"signal {signal.Signals(sig).name} -> {self.name} pid {self.pid}")
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crashing host would."""
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        _unregister(self.proc)

    def wait_exit(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s") from None
        _unregister(self.proc)
        log(f"{self.name} exited with {rc}")
        return rc

    def stop(self, timeout: float = 15) -> int:
        return stop_process(self.proc, signal.SIGTERM, timeout)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, start: int = 0, end: int | None = None) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
        return data.decode("utf-8", "replace")

    def close(self):
        if self.alive():
            self.stop()
        self.logf.close()
        self.notify.close()


# --------------------------------------------------------------------------------------------
# The per-test environment


class Env:
    def __init__(self, name: str):
        self.name = name
        self.trace: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="tasad-it-"))
        self.redis_dir = self.tmp / "redis"
        self.redis_sock = self.redis_dir / "redis.sock"
        self.redis_log = self.redis_dir / "redis.log"
        self.queues_dir = self.tmp / "queues"
        self.results_dir = self.tmp / "results"
        self.run_dir = self.tmp / "run"
        self.scheduler_socket = self.run_dir / "scheduler.sock"
        self.results_socket = self.run_dir / "results.sock"
        self.worker_socket_dir = self.run_dir / "worker"
        self.prefix = "tasadit"
        self.mark_path = self.tmp / "marks"
        for d in (self.redis_dir, self.queues_dir, self.results_dir, self.run_dir):
            d.mkdir(parents=True)
        self.redis: subprocess.Popen | None = None
        self.queue_defs: dict[str, tuple[list[str], dict]] = {}
        self.daemons: list[Daemon] = []
        self.conf = self.write_conf()
        self.failed = False
        self.cleanups: list[Callable[[], None]] = []
        self.net_hosts = 0

    # --- binaries -----------------------------------------------------------------------
    @staticmethod
    def require(*kinds: str) -> None:
        missing = [str(BINARIES[k]) for k in kinds if not os.access(BINARIES[k], os.X_OK)]
        if missing:
            raise SkipTest("not built yet: " + ", ".join(missing))

    def base_environ(self) -> dict:
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_", "JOURNAL_STREAM", "TASAD_"))}
        e["TASAD_LOG_TARGET"] = "stderr"
        return e

    # --- Redis --------------------------------------------------------------------------
    def start_redis(self, timeout: float = 20, socket_perm: str = "700",
                    tcp: tuple[str, int] | None = None) -> None:
        """tcp: (address, port) to listen on besides the Unix socket (kept across restarts)."""
        check(self.redis is None or self.redis.poll() is not None, "redis already running")
        if tcp is not None:
            self.redis_tcp = tcp
        tcp = getattr(self, "redis_tcp", None)
        listen = (["--port", str(tcp[1]), "--bind", tcp[0], "--protected-mode", "no"] if tcp
                  else ["--port", "0"])
        argv = [REDIS_SERVER, *listen, "--unixsocket", str(self.redis_sock),
                "--unixsocketperm", socket_perm, "--dir", str(self.redis_dir), "--appendonly", "yes",
                "--save", "", "--daemonize", "no", "--logfile", str(self.redis_log)]
        self.redis = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=self.redis_dir)
        _register(self.redis)
        log(f"started redis-server pid {self.redis.pid}")

        def up():
            if self.redis.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.redis.returncode}; log:\n"
                                     + self._tail(self.redis_log, 30))
            return self.redis_ping()

        wait_until(up, timeout, "redis-server to answer PING")

    def redis_ping(self) -> bool:
        if not self.redis_sock.exists():
            return False
        r = subprocess.run([REDIS_CLI, "-s", str(self.redis_sock), "PING"],
                           capture_output=True, timeout=10)
        return r.returncode == 0 and r.stdout.strip() == b"PONG"

    def stop_redis(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        check(self.redis is not None, "redis not started")
        log(f"stopping redis-server with {signal.Signals(sig).name}")
        rc = stop_process(self.redis, sig, timeout)
        log(f"redis-server exited with {rc}")
        return rc

    def restart_redis(self, down_for: float = 0) -> None:
        """Stops Redis (SIGTERM), stays down for down_for seconds, starts it again on the same
        directory so the AOF replays."""
        self.stop_redis()
        time.sleep(down_for)
        self.start_redis()

    def redis_cli(self, *args: str, raw: bool = True) -> str:
        argv = [REDIS_CLI, "-s", str(self.redis_sock)] + (["--raw"] if raw else []) + list(args)
        r = subprocess.run(argv, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"redis-cli {' '.join(args)} failed: {r.stderr.decode()}")
        return r.stdout.decode("utf-8", "replace")

    def redis_keys(self, pattern: str = "*") -> set[str]:
        out = self.redis_cli("--scan", "--pattern", pattern)
        return {k for k in out.split("\n") if k}

    def key(self, queue: str, suffix: str) -> str:
        """A key name per lib/keys.c: <prefix>:{<queue>}:<suffix>."""
        return f"{self.prefix}:{{{queue}}}:{suffix}"

    # --- configuration ------------------------------------------------------------------
    def write_conf(self, path: Path | None = None, **overrides) -> Path:
        keys = {
            "redis": f"unix://{self.redis_sock}",
            "prefix": self.prefix,
            "queues_dir": str(self.queues_dir),
            "results_dir": str(self.results_dir),
            "scheduler_socket": str(self.scheduler_socket),
            "results_socket": str(self.results_socket),
            "worker_socket_dir": str(self.worker_socket_dir),
            "work_dir": str(self.tmp / "work"),
            "policy_dirs": [str(POLICY_DIR)],
            "retention": "1h",
        }
        keys.update(overrides)
        path = path or self.tmp / "tasad.conf"
        path.write_text(libconfig_text({k: v for k, v in keys.items() if v is not None}))
        return path

    def queue_keys(self, queue: str, command: list[str], **keys) -> dict:
        """The keys of a queue file. Jobs run as root unless the test says otherwise (user =
        None: the worker's default), so that the test scripts can write to the 0700 temporary
        directory; the sandbox suite tests the other accounts."""
        d = {"command": command, "user": "root"}
        d.update(keys)
        d = {k: v for k, v in d.items() if v is not None}
        env = list(d.get("env", []))
        env.insert(0, f"TASAD_IT_TMP={self.tmp}")
        d["env"] = env
        return d

    def write_queue(self, name: str, command: list[str], queues_dir: Path | None = None,
                    **keys) -> Path:
        """Writes <queues_dir>/<name>.conf; every queue passes TASAD_IT_TMP to its jobs."""
        d = queues_dir or self.queues_dir
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{name}.conf"
        p.write_text(libconfig_text(self.queue_keys(name, command, **keys)))
        if queues_dir is None:
            self.queue_defs[name] = (command, dict(keys))
        return p

    def worker_conf(self, name: str, queue: str, **conf_overrides) -> tuple[Path, Path]:
        """A tasad.conf for one worker "host": its own worker_socket_dir and its own queues_dir
        holding a copy of the queue whose jobs also see TASAD_IT_WORKER=<name>, so a test can
        tell which worker ran a job. Redis, prefix and the daemons' sockets are shared, as for a
        worker on a second machine. Returns (conf, socket dir)."""
        check(queue in self.queue_defs, f"queue {queue} not written with write_queue()")
        command, keys = self.queue_defs[queue]
        keys = dict(keys)
        keys["env"] = list(keys.get("env", [])) + [f"TASAD_IT_WORKER={name}"]
        qd = self.tmp / f"queues-{name}"
        self.write_queue(queue, command, queues_dir=qd, **keys)
        sd = self.run_dir / f"w-{name}"
        conf = self.write_conf(self.tmp / f"tasad-{name}.conf", queues_dir=str(qd),
                               worker_socket_dir=str(sd), **conf_overrides)
        return conf, sd

    def write_mark_queue(self, name: str, **keys) -> Path:
        """A queue running jobs/mark.sh, which records start/sleep/end lines in self.mark_path."""
        env = [f"TASAD_IT_MARK={self.mark_path}"] + list(keys.pop("env", []))
        return self.write_queue(name, [self.job("mark.sh")], env=env, **keys)

    @staticmethod
    def job(script: str) -> str:
        p = JOBS_DIR / script
        check(os.access(p, os.X_OK), f"job script {p} missing or not executable")
        return str(p)

    # --- daemons ------------------------------------------------------------------------
    def _start(self, name: str, kind: str, args: list[str], conf: Path | None,
               extra_env: dict | None, socket_check, wrapper: list[str] | None = None,
               pass_fds: tuple = ()) -> Daemon:
        self.require(kind)
        argv = list(wrapper or []) + [str(BINARIES[kind]), "-c", str(conf or self.conf)] + args
        e = {"TASAD_LOG_LEVEL": "info"}
        e.update(extra_env or {})
        d = Daemon(self, name, kind, argv, e, socket_check, pass_fds)
        self.daemons.append(d)
        return d

    def start_scheduler(self, name: str = "scheduler", conf: Path | None = None,
                        extra_env: dict | None = None, ready: bool = True) -> Daemon:
        d = self._start(name, "scheduler", [], conf, extra_env,
                        lambda: self.scheduler_socket.is_socket())
        if ready:
            d.wait_ready()
        return d

    def start_results(self, name: str = "results", conf: Path | None = None,
                      extra_env: dict | None = None, ready: bool = True) -> Daemon:
        d = self._start(name, "results", [], conf, extra_env,
                        lambda: self.results_socket.is_socket())
        if ready:
            d.wait_ready()
        return d

    def start_worker(self, queue: str, name: str = "worker", extra_env: dict | None = None,
                     ready: bool = True, wrapper: list[str] | None = None,
                     pass_fds: tuple = (), conf_overrides: dict | None = None) -> Daemon:
        """A worker of queue with its own configuration (see worker_conf); wrapper: a command
        line the worker's is appended to (setpriv, unshare, ip netns exec …); pass_fds:
        descriptors the worker inherits (without O_CLOEXEC); conf_overrides: keys of its
        tasad.conf (e.g. another redis URL)."""
        conf, sd = self.worker_conf(name, queue, **(conf_overrides or {}))

        def socket_open():
            return sd.is_dir() and any(p.is_socket() for p in sd.iterdir())

        d = self._start(name, "worker", [queue], conf, extra_env, socket_open, wrapper, pass_fds)
        d.conf = conf
        if ready:
            d.wait_ready()
        return d

    def start_stack(self, *queues: str) -> dict[str, Daemon]:
        """Redis (if not running), scheduler, results, and one worker per queue named
        worker-<queue>."""
        if self.redis is None or self.redis.poll() is not None:
            self.start_redis()
        out = {"scheduler": self.start_scheduler(), "results": self.start_results()}
        for q in queues:
            out[q] = self.start_worker(q, name=f"worker-{q}")
        return out

    # --- tasactl ------------------------------------------------------------------------
    def tasactl(self, *args: str, input: bytes | None = None, conf: Path | None = None,
                json_out: bool = False, timeout: float = 60) -> tuple[int, bytes, str]:
        self.require("tasactl")
        argv = [str(BINARIES["tasactl"]), "-c", str(conf or self.conf)]
        if json_out:
            argv.append("--json")
        argv += list(args)
        try:
            r = subprocess.run(argv, input=input if input is not None else b"",
                               capture_output=True, timeout=timeout, env=self.base_environ())
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tasactl {' '.join(args)[:200]} did not finish in {timeout}s") from None
        err = r.stderr.decode("utf-8", "replace")
        short = " ".join(args)
        log(f"tasactl {short[:160]}{'…' if len(short) > 160 else ''} -> {r.returncode}"
            f"{' stderr: ' + err.strip()[:300] if err.strip() else ''}")
        return r.returncode, r.stdout, err

    def tasactl_ok(self, *args: str, **kw) -> bytes:
        rc, out, err = self.tasactl(*args, **kw)
        if rc != 0:
            raise AssertionError(f"tasactl {' '.join(args)[:200]} exited {rc}: {err.strip()}")
        return out

    def submit(self, queue: str, *args: str, opts: Iterable[str] = (), input: bytes | None = None) -> str:
        """tasactl submit; returns the job id (the one line it prints)."""
        out = self.tasactl_ok("submit", *opts, queue, *args, input=input).decode().strip()
        check(re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", out),
              f"tasactl submit printed {out!r}, expected one job id")
        return out

    def submit_each(self, queue: str, lines: list[str], opts: Iterable[str] = ()) -> list[str]:
        data = "".join(l + "\n" for l in lines).encode()
        out = self.tasactl_ok("submit", "--each", *opts, queue, input=data, timeout=120)
        ids = out.decode().split()
        eq(len(ids), len(lines), f"number of ids printed by submit --each of {len(lines)} lines")
        eq(len(set(ids)), len(ids), "distinct ids from submit --each")
        return ids

    def status(self, job_id: str) -> dict:
        out = self.tasactl_ok("status", job_id, json_out=True)
        try:
            return json.loads(out)
        except ValueError:
            raise AssertionError(f"tasactl --json status {job_id} printed non-JSON: {out[:300]!r}") from None

    def wait_state(self, job_id: str, states: Iterable[str] = FINAL_STATES,
                   timeout: float = 30) -> dict:
        states = tuple(states)
        last = {}

        def reached():
            nonlocal last
            last = self.status(job_id)
            return last if last.get("state") in states else None

        try:
            return wait_until(reached, timeout, f"job {job_id} to reach {states}", interval=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {json.dumps(last)}") from None

    # --- job marks ----------------------------------------------------------------------
    def marks(self, path: Path | None = None) -> list[tuple[str, str, str, str]]:
        """Lines "EVENT TAG WORKER PID" written by jobs/mark.sh (an unterminated last line,
        still being written, is left out)."""
        path = path or self.mark_path
        try:
            data = path.read_bytes().decode()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split("\n")[:-1]:
            parts = line.split()
            if len(parts) != 4:
                raise AssertionError(f"malformed mark line in {path}: {line!r}")
            out.append(tuple(parts))
        return out

    def marked(self, event: str, tag: str | None = None) -> list[tuple[str, str, str, str]]:
        return [m for m in self.marks() if m[0] == event and (tag is None or m[1] == tag)]

    # --- cleanup ------------------------------------------------------------------------
    def job_processes(self) -> list[int]:
        """Live processes whose environment carries this test's TASAD_IT_TMP."""
        needle = f"TASAD_IT_TMP={self.tmp}".encode()
        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    envb = f.read()
            except OSError:
                continue
            if needle in envb.split(b"\0") and pid_alive(int(d)):
                found.append(int(d))
        return found

    def kill_leaked_jobs(self) -> list[int]:
        pids = self.job_processes()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    @staticmethod
    def _tail(path: Path, n: int) -> str:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "    (no file)"
        return "\n".join("    " + l for l in lines[-n:]) or "    (empty)"

    def dump(self) -> None:
        print(f"---- {self.name}: diagnostics (tmp {self.tmp}) ----")
        print("  harness trace:")
        for l in self.trace[-80:]:
            print("    " + l)
        for d in self.daemons:
            rc = d.proc.poll()
            print(f"  {d.name} (pid {d.pid}, {'running' if rc is None else 'exit ' + str(rc)}) "
                  f"stderr, last 120 lines:")
            print(self._tail(d.log_path, 120))
            print(f"  {d.name} notify messages, last 40:")
            for t, k, v, extra in d.notify.snapshot()[-40:]:
                print(f"    +{t - d.started:7.3f}s {k}={v}{' ' + str(extra) if extra else ''}")
        print("  redis-server log, last 20 lines:")
        print(self._tail(self.redis_log, 20))
        print("---- end of diagnostics ----", flush=True)

    def net_host(self) -> "NetHost":
        """A second "host": a network namespace joined to this one by a veth pair, removed when
        the test ends. Its processes reach this host at .host_ip; cut() drops every packet
        both ways without resetting anything (as a pulled cable does), heal() undoes it."""
        self.net_hosts += 1
        h = NetHost(self.net_hosts)
        self.cleanups.append(h.remove)
        return h

    def close(self) -> None:
        for d in reversed(self.daemons):
            try:
                d.close()
            except Exception as e:  # noqa: BLE001
                print(f"  warning: stopping {d.name}: {e!r}")
        if self.redis is not None:
            stop_process(self.redis, timeout=10)
        for c in reversed(self.cleanups):
            try:
                c()
            except Exception as e:  # noqa: BLE001
                print(f"  warning: cleanup: {e!r}")
        leaked = self.kill_leaked_jobs()
        if leaked:
            print(f"  note: killed {len(leaked)} job process(es) left behind after the daemons "
                  f"stopped: {leaked}")
        if os.environ.get("TASAD_KEEP_TMP") == "1":
            print(f"  kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class NetHost:
    """A network namespace with a veth pair to the test's own namespace, on a /30 of 10.x/8
    derived from the test's pid (nothing leaves this machine)."""

    def __init__(self, n: int):
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
            raise SkipTest("network namespaces need root, ip and tc")
        pid = os.getpid()
        self.ns = f"tasadit-{pid}-{n}"
        self.veth_host, self.veth_ns = f"tv{pid % 100000}h{n}", f"tv{pid % 100000}n{n}"
        net = f"10.{200 + (pid >> 8) % 50}.{pid & 255}"
        base = 4 * (n % 64)
        self.host_ip, self.ns_ip = f"{net}.{base + 1}", f"{net}.{base + 2}"
        self.created = False
        try:
            self._setup()
        except BaseException:
            self.remove()
            raise
        self.is_cut = False
        log(f"net host {self.ns}: {self.ns_ip} <-> {self.host_ip}")

    def _setup(self) -> None:
        self._ip("netns", "add", self.ns)
        self.created = True
        self._ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        self._ip("link", "set", self.veth_ns, "netns", self.ns)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.veth_host)
        self._ip("link", "set", self.veth_host, "up")
        self._ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.veth_ns)
        self._ip("-n", self.ns, "link", "set", self.veth_ns, "up")
        self._ip("-n", self.ns, "link", "set", "lo", "up")

    @staticmethod
    def _run(*argv: str) -> None:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: {r.stderr.strip()}")

    def _ip(self, *args: str) -> None:
        self._run("ip", *args)

    def wrapper(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        """A pfifo queue of length 0 on both ends: every packet is dropped silently."""
        self._run("tc", "qdisc", "add", "dev", self.veth_host, "root", "pfifo", "limit", "0")
        self._run("ip", "netns", "exec", self.ns, "tc", "qdisc", "add", "dev", self.veth_ns,
                  "root", "pfifo", "limit", "0")
        self.is_cut = True
        log(f"net host {self.ns}: cut")

    def heal(self) -> None:
        self._run("tc", "qdisc", "del", "dev", self.veth_host, "root")
        self._run("ip", "netns", "exec", self.ns, "tc", "qdisc", "del", "dev", self.veth_ns, "root")
        self.is_cut = False
        log(f"net host {self.ns}: healed")

    def remove(self) -> None:
        if not self.created:
            return
        subprocess.run(["ip", "link", "del", self.veth_host], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=20)
        self.created = False


# --------------------------------------------------------------------------------------------
# Runner


def main(namespace: dict) -> None:
    global _CURRENT_ENV
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    if only:
        tests = [(n, f) for n, f in tests if n in only]
    script = Path(namespace.get("__file__", sys.argv[0])).name
    print(f"== {script}: {len(tests)} test(s), build dir {BUILD_DIR}", flush=True)
    results = []
    interrupted = None
    for name, fn in tests:
        doc = (fn.__doc__ or "").strip().splitlines()
        print(f"-- {name}: {doc[0] if doc else ''}", flush=True)
        t = time.monotonic()
        env = None
        outcome, detail = "PASS", ""
        try:
            env = Env(name)
            _CURRENT_ENV = env
            fn(env)
        except SkipTest as e:
            outcome, detail = "SKIP", str(e)
        except AssertionError as e:
            outcome, detail = "FAIL", str(e)
            traceback.print_exc()
        except Interrupted as e:
            outcome, detail, interrupted = "FAIL", "interrupted by a signal", e
        except Exception as e:  # noqa: BLE001 - a harness error is a failed test
            outcome, detail = "FAIL", f"error: {e!r}"
            traceback.print_exc()
        finally:
            if env is not None:
                if outcome == "FAIL":
                    env.dump()
                try:
                    env.close()
                except Exception as e:  # noqa: BLE001
                    print(f"  warning: cleanup of {name} failed: {e!r}")
            _CURRENT_ENV = None
        dt = time.monotonic() - t
        print(f"{outcome} {name} ({dt:.1f}s){': ' + detail if detail else ''}", flush=True)
        results.append((name, outcome, detail))
        if interrupted:
            break
    _stop_all_registered()
    n = {k: sum(1 for r in results if r[1] == k) for k in ("PASS", "FAIL", "SKIP")}
    print(f"== {script}: {n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped")
    for name, outcome, detail in results:
        if outcome != "PASS":
            print(f"   {outcome} {name}: {detail.splitlines()[0] if detail else ''}")
    sys.stdout.flush()
    if interrupted or n["FAIL"]:
        sys.exit(1)
    if results and n["SKIP"] == len(results):
        sys.exit(77)
    sys.exit(0)
