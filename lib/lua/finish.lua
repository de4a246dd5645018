-- finish: acknowledge an attempt together with its result, atomically. Only the worker that
-- still holds this attempt's lease may finish it; anything else is 'stale' and changes nothing.
-- Then, in the same step, the worker may take up to n ready jobs for the slot this attempt
-- freed (and any other free one), as take does: one round trip from one job to the next.
-- KEYS: job, leases, delayed, dead, done stream, stats, ready, workers
-- ARGV: 1 id, 2 worker, 3 attempt, 4 outcome, 5 exit_code, 6 detail, 7 out, 8 out_truncated,
--       9 err, 10 err_truncated, 11 wall_us, 12 cpu_us, 13 max_rss_kib, 14 retryable (0/1),
--       15 retries, 16 backoff_ms, 17 backoff_max_ms, 18 retention_s, 19 batch key prefix,
--       20 started_us (when the process was spawned, worker clock; '' when it was not), 21 n to take,
--       22 job key prefix, 23 lease_ms, 24 started_us of the jobs taken
-- Returns {state, retry delay ms, jobs taken (take's flat list)}: state is done, failed,
-- cancelled, delayed (a retry) or stale.
local function record(f, now)
  if f[1] ~= 'running' or f[2] ~= ARGV[2] or f[3] ~= ARGV[3] then
    return 'stale', 0
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  local rec = {'outcome', ARGV[4], 'exit_code', ARGV[5], 'detail', ARGV[6], 'finished', now,
    'out', ARGV[7], 'out_truncated', ARGV[8], 'err', ARGV[9], 'err_truncated', ARGV[10],
    'wall_us', ARGV[11], 'cpu_us', ARGV[12], 'max_rss_kib', ARGV[13]}
  if ARGV[20] ~= '' then
    rec[#rec + 1] = 'started'
    rec[#rec + 1] = ARGV[20]
  end
  redis.call('HSET', KEYS[1], unpack(rec))
  local state
  if ARGV[4] == 'exit:0' then
    state = 'done'
  elseif f[4] == '1' or ARGV[4] == 'cancelled' then
    state = 'cancelled'
  else
    local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
    if ARGV[14] == '1' and failures <= tonumber(ARGV[15]) then
      local delay = math.min(tonumber(ARGV[16]) * 2 ^ (failures - 1), tonumber(ARGV[17]))
      delay = math.floor(delay)
      redis.call('HSET', KEYS[1], 'state', 'delayed')
      redis.call('ZADD', KEYS[3], now + delay, ARGV[1])
      return 'delayed', delay
    end
    state = 'failed'
    redis.call('ZADD', KEYS[4], now, ARGV[1])
  end
  finalize(KEYS[1], ARGV[1], state, f[5], ARGV[19], KEYS[5], KEYS[6], ARGV[18])
  return state, 0
end

local now = now_ms()
local state, delay = record(redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempt', 'cancel',
  'batch'), now)
local taken = {}
if tonumber(ARGV[21]) > 0 then
  taken = take_jobs(KEYS[7], KEYS[2], KEYS[8], KEYS[5], KEYS[6], ARGV[2], ARGV[23], ARGV[24],
    ARGV[18], ARGV[19], ARGV[22], tonumber(ARGV[21]), now)
end
return {state, delay, taken}
