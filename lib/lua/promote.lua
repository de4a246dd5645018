-- promote: move delayed jobs that are due to ready.
-- KEYS: delayed, ready
-- ARGV: job key prefix, limit
-- Returns {moved, ms until the next due job or -1 when none}.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local jk = ARGV[1] .. id
  if redis.call('HGET', jk, 'state') == 'delayed' then
    redis.call('HSET', jk, 'state', 'queued')
    redis.call('LPUSH', KEYS[2], id)
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {#due, math.max(0, tonumber(nxt[2]) - now)} end
return {#due, -1}
