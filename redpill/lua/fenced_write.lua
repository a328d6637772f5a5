-- Apply a list of writes only if the writer's lease grant still holds the lease.
--
-- KEYS[1]     holder key of the lease  P:{T}:lease:N
-- KEYS[2..]   the keys the writes touch (all under the lease's tag)
-- ARGV[1]     "<epoch> <owner>" of the writer's grant
-- ARGV[2..]   the writes, each as: command, index into KEYS, argument count, arguments...
--             (`FencedWrite` in lease.rs makes them; the commands are those of `allowed`).
--             Pseudo-commands on a queue, whose key is a consumer's in-flight list and whose
--             arguments start with the KEYS indexes of other keys of the queue, then ids:
--             ACK (the body and attempts hashes) requires every id to be held in the list,
--             removes it from the list (keeping the others in order) and from both hashes.
--             RETRY (the attempts hash and the delayed set, then the first backoff and the
--             longest, in ms) requires every id to be held, removes it from the list, counts
--             a failed attempt and delays it by its backoff, as queue_nack.lua does.
--             PUSH (key: the waiting list; arguments: the body hash's index, then id, body,
--             id, body, ...) queues the messages whose ids are not pending already (`push_new`,
--             as queue_push.lua does).
--             XADDS (key: a stream, arguments: a field name then values) appends one entry
--             per value, `XADD key * field value`, at the cost of one argument per entry.
--
-- Returns {1, reply of each write...} when applied. Returns {0, holder or false} and writes
-- nothing when the grant is stale: the lease expired or another grant holds it. This is the
-- fence that keeps a paused process that lost its lease from writing anything. Returns
-- {2, id} and writes nothing when an id to ACK or RETRY is not held (it was re-queued
-- meanwhile, this consumer having been taken for dead).

local allowed = {
  DEL = true, HSET = true, HDEL = true, RPUSH = true, LTRIM = true, SADD = true, SREM = true,
  PUBLISH = true, ACK = true, RETRY = true, PUSH = true, XADDS = true, ZADD = true,
}
-- Commands whose arguments are a list of any length, called in chunks (`call_chunked`).
local listed = { SADD = true, SREM = true, HDEL = true, HSET = true, RPUSH = true }
-- Pseudo-commands that take ids held by a consumer: where their ids start, after the indexes
-- and numbers that come first.
local held_from = { ACK = 2, RETRY = 4 }

local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  return {0, holder}
end

-- Validate everything before writing anything, so a bad write list changes nothing.
local writes = {}
local i = 2
while i <= #ARGV do
  local command = ARGV[i]
  local key_index = tonumber(ARGV[i + 1])
  local argc = tonumber(ARGV[i + 2])
  if not allowed[command] then
    return redis.error_reply('ERR fenced write: command not allowed: ' .. command)
  end
  if command ~= 'PUBLISH' and (key_index == nil or KEYS[key_index] == nil) then
    return redis.error_reply('ERR fenced write: bad key index for ' .. command)
  end
  if argc > CHUNK and not listed[command] and not held_from[command] and command ~= 'PUSH' and command ~= 'XADDS' then
    return redis.error_reply('ERR fenced write: ' .. argc .. ' arguments are too many for ' .. command
      .. ' (at most ' .. CHUNK .. ')')
  end
  writes[#writes + 1] = {command, key_index, i + 3, argc}
  i = i + 3 + argc
end

-- The ids of an ACK or RETRY write: ARGV[first..last].
local function id_range(write)
  return write[3] + held_from[write[1]], write[3] + write[4] - 1
end

-- Every id to ACK or RETRY must be held, or nothing is written. The usual batch settles the
-- head of its in-flight list in pull order: that is checked by reading only as many ids as
-- it names, compared in place, and later released with one LTRIM (`at_head`). Anything else
-- (ids out of order, or after a write that needed it) reads the whole list into a table.
-- `taken[key]`: the ids at the head of in-flight list `key` that earlier writes settle, or
-- false once one of them needed the whole list (the head then moves in ways not tracked).
local taken = {}
for _, write in ipairs(writes) do
  if held_from[write[1]] then
    local first, last = id_range(write)
    if last >= first then
      local key = KEYS[write[2]]
      local offset = taken[key]
      if offset == nil then offset = 0 end
      if offset then
        local head = redis.call('LRANGE', key, offset, offset + last - first)
        local at_head = #head == last - first + 1
        if at_head then
          for m = 1, #head do
            if head[m] ~= ARGV[first + m - 1] then
              at_head = false
              break
            end
          end
        end
        if at_head then
          write.at_head = true
          taken[key] = offset + #head
        end
      end
      if not write.at_head then
        taken[key] = false
        local held = {}
        for _, id in ipairs(redis.call('LRANGE', key, 0, -1)) do held[id] = true end
        for m = first, last do
          if not held[ARGV[m]] then
            return {2, ARGV[m]}
          end
        end
      end
    end
  end
end

-- Removes ARGV[first..last] from the in-flight list `key`, keeping the others in order.
local function unhold(key, first, last)
  local drop, kept = {}, {}
  for m = first, last do drop[ARGV[m]] = true end
  for _, id in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if not drop[id] then kept[#kept + 1] = id end
  end
  redis.call('DEL', key)
  if #kept > 0 then call_chunked('RPUSH', key, kept, 1, #kept) end
end

local out = {1}
for _, write in ipairs(writes) do
  local command, key_index, first, argc = write[1], write[2], write[3], write[4]
  local target = KEYS[key_index]
  if held_from[command] then
    local ids_from, last = id_range(write)
    if last >= ids_from then
      if write.at_head then
        -- Earlier writes on this list removed its head before this one: these ids lead now.
        redis.call('LTRIM', target, last - ids_from + 1, -1)
      else
        unhold(target, ids_from, last)
      end
      if command == 'ACK' then
        call_chunked('HDEL', KEYS[tonumber(ARGV[first])], ARGV, ids_from, last)
        -- Most queues have no failed attempt on record: then there is nothing to forget.
        local attempts_key = KEYS[tonumber(ARGV[first + 1])]
        if redis.call('EXISTS', attempts_key) == 1 then
          call_chunked('HDEL', attempts_key, ARGV, ids_from, last)
        end
      else
        local attempts_key, delayed = KEYS[tonumber(ARGV[first])], KEYS[tonumber(ARGV[first + 1])]
        local base, cap, now = tonumber(ARGV[first + 2]), tonumber(ARGV[first + 3]), now_ms()
        for m = ids_from, last do
          local attempts = redis.call('HINCRBY', attempts_key, ARGV[m], 1)
          delay_retry(delayed, ARGV[m], attempts, base, cap, now)
        end
      end
    end
    out[#out + 1] = math.max(last - ids_from + 1, 0)
  elseif command == 'PUSH' then
    out[#out + 1] = push_new(target, KEYS[tonumber(ARGV[first])], ARGV, first + 1, first + argc - 1)
  elseif command == 'XADDS' then
    local field = ARGV[first]
    for m = first + 1, first + argc - 1 do
      redis.call('XADD', target, '*', field, ARGV[m])
    end
    out[#out + 1] = argc - 1
  else
    if command == 'PUBLISH' then
      command = PUBLISH_COMMAND; target = ARGV[first]; first = first + 1; argc = argc - 1
    end
    if argc == 0 then
      out[#out + 1] = redis.call(command, target)
    else
      out[#out + 1] = call_chunked(command, target, ARGV, first, first + argc - 1)
    end
  end
end
return out
