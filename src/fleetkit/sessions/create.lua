-- Create a session and enforce the per-user cap atomically (one slot: every key shares {route}).
-- KEYS[1] session hash, KEYS[2] user index (zset: sid -> created ms)
-- ARGV: base, sid, user, idle_ms, abs_ms, max, policy ("evict"|"refuse"), tombstone_ms, ip, ua,
--       then data field/value pairs (fields already prefixed with '.')
-- Reply: {status (1 created, 0 refused), now_ms, evicted, pruned}
local now = now_ms()
local base, idle, abs, max = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- Expired sessions leave their index entry behind (no keyspace notifications): prune here.
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local pruned = 0
for _, m in ipairs(members) do
  if redis.call('EXISTS', base .. 's' .. m) == 0 then
    redis.call('ZREM', KEYS[2], m)
    pruned = pruned + 1
  end
end
local count = #members - pruned
local evicted = 0
if count >= max then
  if ARGV[7] == 'refuse' then
    return {0, now, 0, pruned}
  end
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, count - max)) do
    redis.call('DEL', base .. 's' .. m)
    redis.call('SET', base .. 't' .. m, 'e', 'PX', ARGV[8])
    redis.call('ZREM', KEYS[2], m)
    evicted = evicted + 1
  end
end
-- One-letter metadata fields keep the hash in a small listpack; last seen is not stored, it is
-- derived from the TTL (the idle TTL restarts at each touch).
local fields = {'u', ARGV[3], 'c', now, 'i', ARGV[9], 'a', ARGV[10]}
for i = 11, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], math.min(idle, abs))
-- The score orders eviction: strictly after the newest entry, so sessions created in the same
-- millisecond still evict oldest-first (a tie would fall back to comparing random sids).
local score = now
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= score then
  score = tonumber(newest[2]) + 1
end
redis.call('ZADD', KEYS[2], score, ARGV[2])
-- The index outlives every member: no session lives longer than abs_ms.
if redis.call('PTTL', KEYS[2]) < abs then
  redis.call('PEXPIRE', KEYS[2], abs)
end
return {1, now, evicted, pruned}
