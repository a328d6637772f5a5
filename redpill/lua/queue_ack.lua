-- Acknowledge messages: drop them from the consumer's in-flight list and forget their bodies.
--
-- KEYS[1]  in-flight list   P:{T}:q:N:fly:C
-- KEYS[2]  body hash        P:{T}:q:N:body
-- KEYS[3]  attempts hash    P:{T}:q:N:att
-- ARGV     ids
--
-- Returns the ids that were NOT in this consumer's in-flight list (already acked, or re-queued
-- after the consumer was taken for dead). Their bodies are left alone, so a re-queued copy
-- stays deliverable. Acking twice is therefore harmless.
-- A handful of calls per batch, whatever its size: each redis.call costs more than the work
-- of a small one.

local acking = {}
for i = 1, #ARGV do acking[ARGV[i]] = true end
local held = redis.call('LRANGE', KEYS[1], 0, -1)
local kept, is_held = {}, {}
for i = 1, #held do
  if acking[held[i]] then
    is_held[held[i]] = true
  else
    kept[#kept + 1] = held[i]
  end
end
local acked, missing = {}, {}
for i = 1, #ARGV do
  if is_held[ARGV[i]] then
    acked[#acked + 1] = ARGV[i]
    is_held[ARGV[i]] = nil
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if #acked > 0 then
  redis.call('DEL', KEYS[1])
  if #kept > 0 then call_chunked('RPUSH', KEYS[1], kept, 1, #kept) end
  call_chunked('HDEL', KEYS[2], acked, 1, #acked)
  call_chunked('HDEL', KEYS[3], acked, 1, #acked)
end
return missing
