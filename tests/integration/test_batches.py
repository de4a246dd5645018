#!/usr/bin/env python3
"""Scenario: batches (docs/api.md). POST /v1/queues/{queue}/batches stores every job of the batch
and answers its id and the jobs' ids in request order; GET /v1/batches/{batch} counts the jobs by
final state, and GET /v1/batches/{batch}/wait is a long poll woken by the batch's last completion
(never by a timer) or answering `finished: false` when its own timeout expires. A job already
known by its idempotency id is not part of the batch and does not run again; a cancelled job
counts as cancelled; an unknown batch is 404."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasadtest  # noqa: E402
from tasadtest import api, check, eq, holds_for, wait_until  # noqa: E402

# The job: args TAG CODE SECONDS. Appends "start TAG - PID" to $TASAD_IT_MARK (the format
# Env.marks() reads), sleeps SECONDS, appends "end TAG - PID", exits CODE. Jobs start with an
# empty environment (plus the queue's env), hence PATH.
JOB_SH = ('PATH=/usr/bin:/bin; '
          'printf "start %s - %s\\n" "$1" "$$" >>"$TASAD_IT_MARK"; '
          'sleep "$3"; '
          'printf "end %s - %s\\n" "$1" "$$" >>"$TASAD_IT_MARK"; '
          'exit "$2"')

BATCH_FIELDS = ("total", "done", "failed", "cancelled", "finished")


def write_job_queue(env, name, **keys):
    """A queue running JOB_SH (the job's args are appended after $0 = "job")."""
    base = dict(concurrency=2, timeout="30s", kill_grace="1s", lease="3s", retries=0)
    base.update(keys)
    env.write_queue(name, ["/bin/sh", "-c", JOB_SH, "job"],
                    env=[f"TASAD_IT_MARK={env.mark_path}"], **base)


def job(tag, code=0, secs=0, **extra):
    d = {"args": [tag, str(code), str(secs)]}
    d.update(extra)
    return d


def post_batch(env, queue, jobs):
    status, body = api(env, "scheduler", "POST", f"/v1/queues/{queue}/batches", {"jobs": jobs})
    eq(status, 201, f"status of POST /v1/queues/{queue}/batches (body {body})")
    check(isinstance(body.get("batch"), str) and body["batch"],
          f"batch reply without a batch id: {body}")
    eq(body.get("queue"), queue, "queue of the batch reply")
    check(isinstance(body.get("ids"), list), f"batch reply without an ids array: {body}")
    return body


def batch_get(env, batch):
    status, body = api(env, "results", "GET", f"/v1/batches/{batch}")
    eq(status, 200, f"status of GET /v1/batches/{batch} (body {body})")
    return body


def counts(body):
    return {k: body.get(k) for k in BATCH_FIELDS}


def test_batch_wait_woken_by_completion(env):
    """6 jobs (2 exit 3): 201 with 6 ids in order; the wait answers the final counts at once"""
    write_job_queue(env, "b", concurrency=2)
    env.start_stack("b")
    # Six jobs of ~1 s each, two at a time: the batch takes ~3 s, so the wait below starts well
    # before its last completion.
    codes = [0, 3, 0, 0, 3, 0]
    specs = [job(f"j{i}", code, 1) for i, code in enumerate(codes)]
    reply = post_batch(env, "b", specs)
    batch, ids = reply["batch"], reply["ids"]
    eq(reply.get("count"), 6, f"count of the batch reply {reply}")
    eq(len(ids), 6, f"number of ids in the batch reply {reply}")
    eq(len(set(ids)), 6, f"distinct ids in the batch reply {reply}")
    check(batch not in ids, f"the batch id {batch} is also a job id: {ids}")

    # Request order: the i-th id runs the i-th job (its TAG is its index).
    first = batch_get(env, batch)
    eq((first.get("batch"), first.get("queue"), first.get("total")), (batch, "b", 6),
       f"batch/queue/total right after the POST ({first})")
    eq(first.get("finished"), False, f"finished right after the POST, before any 1 s job could finish ({first})")

    t0 = time.monotonic()
    status, st = api(env, "results", "GET", f"/v1/batches/{batch}/wait?timeout=60", timeout=90)
    returned_wall, elapsed = time.time(), time.monotonic() - t0
    eq(status, 200, f"status of the batch wait (body {st})")
    eq(counts(st), dict(total=6, done=4, failed=2, cancelled=0, finished=True),
       "counts answered by the batch wait")
    eq((st.get("batch"), st.get("queue")), (batch, "b"), "batch/queue answered by the wait")
    check(elapsed < 15, f"the batch wait (timeout 60) took {elapsed:.1f}s for six 1 s jobs run two "
          f"at a time: it was not woken by the batch's completion")

    statuses = [env.status(i) for i in ids]
    for i, (jid, s) in enumerate(zip(ids, statuses)):
        eq(s.get("args", [None])[0], f"j{i}", f"tag of the job with the {i}-th id {jid} (request order)")
        eq(s.get("batch"), batch, f"batch field of job {jid} in tasactl --json status")
        eq((s.get("state"), s.get("outcome")),
           ("done", "exit:0") if codes[i] == 0 else ("failed", f"exit:{codes[i]}"),
           f"state/outcome of job {jid} (j{i})")
    # Woken by the completion: the answer came right after the last job finished, not on a tick.
    last = max(s["finished"] for s in statuses)
    check(returned_wall - last < 3.0, f"the batch wait answered {returned_wall - last:.2f}s after "
          f"the batch's last job finished (expected within a moment)")
    eq(counts(batch_get(env, batch)), counts(st), "GET /v1/batches/{batch} after the wait")

    # A job submitted on its own has no batch.
    lone = env.submit("b", "lone", "0", "0")
    eq(env.wait_state(lone).get("batch"), None, "batch field of a job submitted outside a batch")


def test_batch_wait_times_out(env):
    """wait?timeout=1 on a batch of 5 s jobs answers after ~1 s with finished false"""
    write_job_queue(env, "b", concurrency=2)
    env.start_stack("b")
    reply = post_batch(env, "b", [job("s0", 0, 5), job("s1", 0, 5)])
    batch = reply["batch"]
    wait_until(lambda: env.marked("start", "s0") and env.marked("start", "s1"), 15,
               "both jobs of the batch to start")
    t0 = time.monotonic()
    status, st = api(env, "results", "GET", f"/v1/batches/{batch}/wait?timeout=1", timeout=30)
    elapsed = time.monotonic() - t0
    eq(status, 200, f"status of the batch wait with timeout=1 (body {st})")
    check(0.8 <= elapsed < 4, f"the batch wait with timeout=1 answered after {elapsed:.2f}s "
          f"(expected about 1 s)")
    eq(counts(st), dict(total=2, done=0, failed=0, cancelled=0, finished=False),
       "counts answered by a timed-out batch wait")
    check(not env.marked("end"), "a 5 s job ended before the 1 s wait answered")
    # And it does finish.
    status, st = api(env, "results", "GET", f"/v1/batches/{batch}/wait?timeout=30", timeout=60)
    eq((status, counts(st)), (200, dict(total=2, done=2, failed=0, cancelled=0, finished=True)),
       "status/counts of the second wait")


def test_unknown_batch_and_existing_id(env):
    """unknown batch: 404 not-found; a job id that already exists is neither counted nor rerun"""
    write_job_queue(env, "b", concurrency=2)
    env.start_stack("b")
    for url in ("/v1/batches/nosuchbatch", "/v1/batches/nosuchbatch/wait?timeout=1"):
        status, body = api(env, "results", "GET", url)
        eq(status, 404, f"status of GET {url} (body {body})")
        eq(body.get("error", {}).get("code"), "not-found", f"error code of GET {url}")

    status, body = api(env, "scheduler", "POST", "/v1/queues/b/jobs", job("dup", 0, 0, id="dup"))
    eq(status, 201, f"status of submitting the job with id dup (body {body})")
    eq(env.wait_state("dup").get("state"), "done", "state of the job with id dup")
    eq(len(env.marked("start", "dup")), 1, "runs of dup before the batch")

    reply = post_batch(env, "b", [job("dup", 0, 0, id="dup"), job("new", 0, 0)])
    batch, ids = reply["batch"], reply["ids"]
    tasadtest.log(f"batch with an existing id answered count={reply.get('count')!r}, "
                  f"created={reply.get('created')!r}")
    eq(len(ids), 2, f"ids of the batch reply {reply}")
    eq(ids[0], "dup", f"first id of the batch reply {reply} (request order)")
    check(ids[1] != "dup", f"the new job got the id dup: {reply}")

    status, st = api(env, "results", "GET", f"/v1/batches/{batch}/wait?timeout=30", timeout=60)
    eq((status, counts(st)), (200, dict(total=1, done=1, failed=0, cancelled=0, finished=True)),
       "status/counts of the wait on a batch whose first job already existed")
    eq(counts(batch_get(env, batch)), counts(st), "GET /v1/batches/{batch}")
    eq(env.wait_state(ids[1]).get("batch"), batch, "batch field of the new job")
    dup = env.status("dup")
    eq((dup.get("state"), dup.get("attempt"), dup.get("batch")), ("done", 1, None),
       "state/attempt/batch of dup after the batch (the batch stored nothing for it)")
    eq(len(env.marked("start", "new")), 1, "runs of the new job")
    holds_for(lambda: len(env.marked("start", "dup")) == 1, 2.0,
              "the job with id dup ran exactly once")


def test_batch_payload_timeout_created(env):
    """each job of a batch keeps its own payload, binary payload and timeout, with generated ids
    (stored with plain commands) and with a client id among them (stored by the script); both
    are created at Redis' time of the submission"""
    env.write_queue("cat", ["/bin/cat"], concurrency=2, max_args=0, timeout="30s",
                    kill_grace="1s")
    env.write_queue("slp", ["/bin/sleep", "{args}"], concurrency=2, max_args=1, timeout="30s",
                    kill_grace="1s")
    env.start_stack("cat", "slp")
    for with_id in (False, True):
        stamp = int(time.time() * 1000)
        extra = {"id": f"cat-{stamp}"} if with_id else {}
        before = time.time()
        reply = post_batch(env, "cat", [dict(payload="hello\n", **extra), {},
                                        {"payload_b64": "AAEC/w=="}])
        after = time.time()
        eq(reply.get("created"), 3, f"created count of the batch reply {reply}")
        for jid, want in zip(reply["ids"], (b"hello\n", b"", b"\x00\x01\x02\xff")):
            st = env.wait_state(jid)
            eq((st.get("state"), st.get("batch")), ("done", reply["batch"]), f"job {jid}")
            eq(env.tasactl_ok("result", jid), want, f"stdout of {jid} (its payload, via cat)")
            check(before - 1 <= st["created"] <= after + 1,
                  f"created {st['created']} of {jid} not within the submission ({before}..{after})")
        extra = {"id": f"slp-{stamp}"} if with_id else {}
        reply = post_batch(env, "slp", [dict(args=["30"], timeout="1s", **extra), {"args": ["0"]}])
        st = env.wait_state(reply["ids"][0])
        eq((st.get("state"), st.get("outcome")), ("failed", "timeout"),
           f"the batch job with its own 1 s timeout (client id: {with_id})")
        eq(env.wait_state(reply["ids"][1]).get("outcome"), "exit:0", "its neighbour, no timeout")


def test_cancel_queued_job_of_batch(env):
    """concurrency 1: cancelling a queued job of the batch finishes it with cancelled 1"""
    write_job_queue(env, "one", concurrency=1)
    env.start_stack("one")
    reply = post_batch(env, "one", [job("c0", 0, 3), job("c1", 0, 0), job("c2", 0, 0)])
    batch, ids = reply["batch"], reply["ids"]
    eq(len(ids), 3, f"ids of the batch reply {reply}")
    wait_until(lambda: env.marked("start", "c0"), 15, "the first job of the batch to start")
    eq(env.status(ids[1]).get("state"), "queued", "state of the second job while the first runs")
    env.tasactl_ok("cancel", ids[1])
    eq(env.status(ids[1]).get("state"), "cancelled", "state right after cancelling a queued job")
    eq(batch_get(env, batch).get("finished"), False, "finished while the first job still runs")

    status, st = api(env, "results", "GET", f"/v1/batches/{batch}/wait?timeout=60", timeout=90)
    eq((status, counts(st)), (200, dict(total=3, done=2, failed=0, cancelled=1, finished=True)),
       "status/counts of the wait on a batch with a cancelled job")
    check(not env.marked("start", "c1"), "the job cancelled while queued was run")
    eq(env.status(ids[2]).get("state"), "done", "state of the third job")


if __name__ == "__main__":
    tasadtest.main(globals())
