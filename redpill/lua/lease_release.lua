-- Give a lease up, only for the grant that holds it now.
--
-- KEYS[1]  holder key  P:{T}:lease:N
-- ARGV[1]  "<epoch> <owner>" of the grant
--
-- Returns 1 when released, 0 when the grant no longer held it.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
