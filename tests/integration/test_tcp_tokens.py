#!/usr/bin/env python3
"""The optional TCP listener: with api_tokens_credential set, tasad-scheduler and tasad-results
serve the TCP sockets systemd passes them beside their Unix socket (as the drop-in in
docs/systemd.md makes), and every TCP request needs "Authorization: Bearer <token>"; the
token's groups stand for the client's in each queue's submit_groups and read_groups. Driven
through tasactl (--scheduler-socket http://…, --token-file) and raw HTTP."""

import fcntl
import http.client
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq  # noqa: E402

CI = "ci-0123456789abcdef0123456789abcdef"
OTHER = "other-0123456789abcdef0123456789abcd"
# Hands the daemon two listening sockets as systemd would: fds 3 and 4, both under one name.
ACTIVATE = ("import os, sys\n"
            "a, b, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]\n"
            "os.dup2(a, 3); os.dup2(b, 4); os.close(a); os.close(b)\n"
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='2',\n"
            "                  LISTEN_FDNAMES=name + ':' + name)\n"
            "os.execv(sys.argv[4], sys.argv[4:])\n")


def high_fd(s: socket.socket) -> int:
    fd = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 20)
    s.close()
    return fd


def start_pair(env, kind: str, unix_path, extra_env: dict) -> int:
    """Starts tasad-<kind> with a Unix and a TCP listener; returns the TCP port."""
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(str(unix_path))
    u.listen(64)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    t.listen(64)
    port = t.getsockname()[1]
    fu, ft = high_fd(u), high_fd(t)
    d = env._start(kind, kind, [], env.conf, extra_env, lambda: unix_path.is_socket(),
                   wrapper=[sys.executable, "-c", ACTIVATE, str(fu), str(ft), kind], pass_fds=(fu, ft))
    os.close(fu)
    os.close(ft)
    d.wait_ready()
    check("Listening on the 2 sockets passed by systemd as" in d.log_text(),
          f"tasad-{kind} did not say it listens on both sockets: {d.log_text()[-400:]}")
    return port


def setup(env):
    creds = env.tmp / "creds"
    creds.mkdir(mode=0o700)
    (creds / "tokens").write_text(f"# name groups secret\nci builders,tasad {CI}\n"
                                  f"other others {OTHER}\n")
    env.conf = env.write_conf(api_tokens_credential="tokens")
    extra = {"CREDENTIALS_DIRECTORY": str(creds)}
    env.write_queue("q", [env.job("echo.sh")], submit_groups=["builders"], read_groups=["builders"])
    env.start_redis()
    ps = start_pair(env, "scheduler", env.scheduler_socket, extra)
    pr = start_pair(env, "results", env.results_socket, extra)
    env.start_worker("q", "w", extra_env=extra)
    for name, secret in (("ci", CI), ("other", OTHER), ("bad", "x" * 40)):
        (env.tmp / f"{name}.token").write_text(secret + "\n")
    return ps, pr


def ctl(env, ps, pr, token, *args):
    opts = ["--scheduler-socket", f"http://127.0.0.1:{ps}", "--results-socket",
            f"http://127.0.0.1:{pr}"]
    if token:
        opts += ["--token-file", str(env.tmp / f"{token}.token")]
    return env.tasactl(*opts, *args)


def raw(port, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body or b"{}")


def test_tokens_over_tcp(env):
    """a valid token submits and reads over TCP; no token or a wrong one gets 401, a token
    without the queue's groups 403; listings show only the token's queues; the Unix socket
    still works by peer credentials"""
    ps, pr = setup(env)
    rc, out, err = ctl(env, ps, pr, "ci", "submit", "q", "hello", "--wait")
    eq((rc, out), (0, b"arg:hello\n"), f"submit --wait over TCP with token ci ({err.strip()})")

    for token in (None, "bad"):
        rc, out, err = ctl(env, ps, pr, token, "submit", "q", "x")
        check(rc == 1 and "Authorization: Bearer" in err and len(err.strip().splitlines()) == 1,
              f"submit with token {token}: {rc} {err!r}")
    rc, out, err = ctl(env, ps, pr, "other", "submit", "q", "x")
    check(rc == 1 and "token other may not submit to queue 'q'" in err, f"token other: {rc} {err!r}")

    rc, out, err = ctl(env, ps, pr, "ci", "--json", "queues")
    eq(rc, 0, f"queues with token ci ({err.strip()})")
    check([q["name"] for q in json.loads(out)["queues"]] == ["q"], f"queues for ci: {out!r}")
    rc, out, err = ctl(env, ps, pr, "other", "--json", "queues")
    eq((rc, json.loads(out)["queues"]), (0, []), "queues listed for token other")

    for port in (ps, pr):
        status, body = raw(port, "/v1/queues")
        eq((status, body.get("error", {}).get("code")), (401, "unauthorized"), f"raw GET on {port}")
        status, body = raw(port, "/v1/queues", "y" * 40)
        eq(status, 401, f"raw GET with a wrong token on {port}")
    status, body = raw(pr, "/v1/queues", CI)
    eq(status, 200, "raw GET with token ci")

    jid = env.submit("q", "local")  # Unix socket, root: peer credentials
    eq(env.wait_state(jid).get("state"), "done", "a job submitted over the Unix socket")


def test_missing_tokens_credential(env):
    """api_tokens_credential names a credential that is not there: the daemon refuses to
    start and names the file"""
    creds = env.tmp / "creds"
    creds.mkdir()
    conf = env.write_conf(env.tmp / "c.conf", api_tokens_credential="tokens")
    env.write_queue("q", [env.job("echo.sh")])
    d = env._start("scheduler", "scheduler", [], conf, {"CREDENTIALS_DIRECTORY": str(creds)},
                   lambda: False)
    rc = d.wait_exit(10)
    check(rc == 1 and f"{creds}/tokens: api_tokens_credential: cannot use" in d.log_text(),
          f"scheduler without its tokens file: {rc}: {d.log_text()[-300:]}")


if __name__ == "__main__":
    tasadtest.main(globals())
