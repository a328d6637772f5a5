-- Acknowledge messages: drop them from the consumer's in-flight set and forget their bodies.
--
-- KEYS[1]  in-flight zset   P:{T}:q:N:fly:C
-- KEYS[2]  body hash        P:{T}:q:N:body
-- KEYS[3]  attempts hash    P:{T}:q:N:att
-- ARGV     ids
--
-- Returns the ids that were NOT in this consumer's in-flight set (already acked, or re-queued
-- after the consumer was taken for dead). Their bodies are left alone, so a re-queued copy
-- stays deliverable. Acking twice is therefore harmless.

local missing = {}
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
