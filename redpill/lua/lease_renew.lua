-- Extend a lease, only for the grant that holds it now.
--
-- KEYS[1]  holder key  P:{T}:lease:N
-- ARGV[1]  "<epoch> <owner>" of the grant
-- ARGV[2]  TTL in milliseconds
--
-- Returns 1 when extended, 0 when the grant no longer holds the lease (expired or taken).

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
