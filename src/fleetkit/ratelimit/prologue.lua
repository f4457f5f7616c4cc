-- Shared prologue of sliding_window.lua, sliding_log.lua and gcra.lua (prepended to each when
-- the limiter loads it: Redis scripts cannot include one another).
-- ARGV[1], little-endian binary: int32 cost, int8 dry (1 = peek, no write), int64 now_us
-- (-1 = Redis TIME; a clock only in tests), then int64 window_ms, int64 amount per key.
-- Binary arguments, state and reply: struct is C code, while Lua's number <-> string
-- conversions (string.match, tostring, '..') cost Redis more than the algorithm itself.
local cost, dry, now_us, pos = struct.unpack('<i4i1i8', ARGV[1])
dry = dry == 1
local fixed = now_us >= 0
if not fixed then
  local tm = redis.call('TIME')
  now_us = tm[1] * 1000000 + tm[2]
end
local n = #KEYS
local win, amt = {}, {}
for i = 1, n do
  win[i], amt[i], pos = struct.unpack('<i8i8', ARGV[1], pos)
end
local allowed = 1
local out = {}  -- per limit: remaining, reset_ms, retry_ms (-1 when it allows)
-- Tests pass their own clock: keep keys long enough that real time never expires them early.
local ttl_floor = 0
if fixed then ttl_floor = 60000 end
-- The reply: int8 allowed, then int64 remaining, reset_ms, retry_ms per limit.
local function reply()
  local fmt = '<i1i8i8i8'  -- one limit, the common case: no string building
  if n > 1 then fmt = '<i1' .. string.rep('i8', 3 * n) end
  return struct.pack(fmt, allowed, unpack(out))
end
