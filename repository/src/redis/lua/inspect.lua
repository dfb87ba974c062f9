-- What a presented refresh token is.
-- KEYS: index, token key
-- ARGV: token key prefix of the subject, digest
-- Returns {'live', record}, {'reused', revoked count} (the family has been
-- revoked) or {'unknown', 0}.
local idx, key = KEYS[1], KEYS[2]
local token_prefix, digest = ARGV[1], ARGV[2]
local record = redis.call('GET', key)
if record then
  return {'live', record}
end
prune(idx, now_ms())
local member = find(idx, digest)
local result = {'unknown', 0}
if member and kind_of(member) == 'u' then
  result = {'reused', revoke_family(idx, token_prefix, family_of(member))}
end
touch(idx)
return result
