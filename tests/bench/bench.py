#!/usr/bin/env python3
"""tasad's benchmark (docs/performance.md): throughput, latency and footprint, each compared in
the same run with what this machine can do at all.

Sections (each figure is the median of --runs runs, with min and max):
  spawn       the physical reference: `/bin/true N` for N = 1..jobs with exactly `slots`
              children in flight, fork+exec and posix_spawn (tests/bench/spawn-limit.c)
  throughput  jobs of a queue running /bin/true with one argument, submitted as one batch by
              `tasactl submit --each`, one worker with 2 and then 4 slots, seccomp policy
              `default` and `unconfined`: from the submission until tasad-results has written
              every result; jobs/s and the share of the spawn limit (posix_spawn, same slots)
  latency     jobs submitted one at a time to an idle worker: submit -> the job's process
              spawned, submit -> the result visible through tasad-results (p50/p90/p99)
  submit      jobs accepted per second: `tasactl submit --each` and one batch request
  footprint   RSS of every daemon idle and at its peak, a worker's RSS after few and after many
              jobs, Redis memory per queued job (INFO memory around a batch of queued jobs)
  scaling     throughput of the first jobs taken from a queue already holding 1 000, 10 000 and
              100 000 jobs: the cost per job must not depend on the queue's length

It starts its own redis-server on a Unix socket in a temporary directory and its own daemons
(tests/integration/tasadtest.py), stops them on every exit path, prints a table and writes JSON.
--quick runs every section with small counts, to prove the benchmark works (CI runs it); its
figures mean little. Exit status 1 when a job did not complete or a run failed: never because a
figure missed a target (machines are noisy; the targets are shown beside the figures).

Environment: TASAD_BUILD_DIR (default <source>/build-bench), as for the integration tests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent.parent
os.environ.setdefault("TASAD_BUILD_DIR", str(SRC_DIR / "build-bench"))
sys.path.insert(0, str(SRC_DIR / "tests" / "integration"))
import tasadtest as tt  # noqa: E402

BUILD_DIR = tt.BUILD_DIR
SPAWN_LIMIT = BUILD_DIR / "tests/bench/spawn-limit"
TRUE = "/bin/true"
MiB = 1024 * 1024

# Targets of issue #5 (this machine, medians of the same run); shown beside the figures.
# Throughput configurations (policy, slots). "own": the default policy with every job under an
# account of its own (a queue without `user`); the others run their jobs as root. Every job's
# directory is a tmpfs (limit_work_dir, default 1G) but in "ondisk": the default policy with
# limit_work_dir = "infinity" (the directory on work_dir's file system).
THROUGHPUT_CONFIGS = [("default", 2), ("default", 4), ("unconfined", 2), ("unconfined", 4),
                      ("own", 2), ("ondisk", 2)]
TARGETS = {
    "throughput_share": 0.85,      # 2 slots, default policy, of the spawn limit
    "latency_started_p50_ms": 1.0,
    "latency_started_p99_ms": 5.0,
    "submit_batch_jobs_per_sec": 100_000,
    "worker_idle_rss_mib": 6.0,
    "redis_bytes_per_job": 250,
    "scaling_spread": 0.10,
}


class BenchError(Exception):
    """A run could not be completed (a job did not finish, a command failed)."""


# ------------------------------------------------------------------------------------------
# Small clients: HTTP/1.1 keep-alive over a Unix socket, RESP over a Unix socket


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 300):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)

    def call(self, method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.request(method, url, body=body, headers=headers)
            r = self.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The daemon closed the idle keep-alive connection before reading this request.
            self.close()
            self.request(method, url, body=body, headers=headers)
            r = self.getresponse()
        data = r.read()
        self.t_done = time.time()  # the whole answer is in: the client's parsing is not tasad's
        try:
            return r.status, json.loads(data) if data else {}
        except ValueError:
            raise BenchError(f"{method} {url}: answer is not JSON: {data[:200]!r}") from None

    def ok(self, method: str, url: str, body: bytes | None = None) -> dict:
        status, obj = self.call(method, url, body)
        if status not in (200, 201):
            raise BenchError(f"{method} {url}: HTTP {status}: {obj}")
        return obj


class Resp:
    """A minimal RESP2 client (the benchmark reads INFO and job fields; tasad has its own)."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(*args) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise BenchError("Redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise BenchError("Redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise BenchError(f"Redis: {rest.decode()}")
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise BenchError(f"Redis: unexpected reply {line[:60]!r}")

    def pipeline(self, commands: list[tuple]) -> list:
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self._reply() for _ in commands]

    def call(self, *args):
        return self.pipeline([args])[0]

    def used_memory(self) -> int:
        info = self.call("INFO", "memory").decode()
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise BenchError("INFO memory without used_memory")


