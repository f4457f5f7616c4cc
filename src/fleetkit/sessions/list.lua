-- List a user's live sessions with metadata, pruning index entries of expired ones.
-- KEYS[1] user index; ARGV: base
-- Reply: {pruned, sid, created, last_seen, ip, user_agent, sid, ...}
local base, pruned, reply = ARGV[1], 0, {0}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('HMGET', base .. 's' .. m, '#c', '#l', '#i', '#a')
  if v[1] then
    reply[#reply + 1] = m
    for i = 1, 4 do
      reply[#reply + 1] = v[i] or ''
    end
  else
    redis.call('ZREM', KEYS[1], m)
    pruned = pruned + 1
  end
end
reply[1] = pruned
return reply
