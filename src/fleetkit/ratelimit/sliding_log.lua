-- Exact sliding log (one sorted set of request timestamps per limit), all-or-nothing.
-- KEYS[k + i]: one sorted set per limit, score = request time in ms, one member per unit of cost.
-- A request at time t counts while t > now - window. Memory grows with the limit: small limits.
local function decide(k, n, cost, dry, now_us, ttl_floor, win, amt)
  local now = math.floor(now_us / 1000)
  local allowed = 1
  local st = {}
  local out = {}
  for i = 1, n do
    local w = win[i]
    local amount = amt[i]
    local count = redis.call('ZCOUNT', KEYS[k + i], '(' .. (now - w), '+inf')
    local ok = count + cost <= amount
    if not ok then allowed = 0 end
    st[i] = {w, amount, count, ok}
  end
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
      redis.call('ZADD', KEYS[k + i], unpack(args))
      redis.call('ZREMRANGEBYSCORE', KEYS[k + i], '-inf', now - w)
      redis.call('PEXPIRE', KEYS[k + i], math.max(w, ttl_floor))
      count = count + cost
    end
    local reset = 0
    if count > 0 then
      if wrote then
        reset = w
      else
        local newest = redis.call('ZRANGE', KEYS[k + i], -1, -1, 'WITHSCORES')
        reset = tonumber(newest[2]) + w - now
      end
    end
    local retry = -1
    if not ok then
      local need = count + cost - amount
      if cost > amount then
        retry = reset
      else
        local oldest = redis.call('ZRANGEBYSCORE', KEYS[k + i], '(' .. (now - w), '+inf',
                                  'WITHSCORES', 'LIMIT', need - 1, 1)
        retry = tonumber(oldest[2]) + w - now
      end
    end
    out[3 * i - 2] = math.max(0, amount - count)
    out[3 * i - 1] = reset
    out[3 * i] = retry
  end
  return allowed, out
end
