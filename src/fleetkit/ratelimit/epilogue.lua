-- Shared epilogue (see prologue.lua): parse each decision, decide it, pack its reply.
local replies = {}
local k = 0
for d = 1, #ARGV do
  local arg = ARGV[d]
  local n = (#arg - 13) / 16
  if n < 1 or n % 1 ~= 0 then
    return redis.error_reply('ERR rate limit argument ' .. d .. ' is malformed')
  end
  local cost, dry, t, pos = struct.unpack('<i4i1i8', arg)
  local win, amt = {}, {}
  for i = 1, n do
    win[i], amt[i], pos = struct.unpack('<i8i8', arg, pos)
  end
  local now_us, ttl_floor = clock(t)
  local allowed, out = decide(k, n, cost, dry == 1, now_us, ttl_floor, win, amt)
  local fmt = '<i1i8i8i8'  -- one limit, the common case: no string building
  if n > 1 then fmt = '<i1' .. string.rep('i8', 3 * n) end
  replies[d] = struct.pack(fmt, allowed, unpack(out))
  k = k + n
end
if k ~= #KEYS then
  return redis.error_reply('ERR rate limit arguments name ' .. k .. ' keys, got ' .. #KEYS)
end
return table.concat(replies)
