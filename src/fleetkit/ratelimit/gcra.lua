-- GCRA (token bucket semantics, one key per limit holding the theoretical arrival time), all
-- limits of one request at once, all-or-nothing. Microseconds: the emission interval of
-- 1000/second is 1000 us. The interval is floor(window/amount); the burst is exactly amount.
-- KEYS[i]: one string per limit (TAT in us).
-- ARGV[1]: 'cost dry now_us window_ms amount [window_ms amount ...]', one pair per key;
--          dry '1' = peek (no write); now_us '-' = Redis TIME (a number only in tests).
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
-- One packed argument keeps the command short: client-side encoding is per argument.
local c, d, t, w1, a1, rest = string.match(ARGV[1], '^(%d+) (%d) (%S+) (%d+) (%d+)(.*)$')
local cost, dry, fixed = tonumber(c), d == '1', t ~= '-'
local now
if fixed then
  now = tonumber(t)
else
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
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
