-- batch_deliver: one step of moving committed batches' jobs to ready (state 'queued', pushed
-- in their order), the oldest batch first. Any scheduler may run it at any time: each step
-- takes the next ids off the staged list, so none is delivered twice.
-- KEYS: delivering (zset), ready
-- ARGV: job key prefix, staged list prefix, most jobs to move
-- Returns {moved, more} (more: 1 when jobs are left to deliver).
local b = redis.call('ZRANGE', KEYS[1], 0, 0)
if #b == 0 then return {0, 0} end
local batch = b[1]
local lk = ARGV[2] .. batch
local ids = redis.call('LPOP', lk, tonumber(ARGV[3])) or {}
local out = {}
for _, id in ipairs(ids) do
  local jk = ARGV[1] .. id
  local f = redis.call('HMGET', jk, 'state', 'batch')
  -- A job cancelled meanwhile is final already; nothing else may have touched it.
  if f[1] == 'staged' and f[2] == batch then
    redis.call('HSET', jk, 'state', 'queued')
    out[#out + 1] = id
  end
end
push_all('LPUSH', KEYS[2], out)
if redis.call('LLEN', lk) == 0 then redis.call('ZREM', KEYS[1], batch) end
return {#out, redis.call('ZCARD', KEYS[1]) > 0 and 1 or 0}
