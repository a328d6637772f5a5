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
-- In chunks: unpack() of more than a few thousand values overflows Lua's C stack.
local function each_chunk(list, call)
  for from = 1, #list, 1000 do
    call(unpack(list, from, math.min(from + 999, #list)))
  end
end
if #acked > 0 then
  redis.call('DEL', KEYS[1])
  each_chunk(kept, function(...) redis.call('RPUSH', KEYS[1], ...) end)
  each_chunk(acked, function(...) redis.call('HDEL', KEYS[2], ...) end)
  each_chunk(acked, function(...) redis.call('HDEL', KEYS[3], ...) end)
end
return missing
