-- Give messages back after a failure: retry after a backoff, or dead-letter on the last attempt.
--
-- KEYS[1]  in-flight list   P:{T}:q:N:fly:C
-- KEYS[2]  body hash        P:{T}:q:N:body
-- KEYS[3]  attempts hash    P:{T}:q:N:att
-- KEYS[4]  delayed zset     P:{T}:q:N:delay
-- KEYS[5]  dead-letter list P:{T}:q:N:dlq
-- ARGV[1]  max attempts
-- ARGV[2]  first backoff (ms); it doubles per failed attempt
-- ARGV[3]  longest backoff (ms)
-- ARGV[4]  error text, kept with a dead letter
-- ARGV[5], ...  ids
--
-- Returns {retried, dead_lettered}. Ids not in this consumer's in-flight set are skipped,
-- so a repeated nack does not count twice.

local max_attempts = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local err = ARGV[4]
local now = now_ms()

local retried, dead = 0, 0
for i = 5, #ARGV do
  local id = ARGV[i]
  if redis.call('LREM', KEYS[1], 1, id) == 1 then
    local attempts = redis.call('HINCRBY', KEYS[3], id, 1)
    if attempts >= max_attempts then
      local body = redis.call('HGET', KEYS[2], id) or ''
      redis.call('RPUSH', KEYS[5], dead_letter_record(id, err, attempts, now, body))
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      dead = dead + 1
    else
      delay_retry(KEYS[4], id, attempts, base, cap, now)
      retried = retried + 1
    end
  end
end
return {retried, dead}
