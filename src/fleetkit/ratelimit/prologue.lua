-- Shared prologue of sliding_window.lua, sliding_log.lua and gcra.lua: the limiter loads each
-- as prologue + algorithm + epilogue.lua (Redis scripts cannot include one another). The
-- algorithm defines decide(); the epilogue runs it once per decision in ARGV.
--
-- One call decides one request or several (the coalescer merges concurrent decisions into one
-- call: Coalescer.run_merged). ARGV[d] is decision d, little-endian binary: int32 cost, int8 dry
-- (1 = peek, no write), int64 now_us (-1 = Redis TIME; a clock only in tests), then int64
-- window_ms, int64 amount per limit. Decision d's keys, one per limit, follow those of d - 1.
-- Reply, per decision and concatenated: int8 allowed, then int64 remaining, reset_ms, retry_ms
-- (-1 when allowed) per limit. Each decision is all-or-nothing over its own limits.
--
-- Binary arguments, state and reply: struct is C code, while Lua's number <-> string
-- conversions (string.match, tostring, '..') cost Redis more than the algorithm itself.
local time_us  -- Redis TIME, read once per call
local function clock(t)
  if t >= 0 then
    return t, 60000  -- a test's clock: keep keys long enough that real time never expires them
  end
  if not time_us then
    local tm = redis.call('TIME')
    time_us = tm[1] * 1000000 + tm[2]
  end
  return time_us, 0
end
