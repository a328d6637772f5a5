-- Read a hash and the newest element of a list beside it, in one atomic step, so the reader
-- sees both as the last script that wrote them left them (two pipelined commands could have
-- a write between them).
--
-- KEYS[1]  the hash
-- KEYS[2]  the list (same slot)
--
-- Returns {HGETALL of the hash (flat: field, value, ...), the list's last element or nil}.

return {redis.call('HGETALL', KEYS[1]), redis.call('LINDEX', KEYS[2], -1)}
