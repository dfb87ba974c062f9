-- Revoke a session's current access token: O(1). A session without a
-- refresh token ends with it.
-- KEYS: session key, sessions index; ARGV: the token's truncated digest,
-- session id. Returns 1 when it was the current access token, else 0.
local key, idx = KEYS[1], KEYS[2]
local value = redis.call('GET', key)
if not value or (string.byte(value, 1) ~= 2 and string.byte(value, 1) ~= 3) or string.sub(value, 2, 17) ~= ARGV[1] then
  return 0
end
if be_u64(value, 42) == 0 then
  redis.call('DEL', key)
  redis.call('ZREM', idx, ARGV[2])
  touch(idx)
else
  redis.call('SET', key, string.sub(value, 1, 1) .. string.rep('\0', 24) .. string.sub(value, 26), 'KEEPTTL')
end
return 1
