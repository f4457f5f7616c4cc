-- List a user's live sessions with metadata, pruning index entries of expired ones.
-- KEYS[1] user index; ARGV: base
-- Reply: {pruned, now_ms, sid, created, pttl, ip, user_agent, sid, ...}
local now = now_ms()
local base, pruned, reply = ARGV[1], 0, {0, now}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = base .. 's' .. m
  local v = redis.call('HMGET', key, 'c', 'i', 'a')
  if v[1] then
    reply[#reply + 1] = m
    reply[#reply + 1] = v[1]
    reply[#reply + 1] = redis.call('PTTL', key)
    reply[#reply + 1] = v[2] or ''
    reply[#reply + 1] = v[3] or ''
  else
    redis.call('ZREM', KEYS[1], m)
    pruned = pruned + 1
  end
end
reply[1] = pruned
return reply
