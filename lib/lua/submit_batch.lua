-- submit_batch: many jobs of one batch in one step (a batch request sends one call per chunk of
-- jobs, all in one MULTI/EXEC, so the batch is stored whole or not at all). Each job is created
-- as submit creates it, unless its id exists; the new ids are pushed to ready in their order.
-- KEYS: ready, batch
-- ARGV: job key prefix, batch id, retention_s, check ('1' when some ids came from the client and
--       may exist; '0' when the scheduler generated every one), then id, args, payload
--       ('' = none), timeout_us ('' = the queue's) of each job
-- Returns the number of jobs created.
local now = now_ms()
local prefix, batch, check = ARGV[1], ARGV[2], ARGV[4] == '1'
local created, ids = 0, {}
for i = 5, #ARGV, 4 do
  local id = ARGV[i]
  local jk = prefix .. id
  if not check or redis.call('EXISTS', jk) == 0 then
    redis.call('HSET', jk, 'v', '1', 'state', 'queued', 'created', now, 'args', ARGV[i + 1],
      'batch', batch)
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'payload', ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then redis.call('HSET', jk, 'timeout', ARGV[i + 3]) end
    created = created + 1
    ids[#ids + 1] = id
    if #ids == 1000 then  -- unpack() has a limit; LPUSH keeps the order either way
      redis.call('LPUSH', KEYS[1], unpack(ids))
      ids = {}
    end
  end
end
if #ids > 0 then redis.call('LPUSH', KEYS[1], unpack(ids)) end
if created > 0 then
  redis.call('HINCRBY', KEYS[2], 'total', created)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return created
