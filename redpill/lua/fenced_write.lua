-- Apply a list of writes only if the writer's lease grant still holds the lease.
--
-- KEYS[1]     holder key of the lease  P:{T}:lease:N
-- KEYS[2..]   the keys the writes touch (all under the lease's tag)
-- ARGV[1]     "<epoch> <owner>" of the writer's grant
-- ARGV[2..]   the writes, each as: command, index into KEYS, argument count, arguments...
--             Two pseudo-commands work on a consumer's in-flight list (key) and ids (arguments):
--             REQUIRE writes nothing but makes the whole batch fail unless every id is in the
--             list; UNHOLD removes the ids from the list, keeping the others in order.
--             ACK (key: the in-flight list; arguments: the KEYS indexes of the body and
--             attempts hashes, then ids) is REQUIRE, UNHOLD and HDEL of the ids from both
--             hashes in one, with each id passed once.
--             XADDS (key: a stream, arguments: a field name then values) appends one entry
--             per value, `XADD key * field value`, at the cost of one argument per entry.
--
-- Returns {1, reply of each write...} when applied (REQUIRE gives no reply). Returns
-- {0, holder or false} and writes nothing when the grant is stale: the lease expired or
-- another grant holds it. This is the fence that keeps a paused process that lost its lease
-- from writing anything. Returns {2, member} and writes nothing when a REQUIRE failed.

local allowed = {
  SET = true, DEL = true, HSET = true, HDEL = true, HINCRBY = true, HINCRBYFLOAT = true,
  RPUSH = true, LPUSH = true, LTRIM = true, XADD = true, ZADD = true, ZREM = true,
  SADD = true, SREM = true, INCRBY = true, PEXPIRE = true, PUBLISH = true,
}

-- unpack() of more than a few thousand values overflows Lua's C stack ("too many results to
-- unpack"), so writes with more arguments than this go in chunks: members of SADD, SREM, HDEL,
-- ZREM, values of RPUSH and LPUSH, field-value pairs of HSET. The reply is the sum of the
-- chunks' replies (the push commands: the last one, the list's length).
local CHUNK = 4000
local summed = { SADD = true, SREM = true, HDEL = true, ZREM = true, HSET = true }
local pushes = { RPUSH = true, LPUSH = true }

local function call_list(command, target, list, first, last)
  if last - first + 1 <= CHUNK then
    return redis.call(command, target, unpack(list, first, last))
  end
  local total, reply = 0, 0
  for from = first, last, CHUNK do
    reply = redis.call(command, target, unpack(list, from, math.min(from + CHUNK - 1, last)))
    total = total + reply
  end
  if pushes[command] then return reply end
  return total
end

local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  return {0, holder}
end

-- Validate everything before writing anything, so a bad write list changes nothing.
local writes = {}
local i = 2
while i <= #ARGV do
  local command = string.upper(ARGV[i])
  local key_index = tonumber(ARGV[i + 1])
  local argc = tonumber(ARGV[i + 2])
  if not allowed[command] and command ~= 'REQUIRE' and command ~= 'UNHOLD' and command ~= 'ACK' and command ~= 'XADDS' then
    return redis.error_reply('ERR fenced write: command not allowed: ' .. command)
  end
  if command ~= 'PUBLISH' and (key_index == nil or KEYS[key_index] == nil) then
    return redis.error_reply('ERR fenced write: bad key index for ' .. command)
  end
  if argc > CHUNK and allowed[command] and not summed[command] and not pushes[command] then
    return redis.error_reply('ERR fenced write: ' .. argc .. ' arguments are too many for ' .. command
      .. ' (at most ' .. CHUNK .. ')')
  end
  writes[#writes + 1] = {command, key_index, i + 3, argc}
  i = i + 3 + argc
end

-- The ids of a REQUIRE, UNHOLD or ACK write: ARGV[first..last].
local function id_range(write)
  if write[1] == 'ACK' then return write[3] + 2, write[3] + write[4] - 1 end
  return write[3], write[3] + write[4] - 1
end

local function members(write)
  local set = {}
  local first, last = id_range(write)
  for m = first, last do set[ARGV[m]] = true end
  return set
end

for _, write in ipairs(writes) do
  if write[1] == 'REQUIRE' or write[1] == 'ACK' then
    local first, last = id_range(write)
    if last >= first then
      local held = {}
      for _, id in ipairs(redis.call('LRANGE', KEYS[write[2]], 0, -1)) do held[id] = true end
      for m = first, last do
        if not held[ARGV[m]] then
          return {2, ARGV[m]}
        end
      end
    end
  end
end

local out = {1}
for _, write in ipairs(writes) do
  if write[1] == 'UNHOLD' or write[1] == 'ACK' then
    local drop, kept = members(write), {}
    for _, id in ipairs(redis.call('LRANGE', KEYS[write[2]], 0, -1)) do
      if not drop[id] then kept[#kept + 1] = id end
    end
    redis.call('DEL', KEYS[write[2]])
    if #kept > 0 then call_list('RPUSH', KEYS[write[2]], kept, 1, #kept) end
    local first, last = id_range(write)
    if write[1] == 'ACK' and last >= first then
      call_list('HDEL', KEYS[tonumber(ARGV[write[3]])], ARGV, first, last)
      call_list('HDEL', KEYS[tonumber(ARGV[write[3] + 1])], ARGV, first, last)
    end
  elseif write[1] == 'XADDS' then
    local field = ARGV[write[3]]
    for m = write[3] + 1, write[3] + write[4] - 1 do
      redis.call('XADD', KEYS[write[2]], '*', field, ARGV[m])
    end
    out[#out + 1] = write[4] - 1
  elseif write[1] ~= 'REQUIRE' then
  local command, key_index, first, argc = write[1], write[2], write[3], write[4]
  local target = KEYS[key_index]
  if command == 'PUBLISH' then target = ARGV[first]; first = first + 1; argc = argc - 1 end
  out[#out + 1] = call_list(command, target, ARGV, first, first + argc - 1)
  end
end
return out
