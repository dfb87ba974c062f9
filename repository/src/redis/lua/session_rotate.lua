-- Rotate a session's refresh token: O(1) check-and-set on the session key.
-- KEYS: session key, sessions index
-- ARGV: presented refresh token's truncated digest (16 bytes), new header
--       (57 bytes: version, access and refresh slots, issued-at), new
--       holder, ttl ms, how many used refresh tokens to remember, session
--       id, now by the writer's clock (ms; the stored expiries are by it)
-- Returns {'rotated', false}, {'reused', old value} (the session has been
-- revoked) or {'unknown', false}.
local key, idx = KEYS[1], KEYS[2]
local presented, remember, id = ARGV[1], tonumber(ARGV[5]), ARGV[6]
local value = redis.call('GET', key)
if not value or (string.byte(value, 1) ~= 2 and string.byte(value, 1) ~= 3) then
  return {'unknown', false}
end
local used = string.byte(value, 58)
if string.sub(value, 26, 41) == presented then
  if be_u64(value, 42) <= tonumber(ARGV[7]) then
    return {'unknown', false}
  end
  local kept = math.min(used, remember - 1)
  local next = ARGV[2] .. string.char(kept + 1) .. presented
    .. string.sub(value, 59, 58 + 16 * kept) .. ARGV[3]
  local now = now_ms()
  local expiry = ms(now + tonumber(ARGV[4]))
  redis.call('SET', key, next, 'PXAT', expiry)
  redis.call('ZADD', idx, expiry, id)
  touch(idx)
  return {'rotated', false}
end
for i = 0, used - 1 do
  if string.sub(value, 59 + 16 * i, 74 + 16 * i) == presented then
    redis.call('DEL', key)
    redis.call('ZREM', idx, id)
    touch(idx)
    return {'reused', value}
  end
end
return {'unknown', false}
