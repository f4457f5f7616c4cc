-- Shared prologue of sliding_window.lua, sliding_log.lua and gcra.lua (prepended to each when
-- the limiter loads it: Redis scripts cannot include one another).
-- ARGV[1]: 'cost dry now_us window_ms amount [window_ms amount ...]', one pair per key;
--          dry '1' = peek (no write); now_us '-' = Redis TIME (a number only in tests).
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
local lim = {{tonumber(w1), tonumber(a1)}}
if rest ~= '' then  -- gmatch costs a closure: only for requests with several limits
  for w, a in string.gmatch(rest, ' (%d+) (%d+)') do
    lim[#lim + 1] = {tonumber(w), tonumber(a)}
  end
end
local n = #KEYS
local st = {}
local allowed = 1
