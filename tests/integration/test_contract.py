#!/usr/bin/env python3
"""The behaviour docs/api.md and docs/protocol.md promise an integrator, checked against the
real daemons: each test is one difference a client written from the documents alone found,
kept fixed."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import api, check, eq, http_unix, wait_until  # noqa: E402
from test_tcp_tokens import start_pair  # noqa: E402

# The attempt fields of a status object (docs/api.md, "GET /v1/jobs/{id}"): present once an
# attempt has finished.
ATTEMPT_FIELDS = {"outcome", "exit_code", "detail", "started", "finished", "wall_ms", "cpu_ms",
                  "max_rss_kib", "stdout_bytes", "stdout_truncated", "stderr_bytes",
                  "stderr_truncated"}
BASE_FIELDS = {"id", "queue", "state", "attempt", "batch", "created", "args"}


def write_record(env, queue, jid, *fields):
    env.redis_cli("HSET", env.key(queue, f"job:{jid}"), *fields)
    env.redis_cli("LPUSH", env.key(queue, "ready"), jid)


def test_unknown_record_version(env):
    """a record of v=2, one without v and one with a malformed v are not run: each attempt
    ends invalid with a detail naming the version, the job is dead-lettered; v=1 runs"""
    env.write_queue("w", [env.job("echo.sh")], timeout="30s", retries=3)
    env.start_stack("w")
    cases = {
        "rec-v2": (("v", "2"), "the job's record is of version v=2: this worker runs records "
                               "of version 1 only"),
        "rec-none": ((), "the job's record has no version field v: this worker runs records of "
                         "version 1 only"),
        "rec-bad": (("v", "1x"), "the job's record has a malformed version field v: this worker "
                                 "runs records of version 1 only"),
    }
    for jid, (v, _) in cases.items():
        write_record(env, "w", jid, *v, "state", "queued", "created", "1", "args", "")
    for jid, (_, detail) in cases.items():
        st = env.wait_state(jid, timeout=20)
        eq(st.get("state"), "failed", f"state of {jid}")
        eq(st.get("outcome"), "invalid", f"outcome of {jid}")
        eq(st.get("detail"), detail, f"detail of {jid}")
        eq(st.get("attempt"), 1, f"attempts of {jid} (invalid is final: no retry)")
        check(env.redis_cli("ZSCORE", env.key("w", "dead"), jid).strip(),
              f"{jid} is not in the dead-letter list")
    check(not any(p.name.startswith("rec-") for p in (env.tmp / "work").rglob("*")),
          "a working directory was made for a refused record")
    write_record(env, "w", "rec-v1", "v", "1", "state", "queued", "created", "1", "args",
                 "5:hello,")
    st = env.wait_state("rec-v1", timeout=20)
    eq((st.get("state"), st.get("outcome")), ("done", "exit:0"), "a v=1 record written directly")


def test_cancelled_while_queued(env):
    """a job cancelled before any attempt ran: its status has outcome and finished but no
    other attempt field, and its stdout and stderr are 404, before and after gathering and
    once only the results directory knows it"""
    env.write_queue("idle", [env.job("echo.sh")], timeout="30s")
    env.start_redis()
    env.start_scheduler()
    env.start_results()  # no worker: the job stays queued
    jid = env.submit("idle", "x")
    eq(env.tasactl_ok("cancel", jid).decode().split(), [jid, "cancelled"], "tasactl cancel")

    def check_status(where):
        st = env.status(jid)
        eq(set(st), BASE_FIELDS | {"outcome", "finished"}, f"status fields ({where})")
        eq((st["state"], st["outcome"], st["attempt"]), ("cancelled", "cancelled", 0),
           f"status ({where})")
        check(isinstance(st["finished"], float) and st["finished"] >= st["created"],
              f"finished {st['finished']!r} ({where})")

    def check_outputs(where):
        for what in ("stdout", "stderr"):
            status, body = api(env, "results", "GET", f"/v1/jobs/{jid}/{what}")
            eq(status, 404, f"GET …/{what} ({where})")
            eq(body["error"], {"code": "not-found", "message": f"job '{jid}' was cancelled "
                               f"before any attempt ran: it has no {what}"}, f"{what} ({where})")

    check_status("in Redis")
    check_outputs("in Redis")
    jk = env.key("idle", f"job:{jid}")
    wait_until(lambda: env.redis_cli("HGET", jk, "gathered").strip() == "1", 10,
               "the cancelled job to be gathered")
    check_status("gathered")
    check_outputs("gathered")
    on_disk = json.loads((env.results_dir / "idle" / jid / "result.json").read_text())
    eq(set(on_disk), BASE_FIELDS | {"outcome", "finished"}, "result.json's fields")
    env.redis_cli("DEL", jk)  # as if its retention expired
    check_status("on disk only")
    check_outputs("on disk only")


def test_timeout_real_seconds(env):
    """{"timeout": 1.5} is a number of seconds (to the microsecond); a fraction above the
    queue's timeout is refused naming the value"""
    env.write_queue("t", [env.job("echo.sh")], timeout="10s")
    env.start_redis()
    env.start_scheduler()
    status, body = api(env, "scheduler", "POST", "/v1/queues/t/jobs",
                       {"args": ["a"], "timeout": 1.5})
    eq(status, 201, f"timeout 1.5: {body}")
    eq(env.redis_cli("HGET", env.key("t", f"job:{body['id']}"), "timeout").strip(), "1500000",
       "the record's timeout (µs)")
    status, body = api(env, "scheduler", "POST", "/v1/queues/t/jobs", {"timeout": 10.25})
    eq((status, body["error"]["code"]), (400, "invalid-argument"), "timeout 10.25 > 10s")
    eq(body["error"]["message"], "timeout: 10.25s exceeds the queue's timeout (10s)",
       "message for 10.25")


