-- Prune one per-user session index (monitor cleanup pass) and count what it saw.
-- KEYS[1] user index; ARGV: session key prefix, tombstone key prefix (fleetkit.keys: the index's
-- <prefix>{route} + kind letter), since_ms (created-rate window start)
-- Reply: {live, expired, revoked, created_since, now_ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local session, tomb, since = ARGV[1], ARGV[2], tonumber(ARGV[3])
local live, expired, revoked, created = 0, 0, 0, 0
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local m = entries[i]
  if redis.call('EXISTS', session .. m) == 1 then
    live = live + 1
    if tonumber(entries[i + 1]) >= since then
      created = created + 1
    end
  else
    redis.call('ZREM', KEYS[1], m)
    if redis.call('EXISTS', tomb .. m) == 1 then
      revoked = revoked + 1
    else
      expired = expired + 1
    end
  end
end
return {live, expired, revoked, created, now}
