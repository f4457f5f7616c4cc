-- Exact sliding log (one sorted set of request timestamps per limit), all-or-nothing.
-- KEYS[i]: one sorted set per limit, score = request time in ms, one member per unit of cost.
-- ARGV[1]: 'cost dry now_us window_ms amount [window_ms amount ...]', one pair per key;
--          dry '1' = peek (no write); now_us '-' = Redis TIME (a number only in tests).
-- Reply: {allowed, then per limit: remaining, reset_ms, retry_ms (-1 when it allows)}.
-- A request at time t counts while t > now - window. Memory grows with the limit: small limits.
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
  local count = redis.call('ZCOUNT', KEYS[i], '(' .. (now - w), '+inf')
  local ok = count + cost <= amount
  if not ok then allowed = 0 end
  st[i] = {w, amount, count, ok}
end
local ttl_floor = 0
if fixed then ttl_floor = 60000 end
local out = {allowed}
for i = 1, n do
  local w, amount, count, ok = unpack(st[i])
  local wrote = allowed == 1 and cost > 0 and not dry
  if wrote then
    local args = {}
    for j = 1, cost do
      -- Unique per ms: counts at one instant only grow, so count + j was never used.
      args[#args + 1] = now
      args[#args + 1] = now .. ':' .. (count + j)
    end
    redis.call('ZADD', KEYS[i], unpack(args))
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - w)
    redis.call('PEXPIRE', KEYS[i], math.max(w, ttl_floor))
    count = count + cost
  end
  local reset = 0
  if count > 0 then
    if wrote then
      reset = w
    else
      local newest = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
      reset = tonumber(newest[2]) + w - now
    end
  end
  local retry = -1
  if not ok then
    local need = count + cost - amount
    if cost > amount then
      retry = reset
    else
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. (now - w), '+inf',
                                'WITHSCORES', 'LIMIT', need - 1, 1)
      retry = tonumber(oldest[2]) + w - now
    end
  end
  out[#out + 1] = math.max(0, amount - count)
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
