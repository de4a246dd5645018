-- set_aside: tasad-results gives up on gathering one result (an id that cannot be a path, a
-- record it cannot read, a result it failed to write too many times): the reason goes into the
-- record's field gather_error when the record is a hash (nothing is created when it is not),
-- the id into the zset of set-aside results with the time (ms, Redis' clock).
-- KEYS: job, gather-failed zset
-- ARGV: id, reason
-- Returns 1 when the reason was written into the record, else 0.
local t = redis.call('TYPE', KEYS[1])
local noted = 0
if t.ok == 'hash' then
  redis.call('HSET', KEYS[1], 'gather_error', ARGV[2])
  noted = 1
end
redis.call('ZADD', KEYS[2], now_ms(), ARGV[1])
return noted
