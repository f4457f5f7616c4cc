-- Weighted two-window counter for every limit of one request, all-or-nothing.
-- KEYS[i]: one hash per limit {w = window index, c = current count, p = previous count}.
-- ARGV: now_us ('' = Redis TIME; a number only in tests), cost, dry ('1' = peek, no write),
--       then window_ms, amount for each key.
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
-- Integer arithmetic only (usage scaled by the window), so the Python twin agrees exactly.
local now_us
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now_us = tonumber(ARGV[1])
end
local now = math.floor(now_us / 1000)
local cost = tonumber(ARGV[2])
local dry = ARGV[3] == '1'
local n = #KEYS
local st = {}
local allowed = 1
for i = 1, n do
  local w = tonumber(ARGV[2 + 2 * i])
  local amount = tonumber(ARGV[3 + 2 * i])
  local idx = math.floor(now / w)
  local e = now - idx * w
  local s = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local sidx = tonumber(s[1])
  local curr, prev = 0, 0
  if sidx == idx then
    curr = tonumber(s[2]); prev = tonumber(s[3])
  elseif sidx == idx - 1 then
    prev = tonumber(s[2])
  end
  local room = amount * w - prev * (w - e) - curr * w
  local ok = room >= cost * w
  if not ok then allowed = 0 end
  st[i] = {w, amount, idx, e, curr, prev, room, ok}
end
local out = {allowed}
-- Tests pass their own clock: keep keys long enough that real time never expires them early.
local ttl_floor = 0
if ARGV[1] ~= '' then ttl_floor = 60000 end
for i = 1, n do
  local w, amount, idx, e, curr, prev, room, ok = unpack(st[i])
  if allowed == 1 and cost > 0 and not dry then
    curr = curr + cost
    room = room - cost * w
    redis.call('HSET', KEYS[i], 'w', idx, 'c', curr, 'p', prev)
    redis.call('PEXPIRE', KEYS[i], math.max(2 * w, ttl_floor))
  end
  local remaining = 0
  if room > 0 then remaining = math.floor(room / w) end
  local reset = 0
  if curr > 0 then reset = 2 * w - e elseif prev > 0 then reset = w - e end
  local retry = -1
  if not ok then
    local k = amount - cost - curr
    if k >= 0 then
      retry = (w - e) - math.floor(k * w / prev)
    elseif amount - cost >= 0 then
      retry = (w - e) + w - math.floor((amount - cost) * w / curr)
    else
      retry = 2 * w - e
    end
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
