-- Revoke one access token.
-- KEYS: index, token key; ARGV: its index member.
-- Returns the number of tokens deleted (0 or 1).
local revoked = redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
touch(KEYS[1])
return revoked
