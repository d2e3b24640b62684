-- wrk script for scripts/bench.sh: POST /token with a different form body (a distinct
-- subject token) on every request, cycling through $BODIES (one body per line).
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "/token", nil, bodies[i])
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "wrk_rps=%.0f wrk_requests=%d wrk_errors=%d wrk_p50_ms=%.3f wrk_p99_ms=%.3f\n",
    summary.requests / secs, summary.requests, bad,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
