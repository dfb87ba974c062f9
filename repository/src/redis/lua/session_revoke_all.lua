-- Revoke every token of a subject (sessions, and format-1 tokens issued
-- before the bounded schema) and start a new revocation generation.
-- O(sessions), bounded by the session cap, plus the format-1 index.
-- KEYS: sessions index, generation, format-1 index
-- ARGV: session key prefix, new generation, its TTL ms, format-1 token key
--       prefix
-- Returns {values of the revoked sessions, format-1 tokens deleted}.
local values = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. id
  local value = redis.call('GET', key)
  if value then
    redis.call('DEL', key)
    table.insert(values, value)
  end
end
redis.call('DEL', KEYS[1])
local legacy = revoke_where(KEYS[3], ARGV[4], function() return true end)
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {values, legacy}
