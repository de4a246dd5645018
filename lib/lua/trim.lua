-- trim: drops what is left of expired jobs from zsets of job ids (the dead-letter list, the
-- results tasad-results set aside): an entry goes once its time (the score, ms on Redis' clock)
-- is older than the retention and its job record no longer exists. At most `limit` of the
-- oldest such entries are looked at per key and call (tasad-results calls it periodically).
-- KEYS: the zsets
-- ARGV: job key prefix, retention_s, limit
-- Returns the number of entries removed.
local cutoff = now_ms() - tonumber(ARGV[2]) * 1000
local removed = 0
for _, key in ipairs(KEYS) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0,
      tonumber(ARGV[3]))) do
    if redis.call('EXISTS', ARGV[1] .. id) == 0 then
      redis.call('ZREM', key, id)
      removed = removed + 1
    end
  end
end
return removed
