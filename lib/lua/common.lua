-- Prelude shared by every tasad script (protocol v1, docs/protocol.md): prepended to each
-- script when it is embedded, so the scripts stay self-contained for EVALSHA.

-- Milliseconds on Redis' own clock: leases never depend on worker clocks agreeing.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Creates a job's record (docs/protocol.md, "Job record"): state 'queued', or 'staged' for a
-- batch stored in steps; payload and timeout_us '' (none, the queue's), batch nil or ''.
local function create_job(jk, state, now, args, payload, timeout, batch)
  redis.call('HSET', jk, 'v', '1', 'state', state, 'created', now, 'args', args)
  if payload ~= '' then redis.call('HSET', jk, 'payload', payload) end
  if timeout ~= '' then redis.call('HSET', jk, 'timeout', timeout) end
  if batch and batch ~= '' then redis.call('HSET', jk, 'batch', batch) end
end

-- cmd (LPUSH or RPUSH) of every id of the table ids to key, 1000 at a time (unpack() has a
-- limit); the list order is the same as one push of them all.
local function push_all(cmd, key, ids)
  for i = 1, #ids, 1000 do
    redis.call(cmd, key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end

-- Moves a job into a final state (done, failed, cancelled): counters, its batch, the done
-- stream that tasad-results follows, and the record's retention.
local function finalize(jk, id, state, batch, batch_prefix, done, stats, retention)
  redis.call('HSET', jk, 'state', state)
  redis.call('HINCRBY', stats, state, 1)
  if batch then
    local bk = batch_prefix .. batch
    redis.call('HINCRBY', bk, state, 1)
    redis.call('EXPIRE', bk, retention)
    -- left: the batch's unfinished jobs, so that only the last one wakes those waiting for it.
    local c = redis.call('HMGET', bk, 'total', 'done', 'failed', 'cancelled')
    local left = (tonumber(c[1]) or 0) - (tonumber(c[2]) or 0) - (tonumber(c[3]) or 0)
      - (tonumber(c[4]) or 0)
    redis.call('XADD', done, 'MAXLEN', '~', 1000000, '*', 'id', id, 'state', state, 'batch', batch,
      'left', math.max(left, 0))
  else
    redis.call('XADD', done, 'MAXLEN', '~', 1000000, '*', 'id', id, 'state', state)
  end
  redis.call('EXPIRE', jk, retention)
end

-- Takes up to n ready jobs for a worker and leases them (what BLMOVE + start do for one job,
-- in one step, so the worker needs no proc list for them). A cancel asked while a job ran that
-- outlived its attempt ends it here, as in start. Returns a flat list of
-- id, attempt, args, payload, timeout_us, redeliveries, v (the record's version, '' when it has
-- none: the worker refuses any but 1) per job taken.
local function take_jobs(ready, leases, workers, done, stats, worker, lease_ms, started,
                         retention, batch_prefix, job_prefix, n, now)
  local out = {}
  local exp = now + tonumber(lease_ms)
  local taken = 0
  while taken < n do
    local id = redis.call('RPOP', ready)
    if not id then break end
    local jk = job_prefix .. id
    local f = redis.call('HMGET', jk, 'state', 'cancel', 'batch', 'args', 'payload', 'timeout',
      'redeliveries', 'v')
    if f[1] == 'queued' and f[2] == '1' then
      redis.call('HSET', jk, 'outcome', 'cancelled', 'finished', now)
      finalize(jk, id, 'cancelled', f[3], batch_prefix, done, stats, retention)
    elseif f[1] == 'queued' then
      local attempt = redis.call('HINCRBY', jk, 'attempt', 1)
      redis.call('HSET', jk, 'state', 'running', 'worker', worker, 'started', started)
      redis.call('ZADD', leases, exp, id)
      out[#out + 1] = id
      out[#out + 1] = attempt
      out[#out + 1] = f[4] or ''
      out[#out + 1] = f[5] or ''
      out[#out + 1] = f[6] or ''
      out[#out + 1] = f[7] or '0'
      out[#out + 1] = f[8] or ''
      taken = taken + 1
    end
  end
  if taken > 0 then redis.call('ZADD', workers, exp, worker) end
  return out
end
