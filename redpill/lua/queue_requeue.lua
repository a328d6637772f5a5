-- Put everything one consumer holds in flight back at the head of the queue, in pull order.
-- Used for a consumer whose heartbeat expired (counting an attempt) and for a consumer that
-- hands its messages back on shutdown (not counting one).
--
-- KEYS[1]  in-flight zset   P:{T}:q:N:fly:C
-- KEYS[2]  waiting list     P:{T}:q:N
-- KEYS[3]  body hash        P:{T}:q:N:body
-- KEYS[4]  attempts hash    P:{T}:q:N:att
-- KEYS[5]  dead-letter list P:{T}:q:N:dlq
-- KEYS[6]  consumers set    P:{T}:q:N:who
-- ARGV[1]  consumer id C
-- ARGV[2]  '1' to count a failed attempt for each message, '0' not to
-- ARGV[3]  max attempts
-- ARGV[4]  error text for messages that reach max attempts this way
-- ARGV[5]  wake channel
--
-- Returns {requeued, dead_lettered}.

local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local back = {}
local dead = 0
if #ids > 0 then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local max_attempts = tonumber(ARGV[3])
  local err = ARGV[4]
  for i = 1, #ids do
    local id = ids[i]
    local body = redis.call('HGET', KEYS[3], id)
    if body then
      local attempts = 0
      if ARGV[2] == '1' then
        attempts = redis.call('HINCRBY', KEYS[4], id, 1)
      end
      if ARGV[2] == '1' and attempts >= max_attempts then
        redis.call('RPUSH', KEYS[5], 'v1\n' .. #id .. '\n' .. #err .. '\n' .. attempts .. '\n' .. now_ms .. '\n' .. id .. err .. body)
        redis.call('HDEL', KEYS[3], id)
        redis.call('HDEL', KEYS[4], id)
        dead = dead + 1
      else
        back[#back + 1] = id
      end
    end
  end
  -- LPUSH the last first, so the first pulled ends up at the head.
  for i = #back, 1, -1 do
    redis.call('LPUSH', KEYS[2], back[i])
  end
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[6], ARGV[1])
if #back > 0 then
  redis.call('PUBLISH', ARGV[5], '1')
end
return {#back, dead}
