-- Acquire or renew the fleet-wide cleanup lease. KEYS[1] lease; ARGV: owner, ttl_ms
-- Reply: 1 held by owner (acquired or renewed), 0 held by someone else
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
