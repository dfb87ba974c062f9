-- Revoke one session (family): O(1).
-- KEYS: session key, sessions index; ARGV: session id.
-- Returns the session's value as it was (nil when there was none).
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
touch(KEYS[2])
return value
