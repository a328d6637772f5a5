-- Read a log (a list appended to at its tail) with what is kept beside it, in one atomic step,
-- so the reader sees all of it as the last script that wrote them left it: one field of a
-- hash written in the same steps as the log, the log's length and oldest element, its newest
-- elements, and one member's score in a sorted set.
--
-- KEYS[1]  the hash
-- KEYS[2]  the list (same slot)
-- KEYS[3]  the sorted set (same slot)
-- ARGV[1]  the hash field
-- ARGV[2]  how many of the newest elements to return; 0 for all
-- ARGV[3]  the sorted set member
-- ARGV[4]  optional: return only the newest elements holding these bytes
--
-- Returns {the field or nil, the list's length, its first element or nil, its newest
-- elements oldest first, the member's score or nil}.

local count = tonumber(ARGV[2])
local from = 0
if count > 0 then from = -count end
local newest = redis.call('LRANGE', KEYS[2], from, -1)
if ARGV[4] then
  local holding = {}
  for _, element in ipairs(newest) do
    if string.find(element, ARGV[4], 1, true) then holding[#holding + 1] = element end
  end
  newest = holding
end
return {
  redis.call('HGET', KEYS[1], ARGV[1]),
  redis.call('LLEN', KEYS[2]),
  redis.call('LINDEX', KEYS[2], 0),
  newest,
  redis.call('ZSCORE', KEYS[3], ARGV[3]),
}
