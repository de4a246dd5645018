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
    create_job(jk, 'queued', now, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], batch)
    created = created + 1
    ids[#ids + 1] = id
  end
end
push_all('LPUSH', KEYS[1], ids)
if created > 0 then
  redis.call('HINCRBY', KEYS[2], 'total', created)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return created
