#!/usr/bin/env python3
"""Requests that must not take a daemon down (issue #12), against the real scheduler:

- a huge {"jobs":[{},{},…]} body: the scheduler's peak memory stays a small multiple of the
  body and its loop keeps answering other clients while it handles it (so does a batch that is
  decoded job by job and refused at its last job);
- slowloris on the Unix socket: connections trickling a byte a second are closed at the head
  deadline, fresh clients are served meanwhile, and more connections than the limit do not
  lock anyone out;
- the TCP listener: a flood of unauthenticated trickling connections from one address holds at
  most its per-address share, and a client with a good token is served;
- stalled large bodies: what they hold stays within max_request_buffered, the rest get 503.

Latency bounds are measured against this machine: the bound is the larger of 250 ms and 25
times the slowest of 100 requests to the idle daemon, so a slow machine moves it; what it has
to catch is a loop blocked for seconds."""

import json
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq, log, wait_until  # noqa: E402

Q = "q"
PROBE = b"GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise tasadtest.SkipTest(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def read_reply(s: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP reply from s: (status, headers with lowercase names, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a reply head: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a reply body")
        rest += chunk
    return status, headers, rest[:n]


def unix_conn(path, timeout: float = 30) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def request(path, raw: bytes, timeout: float = 30) -> tuple[int, dict, bytes]:
    s = unix_conn(path, timeout)
    try:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_reply(s)
    finally:
        s.close()


def error_of(body: bytes) -> tuple[str, str]:
    e = json.loads(body)["error"]
    return e["code"], e["message"]


