-- Append a batch to one shard of a topic, trimming only what every group has acknowledged,
-- and refusing (never dropping) when the shard is at its bound.
--
-- KEYS[1]  the shard's stream  P:{T}:t:N
-- ARGV[1]  bound on entries kept in the shard
-- ARGV[2]  wake channel to PUBLISH to after appending
-- ARGV[3], ...  bodies
--
-- Returns {appended, len} with len after the call, or {-1, len} (nothing appended) when the
-- batch does not fit even after trimming. An entry is trimmable once every group has had it
-- delivered and acknowledged: it is older than each group's oldest pending entry and not
-- newer than its last-delivered id. With no group at all nothing is trimmed, so a group
-- created later still receives everything retained.

local bound = tonumber(ARGV[1])
local n = #ARGV - 2
local len = redis.call('XLEN', KEYS[1])

local function next_id(id)
  local dash = string.find(id, '-', 1, true)
  return string.sub(id, 1, dash) .. tostring(tonumber(string.sub(id, dash + 1)) + 1)
end

local function older(a, b)
  local da, db = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  local ma, mb = tonumber(string.sub(a, 1, da - 1)), tonumber(string.sub(b, 1, db - 1))
  if ma ~= mb then return ma < mb end
  return tonumber(string.sub(a, da + 1)) < tonumber(string.sub(b, db + 1))
end

-- With no bodies (a writer checking for room) trim once the shard is at its bound.
if (len + n > bound or (n == 0 and len >= bound)) and len > 0 then
  local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
  local safe = nil
  for _, group in ipairs(groups) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local keep_from = next_id(info['last-delivered-id'])
    if tonumber(info['pending']) > 0 then
      local summary = redis.call('XPENDING', KEYS[1], info['name'])
      if older(summary[2], keep_from) then keep_from = summary[2] end
    end
    if safe == nil or older(keep_from, safe) then safe = keep_from end
  end
  if safe ~= nil then
    redis.call('XTRIM', KEYS[1], 'MINID', safe)
    len = redis.call('XLEN', KEYS[1])
  end
end

if n == 0 then
  return {0, len}
end
if len + n > bound then
  return {-1, len}
end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'b', ARGV[i])
end
wake(ARGV[2])
return {n, len + n}
