#!/usr/bin/env python3
"""The tnmap example (examples/tnmap/tnmap.conf and tnmap6.conf), used verbatim: nmap scans of
127.0.0.1 and ::1 only, run by a real worker under the `nmap` profile as nobody, the XML report
gathered by tasad-results; and every argument that is not exactly one address or CIDR range is
refused before anything is queued, so no nmap option can be injected."""

import os
import shutil
import socket
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import check, eq  # noqa: E402

EXAMPLES = tasadtest.SRC_DIR.parent.parent / "examples" / "tnmap"
# Ports from nmap's default top-1000 list; the test listens on the first one that is free, so
# the scan must report it open.
CANDIDATE_PORTS = [31337, 8888, 9999, 10000, 5555, 9000, 6789, 7777, 4444, 2222]


def require_nmap() -> None:
    if not os.access("/usr/bin/nmap", os.X_OK):
        raise tasadtest.SkipTest("nmap is not installed (/usr/bin/nmap); tools/install-deps.sh installs it")


def listen(family: int, host: str) -> tuple[socket.socket, int]:
    for port in CANDIDATE_PORTS:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
            s.listen(16)
            return s, port
        except OSError:
            s.close()
    raise tasadtest.SkipTest(f"none of the ports {CANDIDATE_PORTS} is free on {host}")


def start(env, *queues: str) -> None:
    require_nmap()
    for q in queues:
        shutil.copy(EXAMPLES / f"{q}.conf", env.queues_dir / f"{q}.conf")
    env.start_redis()
    env.start_scheduler()
    env.start_results()
    for q in queues:
        sd = env.worker_socket_dir
        d = env._start(f"worker-{q}", "worker", [q], env.conf, None,
                       lambda q=q, sd=sd: (sd / f"{q}.sock").is_socket())
        d.wait_ready()


def scan(env, queue: str, target: str, port: int) -> None:
    jid = env.submit(queue, target)
    st = env.wait_state(jid, timeout=120)
    eq((st.get("state"), st.get("outcome")), ("done", "exit:0"),
       f"state of the scan of {target} ({st.get('detail')})")
    out = env.results_dir / queue / jid / "stdout"
    check(out.is_file(), f"no gathered result at {out}")
    root = ET.fromstring(out.read_bytes())
    eq(root.tag, "nmaprun", f"root element of {out}")
    args = root.get("args", "")
    check(args.endswith(f" -oX - {target}"), f"nmap's command line {args!r} does not end with the target")
    addrs = [a.get("addr") for a in root.iter("address")]
    eq(addrs, [target], f"addresses scanned by {queue}")
    open_ports = {int(p.get("portid")) for p in root.iter("port")
                  if p.find("state") is not None and p.find("state").get("state") == "open"}
    check(port in open_ports, f"port {port}, listening on {target}, not reported open: {sorted(open_ports)}")
    finished = root.find("runstats/finished")
    eq(finished.get("exit") if finished is not None else None, "success", "nmap's exit in the report")
    rc, stdout, err = env.tasactl("result", jid)
    eq((rc, stdout), (0, out.read_bytes()), "tasactl result = the gathered file")


def refused(env, queue: str, args: list[str]) -> None:
    ready = env.key(queue, "ready")
    before = env.redis_cli("LLEN", ready).strip()
    rc, out, err = env.tasactl("submit", queue, "--", *args)
    check(rc != 0, f"submit {queue} {args!r} was accepted (printed {out!r})")
    check(err.strip() and len(err.strip().splitlines()) == 1,
          f"submit {queue} {args!r}: expected one line of error, got {err!r}")
    eq(env.redis_cli("LLEN", ready).strip(), before, f"ready jobs of {queue} after refusing {args!r}")


def test_ipv4(env):
    """tnmap scans 127.0.0.1 as nobody under the nmap profile; the XML report lists the port
    this test listens on as open and is gathered in results_dir"""
    start(env, "tnmap")
    s, port = listen(socket.AF_INET, "127.0.0.1")
    try:
        scan(env, "tnmap", "127.0.0.1", port)
    finally:
        s.close()


def test_ipv6(env):
    """tnmap6 scans ::1 the same way (nmap -6)"""
    try:
        s, port = listen(socket.AF_INET6, "::1")
    except OSError as e:
        raise tasadtest.SkipTest(f"no IPv6 loopback here: {e}") from None
    try:
        start(env, "tnmap6")
        scan(env, "tnmap6", "::1", port)
    finally:
        s.close()


def test_injection_refused(env):
    """options, host names, extra words, bad addresses, prefixes wider than 256 addresses,
    and zero or two targets are refused by the argument rule with one line of error, and
    nothing is queued"""
    start(env, "tnmap", "tnmap6")
    bad4 = ["-oN", "-iL/etc/shadow", "--script=vuln", "-p1-65535", "localhost", "example.org",
            "127.0.0.1 -p 22", "127.0.0.1,2", "256.0.0.1", "1.2.3", "1.2.3.4.5", "1.2.3.4/33",
            "1.2.3.4/", "01.2.3.4x", " 127.0.0.1", "127.0.0.1\n-oN", "::1", "",
            # Ranges wider than 256 addresses: no job scans a /8 or all of IPv4.
            "127.0.0.1/999", "0.0.0.0/0", "10.0.0.0/8", "127.0.0.0/23", "127.0.0.0/024"]
    for a in bad4:
        refused(env, "tnmap", [a])
    # The refusal names the argument's rule (the pattern is checked before the count too).
    for args in (["0.0.0.0/0"], ["-oN", "/tmp/x"]):
        rc, _, err = env.tasactl("submit", "tnmap", "--", *args)
        check(rc == 1 and "args[0]: does not match the queue's pattern" in err,
              f"submit tnmap {args!r}: {err!r}")
    refused(env, "tnmap", [])
    refused(env, "tnmap", ["127.0.0.1", "127.0.0.2"])
    bad6 = ["-6", "--script=x", "::1 -p", "fe80::1%eth0", "::1/129", "127.0.0.1", "g::1",
            "1:2:3:4:5:6:7:8:9", "::1/", "", "::/0", "fe80::/10", "2001:db8::/64", "::1/119"]
    for a in bad6:
        refused(env, "tnmap6", [a])
    # The rule does accept what it should (the job is cancelled before it runs: no scan).
    env.tasactl_ok("worker", "pause", "tnmap")
    for a in ["127.0.0.1", "127.0.0.0/31", "127.0.0.0/24", "255.255.255.255/32"]:
        jid = env.submit("tnmap", a)
        env.tasactl_ok("cancel", jid)
    env.tasactl_ok("worker", "pause", "tnmap6")
    for a in ["::1", "::1/128", "2001:db8::/120", "2001:db8::1", "1:2:3:4:5:6:7:8"]:
        jid = env.submit("tnmap6", a)
        env.tasactl_ok("cancel", jid)


if __name__ == "__main__":
    tasadtest.main(globals())
