-- GCRA (token bucket semantics, one key per limit holding the theoretical arrival time), all
-- limits of one request at once, all-or-nothing. Microseconds: the emission interval of
-- 1000/second is 1000 us. The interval is floor(window/amount); the burst is exactly amount.
-- KEYS[k + i]: one string per limit, the TAT in us (int64).
local function decide(k, n, cost, dry, now, ttl_floor, win, amt)
  local allowed = 1
  local st = {}
  for i = 1, n do
    local amount = amt[i]
    local inc = math.max(1, math.floor(win[i] * 1000 / amount))
    local burst = amount * inc
    local s = redis.call('GET', KEYS[k + i])
    local tat = now
    if s and #s == 8 then tat = math.max(now, struct.unpack('<i8', s)) end
    local new_tat = tat + cost * inc
    local ok = new_tat - now <= burst
    if not ok then allowed = 0 end
    st[i] = {inc, burst, tat, new_tat, ok}
  end
  local out = {}
  for i = 1, n do
    local inc, burst, tat, new_tat, ok = unpack(st[i])
    if allowed == 1 and cost > 0 and not dry then
      tat = new_tat
      local ttl = math.ceil((tat - now) / 1000)
      redis.call('SET', KEYS[k + i], struct.pack('<i8', tat), 'PX', math.max(ttl, ttl_floor))
    end
    local retry = -1
    if not ok then retry = math.ceil((new_tat - now - burst) / 1000) end
    out[3 * i - 2] = math.floor((burst - (tat - now)) / inc)
    out[3 * i - 1] = math.ceil((tat - now) / 1000)
    out[3 * i] = retry
  end
  return allowed, out
end
