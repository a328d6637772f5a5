-- Push a batch of messages onto a queue, skipping ids that are already pending.
--
-- KEYS[1]  waiting list     P:{T}:q:N
-- KEYS[2]  body hash        P:{T}:q:N:body
-- ARGV[1]  bound on messages held (waiting + in flight + delayed); 0 = unbounded
-- ARGV[2]  wake channel to PUBLISH to when anything was added
-- ARGV[3], ARGV[4], ...  id, body, id, body, ...
--
-- Returns {added, held}: how many ids were newly queued and how many messages the queue holds
-- after the call. Returns {-1, held} and adds nothing when the batch would pass the bound.
-- An id whose body is still in the body hash is pending already: pushing it again is a no-op,
-- which makes a retried push of the same ids safe.

local bound = tonumber(ARGV[1])
local n = (#ARGV - 2) / 2
local held = redis.call('HLEN', KEYS[2])
if bound > 0 and held + n > bound then
  return {-1, held}
end

local ids = {}
for i = 3, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    ids[#ids + 1] = ARGV[i]
  end
end
-- RPUSH in chunks: unpack() of more than a few thousand values overflows Lua's C stack.
for i = 1, #ids, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ids, i, math.min(i + 999, #ids)))
end
if #ids > 0 then
  redis.call('PUBLISH', ARGV[2], '1')
end
return {#ids, held + #ids}
