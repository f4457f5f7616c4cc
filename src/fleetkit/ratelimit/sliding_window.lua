-- Weighted two-window counter for every limit of one request, all-or-nothing.
-- KEYS[k + i]: one string per limit, int64 window_index, current_count, previous_count.
-- Integer arithmetic only (usage scaled by the window), so the Python twin agrees exactly.
local function decide(k, n, cost, dry, now_us, ttl_floor, win, amt)
  local now = math.floor(now_us / 1000)
  local allowed = 1
  local st = {}  -- flat, 6 per limit: one table instead of one per limit
  for i = 1, n do
    local w = win[i]
    local idx = math.floor(now / w)
    local e = now - idx * w
    local s = redis.call('GET', KEYS[k + i])
    local curr, prev, same = 0, 0, false
    if s and #s == 24 then  -- any other value (another format) counts as empty
      local si, sc, sp = struct.unpack('<i8i8i8', s)
      if si == idx then
        curr = sc; prev = sp; same = true
      elseif si == idx - 1 then
        prev = sc
      end
    end
    local room = amt[i] * w - prev * (w - e) - curr * w
    if room < cost * w then allowed = 0 end
    local j = 6 * i
    st[j - 5] = idx; st[j - 4] = e; st[j - 3] = curr; st[j - 2] = prev; st[j - 1] = room
    st[j] = same
  end
  local out = {}
  for i = 1, n do
    local w, amount, j = win[i], amt[i], 6 * i
    local idx, e, curr, prev, room, same = st[j - 5], st[j - 4], st[j - 3], st[j - 2],
      st[j - 1], st[j]
    local ok = room >= cost * w
    if allowed == 1 and cost > 0 and not dry then
      curr = curr + cost
      room = room - cost * w
      local value = struct.pack('<i8i8i8', idx, curr, prev)
      if same then  -- the TTL set by this window's first write already covers the next window
        redis.call('SET', KEYS[k + i], value, 'KEEPTTL')
      else
        redis.call('SET', KEYS[k + i], value, 'PX', math.max(2 * w, ttl_floor))
      end
    end
    local remaining = 0
    if room > 0 then remaining = math.floor(room / w) end
    local reset = 0
    if curr > 0 then reset = 2 * w - e elseif prev > 0 then reset = w - e end
    local retry = -1
    if not ok then
      local left = amount - cost - curr
      if left >= 0 then
        retry = (w - e) - math.floor(left * w / prev)
      elseif amount - cost >= 0 then
        retry = (w - e) + w - math.floor((amount - cost) * w / curr)
      else
        retry = reset  -- cost > amount never fits: report the time to a full reset
      end
    end
    out[3 * i - 2] = remaining
    out[3 * i - 1] = reset
    out[3 * i] = retry
  end
  return allowed, out
end