class Prober:
    """Asks the daemon GET /v1/nope (404, answered by its loop), each time on a new connection
    (so the accept is measured too), one request at a time, and keeps each round trip."""

    def __init__(self, path):
        self.path = path
        self.times: list[tuple[float, float]] = []   # (sent at, round trip)
        self.stop = threading.Event()
        self.error = None
        self.thread = None

    def one(self) -> float:
        t = time.monotonic()
        s = unix_conn(self.path, 120)
        try:
            s.sendall(PROBE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            status, _, _ = read_reply(s)
        finally:
            s.close()
        eq(status, 404, "probe status")
        return time.monotonic() - t

    def baseline(self, n: int = 100) -> float:
        """The slowest of n round trips to the idle daemon."""
        return max(self.one() for _ in range(n))

    def _run(self):
        try:
            while not self.stop.is_set():
                t = time.monotonic()
                self.times.append((t, self.one()))
                time.sleep(0.005)
        except Exception as e:  # noqa: BLE001 - reported by finish()
            self.error = e

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def finish(self) -> list[tuple[float, float]]:
        self.stop.set()
        self.thread.join(130)
        check(self.error is None, f"probe failed: {self.error!r}")
        return self.times


def bound_of(baseline: float) -> float:
    return max(0.25, 25 * baseline)


def setup(env, **conf):
    env.write_queue(Q, [env.job("echo.sh")])
    if conf:
        env.conf = env.write_conf(**conf)
    env.start_redis()
    return env.start_scheduler()


def handle_big(env, sched, body: bytes, what: str):
    """Sends body as a batch while probing; returns (status, message, probes during it, bound,
    peak memory growth in KiB)."""
    prober = Prober(env.scheduler_socket)
    baseline = prober.baseline()
    bound = bound_of(baseline)
    hwm0 = status_kib(sched.pid, "VmHWM")
    prober.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    head = (f"POST /v1/queues/{Q}/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    status, _, reply = request(env.scheduler_socket, head + body, timeout=300)
    t1 = time.monotonic()
    probes = [rt for t, rt in prober.finish() if t0 <= t <= t1]
    grown = status_kib(sched.pid, "VmHWM") - hwm0
    log(f"{what}: {len(body)} bytes answered {status} in {t1 - t0:.3f}s; {len(probes)} probes "
        f"meanwhile, slowest {max(probes, default=0) * 1000:.1f} ms (idle {baseline * 1000:.2f} ms, "
        f"bound {bound * 1000:.0f} ms); VmHWM +{grown} KiB")
    sched.check_alive(f"after {what}")
    return status, error_of(reply), probes, bound, grown


def test_huge_batch_refused_bounded(env):
    """{"jobs":[{},{},…]} of 12 MiB (4 million jobs): 413 at the first job too many, peak
    memory under 4 x the body, other clients answered within the bound meanwhile"""
    sched = setup(env)
    n = 4 * 1024 * 1024
    body = b'{"jobs":[' + b"{}," * (n - 1) + b"{}]}"
    status, (code, msg), probes, bound, grown = handle_big(env, sched, body, "huge batch")
    check(grown * 1024 < 4 * len(body), f"peak memory grew by {grown} KiB for a body of "
          f"{len(body) >> 10} KiB")
    check(len(probes) >= 3, f"only {len(probes)} probes while the batch was handled")
    check(max(probes) <= bound, f"a request waited {max(probes):.3f}s (bound {bound:.3f}s) while "
          f"the huge batch was handled: the loop was blocked")
    eq((status, code, msg), (413, "too-large", "more than 1000000 jobs in one batch"),
       "answer to the huge batch")
    eq(env.redis_cli("LLEN", env.key(Q, "ready")).strip(), "0", "jobs stored")


def test_batch_decoded_in_steps(env):
    """999 999 valid jobs and a bad last one: every job is decoded, other clients are answered
    within the bound meanwhile, the batch is refused naming jobs[999999], nothing stored"""
    sched = setup(env)
    n = 999999
    body = b'{"jobs":[' + b'{"args":[]},' * n + b'{"bogus":1}]}'
    status, (code, msg), probes, bound, grown = handle_big(env, sched, body, "bad last job")
    eq((status, code, msg), (400, "bad-request", "jobs[999999]: unknown key 'bogus'"),
       "answer to the batch with a bad last job")
    check(len(probes) >= 3, f"only {len(probes)} probes while the batch was decoded")
    check(max(probes) <= bound, f"a request waited {max(probes):.3f}s (bound {bound:.3f}s) while "
          f"the batch was decoded: the loop was blocked")
    # The decoded jobs are what it holds: the body and about a hundred bytes a job.
    check(grown * 1024 < 2 * len(body) + 200 * (n + 1), f"peak memory grew by {grown} KiB for "
          f"{n + 1} jobs in a body of {len(body) >> 10} KiB")
    eq(env.redis_cli("LLEN", env.key(Q, "ready")).strip(), "0", "jobs stored")


def trickler(socks: list, payload: bytes, stop: threading.Event, period: float = 1.0):
    """Sends the next byte of payload on every socket once a period, until stop."""
    i = 0
    while not stop.is_set() and i < len(payload):
        for s in socks:
            try:
                s.send(payload[i:i + 1])
            except OSError:
                pass
        i += 1
        stop.wait(period)


def closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)  # with a timeout, Python would wait for data before recv()
    try:
        data = s.recv(65536, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        if not data:
            return True
        return data.startswith(b"HTTP/1.1 408 ") or data.startswith(b"HTTP/1.1 503 ")
    except BlockingIOError:
        return False
    except OSError:
        return True


def probe_once(path) -> float:
    return Prober(path).one()


def test_slowloris_unix(env):
    """300 connections trickling a byte a second: a fresh client is served meanwhile, all are
    closed at the head deadline (3 s); then 1 100 silent connections (more than
    http_max_connections) and a fresh client is still served"""
    raise_nofile(4096)
    setup(env, http_timeout="3s")
    bound = bound_of(Prober(env.scheduler_socket).baseline())
    socks = [unix_conn(env.scheduler_socket) for _ in range(300)]
    t0 = time.monotonic()
    stop = threading.Event()
    th = threading.Thread(target=trickler, args=(socks, PROBE, stop), daemon=True)
    th.start()
    try:
        slow = []
        while time.monotonic() - t0 < 2.0:
            slow.append(probe_once(env.scheduler_socket))
            time.sleep(0.1)
        check(max(slow) <= bound, f"a fresh client waited {max(slow):.3f}s (bound {bound:.3f}s)")
        open_early = sum(not closed_by_server(s) for s in socks)
        eq(open_early, 300, "trickling connections still open 2 s in (deadline 3 s)")
        wait_until(lambda: all(closed_by_server(s) for s in socks), 5,
                   "every trickling connection to be closed at the 3 s head deadline")
        log(f"300 trickling connections closed {time.monotonic() - t0:.2f}s after they opened")
    finally:
        stop.set()
        th.join(5)
        for s in socks:
            s.close()

    many = []
    try:
        for _ in range(1100):
            many.append(unix_conn(env.scheduler_socket))
        time.sleep(0.3)
        t = probe_once(env.scheduler_socket)
        check(t <= bound, f"with 1100 connections held, a fresh client waited {t:.3f}s")
        held = sum(not closed_by_server(s) for s in many)
        log(f"of 1100 silent connections the scheduler holds {held}")
        check(held <= 512, f"{held} connections held, above http_max_connections (512)")
    finally:
        for s in many:
            s.close()


def test_tcp_unauthenticated_flood(env):
    """1 100 unauthenticated TCP connections from 127.0.0.1 each sending one byte: at most
    http_max_connections_per_host (64) are held, a client with a good token is served at once,
    and the rest are closed at the head deadline"""
    from test_tcp_tokens import CI, start_pair
    raise_nofile(4096)
    creds = env.tmp / "creds"
    creds.mkdir(mode=0o700)
    (creds / "tokens").write_text(f"ci builders,tasad {CI}\n")
    env.conf = env.write_conf(api_tokens_credential="tokens", http_timeout="3s")
    env.write_queue(Q, [env.job("echo.sh")], submit_groups=["builders"])
    env.start_redis()
    port = start_pair(env, "scheduler", env.scheduler_socket,
                      {"CREDENTIALS_DIRECTORY": str(creds)})
    flood = []
    try:
        for _ in range(1100):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.send(b"P")
            flood.append(s)
        time.sleep(0.3)
        t = time.monotonic()
        body = b'{"args": ["x"]}'
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(f"POST /v1/queues/{Q}/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CI}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
        status, _, reply = read_reply(c)
        dt = time.monotonic() - t
        c.close()
        eq(status, 201, f"submission with a good token during the flood ({reply[:200]!r})")
        check(dt < 2.0, f"the authenticated client waited {dt:.2f}s")
        held = sum(not closed_by_server(s) for s in flood)
        log(f"good token served in {dt * 1000:.1f} ms; of 1100 strangers {held} are held")
        check(held <= 64, f"{held} unauthenticated connections from one address held (limit 64)")
        wait_until(lambda: all(closed_by_server(s) for s in flood), 6,
                   "every unauthenticated connection to be closed at the head deadline")
    finally:
        for s in flood:
            s.close()


def test_stalled_bodies_capped(env):
    """8 requests declaring 8 MiB bodies, each stalled after 6 MiB: with max_request_buffered
    20M two are taken and the others get 503 with Retry-After; the scheduler's memory grows by
    less than the cap; once the stalled ones time out, a large body is taken again"""
    sched = setup(env, max_request="8M", max_request_buffered="20M", http_timeout="3s")
    rss0, hwm0 = status_kib(sched.pid, "VmRSS"), status_kib(sched.pid, "VmHWM")
    size = 8 * 1024 * 1024
    head = (f"POST /v1/queues/{Q}/batches HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
    conns, answers = [], []
    try:
        for _ in range(8):
            s = unix_conn(env.scheduler_socket, 10)
            s.sendall(head)
            s.setblocking(False)
            conns.append(s)
        time.sleep(0.3)
        chunk = b" " * (6 * 1024 * 1024)
        for s in conns:
            try:
                s.setblocking(True)
                s.settimeout(5)
                s.sendall(chunk)
            except OSError:
                pass  # refused: the scheduler answered and stopped reading
        time.sleep(0.3)
        rss, hwm = status_kib(sched.pid, "VmRSS"), status_kib(sched.pid, "VmHWM")
        for s in conns:
            s.setblocking(False)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                data = None
            answers.append(data)
        refused = [a for a in answers if a]
        log(f"8 stalled bodies: {len(refused)} answered at once, VmRSS +{rss - rss0} KiB, "
            f"VmHWM +{hwm - hwm0} KiB")
        eq(len(refused), 6, "requests answered 503 (two 8 MiB bodies fit in 20 MiB)")
        for a in refused:
            check(a.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in a and
                  b'"code":"unavailable"' in a, f"not a 503 unavailable: {a[:300]!r}")
        # The two stalled bodies are held (their 6 MiB each are in memory), nothing more.
        check(rss - rss0 >= 11 * 1024, f"VmRSS grew by {rss - rss0} KiB only: the two bodies that "
              f"were taken are not held")
        check((hwm - hwm0) * 1024 < 20 * 1024 * 1024,
              f"the scheduler's peak memory grew by {hwm - hwm0} KiB, above max_request_buffered")
        # The stalled two are closed unanswered once they made no progress for 3 s.
        wait_until(lambda: all(closed_by_server(s) for s in conns), 8,
                   "the stalled connections to be closed after http_timeout")
    finally:
        for s in conns:
            s.close()
    body = b'{"jobs": [{}]}' + b" " * (7 * 1024 * 1024)
    status, _, reply = request(env.scheduler_socket,
                               (f"POST /v1/queues/{Q}/batches HTTP/1.1\r\nHost: x\r\n"
                                f"Content-Type: application/json\r\nContent-Length: "
                                f"{len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    eq(status, 201, f"a 7 MiB batch once the stalled bodies are gone ({reply[:200]!r})")


if __name__ == "__main__":
    tasadtest.main(globals())
