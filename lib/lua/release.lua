-- release: a worker gives jobs back without counting a failure: everything in its proc list
-- (after a reconnect, or when draining) and the running jobs it interrupts at drain timeout.
-- KEYS: proc list, ready, leases, workers, job key of each running job to give back
-- ARGV: worker id, leaving (1: remove the worker from the live set), then id and attempt pairs
-- Returns the number of jobs given back.
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do n = n + 1 end
for i = 5, #KEYS do
  local id, att = ARGV[2 * i - 7], ARGV[2 * i - 6]
  local f = redis.call('HMGET', KEYS[i], 'state', 'worker', 'attempt')
  if f[1] == 'running' and f[2] == ARGV[1] and f[3] == att then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HINCRBY', KEYS[i], 'attempt', -1)
    redis.call('HSET', KEYS[i], 'state', 'queued')
    redis.call('HDEL', KEYS[i], 'worker')
    redis.call('RPUSH', KEYS[2], id)
    n = n + 1
  end
end
if ARGV[2] == '1' then redis.call('ZREM', KEYS[4], ARGV[1]) end
return n
