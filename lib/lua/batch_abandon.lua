-- batch_abandon: one step of discarding a batch whose staging stopped (no step for older_ms)
-- and was never committed: its staged jobs are deleted, then the batch itself, after which its
-- id may be used again. Once begun, staging and committing it are refused ('abandoned').
-- KEYS: staging (zset)
-- ARGV: job key prefix, batch key prefix, staged list prefix, older_ms, most jobs to delete
-- Returns {deleted, more} (more: 1 when this or another abandoned batch has jobs left).
local cutoff = now_ms() - tonumber(ARGV[4])
local b = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, 1)
if #b == 0 then return {0, 0} end
local batch = b[1]
local bk, lk = ARGV[2] .. batch, ARGV[3] .. batch
redis.call('HSET', bk, 'state', 'abandoning')
local ids = redis.call('LPOP', lk, tonumber(ARGV[5])) or {}
local deleted = 0
for _, id in ipairs(ids) do
  local jk = ARGV[1] .. id
  local f = redis.call('HMGET', jk, 'state', 'batch')
  if f[1] == 'staged' and f[2] == batch then
    redis.call('DEL', jk)
    deleted = deleted + 1
  end
end
if redis.call('LLEN', lk) == 0 then
  redis.call('DEL', bk)
  redis.call('ZREM', KEYS[1], batch)
end
local more = #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, 1) > 0
return {deleted, more and 1 or 0}
