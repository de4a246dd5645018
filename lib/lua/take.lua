-- take: a worker with free slots takes up to n ready jobs without blocking (when the queue is
-- empty it waits in BLMOVE instead, and runs start for what that brings).
-- KEYS: ready, leases, workers, done stream, stats
-- ARGV: worker id, lease_ms, started_us (worker clock, informational), retention_s,
--       batch key prefix, job key prefix, n
-- Returns a flat list: id, attempt, args, payload, timeout_us, redeliveries, v per job taken
-- (fewer than n jobs, or none: the queue is empty).
return take_jobs(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  ARGV[5], ARGV[6], tonumber(ARGV[7]), now_ms())
