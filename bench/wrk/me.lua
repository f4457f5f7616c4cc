-- wrk script: the full-stack authenticated endpoint (session + rate limit + breaker + DB read).
--   TOKEN=$(...login...) wrk -t1 -c64 -d10s --latency -s bench/wrk/me.lua http://127.0.0.1:8000
-- bench/http_load.py runs the same load (and the baselines) end to end.
local token = os.getenv("TOKEN") or ""
wrk.method = "GET"
wrk.path = "/v1/me"
wrk.headers["Authorization"] = "Bearer " .. token

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms  p99 %.2f ms\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
