-- submit: create a job unless its id exists, and make it ready.
-- KEYS: job, ready, batch (the job key again when there is no batch)
-- ARGV: id, args (netstrings), payload, timeout_us ('' = queue's), batch id (''), retention_s
-- Returns {1, 'queued'} when created, {0, state} when the id already existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'state') or ''}
end
create_job(KEYS[1], 'queued', now_ms(), ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[3], 'total', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
redis.call('LPUSH', KEYS[2], ARGV[1])
return {1, 'queued'}
