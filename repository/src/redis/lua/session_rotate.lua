-- Rotate a session's refresh token: O(1) check-and-set on the session key.
-- KEYS: session key, sessions index
-- ARGV: presented refresh token's truncated digest (16 bytes), new header
--       (format 4: version, access and refresh slots, issued-at), new
--       holder, ttl ms, how many used refresh tokens to remember, session
--       id, now by the writer's clock (ms; the stored expiries are by it)
-- Returns {'rotated', false}, {'reused', old value} (the session has been
-- revoked) or {'unknown', false}.
local key, idx = KEYS[1], KEYS[2]
local presented, remember, id = ARGV[1], tonumber(ARGV[5]), ARGV[6]
local value = redis.call('GET', key)
local at = session_layout(value)
if not at then
  return {'unknown', false}
end
local used = string.byte(value, at.used)
if string.sub(value, at.refresh, at.refresh + 15) == presented then
  if refresh_expiry(value, at) <= tonumber(ARGV[7]) then
    return {'unknown', false}
  end
  -- Written in format 4 whatever the format read: the used digests and the
  -- new holder are copied whole.
  local kept = math.min(used, remember - 1)
  local next = ARGV[2] .. string.char(kept + 1) .. presented
    .. string.sub(value, at.used + 1, at.used + 16 * kept) .. ARGV[3]
  local now = now_ms()
  local expiry = ms(now + tonumber(ARGV[4]))
  redis.call('SET', key, next, 'PXAT', expiry)
  if redis.call('ZADD', idx, expiry, id) == 1 then
    -- A new entry (the index was gone): its lifetime from its entries.
    touch(idx)
  else
    -- The entry's expiry only grew: the index lives until the later of
    -- its own expiry and this one (one call instead of a range read).
    redis.call('PEXPIREAT', idx, expiry, 'GT')
  end
  return {'rotated', false}
end
for i = 0, used - 1 do
  local from = at.used + 1 + 16 * i
  if string.sub(value, from, from + 15) == presented then
    redis.call('DEL', key)
    redis.call('ZREM', idx, id)
    touch(idx)
    return {'reused', value}
  end
end
return {'unknown', false}
