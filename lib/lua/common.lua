-- Prelude shared by every tasad script (protocol v1, docs/protocol.md): prepended to each
-- script when it is embedded, so the scripts stay self-contained for EVALSHA.

-- Milliseconds on Redis' own clock: leases never depend on worker clocks agreeing.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
    redis.call('XADD', done, 'MAXLEN', '~', 1000000, '*', 'id', id, 'state', state, 'batch', batch)
  else
    redis.call('XADD', done, 'MAXLEN', '~', 1000000, '*', 'id', id, 'state', state)
  end
  redis.call('EXPIRE', jk, retention)
end
