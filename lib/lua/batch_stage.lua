-- batch_stage: one step of a batch stored in steps (docs/protocol.md, "How a batch is stored"):
-- its new jobs are written with state 'staged' and appended to the batch's staged list; no
-- worker or reader sees them until batch_commit. A job whose id exists is left alone (also one
-- this batch staged in an earlier attempt: the step is idempotent).
-- KEYS: batch, staged list, staging (zset)
-- ARGV: job key prefix, batch id, then id, args, payload ('' = none), timeout_us ('' = the
--       queue's) of each job
-- Returns {'staged', n} (the jobs this call staged), {'committed'} when the batch is already
-- committed (or was stored whole), or {'abandoned'} while an abandoned attempt is discarded.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'committed' or (not state and redis.call('EXISTS', KEYS[1]) == 1) then
  return {'committed'}
end
if state == 'abandoning' then return {'abandoned'} end
local now = now_ms()
local prefix, batch = ARGV[1], ARGV[2]
local n, ids = 0, {}
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  local jk = prefix .. id
  if redis.call('EXISTS', jk) == 0 then
    redis.call('HSET', jk, 'v', '1', 'state', 'staged', 'created', now, 'args', ARGV[i + 1],
      'batch', batch)
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'payload', ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then redis.call('HSET', jk, 'timeout', ARGV[i + 3]) end
    n = n + 1
    ids[#ids + 1] = id
    if #ids == 1000 then
      redis.call('RPUSH', KEYS[2], unpack(ids))
      ids = {}
    end
  end
end
if #ids > 0 then redis.call('RPUSH', KEYS[2], unpack(ids)) end
redis.call('HSET', KEYS[1], 'state', 'staging')
redis.call('ZADD', KEYS[3], now, batch)
return {'staged', n}
