-- Move the given dead letters back to the tail of the queue with a fresh attempt count.
--
-- KEYS[1]  dead-letter list P:{T}:q:N:dlq
-- KEYS[2]  waiting list     P:{T}:q:N
-- KEYS[3]  body hash        P:{T}:q:N:body
-- KEYS[4]  attempts hash    P:{T}:q:N:att
-- ARGV[1]  wake channel
-- ARGV[2], ARGV[4], ...  a dead-letter record, exactly as stored
-- ARGV[3], ARGV[5], ...  its message id
--
-- Returns the ids replayed. A record no longer in the list (replayed or removed meanwhile) is
-- skipped; so is one whose id is pending again (pushed anew meanwhile), which is dropped
-- rather than queued twice. The body is read from the record itself.

local replayed = {}
for i = 2, #ARGV, 2 do
  local record, id = ARGV[i], ARGV[i + 1]
  if redis.call('LREM', KEYS[1], 1, record) == 1 then
    local _, body = dead_letter_parts(record)
    if redis.call('HSETNX', KEYS[3], id, body) == 1 then
      redis.call('HDEL', KEYS[4], id)
      redis.call('RPUSH', KEYS[2], id)
      replayed[#replayed + 1] = id
    end
  end
end
if #replayed > 0 then
  wake(ARGV[1])
end
return replayed
