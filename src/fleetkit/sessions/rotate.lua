-- Move a session to a new sid; the old sid stays an alias for grace_ms (in-flight requests).
-- KEYS[1] old session hash, KEYS[2] alias of the old sid, KEYS[3] new session hash
-- ARGV: base, old_sid, new_sid, idle_ms, abs_ms, grace_ms, n, field/value pairs...
-- Reply: {1, now_ms, pttl_ms, field, value, ...}, {0, now_ms} (unknown/expired) or {-1, now_ms}
-- (revoked)
local now = now_ms()
local base, old, new = ARGV[1], ARGV[2], ARGV[3]
local idle, abs = tonumber(ARGV[4]), tonumber(ARGV[5])
local created = redis.call('HGET', KEYS[1], 'c')
if not created then
  if redis.call('EXISTS', base .. 't' .. old) == 1 then
    return {-1, now}
  end
  return {0, now}
end
created = tonumber(created)
local index = base .. 'u' .. redis.call('HGET', KEYS[1], 'u')
if now >= created + abs then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', index, old)
  return {0, now}
end
redis.call('RENAME', KEYS[1], KEYS[3])
hset_pairs(KEYS[3], 8, tonumber(ARGV[7]))
-- Rotation does not extend the absolute lifetime of the login.
local ttl = math.min(idle, created + abs - now)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('ZREM', index, old)
redis.call('ZADD', index, created, new)
redis.call('SET', KEYS[2], new, 'PX', ARGV[6])
local reply = {1, now, ttl}
for _, v in ipairs(redis.call('HGETALL', KEYS[3])) do
  reply[#reply + 1] = v
end
return reply
