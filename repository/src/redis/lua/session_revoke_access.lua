-- Revoke a session's current access token: O(1). A session without a
-- refresh token ends with it.
-- KEYS: session key, sessions index; ARGV: the token's truncated digest,
-- session id. Returns 1 when it was the current access token, else 0.
local key, idx = KEYS[1], KEYS[2]
local value = redis.call('GET', key)
local at = session_layout(value)
if not at or string.sub(value, 2, 17) ~= ARGV[1] then
  return 0
end
if refresh_expiry(value, at) == 0 then
  redis.call('DEL', key)
  redis.call('ZREM', idx, ARGV[2])
  touch(idx)
else
  -- The access slot (digest and expiry) zeroed, in the record's own format.
  redis.call('SET', key, string.sub(value, 1, 1) .. string.rep('\0', at.refresh - 2) .. string.sub(value, at.refresh), 'KEEPTTL')
end
return 1
