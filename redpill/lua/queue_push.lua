-- Push a batch of messages onto a queue, skipping ids that are already pending; optionally
-- once per key.
--
-- KEYS[1]  waiting list     P:{T}:q:N
-- KEYS[2]  body hash        P:{T}:q:N:body
-- KEYS[3]  (optional) once record  P:{T}:q:N:once:K
-- ARGV[1]  bound on messages held (waiting + in flight + delayed); 0 = unbounded
-- ARGV[2]  wake channel to PUBLISH to when anything was added
-- ARGV[3]  with KEYS[3]: how long the once record lives, in ms (else ignored)
-- ARGV[4]  with KEYS[3]: the record to keep (else ignored)
-- ARGV[5], ARGV[6], ...  id, body, id, body, ...
--
-- Returns {added, held, ''}: how many ids were newly queued and how many messages the queue
-- holds after the call. Returns {-1, held, ''} and adds nothing when the batch would pass the
-- bound. With KEYS[3]: when the record exists, adds nothing and returns {-2, held, record};
-- otherwise pushes and keeps ARGV[4] there for ARGV[3] ms, so the same push made again within
-- that time (a client's retry) is answered from the record instead of queued twice.
-- An id whose body is still in the body hash is pending already: pushing it again is a no-op
-- (`push_new`), which makes a retried push of the same ids safe.

local bound = tonumber(ARGV[1])
local n = (#ARGV - 4) / 2
local held = redis.call('HLEN', KEYS[2])
if KEYS[3] then
  local record = redis.call('GET', KEYS[3])
  if record then
    return {-2, held, record}
  end
end
if bound > 0 and held + n > bound then
  return {-1, held, ''}
end

local added = push_new(KEYS[1], KEYS[2], ARGV, 5, #ARGV)
if added > 0 then
  wake(ARGV[2])
end
if KEYS[3] then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
end
return {added, held + added, ''}
