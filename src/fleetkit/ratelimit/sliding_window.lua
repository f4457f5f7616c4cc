-- Weighted two-window counter for every limit of one request, all-or-nothing.
-- KEYS[i]: one string per limit, 'window_index current_count previous_count'.
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
-- Integer arithmetic only (usage scaled by the window), so the Python twin agrees exactly.
-- (prologue.lua, prepended at load time, parses ARGV into cost, dry, now_us, lim, n.)
local now = math.floor(now_us / 1000)
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