def test_batch_names_unknown_key(env):
    """{"jobs": [{}], "x": 1} is refused naming x; an id that exists is listed in ids but
    neither stored again nor counted in created or in the batch's total"""
    env.write_queue("b", [env.job("echo.sh")], timeout="10s")
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    status, body = api(env, "scheduler", "POST", "/v1/queues/b/batches", {"jobs": [{}], "x": 1})
    eq(status, 400, "batch with x")
    eq(body["error"], {"code": "bad-request", "message": "unknown key 'x': body must be "
                       "{\"jobs\": [job, ...]} with 1 to 1000000 jobs, nothing else"},
       "the refusal of x")
    status, body = api(env, "scheduler", "POST", "/v1/queues/b/jobs", {"id": "old", "args": ["1"]})
    eq(status, 201, "the job that exists")
    for how in ("POST", "PUT"):
        url = "/v1/queues/b/batches" + ("/named" if how == "PUT" else "")
        status, body = api(env, "scheduler", how, url,
                           {"jobs": [{"args": ["2"]}, {"id": "old", "args": ["3"]}, {}]})
        eq(status, 201, f"{how} batch with an existing id: {body}")
        eq((body["count"], body["created"]), (3, 2), f"{how}: count and created")
        batch = body["batch"]
        eq(body["ids"], [f"{batch}.0", "old", f"{batch}.2"], f"{how}: ids")
        eq(env.redis_cli("HGET", env.key("b", "job:old"), "args").strip(), "1:1,",
           f"{how}: the existing job is left as it was")
        eq(env.redis_cli("HGET", env.key("b", "job:old"), "batch").strip(), "",
           f"{how}: the existing job joined no batch")
        status, st = api(env, "results", "GET", f"/v1/batches/{batch}")
        eq((status, st.get("total")), (200, 2), f"{how}: the batch's total")


def raw_submit(env, head: str, body: bytes) -> tuple[int, dict, dict]:
    """One request to the scheduler's socket, head without the blank line: (status, headers,
    JSON body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(str(env.scheduler_socket))
        s.sendall(head.encode() + b"\r\n" + body)
        r = http.client.HTTPResponse(s, method="POST")
        r.begin()
        return r.status, dict(r.getheaders()), json.loads(r.read())
    finally:
        s.close()


def test_submission_media_type(env):
    """the scheduler takes a submission body declared application/json, with Content-Length
    or chunked; another Content-Type, or none, is 415 unsupported-media-type before the body
    is read"""
    env.write_queue("m", [env.job("echo.sh")], timeout="10s")
    env.start_redis()
    env.start_scheduler()
    body = b'{"args": ["a"]}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = "POST /v1/queues/m/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    for ct in ("application/json", "application/json; charset=utf-8"):
        status, _, reply = raw_submit(env, head + f"Content-Type: {ct}\r\n"
                                      f"Content-Length: {len(body)}\r\n", body)
        eq(status, 201, f"Content-Type {ct}: {reply}")
    status, _, reply = raw_submit(env, head + "Content-Type: application/json\r\n"
                                  "Transfer-Encoding: chunked\r\n", chunked)
    eq(status, 201, f"a chunked submission: {reply}")
    eq(env.redis_cli("HGET", env.key("m", f"job:{reply['id']}"), "args").strip(), "1:a,",
       "the chunked job's arguments")
    for ct, what in (("application/x-www-form-urlencoded", "not 'application/x-www-form-"
                      "urlencoded'"), (None, "this one has no Content-Type")):
        for route in ("POST /v1/queues/m/jobs", "POST /v1/queues/m/batches",
                      "PUT /v1/queues/m/batches/b1"):
            h = route + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            h += f"Content-Type: {ct}\r\n" if ct else ""
            status, _, reply = raw_submit(env, h + f"Content-Length: {len(body)}\r\n", body)
            pattern = route.split()[1].replace("/m/", "/{queue}/").replace("/b1", "/{batch}")
            eq((status, reply["error"]), (415, {
                "code": "unsupported-media-type",
                "message": f"{route.split()[0]} {pattern} needs a JSON body (Content-Type: "
                           f"application/json), {what}"}), f"{route} with Content-Type {ct}")
    eq(env.redis_cli("LLEN", env.key("m", "ready")).strip(), "3", "jobs stored (the 3 taken)")


def test_tcp_challenge_and_listen_log(env):
    """a 401 on a TCP listener carries WWW-Authenticate: Bearer; a daemon with a Unix and a
    TCP socket from systemd logs each socket's own address, not the configured Unix path"""
    creds = env.tmp / "creds"
    creds.mkdir(mode=0o700)
    (creds / "tokens").write_text("ci tasad ci-0123456789abcdef0123456789abcdef\n")
    env.scheduler_socket = env.run_dir / "activated.sock"  # not the configured path
    env.conf = env.write_conf(api_tokens_credential="tokens",
                              scheduler_socket=str(env.run_dir / "configured.sock"))
    env.write_queue("q", [env.job("echo.sh")])
    env.start_redis()
    port = start_pair(env, "scheduler", env.scheduler_socket,
                      {"CREDENTIALS_DIRECTORY": str(creds)})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/v1/queues", headers={"Authorization": "Bearer wrong"})
    r = c.getresponse()
    eq((r.status, r.getheader("WWW-Authenticate")), (401, 'Bearer realm="tasad"'),
       "401 and its challenge")
    eq(json.loads(r.read())["error"]["code"], "unauthorized", "the 401's code")
    c.close()
    log = env.daemons[-1].log_text()
    for where in (f"unix:{env.scheduler_socket}", f"127.0.0.1:{port}"):
        check(f"Listening on {where}, passed by systemd as scheduler." in log,
              f"the scheduler did not log '{where}': {log[-600:]}")
    check("configured.sock" not in log, f"the scheduler logged the configured path: {log[-600:]}")


