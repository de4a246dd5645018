#!/usr/bin/env python3
"""The documents checked against the code, mechanically, so that a difference fails the suite:
docs/protocol.md's keys, scripts and record fields against lib/keys.c, lib/lua/ and what the
daemons really write; docs/api.md's routes and error codes against the daemons' route tables
and sources, and its objects against what the daemons really answer; tasactl's --help against
its option and verb tables, man/tasactl.1 and completion/tasactl.

Every check compares two exact sets (or lists) and names what is in one and not the other."""

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import api, check, eq, wait_until  # noqa: E402

ROOT = tasadtest.SRC_DIR.parent.parent
PROTOCOL = (ROOT / "docs/protocol.md").read_text()
API = (ROOT / "docs/api.md").read_text()


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


def same(documented, actual, what: str) -> None:
    """Two sets must be equal; the message names what only one of them has."""
    documented, actual = set(documented), set(actual)
    check(documented == actual,
          f"{what}: documented but not in the code {sorted(documented - actual)}, "
          f"in the code but not documented {sorted(actual - documented)}")


def section(text: str, heading: str) -> str:
    """The text under a markdown heading (exactly as written, '## X'), up to the next heading
    of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1:]
    m = re.search(r"^#{1,%d} " % level, rest, re.M)
    return rest[:m.start()] if m else rest


def table_first_column(text: str) -> list[str]:
    """The first cells of a markdown table's rows (the header and the rule excluded)."""
    rows = [l for l in text.splitlines() if l.startswith("|")]
    return [r.split("|")[1].strip() for r in rows[2:]]


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- docs/protocol.md against lib/ --------------------------------------------------------------

def documented_key_suffixes() -> set[str]:
    out = set()
    for cell in table_first_column(section(PROTOCOL, "## Keys")):
        for k in backticked(cell):
            m = re.fullmatch(r"P:\{q\}:([a-z-]+)(:<[a-z]+>)?", k)
            check(m, f"protocol.md's key table: {k!r} is not P:{{q}}:NAME[:<id>]")
            out.add(m.group(1) + (":" if m.group(2) else ""))
    return out


def test_keys_and_scripts(env):
    """every key of protocol.md's table is one lib/keys.c builds and vice versa; every script
    of its table is a file of lib/lua/ and vice versa"""
    built = set(re.findall(r'\bK\(\w+, "([^"]+)"\)', read("lib/keys.c")))
    check(built, "no keys found in lib/keys.c (the pattern K(field, \"name\") changed?)")
    same(documented_key_suffixes(), built, "keys (docs/protocol.md vs lib/keys.c)")
    cells = table_first_column(section(PROTOCOL, "## State changes: Lua scripts (`lib/lua/`)"))
    scripts = {backticked(c)[0] for c in cells}
    files = {p.stem for p in (ROOT / "lib/lua").glob("*.lua")} - {"common"}
    same(scripts, files, "scripts (docs/protocol.md vs lib/lua/*.lua)")
    # Every script is embedded and loaded (lib/scripts.c or its meson list names each file).
    embedded = read("lib/meson.build") + read("lib/scripts.c")
    for f in files:
        check(f"{f}.lua" in embedded or f"'{f}'" in embedded or f'"{f}"' in embedded,
              f"lib/lua/{f}.lua is not embedded (lib/meson.build, lib/scripts.c)")


def documented_record_fields() -> set[str]:
    out = set()
    for cell in table_first_column(section(PROTOCOL, "## The job record (`P:{q}:job:<id>`, version 1)")):
        out.update(backticked(cell))
    return out


def lua_written_fields() -> set[str]:
    """Field names the scripts write as literals: HSET's field positions, HINCRBY's field,
    and the fields of the table finish.lua unpacks into HSET."""
    out = set()
    for p in (ROOT / "lib/lua").glob("*.lua"):
        text = p.read_text()
        for m in re.finditer(r"redis\.call\('HSET', [^,]+, ([^\n]*)\)", text):
            items = [i.strip() for i in m.group(1).split(",")]
            out.update(i.strip("'") for i in items[0::2] if re.fullmatch(r"'[a-z_]+'", i))
        for m in re.finditer(r"redis\.call\('HINCRBY', [^,]+, ('([a-z_]+)'|state)", text):
            if m.group(2):
                out.add(m.group(2))
        for m in re.finditer(r"local rec = \{([^}]*)\}", text):
            items = [i.strip() for i in m.group(1).replace("\n", " ").split(",")]
            out.update(i.strip("'") for i in items[0::2] if re.fullmatch(r"'[a-z_]+'", i))
        for m in re.finditer(r"rec\[#rec \+ 1\] = '([a-z_]+)'", text):
            out.add(m.group(1))
    return out


