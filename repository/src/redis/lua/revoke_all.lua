-- Revoke every token of a subject and start a new revocation generation.
-- KEYS: index, generation; ARGV: token key prefix, new generation, its TTL ms.
-- Returns the number of tokens deleted.
local revoked = revoke_where(KEYS[1], ARGV[1], function() return true end)
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return revoked
