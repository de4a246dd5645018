-- renew: extend the leases of all jobs a worker runs and refresh its liveness.
-- KEYS: leases, workers, job key of each running job
-- ARGV: worker id, lease_ms, then id and attempt of each job (in the order of KEYS[3..])
-- Returns {lost ids, ids whose cancel was asked}.
local exp = now_ms() + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], exp, ARGV[1])
local lost, cancel = {}, {}
for i = 3, #KEYS do
  local id, att = ARGV[2 * i - 3], ARGV[2 * i - 2]
  local f = redis.call('HMGET', KEYS[i], 'state', 'worker', 'attempt', 'cancel')
  if f[1] == 'running' and f[2] == ARGV[1] and f[3] == att then
    redis.call('ZADD', KEYS[1], exp, id)
    if f[4] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
