-- wrk script: reads nodes of topology `reads` (nodes n0..n<nodes-1>) the three ways the API
-- offers, and counts the nodes each answer holds.
--
-- Arguments (after `--` on the wrk command line):
--   mode    one: GET /v1/topologies/reads/nodes/n<i>, one node per request, round-robin;
--           history: GET /v1/topologies/reads/nodes/n<i>/history?limit=10, round-robin (each
--           node's one output, from its replay buffer in Redis);
--           ids: GET /v1/topologies/reads/nodes?ids=<per ids>, the next `per` nodes each time;
--           page: GET /v1/topologies/reads/nodes?limit=<per>&after=<id>, pages in id order
--   nodes   how many nodes the topology has (default 10000)
--   per     nodes per request for ids and page (default 1000)
--
-- At the end it prints one line for bench/reads.sh to read:
--   result requests=<200 answers> other=<other answers> nodes=<nodes read> duration_us=<wall>
--          p50_us=... p99_us=... max_us=...

local threads = {}
local started = 0

function setup(thread)
  thread:set("id", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "one"
  nodes = tonumber(args[2] or "10000")
  per = tonumber(args[3] or "1000")
  next_node = (id * 7919) % nodes
  ok, other, read = 0, 0, 0
  -- Page cursors: the ids in byte order, as the API pages them.
  if mode == "page" then
    sorted = {}
    for i = 0, nodes - 1 do sorted[#sorted + 1] = "n" .. i end
    table.sort(sorted)
    cursors = { "" }
    for i = per, #sorted - 1, per do cursors[#cursors + 1] = sorted[i] end
    next_page = id % #cursors
  end
end

function request()
  if mode == "one" or mode == "history" then
    local path = "/v1/topologies/reads/nodes/n" .. next_node
    if mode == "history" then path = path .. "/history?limit=10" end
    next_node = (next_node + 1) % nodes
    return wrk.format("GET", path)
  elseif mode == "ids" then
    local ids = {}
    for _ = 1, per do
      ids[#ids + 1] = "n" .. next_node
      next_node = (next_node + 1) % nodes
    end
    return wrk.format("GET", "/v1/topologies/reads/nodes?ids=" .. table.concat(ids, ","))
  else
    local cursor = cursors[next_page + 1]
    next_page = (next_page + 1) % #cursors
    local path = "/v1/topologies/reads/nodes?limit=" .. per
    if cursor ~= "" then path = path .. "&after=" .. cursor end
    return wrk.format("GET", path)
  end
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if mode == "one" then
      read = read + 1
    elseif mode == "history" then
      -- Each node has output once: one item per page, read from Redis.
      local _, count = string.gsub(body, '"msg_id":', "")
      if count == 1 and headers["gorgon-history-source"] == "redis" then read = read + 1 end
    else
      -- Each node view has one "function" key.
      local _, count = string.gsub(body, '"function":', "")
      read = read + count
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_other, total_read = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_other = total_other + thread:get("other")
    total_read = total_read + thread:get("read")
  end
  io.write(string.format(
    "result requests=%d other=%d nodes=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d\n",
    total_ok, total_other, total_read, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