# ------------------------------------------------------------------------------------------
# Figures


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 6) for v in values]}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def wait_for(pred, timeout: float, what: str, interval: float = 0.01):
    """The benchmark's own waiting (it watches tasad from outside; tasad itself never polls)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.runs = args.runs
        tempfile.tempdir = str(args.tmpdir)
        self.env = tt.Env("bench")
        self.report: dict = {"machine": machine_facts(), "quick": self.quick, "runs": self.runs,
                             "tmpdir": str(args.tmpdir), "tmpdir_fs": fs_type(args.tmpdir),
                             "targets": TARGETS}
        self.workers: dict[str, tt.Daemon] = {}
        self.idle_rss: dict[str, int] = {}
        self.completed = 0

    # --- set-up ----------------------------------------------------------------------------
    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def start(self):
        tt.Env.require("worker", "scheduler", "results", "tasactl")
        if not os.access(SPAWN_LIMIT, os.X_OK):
            raise tt.SkipTest(f"not built yet: {SPAWN_LIMIT}")
        e = self.env
        e.conf = e.write_conf(retention="1d", max_request="256M")
        # Every queue exists before the scheduler and tasad-results start (they load them then).
        for policy, slots in THROUGHPUT_CONFIGS:
            self.write_queue(f"tp-{policy}-{slots}", slots, policy)
        for name in ("lat", "sub", "foot", "scale"):
            self.write_queue(name, 2)
        e.start_redis()
        self.redis = Resp(str(e.redis_sock))
        self.scheduler = e.start_scheduler(extra_env={"TASAD_LOG_LEVEL": "info"})
        self.results = e.start_results(extra_env={"TASAD_LOG_LEVEL": "info"})
        self.sched_http = UnixHTTP(str(e.scheduler_socket))
        self.results_http = UnixHTTP(str(e.results_socket))
        for name, d in (("scheduler", self.scheduler), ("results", self.results)):
            self.idle_rss[name] = rss_kib(d.pid)

    def write_queue(self, name: str, slots: int, policy: str = "default"):
        """A queue running `/bin/true ARG` as root, or with policy "own" (the default policy)
        under an account of its own per job, the default for a queue without `user`."""
        user, extra = "root", {}
        if policy == "own":
            policy, user = "default", None
        if policy == "ondisk":
            policy, extra = "default", {"limit_work_dir": "infinity"}
        self.env.write_queue(name, [TRUE, "{args}"], concurrency=slots, policy=policy,
                             max_args=1, arg_pattern="[0-9]+", timeout="1m", user=user, **extra)

    def worker(self, queue: str) -> tt.Daemon:
        w = self.env.start_worker(queue, name=f"worker-{queue}",
                                  extra_env={"TASAD_LOG_LEVEL": "info"})
        self.workers[queue] = w
        self.idle_rss.setdefault("worker", rss_kib(w.pid))
        return w

    def stop_worker(self, queue: str):
        w = self.workers.pop(queue)
        w.stop()

    def worker_ctl(self, verb: str, queue: str):
        w = self.workers[queue]
        self.env.tasactl_ok("worker", verb, queue, conf=w.conf)

    def worker_idle(self, queue: str, timeout: float = 60):
        w = self.workers[queue]

        def idle():
            rc, out, _ = self.env.tasactl("worker", "status", queue, conf=w.conf, json_out=True)
            return rc == 0 and json.loads(out)["jobs_running"] == 0
        wait_for(idle, timeout, f"worker of {queue} to have no job", interval=0.05)

    def clear_queue(self, queue: str):
        """Drops whatever the queue holds in Redis (the benchmark's own Redis) and its results
        directory, between runs, while nothing of it runs."""
        pattern = self.env.key(queue, "*")
        script = ("local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  "if not k:find(':done$') then redis.call('UNLINK', k) n = n + 1 end end return n")
        self.redis.call("EVAL", script, 0, pattern)
        self.redis.call("XTRIM", self.env.key(queue, "done"), "MAXLEN", 0)
        shutil.rmtree(self.env.results_dir / queue, ignore_errors=True)

    # --- submitting and waiting --------------------------------------------------------------
    def submit_each(self, queue: str, first: int, count: int) -> tuple[list[str], list[str], float]:
        """`tasactl submit --each --json`: returns (ids, batch ids, the time it was started)."""
        data = "".join(f"{i}\n" for i in range(first, first + count)).encode()
        t0 = time.time()
        out = self.env.tasactl_ok("submit", "--each", queue, input=data, json_out=True,
                                  timeout=600)
        ids, batches = [], []
        for line in out.decode().splitlines():
            o = json.loads(line)
            ids += o["ids"]
            batches.append(o["batch"])
        if len(ids) != count:
            raise BenchError(f"submit --each of {count} jobs printed {len(ids)} ids")
        return ids, batches, t0

    def batch_request(self, queue: str, first: int, count: int) -> tuple[dict, float, float]:
        body = json.dumps({"jobs": [{"args": [str(i)]} for i in range(first, first + count)]},
                          separators=(",", ":")).encode()
        t0 = time.time()
        obj = self.sched_http.ok("POST", f"/v1/queues/{queue}/batches", body)
        dt = self.sched_http.t_done - t0
        if obj.get("count") != count or len(obj.get("ids", [])) != count:
            raise BenchError(f"batch of {count} jobs answered {obj.get('count')} jobs")
        return obj, t0, dt

    def all_ready(self, queue: str, jobs: int, timeout: float = 120) -> float:
        """Waits until the queue's ready list holds `jobs` ids; returns when (time.time())."""
        deadline = time.monotonic() + timeout
        while (queued := self.redis.call("LLEN", self.env.key(queue, "ready"))) < jobs:
            if time.monotonic() > deadline:
                raise BenchError(f"{jobs} jobs accepted but {queued} in ready after {timeout}s")
            time.sleep(0.002)
        if queued != jobs:
            raise BenchError(f"{jobs} jobs accepted but {queued} in ready")
        return time.time()

    def wait_batches(self, batches: list[str], timeout: float = 600):
        for b in batches:
            deadline = time.monotonic() + timeout
            while True:
                left = max(1, int(deadline - time.monotonic()))
                st = self.results_http.ok("GET", f"/v1/batches/{b}/wait?timeout={min(left, 3600)}")
                if st.get("finished"):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"batch {b} not finished after {timeout}s: {st}")
            if st.get("done") != st.get("total"):
                raise BenchError(f"batch {b}: {st.get('done')} of {st.get('total')} jobs done: {st}")

    def gathered_times(self, queue: str, ids: list[str], timeout: float = 120) -> list[float]:
        """When tasad-results wrote each job's result: the directory's ctime (set by the rename
        that puts it in place). Waits until every one exists."""
        qdir = self.env.results_dir / queue
        times: dict[str, float] = {}

        def all_there():
            for i in ids:
                if i not in times:
                    try:
                        times[i] = os.stat(qdir / i).st_ctime_ns / 1e9
                    except FileNotFoundError:
                        return False
            return True
        wait_for(all_there, timeout, f"{len(ids) - len(times)} results of {queue} on disk",
                 interval=0.02)
        self.completed += len(ids)
        return [times[i] for i in ids]

    def run_throughput(self, queue: str, jobs: int, first: int = 1) -> float:
        ids, batches, t0 = self.submit_each(queue, first, jobs)
        self.wait_batches(batches)
        end = max(self.gathered_times(queue, ids))
        return jobs / (end - t0)

    # --- sections ----------------------------------------------------------------------------
    def spawn_limit(self, mode: str, jobs: int, slots: int) -> float:
        r = subprocess.run([str(SPAWN_LIMIT), mode, str(jobs), str(slots)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BenchError(f"spawn-limit {mode} {jobs} {slots}: {r.stderr.strip()}")
        o = json.loads(r.stdout)
        if o["failed"]:
            raise BenchError(f"spawn-limit {mode}: {o['failed']} children failed")
        self.completed += jobs
        return o["jobs_per_sec"]

    def section_throughput(self):
        """Each run measures the spawn limit and then every configuration once, so that a
        machine whose speed drifts (a VM's neighbours) moves the reference and the figures
        together; the share is taken run by run."""
        jobs = self.n(5000, 500)
        configs = THROUGHPUT_CONFIGS
        spawn = {f"{m}_{n}": [] for n in (2, 4) for m in ("fork", "posix_spawn")}
        rates = {c: [] for c in configs}
        shares = {c: [] for c in configs}
        for policy, slots in configs:
            self.worker(f"tp-{policy}-{slots}")
        for _ in range(self.runs):
            for key in spawn:
                mode, n = key.rsplit("_", 1)
                spawn[key].append(self.spawn_limit(mode, jobs, int(n)))
            for policy, slots in configs:
                q = f"tp-{policy}-{slots}"
                rate = self.run_throughput(q, jobs)
                rates[(policy, slots)].append(rate)
                shares[(policy, slots)].append(rate / spawn[f"posix_spawn_{slots}"][-1])
                self.clear_queue(q)
        for policy, slots in configs:
            self.stop_worker(f"tp-{policy}-{slots}")
        self.report["spawn"] = {"jobs": jobs, **{k: summary(v) for k, v in spawn.items()}}
        out = {}
        for c in configs:
            out[f"{c[0]}_{c[1]}"] = {**summary(rates[c]),
                                     "share_of_spawn_limit": statistics.median(shares[c]),
                                     "shares": [round(x, 4) for x in shares[c]]}
        self.report["throughput"] = {"jobs": jobs, **out}

    def section_latency(self):
        jobs = self.n(1000, 100)
        q = "lat"
        self.worker(q)
        started_p, visible_p = {50: [], 90: [], 99: []}, {50: [], 90: [], 99: []}
        for run in range(self.runs):
            t_submit, t_visible, ids = [], [], []
            for i in range(jobs):
                body = b'{"args":["%d"]}' % (i + 1)
                t0 = time.time_ns()
                obj = self.sched_http.ok("POST", "/v1/queues/lat/jobs", body)
                st = self.results_http.ok("GET", f"/v1/jobs/{obj['id']}/wait?timeout=60&queue=lat")
                t1 = time.time_ns()
                if st.get("state") != "done":
                    raise BenchError(f"latency job {obj['id']} ended {st.get('state')}: {st}")
                t_submit.append(t0)
                t_visible.append(t1)
                ids.append(obj["id"])
            started = self.redis.pipeline([("HGET", self.env.key(q, f"job:{i}"), "started")
                                           for i in ids])
            d_started = sorted((int(s) * 1000 - t) / 1e6 for s, t in zip(started, t_submit))
            d_visible = sorted((v - t) / 1e6 for v, t in zip(t_visible, t_submit))
            for p in (50, 90, 99):
                started_p[p].append(percentile(d_started, p))
                visible_p[p].append(percentile(d_visible, p))
            self.completed += jobs
            self.clear_queue(q)
        self.stop_worker(q)
        self.report["latency"] = {
            "jobs": jobs,
            "started_ms": {f"p{p}": summary(v) for p, v in started_p.items()},
            "visible_ms": {f"p{p}": summary(v) for p, v in visible_p.items()},
        }

    def section_submit(self):
        jobs = self.n(100_000, 10_000)
        q = "sub"      # no worker: the jobs stay queued
        each, batch, accepted, per_job = [], [], [], []
        for _ in range(self.runs):
            self.clear_queue(q)
            ids, _, t0 = self.submit_each(q, 1, jobs)
            each.append(jobs / (self.all_ready(q, jobs) - t0))
            self.clear_queue(q)
            before = self.redis.used_memory()
            obj, t0, dt = self.batch_request(q, 1, jobs)
            accepted.append(jobs / dt)
            # A batch of more than 1000 jobs is committed, then delivered to ready in steps
            # (docs/protocol.md): the figure ends when a worker could take every job.
            batch.append(jobs / (self.all_ready(q, jobs) - t0))
            per_job.append((self.redis.used_memory() - before) / jobs)
        self.clear_queue(q)
        self.report["submit"] = {"jobs": jobs, "each_jobs_per_sec": summary(each),
                                 "batch_jobs_per_sec": summary(batch),
                                 "batch_accepted_jobs_per_sec": summary(accepted)}
        self.report["redis_bytes_per_queued_job"] = summary(per_job)

    def section_footprint(self):
        few, many = self.n(1000, 200), self.n(100_000, 2000)
        q = "foot"
        w = self.worker(q)
        idle = rss_kib(w.pid)
        self.run_throughput(q, few)
        after_few = rss_kib(w.pid)
        # The rest in batches of 10 000, so the results directory and Redis stay realistic.
        done = few
        while done < many:
            n = min(10_000, many - done)
            self.run_throughput(q, n, first=done + 1)
            done += n
        after_many = rss_kib(w.pid)
        self.clear_queue(q)
        peak = {"worker": rss_kib(w.pid, "VmHWM"), "scheduler": rss_kib(self.scheduler.pid, "VmHWM"),
                "results": rss_kib(self.results.pid, "VmHWM")}
        self.stop_worker(q)
        self.report["footprint"] = {
            "idle_rss_kib": {**self.idle_rss, "worker": idle},
            "peak_rss_kib": peak,
            "worker_rss_kib": {"jobs": [few, many], "after_few": after_few, "after_many": after_many,
                               "growth_kib": after_many - after_few},
        }

    def section_scaling(self):
        """Depths interleaved run by run, for the same reason as in throughput."""
        depths = (1000, 10_000, 100_000) if not self.quick else (1000, 10_000)
        measured = self.n(2000, 300)
        q = "scale"
        self.worker(q)
        rates = {d: [] for d in depths}
        for _ in range(self.runs):
            for depth in depths:
                self.worker_ctl("pause", q)
                obj, _, _ = self.batch_request(q, 1, max(depth, measured))
                t0 = time.time()
                self.worker_ctl("resume", q)
                ids = obj["ids"][:measured]
                times = sorted(self.gathered_times(q, ids))
                rates[depth].append(measured / (times[-1] - t0))
                self.worker_ctl("pause", q)
                self.worker_idle(q)
                self.clear_queue(q)
                self.worker_ctl("resume", q)
        self.stop_worker(q)
        out = {str(d): summary(v) for d, v in rates.items()}
        medians = [v["median"] for v in out.values()]
        self.report["scaling"] = {"measured_jobs": measured, "queued": out,
                                  "spread": (max(medians) - min(medians)) / max(medians)}

    # --- all ------------------------------------------------------------------------------------
    SECTIONS = ("throughput", "latency", "submit", "footprint", "scaling")

    def run(self, only: list[str]):
        t0 = time.monotonic()
        self.start()
        for name in self.SECTIONS:
            if only and name not in only:
                continue
            ts = time.monotonic()
            print(f"-- {name} …", file=sys.stderr, flush=True)
            getattr(self, f"section_{name}")()
            self.report.setdefault("seconds", {})[name] = round(time.monotonic() - ts, 1)
        self.report["total_seconds"] = round(time.monotonic() - t0, 1)
        self.report["completed_jobs"] = self.completed

    def close(self):
        for q in list(self.workers):
            self.workers.pop(q).close()
        self.env.close()


def fs_type(path: Path) -> str:
    """The file system type of the mount holding path (from /proc/self/mounts)."""
    best, kind = "", "?"
    p = str(Path(path).resolve())
    for line in open("/proc/self/mounts"):
        f = line.split()
        if (p == f[1] or p.startswith(f[1].rstrip("/") + "/")) and len(f[1]) >= len(best):
            best, kind = f[1], f[2]
    return kind


def default_tmpdir() -> Path:
    """/dev/shm when it is a writable tmpfs: the results directory, the work directories and
    Redis' AOF then cost what tasad does, not what this machine's disk does (docs/performance.md:
    on these machines ext4 runs without a journal and every new inode costs a scan)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and fs_type(shm) == "tmpfs":
        return shm
    return Path(tempfile.gettempdir())


def machine_facts() -> dict:
    facts = {"cpus": os.cpu_count(), "kernel": os.uname().release}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return facts


# ------------------------------------------------------------------------------------------
# The table


def fmt_summary(s: dict, unit: str = "", digits: int = 0) -> str:
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])}{unit} ({f.format(s['min'])}–{f.format(s['max'])})"


def table(rep: dict) -> str:
    rows = [("figure", "median (min–max)", "target")]
    sp = rep.get("spawn")
    if sp:
        for slots in (2, 4):
            for mode in ("fork", "posix_spawn"):
                rows.append((f"spawn limit, {mode}, {slots} in flight [jobs/s]",
                             fmt_summary(sp[f"{mode}_{slots}"]), ""))
    tp = rep.get("throughput")
    if tp:
        for policy, slots in THROUGHPUT_CONFIGS:
            s = tp.get(f"{policy}_{slots}")
            if not s:
                continue
            target = (f"≥ {TARGETS['throughput_share']:.0%}"
                      if (policy, slots) == ("default", 2) else "")
            what = {"own": "policy default, every job its own account",
                    "ondisk": "policy default, job directory on disk (no tmpfs)"}.get(
                        policy, f"policy {policy}")
            rows.append((f"end to end, {slots} slots, {what} [jobs/s]",
                         f"{fmt_summary(s)} = {s['share_of_spawn_limit']:.0%}", target))
    lat = rep.get("latency")
    if lat:
        for what, key in (("started", "started_ms"), ("result visible", "visible_ms")):
            for p in ("p50", "p90", "p99"):
                t = TARGETS.get(f"latency_started_{p}_ms") if what == "started" else None
                rows.append((f"submit → {what}, {p} [ms]", fmt_summary(lat[key][p], digits=2),
                             f"< {t:g} ms" if t else ""))
    sub = rep.get("submit")
    if sub:
        rows.append((f"submit --each, {sub['jobs']:,} jobs [jobs/s]",
                     fmt_summary(sub["each_jobs_per_sec"]), ""))
        rows.append((f"one batch request, {sub['jobs']:,} jobs, answered [jobs/s]",
                     fmt_summary(sub["batch_accepted_jobs_per_sec"]), ""))
        rows.append((f"one batch request, {sub['jobs']:,} jobs, all in ready [jobs/s]",
                     fmt_summary(sub["batch_jobs_per_sec"]),
                     f"≥ {TARGETS['submit_batch_jobs_per_sec']:,}"))
        rows.append(("Redis memory per queued job [bytes]",
                     fmt_summary(rep["redis_bytes_per_queued_job"]),
                     f"< {TARGETS['redis_bytes_per_job']}"))
    fp = rep.get("footprint")
    if fp:
        for d in ("worker", "scheduler", "results"):
            rows.append((f"{d} RSS idle / peak [MiB]",
                         f"{fp['idle_rss_kib'][d] / 1024:.1f} / {fp['peak_rss_kib'][d] / 1024:.1f}",
                         f"< {TARGETS['worker_idle_rss_mib']:g} idle" if d == "worker" else ""))
        w = fp["worker_rss_kib"]
        rows.append((f"worker RSS after {w['jobs'][0]:,} / {w['jobs'][1]:,} jobs [MiB]",
                     f"{w['after_few'] / 1024:.2f} / {w['after_many'] / 1024:.2f}", "no growth"))
    sc = rep.get("scaling")
    if sc:
        for depth, s in sc["queued"].items():
            rows.append((f"{int(depth):,} queued, first {sc['measured_jobs']:,} jobs [jobs/s]",
                         fmt_summary(s), ""))
        rows.append(("spread of the per-job cost", f"{sc['spread']:.1%}",
                     f"≤ {TARGETS['scaling_spread']:.0%}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}".rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: proves it works (< 1 min)")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    ap.add_argument("--json", type=Path, default=None,
                    help="where the JSON goes (default <build dir>/bench.json)")
    ap.add_argument("--tmpdir", type=Path, default=None,
                    help="where the benchmark's Redis, results and work directories go "
                         "(default /dev/shm when it is a tmpfs)")
    ap.add_argument("--only", action="append", default=[], choices=Bench.SECTIONS,
                    help="run only this section (repeatable; throughput includes the spawn limit)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    args.tmpdir = args.tmpdir or default_tmpdir()
    if not args.tmpdir.is_dir():
        ap.error(f"--tmpdir {args.tmpdir}: not a directory")
    b = Bench(args)
    rc = 0
    try:
        b.run(args.only)
    except tt.SkipTest as e:
        print(f"bench: skipped: {e}")
        rc = 77
    except (BenchError, AssertionError, OSError, http.client.HTTPException) as e:
        print(f"bench: failed: {e}", file=sys.stderr)
        b.env.dump()
        rc = 1
    finally:
        b.close()
    if rc == 0:
        path = args.json or BUILD_DIR / "bench.json"
        path.write_text(json.dumps(b.report, indent=2) + "\n")
        print(table(b.report))
        print(f"\n{b.completed:,} jobs completed in {b.report['total_seconds']}s; JSON: {path}")
    sys.exit(rc)


if __name__ == "__main__":
    main()
