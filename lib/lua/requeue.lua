-- requeue: a dead-lettered job goes back to ready with fresh counters.
-- KEYS: job, dead, ready
-- ARGV: id
-- Returns {'queued'} or {'notdead'}.
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {'notdead'} end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notdead'} end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempt', 0, 'failures', 0, 'redeliveries', 0)
redis.call('HDEL', KEYS[1], 'cancel', 'worker')
redis.call('PERSIST', KEYS[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
return {'queued'}
