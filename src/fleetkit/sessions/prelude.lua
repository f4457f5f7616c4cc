-- Shared prelude of the session scripts: Script.from_package(..., prelude=["prelude.lua"])
-- puts it in front of each of them (Redis scripts cannot include one another).

-- Redis TIME in milliseconds: the clock of every session script.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- HSET key with the n field/value pairs ARGV[first], ARGV[first + 1], ... (nothing if n is 0).
local function hset_pairs(key, first, n)
  if n > 0 then
    local kv = {}
    for i = first, first + 2 * n - 1 do
      kv[#kv + 1] = ARGV[i]
    end
    redis.call('HSET', key, unpack(kv))
  end
end
