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
local ids = {}
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  local jk = prefix .. id
  if redis.call('EXISTS', jk) == 0 then
    create_job(jk, 'staged', now, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], batch)
    ids[#ids + 1] = id
  end
end
push_all('RPUSH', KEYS[2], ids)
redis.call('HSET', KEYS[1], 'state', 'staging')
redis.call('ZADD', KEYS[3], now, batch)
return {'staged', #ids}