def c_written_fields() -> set[str]:
    """Fields the C code writes into job records: the scheduler's plain HSET of a batch and
    the gatherer's HSET."""
    out = set()
    for rel in ("daemons/scheduler/scheduler.c", "daemons/results/gather.c"):
        for m in re.finditer(r'"HSET", jk, ([^}]*)\}', read(rel), re.S):
            items = re.findall(r'"([^"]*)"|([A-Za-z_>\-\[\]\.]+)', m.group(1))
            flat = [a or b for a, b in items]
            out.update(f for f in flat[0::2] if re.fullmatch(r"[a-z_]+", f))
    return out


# --- a run of the real daemons: what they write and answer ---------------------------------------

def run_stack(env):
    env.write_queue("d", [env.job("exit.sh")], timeout="20s", retries=1, backoff="100ms")
    env.write_queue("e", [env.job("echo.sh")], timeout="20s", max_output="16")
    daemons = env.start_stack("d", "e")
    env.e_conf = daemons["e"].conf  # the worker of e's own tasad.conf (its socket directory)
    return daemons


def all_records(env, queue: str, kind: str) -> dict[str, dict]:
    out = {}
    for k in env.redis_keys(env.key(queue, f"{kind}:*")):
        fields = env.redis_cli("HKEYS", k).split("\n")
        out[k] = {f for f in fields if f}
    return out


def test_record_fields(env):
    """every field of every job record and batch hash the daemons wrote in a run (done,
    retried then failed, truncated output, payload and timeout, batch, cancelled while queued
    and while running, requeued, gathered) is documented in protocol.md; each documented
    field is seen in the run or written by a script or the C code"""
    run_stack(env)
    done = env.submit("e", "hello", opts=["--timeout", "10s", "--stdin"], input=b"in")
    failed = env.submit("d", "3")
    big = env.submit("e", "x" * 40)  # more than e's max_output: truncated
    status, batch = api(env, "scheduler", "POST", "/v1/queues/e/batches",
                        {"jobs": [{"args": ["a"]}, {"args": ["b"]}]})
    eq(status, 201, f"batch: {batch}")
    for j in (done, failed, big, *batch["ids"]):
        env.wait_state(j, timeout=30)
    env.tasactl_ok("requeue", "d", failed)
    env.wait_state(failed, timeout=30)
    env.tasactl_ok("worker", "pause", "e", conf=env.e_conf)
    queued = env.submit("e", "never")
    env.tasactl_ok("cancel", queued)
    env.tasactl_ok("worker", "resume", "e", conf=env.e_conf)
    status, _ = api(env, "scheduler", "PUT", "/v1/queues/e/batches/steps", {"jobs": [{}]})
    eq(status, 201, "a batch in steps")
    for q in ("d", "e"):
        wait_until(lambda: all("gathered" in f for k, f in all_records(env, q, "job").items()
                               if "state" in f), 15, f"every record of {q} to be gathered")
    seen = set()
    for q in ("d", "e"):
        for k, fields in all_records(env, q, "job").items():
            seen |= fields
    documented = documented_record_fields()
    check(not seen - documented, f"record fields written but not in protocol.md: "
                                 f"{sorted(seen - documented)}")
    written = lua_written_fields() | c_written_fields()
    unwritten = documented - seen - written
    check(not unwritten, f"documented record fields that no script or daemon writes: "
                         f"{sorted(unwritten)}")
    batch_fields = set()
    for q in ("d", "e"):
        for fields in all_records(env, q, "batch").values():
            batch_fields |= fields
    rows = [l for l in section(PROTOCOL, "## Keys").splitlines() if l.startswith("| `P:{q}:batch:")]
    doc_batch = set(backticked(rows[0].split("|")[3]))
    check(not batch_fields - doc_batch, f"batch hash fields not in protocol.md's key table: "
                                        f"{sorted(batch_fields - doc_batch)}")
    stats = set(f for f in env.redis_cli("HKEYS", env.key("d", "stats")).split("\n") if f)
    stats_row = [l for l in section(PROTOCOL, "## Keys").splitlines()
                 if l.startswith("| `P:{q}:stats`")][0]
    check(stats and not stats - set(backticked(stats_row)),
          f"stats fields {sorted(stats)} vs protocol.md's {backticked(stats_row)}")
    # The done stream's entries: the fields protocol.md names, and the cap it states.
    entries = env.redis_cli("XRANGE", env.key("e", "done"), "-", "+")
    names = set(re.findall(r"^(id|state|batch|left|[a-z_]+)$", entries, re.M)) & {
        "id", "state", "batch", "left"}
    eq(names, {"id", "state", "batch", "left"}, "fields of the done stream's entries")
    done_row = [l for l in section(PROTOCOL, "## Keys").splitlines()
                if l.startswith("| `P:{q}:done`")][0]
    cap = re.search(r"'MAXLEN', '~', (\d+)", read("lib/lua/common.lua")).group(1)
    check(f"MAXLEN ~ {cap}" in done_row, f"the done stream's cap {cap} is not in protocol.md")


