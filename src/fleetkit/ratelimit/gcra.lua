-- GCRA (token bucket semantics, one key per limit holding the theoretical arrival time), all
-- limits of one request at once, all-or-nothing. Microseconds: the emission interval of
-- 1000/second is 1000 us. The interval is floor(window/amount); the burst is exactly amount.
-- KEYS[i]: one string per limit (TAT in us).
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
-- (prologue.lua, prepended at load time, parses ARGV into cost, dry, now_us, lim, n.)
local now = now_us
for i = 1, n do
  local amount = lim[i][2]
  local inc = math.max(1, math.floor(lim[i][1] * 1000 / amount))
  local burst = amount * inc
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + cost * inc
  local ok = new_tat - now <= burst
  if not ok then allowed = 0 end
  st[i] = {inc, burst, tat, new_tat, ok}
end
local ttl_floor = 0
if fixed then ttl_floor = 60000 end
local out = {allowed}
for i = 1, n do
  local inc, burst, tat, new_tat, ok = unpack(st[i])
  if allowed == 1 and cost > 0 and not dry then
    tat = new_tat
    local ttl = math.ceil((tat - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.max(ttl, ttl_floor))
  end
  local retry = -1
  if not ok then retry = math.ceil((new_tat - now - burst) / 1000) end
  out[#out + 1] = math.floor((burst - (tat - now)) / inc)
  out[#out + 1] = math.ceil((tat - now) / 1000)
  out[#out + 1] = retry
end
return out
