-- wrk script: POSTs injects to /v1/topologies/<topology>/nodes/n<i>/messages, picking the
-- node round-robin (each wrk thread starts at a different node), and counts the answers.
--
-- Arguments (after `--` on the wrk command line):
--   nodes      how many nodes n0..n<nodes-1> to spread over (default 64)
--   lines      messages per request: > 0 sends that many {"v":1} lines as
--              application/x-ndjson; 0 sends one {"v":1} as application/json (default 1000)
--   topology   the topology id (default bench)
-- Environment:
--   INJECT_DELAY_MS  when set and > 0, each connection waits this long after an answer
--                    before its next request (wrk's delay() hook), which paces the load.
--
-- At the end it prints one line for bench/http.sh to read:
--   result accepted=<202 answers> not_accepted=<other answers> statuses=<code:n,...>
--          requests=<answers> sent=<requests written> duration_us=<wall time>
--          p50_us=... p90_us=... p99_us=... p999_us=... max_us=... mean_us=... socket_errors=<connect+read+write+timeout>
--
-- sent - requests is how many requests were still unanswered when wrk stopped and closed its
-- connections: the server may have queued their messages without getting to answer.
--
-- Example: wrk -t2 -c8 -d20s --latency -s bench/http/inject.lua http://127.0.0.1:8080 -- 64 1000 bench

local threads = {}
local started = 0

local pause = tonumber(os.getenv("INJECT_DELAY_MS") or "0") or 0

function setup(thread)
  thread:set("id", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  local nodes = tonumber(args[1] or "64") or 64
  local lines = tonumber(args[2] or "1000") or 1000
  local topology = args[3] or "bench"
  local body, content_type
  if lines > 0 then
    body = string.rep('{"v":1}\n', lines)
    content_type = "application/x-ndjson"
  else
    body = '{"v":1}'
    content_type = "application/json"
  end
  prepared = {}
  for i = 0, nodes - 1 do
    local path = "/v1/topologies/" .. topology .. "/nodes/n" .. i .. "/messages"
    prepared[i + 1] = wrk.format("POST", path, { ["Content-Type"] = content_type }, body)
  end
  count = nodes
  -- Threads start a prime stride apart so that they do not hit the same node together.
  position = ((id or 0) * 17) % nodes
  sent = 0
  accepted = 0
  not_accepted = 0
  statuses = {}
end

function request()
  sent = sent + 1
  position = position + 1
  if position > count then
    position = 1
  end
  return prepared[position]
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  else
    not_accepted = not_accepted + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local total_sent, total_accepted, total_not, merged = 0, 0, 0, {}
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    total_accepted = total_accepted + thread:get("accepted")
    total_not = total_not + thread:get("not_accepted")
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local codes = {}
  for status, n in pairs(merged) do
    table.insert(codes, status .. ":" .. n)
  end
  table.sort(codes)
  local errors = summary.errors
  io.write(string.format(
    "result accepted=%d not_accepted=%d statuses=%s requests=%d sent=%d duration_us=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%d socket_errors=%d\n",
    total_accepted, total_not, (#codes > 0 and table.concat(codes, ",") or "-"),
    summary.requests, total_sent, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    errors.connect + errors.read + errors.write + errors.timeout))
end
