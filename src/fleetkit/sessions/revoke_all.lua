-- Revoke every session of a user (tombstone each), drop the index.
-- KEYS[1] user index; ARGV: base, tombstone_ms
-- Reply: number of live sessions revoked
local base, n = ARGV[1], 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', base .. 's' .. m)
  redis.call('SET', base .. 't' .. m, 'r', 'PX', ARGV[2])
end
redis.call('DEL', KEYS[1])
return n
