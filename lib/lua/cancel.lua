-- cancel: a queued or delayed job is cancelled at once; a running one is marked for its worker.
-- KEYS: job, ready, delayed, done stream, stats
-- ARGV: id, retention_s, batch key prefix
-- Returns {'cancelled'}, {'cancelling'}, {'final', state} or {'missing'}.
local f = redis.call('HMGET', KEYS[1], 'state', 'batch')
if not f[1] then return {'missing'} end
if f[1] == 'staged' then
  -- Of a batch stored in steps: invisible until it is committed, queued after (not yet in
  -- ready, which batch_deliver skips it for once it is final).
  if redis.call('HGET', ARGV[3] .. f[2], 'state') ~= 'committed' then return {'missing'} end
  redis.call('HSET', KEYS[1], 'outcome', 'cancelled', 'finished', now_ms())
  finalize(KEYS[1], ARGV[1], 'cancelled', f[2], ARGV[3], KEYS[4], KEYS[5], ARGV[2])
  return {'cancelled'}
end
if f[1] == 'queued' or f[1] == 'delayed' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[1], 'outcome', 'cancelled', 'finished', now_ms())
  finalize(KEYS[1], ARGV[1], 'cancelled', f[2], ARGV[3], KEYS[4], KEYS[5], ARGV[2])
  return {'cancelled'}
end
if f[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return {'cancelling'}
end
return {'final', f[1]}
