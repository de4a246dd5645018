-- batch_commit: the point at which a batch stored in steps becomes visible, whole: its staged
-- jobs count as queued from here on (readers resolve 'staged' through the batch's state), and
-- batch_deliver moves them to ready in their order.
-- KEYS: batch, staged list, staging (zset), delivering (zset)
-- ARGV: batch id, retention_s
-- Returns {'committed', total, 1} when this call committed the batch, {'committed', total, 0}
-- when it was committed before (a retry), or {'abandoned'}.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'committed' or (not state and redis.call('EXISTS', KEYS[1]) == 1) then
  return {'committed', tonumber(redis.call('HGET', KEYS[1], 'total')) or 0, 0}
end
if state == 'abandoning' then return {'abandoned'} end
local total = redis.call('LLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'state', 'committed', 'total', total)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if total > 0 then redis.call('ZADD', KEYS[4], now_ms(), ARGV[1]) end
return {'committed', total, 1}
