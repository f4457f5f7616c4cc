-- Read a session, sliding its idle TTL (when that moves the expiry by >= touch_ms) within its
-- absolute lifetime.
-- KEYS[1] session hash, KEYS[2] rotation alias of this sid
-- ARGV: base, sid, idle_ms, abs_ms, touch_ms
-- Reply: {status, sid, now_ms, pttl_ms, field, value, ...}; status 1 found, 2 found through a
-- rotation alias (grace period), 0 unknown, -1 past its absolute lifetime (deleted now)
local now = now_ms()
local base, sid, key, status = ARGV[1], ARGV[2], KEYS[1], 1
local idle, abs, touch = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HGETALL', key)
if #h == 0 then
  local target = redis.call('GET', KEYS[2])
  if not target then
    return {0, sid, now, 0}
  end
  sid, key, status = target, base .. 's' .. target, 2
  h = redis.call('HGETALL', key)
  if #h == 0 then
    return {0, sid, now, 0}
  end
end
local created, user = 0, ''
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'c' then created = tonumber(h[i + 1])
  elseif f == 'u' then user = h[i + 1] end
end
if now >= created + abs then
  redis.call('DEL', key)
  redis.call('ZREM', base .. 'u' .. user, sid)
  return {-1, sid, now, 0}
end
local ttl = redis.call('PTTL', key)
local want = math.min(idle, created + abs - now)
if want - ttl >= touch then
  redis.call('PEXPIRE', key, want)
  ttl = want
end
local reply = {status, sid, now, ttl}
for i = 1, #h do
  reply[#reply + 1] = h[i]
end
return reply
