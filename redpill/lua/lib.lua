-- Shared by every script: the loader (scripts.rs) puts this file before each one, so what
-- more than one script needs is written once.

-- unpack() of more than a few thousand values overflows Lua's C stack ("too many results to
-- unpack"), so commands with many arguments are called in chunks of this many (even, so
-- field-value pairs never straddle two chunks).
local CHUNK = 1000

-- Calls `command target list[first..last]` in chunks of CHUNK. Returns the sum of the chunks'
-- replies, or for RPUSH and LPUSH the last reply (the list's length).
local function call_chunked(command, target, list, first, last)
  if last - first + 1 <= CHUNK then
    return redis.call(command, target, unpack(list, first, last))
  end
  local total, reply = 0, 0
  for from = first, last, CHUNK do
    reply = redis.call(command, target, unpack(list, from, math.min(from + CHUNK - 1, last)))
    total = total + reply
  end
  if command == 'RPUSH' or command == 'LPUSH' then return reply end
  return total
end

-- Publishes a wake-up hint on `channel`. PUBLISH_COMMAND is put before this file by the
-- loader: SPUBLISH on a Redis Cluster (the channel hashes to the slot of the script's keys,
-- so the hint stays on that shard), PUBLISH on a single Redis.
local function wake(channel)
  redis.call(PUBLISH_COMMAND, channel, '1')
end

-- The server's clock, Unix ms.
local function now_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- A dead-letter record, as `queue::encode_dead_letter` makes it and `decode_dead_letter` reads:
-- "v1\n<id len>\n<error len>\n<attempts>\n<unix ms>\n" .. id .. error .. body
local function dead_letter_record(id, err, attempts, at_ms, body)
  return 'v1\n' .. #id .. '\n' .. #err .. '\n' .. attempts .. '\n' .. at_ms .. '\n' .. id .. err .. body
end

-- The id and the body of a dead-letter record.
local function dead_letter_parts(record)
  local fields, pos = {}, 1
  for f = 1, 5 do
    local nl = string.find(record, '\n', pos, true)
    fields[f] = string.sub(record, pos, nl - 1)
    pos = nl + 1
  end
  local id_len, err_len = tonumber(fields[2]), tonumber(fields[3])
  return string.sub(record, pos, pos + id_len - 1), string.sub(record, pos + id_len + err_len)
end

-- Queues the messages args[first..last] (id, body, id, body, ...) at the tail of the waiting
-- list, skipping every id whose body is still in the body hash: that message is pending
-- already (waiting, in flight or delayed), and queueing its id twice would deliver it twice.
-- This makes a repeated push of the same ids harmless. Returns how many were queued.
local function push_new(waiting, bodies, args, first, last)
  local ids = {}
  for i = first, last, 2 do
    if redis.call('HSETNX', bodies, args[i], args[i + 1]) == 1 then
      ids[#ids + 1] = args[i]
    end
  end
  if #ids > 0 then call_chunked('RPUSH', waiting, ids, 1, #ids) end
  return #ids
end

-- Delays the retry of `id` by the backoff of its failed attempts so far (`attempts`, this one
-- included): `base` ms doubled per attempt after the first, at most `cap` ms.
local function delay_retry(delayed, id, attempts, base, cap, now)
  redis.call('ZADD', delayed, now + math.min(base * 2 ^ (attempts - 1), cap), id)
end