# --- docs/api.md against the daemons ----------------------------------------------------------

ROUTE_RE = re.compile(r'\{ "(GET|POST|PUT|DELETE)", "(/v1/[^"]*)"')


def test_routes_and_error_codes(env):
    """the routes of the daemons' route tables are exactly api.md's; every error code the
    daemons answer is in api.md's list with its status, and the list has no other"""
    code_routes = set()
    for rel in ("daemons/scheduler/scheduler.c", "daemons/results/results.c",
                "daemons/worker/control.c"):
        found = {f"{m} {p}" for m, p in ROUTE_RE.findall(read(rel))}
        check(found, f"no route table found in {rel}")
        code_routes |= found
    doc_routes = set()
    for line in API.splitlines():
        if line.startswith("### ") or line.startswith("| `"):
            for b in backticked(line):
                m = re.fullmatch(r"(GET|POST|PUT|DELETE) (/v1/\S*?)(\?.*)?", b)
                if m:
                    doc_routes.add(f"{m.group(1)} {m.group(2)}")
    same(doc_routes, code_routes, "routes (docs/api.md vs the route tables)")

    pairs = set()
    sources = ["lib/http.c", "lib/ctl.c", "lib/service.c", "daemons/scheduler/scheduler.c",
               "daemons/results/results.c", "daemons/worker/control.c"]
    for rel in sources:
        text = read(rel)
        pairs |= set(re.findall(r'\b([1-5][0-9][0-9]), "([a-z]+(?:-[a-z]+)*)"', text))
        # A reply rendered by hand: error_text("code", …) and then Reply { .status = NNN }.
        for code, status in re.findall(r'error_text\("([a-z-]+)",[^;]*;(?:[^;]*;){0,2}?[^;]*?'
                                       r'\.status = ([1-5][0-9][0-9])', text):
            pairs.add((status, code))
    check(len(pairs) > 10, f"too few (status, code) pairs found in the sources: {pairs}")
    errors = section(API, "## Errors")
    para = errors[errors.index("Codes:"):errors.index("A request that fails stores nothing")]
    segments = re.split(r"`([a-z]+(?:-[a-z]+)*)`", para)
    doc_codes: dict[str, set[str]] = {}
    for code, text in zip(segments[1::2], segments[2::2]):
        doc_codes.setdefault(code, set()).update(re.findall(r"\b([1-5][0-9][0-9])\b", text))
    same(doc_codes, {c for _, c in pairs}, "error codes (docs/api.md's list vs the sources)")
    for status, code in sorted(pairs):
        check(status in doc_codes.get(code, set()),
              f"api.md's list does not give status {status} for `{code}` "
              f"(it says {sorted(doc_codes.get(code, set()))})")


def json_example(heading: str, index: int = 0) -> dict:
    blocks = re.findall(r"```json\n(.*?)```", section(API, heading), re.S)
    check(len(blocks) > index, f"no JSON example under {heading!r}")
    return json.loads(blocks[index])


