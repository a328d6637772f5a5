-- Grant a lease to OWNER unless another owner holds it; every grant gets a new, larger epoch.
--
-- KEYS[1]  holder key     P:{T}:lease:N   value "<epoch> <owner>", with a TTL
-- KEYS[2]  epoch counter  P:{T}:lease:N:epoch
-- ARGV[1]  owner
-- ARGV[2]  TTL in milliseconds
--
-- Returns {1, epoch} when granted, or {0, "<epoch> <owner>", remaining ms} when another
-- owner holds it. An owner that asks again while holding it gets a fresh grant (new epoch),
-- which fences off anything still running under its old epoch.

local current = redis.call('GET', KEYS[1])
if current then
  local space = string.find(current, ' ', 1, true)
  if string.sub(current, space + 1) ~= ARGV[1] then
    return {0, current, redis.call('PTTL', KEYS[1])}
  end
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ' ' .. ARGV[1], 'PX', ARGV[2])
return {1, epoch}
