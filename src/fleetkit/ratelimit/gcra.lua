-- GCRA (token bucket semantics, one key per limit holding the theoretical arrival time), all
-- limits of one request at once, all-or-nothing. Microseconds: the emission interval of
-- 1000/second is 1000 us. The interval is floor(window/amount); the burst is exactly amount.
-- KEYS[i]: one string per limit (TAT in us).
-- ARGV: now_us ('' = Redis TIME; a number only in tests), cost, dry ('1' = peek, no write),
--       then window_ms, amount for each key.
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local dry = ARGV[3] == '1'
local n = #KEYS
local st = {}
local allowed = 1
for i = 1, n do
  local amount = tonumber(ARGV[3 + 2 * i])
  local inc = math.max(1, math.floor(tonumber(ARGV[2 + 2 * i]) * 1000 / amount))
  local burst = amount * inc
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + cost * inc
  local ok = new_tat - now <= burst
  if not ok then allowed = 0 end
  st[i] = {inc, burst, tat, new_tat, ok}
end
local ttl_floor = 0
if ARGV[1] ~= '' then ttl_floor = 60000 end
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