def test_answered_objects(env):
    """the fields of every object the daemons answer (called for real) are exactly those of
    api.md's examples and prose: submit, batch, cancel, requeue, status (queued, final,
    cancelled before running), batch status, queues, dead, worker status, errors"""
    run_stack(env)
    doc_submit = set(json_example("### `POST /v1/queues/{queue}/jobs` — submit one job"))
    status, sub = api(env, "scheduler", "POST", "/v1/queues/e/jobs", {"id": "k1", "args": ["a"]})
    eq((status, set(sub)), (201, doc_submit), "fields of a submission's 201")
    status, again = api(env, "scheduler", "POST", "/v1/queues/e/jobs", {"id": "k1"})
    check('`"existing": true`' in section(API, "### `POST /v1/queues/{queue}/jobs` — submit one job"),
          "api.md does not name existing")
    eq((status, set(again)), (200, doc_submit | {"existing"}), "fields of a known id's 200")

    doc_batch = set(json_example("### `POST /v1/queues/{queue}/batches` — submit many jobs at once"))
    status, b = api(env, "scheduler", "POST", "/v1/queues/e/batches", {"jobs": [{}, {}]})
    eq((status, set(b)), (201, doc_batch), "fields of a batch's 201")
    status, bp = api(env, "scheduler", "PUT", "/v1/queues/e/batches/p1", {"jobs": [{}]})
    eq((status, set(bp)), (201, doc_batch), "fields of a PUT batch's 201")

    doc_status = json_example("### `GET /v1/jobs/{id}` (optional `?queue=`) — status")
    prose = section(API, "### `GET /v1/jobs/{id}` (optional `?queue=`) — status")
    base = set(backticked(prose[prose.index("Always present:"):prose.index("Fields about an attempt")]))
    attempt = set(backticked(prose[prose.index("Fields about an attempt"):prose.index("are present once")]))
    eq(base | attempt, set(doc_status), "the status example's fields = always present + attempt")
    st = env.wait_state(sub["id"], timeout=30)
    eq(set(st), set(doc_status), "fields of a final job's status")
    for j in b["ids"]:
        env.wait_state(j, timeout=30)
    status, bs = api(env, "results", "GET", f"/v1/batches/{b['batch']}")
    eq((status, set(bs)), (200, set(json_example(
        "### `GET /v1/batches/{batch}` and `GET /v1/batches/{batch}/wait?timeout=SECONDS`"))),
       "fields of a batch status")
    env.tasactl_ok("worker", "pause", "e", conf=env.e_conf)
    q = env.submit("e", "later")
    eq(set(env.status(q)), base, "fields of a queued job's status")
    status, c = api(env, "scheduler", "DELETE", f"/v1/jobs/{q}")
    cancel_doc = section(API, "### `DELETE /v1/jobs/{id}` (optional `?queue=`) — cancel")
    check('`{"id": …, "queue": …, "state": "cancelled"|"cancelling"}`' in cancel_doc,
          "api.md's cancel answer changed: update this test")
    eq((status, set(c)), (200, {"id", "queue", "state"}), "fields of a cancel's 200")
    eq(set(env.status(q)), base | {"outcome", "finished"}, "fields of a job cancelled queued")
    check('has `outcome` `"cancelled"` and `finished`' in prose, "api.md's cancelled case")

    doc_queue = json_example("### `GET /v1/queues`")["queues"][0]
    status, qs = api(env, "results", "GET", "/v1/queues")
    for o in qs["queues"]:
        eq(set(o), set(doc_queue), f"fields of queue object {o.get('name')}")
    queues_prose = section(API, "### `GET /v1/queues`")
    for f in doc_queue:
        if f != "name":
            check(f"`{f}`" in queues_prose.split("```")[-1], f"queue field {f} is not explained")

    failed = env.submit("d", "3")
    env.wait_state(failed, timeout=30)
    doc_dead = json_example("### `GET /v1/queues/{queue}/dead`")
    status, dead = api(env, "results", "GET", "/v1/queues/d/dead")
    eq(set(dead), set(doc_dead), "fields of the dead listing")
    eq(set(dead["jobs"][0]), set(doc_dead["jobs"][0]), "fields of a dead letter")
    status, rq = api(env, "scheduler", "POST", f"/v1/queues/d/dead/{failed}/requeue")
    check('`{"id": …, "queue": …, "state": "queued"}`' in API, "api.md's requeue answer changed")
    eq((status, set(rq)), (200, {"id", "queue", "state"}), "fields of a requeue's 200")

    doc_worker = json_example("## Worker control")
    rc, out, err = env.tasactl("--json", "worker", "status", "e", conf=env.e_conf)
    eq(rc, 0, f"worker status: {err}")
    w = json.loads(out)
    eq(set(w), set(doc_worker), "fields of the worker status")
    check(set(w["jobs"][0]) == set(doc_worker["jobs"][0]) if w["jobs"] else True,
          f"fields of a worker's job {w['jobs']}")
    env.tasactl_ok("worker", "resume", "e", conf=env.e_conf)
    doc_err = json_example("## Errors")
    status, e = api(env, "results", "GET", "/v1/jobs/nope")
    eq((status, set(e), set(e["error"])), (404, set(doc_err), set(doc_err["error"])),
       "fields of an error body")


