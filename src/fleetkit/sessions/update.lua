-- Per-field update of a live session (never recreates it: a revoked or expired session stays gone).
-- KEYS[1] session hash, KEYS[2] rotation alias of this sid, KEYS[3] tombstone of this sid
-- ARGV: base, abs_ms, n (number of field/value pairs), pairs..., then fields to delete
-- Reply: 1 updated, 0 unknown or expired, -1 revoked (tombstone)
local now = now_ms()
local base, key, tomb = ARGV[1], KEYS[1], KEYS[3]
if redis.call('EXISTS', key) == 0 then
  local target = redis.call('GET', KEYS[2])
  if target then
    key, tomb = base .. 's' .. target, base .. 't' .. target
  end
end
local created = redis.call('HGET', key, 'c')
if not created then
  if redis.call('EXISTS', tomb) == 1 then
    return -1
  end
  return 0
end
if now >= tonumber(created) + tonumber(ARGV[2]) then
  return 0
end
local n = tonumber(ARGV[3])
hset_pairs(key, 4, n)
if #ARGV > 3 + 2 * n then
  local dels = {}
  for i = 4 + 2 * n, #ARGV do
    dels[#dels + 1] = ARGV[i]
  end
  redis.call('HDEL', key, unpack(dels))
end
return 1
