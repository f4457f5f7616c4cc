-- Weighted two-window counter for every limit of one request, all-or-nothing.
-- KEYS[i]: one string per limit, 'window_index current_count previous_count'.
-- ARGV[1]: 'cost dry now_us window_ms amount [window_ms amount ...]', one pair per key;
--          dry '1' = peek (no write); now_us '-' = Redis TIME (a number only in tests).
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
-- Integer arithmetic only (usage scaled by the window), so the Python twin agrees exactly.
-- One packed argument keeps the command short: client-side encoding is per argument.
local c, d, t, w1, a1, rest = string.match(ARGV[1], '^(%d+) (%d) (%S+) (%d+) (%d+)(.*)$')
local cost, dry, fixed = tonumber(c), d == '1', t ~= '-'
local now_us
if fixed then
  now_us = tonumber(t)
else
  local tm = redis.call('TIME')
  now_us = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local now = math.floor(now_us / 1000)
local lim = {{tonumber(w1), tonumber(a1)}}
if rest ~= '' then  -- gmatch costs a closure: only for requests with several limits
  for w, a in string.gmatch(rest, ' (%d+) (%d+)') do
    lim[#lim + 1] = {tonumber(w), tonumber(a)}
  end
end
local n = #KEYS
local st = {}
local allowed = 1
for i = 1, n do
  local w = lim[i][1]
  local amount = lim[i][2]
  local idx = math.floor(now / w)
  local e = now - idx * w
  local s = redis.call('GET', KEYS[i])
  local curr, prev, same = 0, 0, false
  if s then
    local si, sc, sp = string.match(s, '^(%d+) (%d+) (%d+)$')
    si = tonumber(si)
    if si == idx then
      curr = tonumber(sc); prev = tonumber(sp); same = true
    elseif si == idx - 1 then
      prev = tonumber(sc)
    end
  end
  local room = amount * w - prev * (w - e) - curr * w
  local ok = room >= cost * w
  if not ok then allowed = 0 end
  st[i] = {w, amount, idx, e, curr, prev, room, ok, same}
end
local out = {allowed}
-- Tests pass their own clock: keep keys long enough that real time never expires them early.
local ttl_floor = 0
if fixed then ttl_floor = 60000 end
for i = 1, n do
  local w, amount, idx, e, curr, prev, room, ok, same = unpack(st[i])
  if allowed == 1 and cost > 0 and not dry then
    curr = curr + cost
    room = room - cost * w
    local value = idx .. ' ' .. curr .. ' ' .. prev
    if same then  -- the TTL set by this window's first write already covers the next window
      redis.call('SET', KEYS[i], value, 'KEEPTTL')
    else
      redis.call('SET', KEYS[i], value, 'PX', math.max(2 * w, ttl_floor))
    end
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
      retry = reset  -- cost > amount never fits: report the time to a full reset
    end
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
