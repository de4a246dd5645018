-- submit: create a job unless its id exists, and make it ready.
-- KEYS: job, ready, batch (the job key again when there is no batch)
-- ARGV: id, args (netstrings), payload, timeout_us ('' = queue's), batch id (''), retention_s
-- Returns {1, 'queued'} when created, {0, state} when the id already existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'state') or ''}
end
redis.call('HSET', KEYS[1], 'v', '1', 'state', 'queued', 'created', now_ms(), 'args', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'payload', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'timeout', ARGV[4]) end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'batch', ARGV[5])
  redis.call('HINCRBY', KEYS[3], 'total', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
redis.call('LPUSH', KEYS[2], ARGV[1])
return {1, 'queued'}
