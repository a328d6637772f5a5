-- Put everything some consumers hold in flight back at the head of the queue, in pull order
-- across all of them. Used for consumers whose heartbeat expired and for the previous
-- holders of a partition taken over (counting an attempt), and for a consumer that hands
-- its messages back on shutdown (not counting one).
--
-- KEYS[1]  waiting list     P:{T}:q:N
-- KEYS[2]  body hash        P:{T}:q:N:body
-- KEYS[3]  attempts hash    P:{T}:q:N:att
-- KEYS[4]  dead-letter list P:{T}:q:N:dlq
-- KEYS[5]  consumers set    P:{T}:q:N:who
-- KEYS[6..]  the in-flight lists P:{T}:q:N:fly:C of the consumers, in the order of ARGV[5..]
-- ARGV[1]  '1' to count a failed attempt for each message, '0' not to
-- ARGV[2]  max attempts
-- ARGV[3]  error text for messages that reach max attempts this way
-- ARGV[4]  wake channel
-- ARGV[5..]  the consumer ids
--
-- Returns {requeued, dead_lettered}. Each consumer's messages keep their pull order; those of
-- several consumers are put back consumer by consumer, in the order given.

local count_attempt = ARGV[1] == '1'
local max_attempts = tonumber(ARGV[2])
local err = ARGV[3]

local held = {}
for k = 6, #KEYS do
  local ids = redis.call('LRANGE', KEYS[k], 0, -1)
  for i = 1, #ids do
    held[#held + 1] = ids[i]
  end
  redis.call('DEL', KEYS[k])
  redis.call('SREM', KEYS[5], ARGV[k - 1])
end

local back = {}
local dead = 0
if #held > 0 then
  local now = now_ms()
  for _, id in ipairs(held) do
    local body = redis.call('HGET', KEYS[2], id)
    if body then
      local attempts = 0
      if count_attempt then
        attempts = redis.call('HINCRBY', KEYS[3], id, 1)
      end
      if count_attempt and attempts >= max_attempts then
        redis.call('RPUSH', KEYS[4], dead_letter_record(id, err, attempts, now, body))
        redis.call('HDEL', KEYS[2], id)
        redis.call('HDEL', KEYS[3], id)
        dead = dead + 1
      else
        back[#back + 1] = id
      end
    end
  end
  -- LPUSH the last first, so the first pulled ends up at the head.
  for i = #back, 1, -1 do
    redis.call('LPUSH', KEYS[1], back[i])
  end
end
if #back > 0 then
  wake(ARGV[4])
end
return {#back, dead}
