-- Fleet-wide circuit breaker: every transition is decided here, atomically, from shared counts.
--
-- KEYS[1] state hash   {state, version, gen, until (ms), opens, consec, trials_ok, epoch}
-- KEYS[2] buckets hash  c:<bucket> calls, f:<bucket> failures, s:<bucket> slow calls
-- KEYS[3] leases zset   half-open lease id -> expiry (ms)
-- All three share one hash tag (one Cluster slot). Redis TIME is the only clock.
--
-- ARGV[1] op: flush | acquire | release | admin
-- ARGV[2] epoch candidate (kept only when the state hash is new: detects a wiped Redis)
-- ARGV[3] pub/sub channel for state changes
-- ARGV[4..14] failure rate, slow rate (0 = off), minimum calls, consecutive failures (0 = off),
--             window ms, bucket ms, wait ms, backoff multiplier, max wait ms, permits, lease ms
-- ARGV[15..] op arguments:
--   flush:   gen, calls, failures, slow, had_success (0/1), trailing failures
--   acquire: lease id
--   release: lease id, gen, outcome (success | failure | cancel)
--   admin:   action (force_open | disable | force_close | reset)
-- Reply: {state, version, gen, remaining open ms, epoch, flag}; flag = admitted (acquire),
-- 1 when a release was stale, 1 when the call changed the state (other ops).

local S, B, L = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local fail_rate, slow_rate = tonumber(ARGV[4]), tonumber(ARGV[5])
local min_calls, consec_limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local window_ms, bucket_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local wait_ms, backoff, max_wait = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local permits, lease_ms = tonumber(ARGV[13]), tonumber(ARGV[14])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('HSETNX', S, 'epoch', ARGV[2])
local h = redis.call('HMGET', S, 'state', 'version', 'gen', 'until', 'opens', 'consec',
                     'trials_ok', 'epoch')
local state = h[1] or 'closed'
local version = tonumber(h[2] or '0')
local gen = tonumber(h[3] or '0')
local open_until = tonumber(h[4] or '0')
local opens = tonumber(h[5] or '0')
local consec = tonumber(h[6] or '0')
local trials_ok = tonumber(h[7] or '0')
local epoch = h[8]
local changed = 0

local function save()
  version = version + 1
  changed = 1
  redis.call('HSET', S, 'state', state, 'version', version, 'gen', gen, 'until', open_until,
             'opens', opens, 'consec', consec, 'trials_ok', trials_ok)
  local remaining = math.max(0, open_until - now)
  redis.call('PUBLISH', ARGV[3], table.concat({version, state, gen, remaining, epoch}, '|'))
end

local function go_open()
  opens = opens + 1
  local wait = math.min(max_wait, wait_ms * (backoff ^ (opens - 1)))
  state, open_until, consec, trials_ok = 'open', now + math.floor(wait), 0, 0
  redis.call('DEL', B, L)
  save()
end

local function go_half_open()
  state, gen, trials_ok = 'half_open', gen + 1, 0
  redis.call('DEL', L)
  save()
end

local function go_closed(reset_backoff)
  state, gen, consec, trials_ok, open_until = 'closed', gen + 1, 0, 0, 0
  if reset_backoff then opens = 0 end
  redis.call('DEL', B, L)
  save()
end

local function window_counts(current)
  local oldest = current - math.floor(window_ms / bucket_ms) + 1
  local fields = redis.call('HGETALL', B)
  local calls, fails, slow = 0, 0, 0
  for i = 1, #fields, 2 do
    local kind, idx = string.match(fields[i], '^(%a):(%d+)$')
    idx = tonumber(idx)
    if idx < oldest then
      redis.call('HDEL', B, fields[i])
    elseif kind == 'c' then calls = calls + tonumber(fields[i + 1])
    elseif kind == 'f' then fails = fails + tonumber(fields[i + 1])
    else slow = slow + tonumber(fields[i + 1]) end
  end
  return calls, fails, slow
end

-- open -> half_open once the wait is over, whichever instance notices first.
if state == 'open' and now >= open_until then go_half_open() end

local flag = 0
if op == 'flush' then
  local b_gen, calls, fails = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  local slow, had_success, trailing = tonumber(ARGV[18]), ARGV[19] == '1', tonumber(ARGV[20])
  -- Counts made under an older generation (before an open / a manual close) are ignored.
  if state == 'closed' and b_gen == gen and calls > 0 then
    local current = math.floor(now / bucket_ms)
    redis.call('HINCRBY', B, 'c:' .. current, calls)
    if fails > 0 then redis.call('HINCRBY', B, 'f:' .. current, fails) end
    if slow > 0 then redis.call('HINCRBY', B, 's:' .. current, slow) end
    redis.call('PEXPIRE', B, window_ms * 2)
    if had_success then consec = trailing else consec = consec + fails end
    redis.call('HSET', S, 'consec', consec)
    local c, f, s = window_counts(current)
    if (consec_limit > 0 and consec >= consec_limit)
        or (c >= min_calls and (f / c >= fail_rate or (slow_rate > 0 and s / c >= slow_rate))) then
      go_open()
    end
  end
elseif op == 'acquire' then
  if state == 'half_open' then
    redis.call('ZREMRANGEBYSCORE', L, '-inf', now)
    -- Successful trials keep their permit: the generation admits `permits` trials in total.
    if redis.call('ZCARD', L) + trials_ok < permits then
      redis.call('ZADD', L, now + lease_ms, ARGV[15])
      redis.call('PEXPIRE', L, lease_ms * 2)
      flag = 1
    end
  end
elseif op == 'release' then
  local held = redis.call('ZREM', L, ARGV[15])
  if state ~= 'half_open' or tonumber(ARGV[16]) ~= gen or held == 0 then
    flag = 1  -- an older generation's (or an expired lease's) result: ignored
  elseif ARGV[17] == 'failure' then
    go_open()
  elseif ARGV[17] == 'success' then
    trials_ok = trials_ok + 1
    redis.call('HSET', S, 'trials_ok', trials_ok)
    if trials_ok >= permits then go_closed(true) end
  end
elseif op == 'admin' then
  local action = ARGV[15]
  if action == 'force_open' then
    state, open_until = 'forced_open', 0
    redis.call('DEL', B, L)
    save()
  elseif action == 'disable' then
    state, open_until = 'disabled', 0
    redis.call('DEL', B, L)
    save()
  elseif action == 'force_close' then
    go_closed(false)
  else
    go_closed(true)
  end
end

if op ~= 'acquire' and op ~= 'release' then flag = changed end
return {state, version, gen, math.max(0, open_until - now), epoch, flag}
