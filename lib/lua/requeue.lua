-- requeue: a dead-lettered job goes back to ready with fresh counters; its batch counts it as
-- unfinished again.
-- KEYS: job, dead, ready
-- ARGV: id, batch key prefix
-- Returns {'queued'} or {'notdead'}.
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {'notdead'} end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notdead'} end
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch then redis.call('HINCRBY', ARGV[2] .. batch, 'failed', -1) end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempt', 0, 'failures', 0, 'redeliveries', 0)
-- What said the last attempt's result was gathered goes too: the next one is gathered afresh.
redis.call('HDEL', KEYS[1], 'cancel', 'worker', 'gathered', 'out_len', 'err_len', 'gather_error')
redis.call('PERSIST', KEYS[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
return {'queued'}
