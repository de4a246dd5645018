-- start: a worker took ARGV[1] from ready into its proc list (BLMOVE); lease it and run it.
-- A cancel asked while the job ran, that outlived its attempt (reaped or released), ends here.
-- KEYS: proc list, job, leases, workers, done stream, stats
-- ARGV: id, worker id, lease_ms, started_us (worker clock, informational), retention_s,
--       batch key prefix
-- Returns {'run', attempt, args, payload, timeout_us, redeliveries, v} (v: the record's version,
-- '' when it has none) or {'skip', why}.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return {'skip', 'reclaimed'}   -- given back meanwhile (release/reap): someone else runs it
end
local st = redis.call('HGET', KEYS[2], 'state')
if not st then return {'skip', 'missing'} end
if st ~= 'queued' then return {'skip', st} end
local now = now_ms()
if redis.call('HGET', KEYS[2], 'cancel') == '1' then
  redis.call('HSET', KEYS[2], 'outcome', 'cancelled', 'finished', now)
  finalize(KEYS[2], ARGV[1], 'cancelled', redis.call('HGET', KEYS[2], 'batch'), ARGV[6],
    KEYS[5], KEYS[6], ARGV[5])
  return {'skip', 'cancelled'}
end
local exp = now + tonumber(ARGV[3])
local attempt = redis.call('HINCRBY', KEYS[2], 'attempt', 1)
redis.call('HSET', KEYS[2], 'state', 'running', 'worker', ARGV[2], 'started', ARGV[4])
redis.call('ZADD', KEYS[3], exp, ARGV[1])
redis.call('ZADD', KEYS[4], exp, ARGV[2])
local f = redis.call('HMGET', KEYS[2], 'args', 'payload', 'timeout', 'redeliveries', 'v')
return {'run', attempt, f[1] or '', f[2] or '', f[3] or '', f[4] or '0', f[5] or ''}
