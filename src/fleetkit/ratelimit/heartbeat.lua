-- Announce one limiter instance and count the live ones (used to divide limits in fallback).
-- KEYS[1]: sorted set member = instance id, score = expiry time in ms (Redis TIME).
-- ARGV: instance id, ttl_ms, leave ('1' removes the instance).  Reply: live instances.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return redis.call('ZCARD', KEYS[1])
