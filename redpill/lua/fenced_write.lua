-- Apply a list of writes only if the writer's lease grant still holds the lease.
--
-- KEYS[1]     holder key of the lease  P:{T}:lease:N
-- KEYS[2..]   the keys the writes touch (all under the lease's tag)
-- ARGV[1]     "<epoch> <owner>" of the writer's grant
-- ARGV[2..]   the writes, each as: command, index into KEYS, argument count, arguments...
--             The pseudo-command REQUIRE (key: a sorted set, arguments: members) writes
--             nothing; it makes the whole batch fail unless every member is in the set.
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
  if not allowed[command] and command ~= 'REQUIRE' then
    return redis.error_reply('ERR fenced write: command not allowed: ' .. command)
  end
  if command ~= 'PUBLISH' and (key_index == nil or KEYS[key_index] == nil) then
    return redis.error_reply('ERR fenced write: bad key index for ' .. command)
  end
  writes[#writes + 1] = {command, key_index, i + 3, argc}
  i = i + 3 + argc
end

for _, write in ipairs(writes) do
  if write[1] == 'REQUIRE' then
    for m = write[3], write[3] + write[4] - 1 do
      if not redis.call('ZSCORE', KEYS[write[2]], ARGV[m]) then
        return {2, ARGV[m]}
      end
    end
  end
end

local out = {1}
for _, write in ipairs(writes) do
  if write[1] ~= 'REQUIRE' then
  local command, key_index, first, argc = write[1], write[2], write[3], write[4]
  local target = KEYS[key_index]
  if command == 'PUBLISH' then target = ARGV[first]; first = first + 1; argc = argc - 1 end
  out[#out + 1] = redis.call(command, target, unpack(ARGV, first, first + argc - 1))
  end
end
return out
