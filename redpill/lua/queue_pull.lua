-- Take up to COUNT messages from the head of a queue into one consumer's in-flight set, atomically.
--
-- KEYS[1]  waiting list     P:{T}:q:N
-- KEYS[2]  body hash        P:{T}:q:N:body
-- KEYS[3]  attempts hash    P:{T}:q:N:att
-- KEYS[4]  delayed zset     P:{T}:q:N:delay
-- KEYS[5]  in-flight list   P:{T}:q:N:fly:C   ids in pull order
-- KEYS[6]  consumers set    P:{T}:q:N:who
-- ARGV[1]  COUNT, at least 1
-- ARGV[2]  consumer id C
-- ARGV[3]  '1' to return the consumer's whole in-flight set first (after an ambiguous failure)
-- KEYS[7], ARGV[4]  optional fence: a lease's holder key and the grant "<epoch> <owner>";
--          when given and the grant no longer holds the lease, nothing is pulled and the
--          script fails with STALE.
--
-- Returns {groups from the in-flight set (ARGV[3]), ids, bodies, attempts, ids, bodies,
-- attempts, ...}: per group of at most CHUNK messages, the ids, then HMGET's replies as they
-- come (a nil body: the message was acked or dead-lettered meanwhile, and its stray id is
-- dropped from the in-flight list; a nil attempt count: 0), or no attempts at all when the
-- attempts hash is empty, the usual case. The in-flight groups come first. Lua builds no
-- table entry per message: that work was most of the pull's cost.
-- Retries whose backoff is over go to the head of the queue first, earliest due first.
-- The in-flight list keeps the pull order, so a re-queue can restore it exactly.

if KEYS[7] and redis.call('GET', KEYS[7]) ~= ARGV[4] then
  return redis.error_reply('STALE the lease fencing this queue is no longer held by this grant')
end

local count = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now_ms(), 'LIMIT', 0, CHUNK)
if #due > 0 then
  redis.call('ZREM', KEYS[4], unpack(due))
  for i = #due, 1, -1 do
    redis.call('LPUSH', KEYS[1], due[i])
  end
end

local out = {0}
-- No message has failed an attempt yet: nothing to read per id.
local no_attempts = redis.call('EXISTS', KEYS[3]) == 0
local function emit(ids)
  for from = 1, #ids, CHUNK do
    local to = math.min(from + CHUNK - 1, #ids)
    local group = ids
    if from > 1 or to < #ids then group = {unpack(ids, from, to)} end
    local bodies = redis.call('HMGET', KEYS[2], unpack(group))
    local attempts = {}
    if not no_attempts then attempts = redis.call('HMGET', KEYS[3], unpack(group)) end
    for i = 1, #group do
      if not bodies[i] then redis.call('LREM', KEYS[5], 1, group[i]) end
    end
    out[#out + 1] = group
    out[#out + 1] = bodies
    out[#out + 1] = attempts
  end
end

if ARGV[3] == '1' then
  emit(redis.call('LRANGE', KEYS[5], 0, -1))
  out[1] = (#out - 1) / 3
end

local ids = redis.call('LPOP', KEYS[1], count)
if ids then
  call_chunked('RPUSH', KEYS[5], ids, 1, #ids)
  redis.call('SADD', KEYS[6], ARGV[2])
  emit(ids)
end
return out
