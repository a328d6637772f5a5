-- Move up to COUNT dead letters, oldest first, back to the tail of the queue with a fresh
-- attempt count.
--
-- KEYS[1]  dead-letter list P:{T}:q:N:dlq
-- KEYS[2]  waiting list     P:{T}:q:N
-- KEYS[3]  body hash        P:{T}:q:N:body
-- KEYS[4]  attempts hash    P:{T}:q:N:att
-- ARGV[1]  COUNT
-- ARGV[2]  wake channel
--
-- Returns the ids replayed. A dead letter whose id is pending again (pushed anew meanwhile)
-- is dropped rather than queued twice.

local records = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not records then return {} end
local replayed = {}
for _, record in ipairs(records) do
  local id, body = dead_letter_parts(record)
  if redis.call('HSETNX', KEYS[3], id, body) == 1 then
    redis.call('HDEL', KEYS[4], id)
    redis.call('RPUSH', KEYS[2], id)
    replayed[#replayed + 1] = id
  end
end
if #replayed > 0 then
  wake(ARGV[2])
end
return replayed