# --- tasactl: --help, the tables of main.c, man/tasactl.1, completion/tasactl ---------------

def test_tasactl_surfaces(env):
    """tasactl's long options, verbs and environment variables are the same in --help, in
    main.c's tables, in man/tasactl.1 and in completion/tasactl"""
    env.require("tasactl")
    import subprocess
    help_text = subprocess.run([str(tasadtest.BINARIES["tasactl"]), "--help"],
                               capture_output=True, text=True, check=True).stdout
    main_c = read("tools/tasactl/main.c")
    table = main_c[main_c.index("static const struct option options[]"):]
    table = table[:table.index("};")]
    code_opts = set(re.findall(r'\{ "([a-z-]+)",', table))
    help_opts = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", help_text.split("Verbs:")[1]))
    man = read("man/tasactl.1")
    man_opts_sec = man[man.index(".SH OPTIONS"):man.index(".SH OUTPUT")]
    # The item lines of the OPTIONS section (the line after each .TP).
    items = re.findall(r"^\.TP\n(.*)$", man_opts_sec, re.M)
    man_opts = {m.replace("\\-", "-") for i in items
                for m in re.findall(r"\\-\\-((?:[a-z]|\\-)*[a-z])", i)}
    comp = read("completion/tasactl")
    comp_opts = set(re.search(r'_tasactl_all_longopts="([^"]*)"', comp).group(1).replace("--", "").split())
    same(help_opts, code_opts, "long options (--help vs main.c)")
    same(man_opts, code_opts, "long options (man/tasactl.1 OPTIONS vs main.c)")
    same(comp_opts, code_opts, "long options (completion/tasactl vs main.c)")
    value_opts = set(re.findall(r'\{ "([a-z-]+)", required_argument', table))
    comp_value = set(re.search(r'_tasactl_value_opts="([^"]*)"', comp).group(1).replace("--", "").split())
    same(comp_value, value_opts, "options that take a value (completion vs main.c)")

    verbs = re.findall(r'^        \{ "([a-z]+)", \d', main_c, re.M)
    help_verbs = []
    for l in help_text.split("Verbs:\n")[1].split("\n\n")[0].splitlines():
        w = l.split()
        if l.startswith("  ") and not l.startswith("   ") and w and w[0] not in help_verbs:
            help_verbs.append(w[0])
    eq(help_verbs, verbs, "verbs (--help vs main.c's table, in order)")
    eq(re.search(r'_tasactl_verbs="([^"]*)"', comp).group(1).split(), verbs,
       "verbs (completion vs main.c)")
    synopsis = man[man.index(".SH SYNOPSIS"):man.index(".SH DESCRIPTION")]
    man_verbs = []
    for v in re.findall(r"^\.B ([a-z]+)", synopsis, re.M):
        if v != "tasactl" and v not in man_verbs:
            man_verbs.append(v)
    eq(man_verbs, verbs, "verbs (man/tasactl.1 SYNOPSIS vs main.c)")

    env_read = set(re.findall(r'env_nonempty\("(TASAD_[A-Z_]+)"\)', main_c))
    help_env = set(re.findall(r"TASAD_[A-Z_]+", help_text.split("Environment:")[1].split("\n\n")[0]))
    man_env = set(re.findall(r"^\.B (TASAD_[A-Z_]+)", man[man.index(".SH ENVIRONMENT"):], re.M))
    same(help_env, env_read, "environment (--help vs what main.c reads)")
    same(man_env, env_read, "environment (man/tasactl.1 vs what main.c reads)")


if __name__ == "__main__":
    tasadtest.main(globals())
