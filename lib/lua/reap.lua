-- reap: recover the jobs of dead workers. A job whose lease expired goes back to the front of
-- ready (or to the dead-letter list after max_redeliveries expiries); the proc list of a worker
-- whose liveness expired goes back to ready (for a while: see below).
-- KEYS: leases, workers, ready, dead, done stream, stats
-- ARGV: job key prefix, proc key prefix, max_redeliveries, limit, retention_s, batch prefix,
--       grace_ms (how long a dead worker's proc list is still swept)
-- Returns {requeued, dead-lettered, dead workers}.
local now = now_ms()
local requeued, dead, workers = 0, 0, 0
local limit = tonumber(ARGV[4])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], id)
  local jk = ARGV[1] .. id
  local f = redis.call('HMGET', jk, 'state', 'batch')
  if f[1] == 'running' then
    local r = redis.call('HINCRBY', jk, 'redeliveries', 1)
    redis.call('HDEL', jk, 'worker')
    if r > tonumber(ARGV[3]) then
      redis.call('HSET', jk, 'outcome', 'lease-lost', 'finished', now,
        'detail', 'lease expired ' .. r .. ' times')
      redis.call('ZADD', KEYS[4], now, id)
      finalize(jk, id, 'failed', f[2], ARGV[6], KEYS[5], KEYS[6], ARGV[5])
      dead = dead + 1
    else
      redis.call('HSET', jk, 'state', 'queued')
      redis.call('RPUSH', KEYS[3], id)
      requeued = requeued + 1
    end
  end
end
-- A worker's blocking fetch may still move a job into its proc list for up to FETCH_BLOCK_SEC
-- after it vanished (Redis serves the dead connection's BLMOVE until it times out): its proc
-- list is swept at every reap while it is dead, and the worker is forgotten only after
-- ARGV[7] ms more.
local sweep = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #sweep, 2 do
  local w, expiry = sweep[i], tonumber(sweep[i + 1])
  local pk = ARGV[2] .. w
  while redis.call('LMOVE', pk, KEYS[3], 'LEFT', 'RIGHT') do requeued = requeued + 1 end
  if expiry + tonumber(ARGV[7]) <= now then
    redis.call('ZREM', KEYS[2], w)
    workers = workers + 1
  end
end
return {requeued, dead, workers}
