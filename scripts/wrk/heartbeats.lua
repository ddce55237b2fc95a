-- Replays device heartbeats with wrk, as an independent check of surplus-loadgen's figures:
--
--   wrk -t1 -c64 -d20s -s scripts/wrk/heartbeats.lua http://HUB -- DEVICES
--
-- DEVICES is the file `surplus-loadgen heartbeats --save-devices DEVICES` wrote: one registered
-- device a line, `TOKEN<TAB>REPORT`. Requests go round the devices in turn, each with its own
-- credential and report. At the end, one line for scripts/bench to read:
--
--   WRK <requests> <seconds> <p50 ms> <p90 ms> <p99 ms> <max ms> <non-2xx> <socket errors>

local devices = {}
local turn = 0

function init(args)
  local path = args[1]
  if not path then
    error("usage: wrk ... -s heartbeats.lua URL -- DEVICES")
  end
  for line in io.lines(path) do
    local token, report = line:match("^([^\t]+)\t(.+)$")
    if token then
      devices[#devices + 1] = wrk.format("POST", "/v1/device/heartbeat", {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }, report)
    end
  end
  if #devices == 0 then
    error("no devices in " .. path)
  end
end

function request()
  turn = turn % #devices + 1
  return devices[turn]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("WRK %d %.3f %.3f %.3f %.3f %.3f %d %d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