def test_tasactl_escapes_and_hints(env):
    """tasactl shows control characters as \\x1b in a status's args, in daemons' messages and
    in its own prefix; --json policy groups is JSON with the human list's groups; a typo'd verb
    gets the nearest verb; tasad-worker --help names the queue directory it reads"""
    env.write_queue("e", [env.job("echo.sh")], timeout="10s")
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    jid = env.submit("e", "--", "a\x1b[2Jb\nc")
    rc, out, err = env.tasactl("status", jid)
    eq(rc, 0, f"tasactl status: {err}")
    check(b"\x1b" not in out and b"\x7f" not in out, f"a raw control byte in {out!r}")
    args_line = [l for l in out.decode().splitlines() if l.startswith("args:")]
    eq([l.split(None, 1)[1] for l in args_line], ['["a\\x1b[2Jb\\x0ac"]'], "the args line")
    for argv, line in (
            (("status", "x\x1by"), "tasactl: cannot get the status of job 'x\\x1by': no job "
                                   "'x\\x1by'"),
            (("submit", "q\x1b\x7f", "1"), None),
            (("stauts", "x"), "tasactl: unknown verb 'stauts'; did you mean 'status'? (see "
                             "'tasactl --help')"),
            (("sumbit\x1b", "x"), "tasactl: unknown verb 'sumbit\\x1b'; did you mean 'submit'? "
                                  "(see 'tasactl --help')")):
        rc, out, err = env.tasactl(*argv)
        check(rc != 0 and out == b"", f"tasactl {argv!r}: {rc} {out!r}")
        check("\x1b" not in err and "\x7f" not in err and err.count("\n") == 1,
              f"tasactl {argv!r} printed raw control characters or several lines: {err!r}")
        if line:
            eq(err.strip(), line, f"the error line of tasactl {argv!r}")
        else:
            check("'q\\x1b\\x7f'" in err, f"the queue name is not escaped: {err!r}")
    # A message with control characters from whatever answers on the socket (a proxy, another
    # server): escaped all the same.
    fake = env.run_dir / "fake.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(fake))
    srv.listen(1)
    body = json.dumps({"error": {"code": "not-found", "message": "no\x1b[31m job\nhere"}})

    def answer():
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(f"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
        c.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    rc, out, err = env.tasactl("--results-socket", str(fake), "status", "j1")
    t.join(5)
    srv.close()
    eq((rc, err), (1, "tasactl: cannot get the status of job 'j1': no\\x1b[31m job\\x0ahere\n"),
       "a daemon's message with control characters")
    human = env.tasactl_ok("policy", "groups").decode()
    groups = json.loads(env.tasactl_ok("policy", "groups", json_out=True))
    names = [g["name"] for g in groups["groups"]]
    eq(names, [l.split(":")[0] for l in human.splitlines() if l.startswith("@")],
       "the groups of --json policy groups and of the human list")
    for g in groups["groups"]:
        eq(set(g), {"name", "description", "calls", "other_arch"}, f"keys of {g['name']}")
        check(g["calls"] == sorted(g["calls"]) and g["calls"], f"calls of {g['name']}")
        check(all(f" {c}" in human or f"\n{c}" in human for c in g["calls"]),
              f"a call of {g['name']} is not in the human list")
    help_text = subprocess.run([str(tasadtest.BINARIES["worker"]), "--help"],
                               capture_output=True, text=True).stdout
    check("by default /etc/tasad/queues)" in help_text and "/usr/local" not in help_text,
          f"tasad-worker --help: {help_text[:300]!r}")


if __name__ == "__main__":
    tasadtest.main(globals())
