-- Revoke a session and leave a tombstone (a revoked sid can never be written again).
-- KEYS[1] session hash, KEYS[2] rotation alias of this sid
-- ARGV: base, sid, tombstone_ms
-- Reply: 1 revoked, 0 unknown
local base, sid, key = ARGV[1], ARGV[2], KEYS[1]
local target = redis.call('GET', KEYS[2])
if target then
  -- The old token of a rotated session revokes the session it now names.
  redis.call('DEL', KEYS[2])
  redis.call('SET', base .. 't' .. sid, 'r', 'PX', ARGV[3])
  if redis.call('EXISTS', key) == 0 then
    sid, key = target, base .. 's' .. target
  end
end
local user = redis.call('HGET', key, 'u')
redis.call('SET', base .. 't' .. sid, 'r', 'PX', ARGV[3])
if not user then
  return 0
end
redis.call('DEL', key)
redis.call('ZREM', base .. 'u' .. user, sid)
return 1
