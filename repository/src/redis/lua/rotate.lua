-- Retire a live refresh token and store the next pair of its family.
-- KEYS: index, old token key, new token keys...
-- ARGV: token key prefix of the subject, old digest, family, how many used
--       refresh tokens to remember per family, then (member, ttl ms, value)
--       triplets for the new keys.
-- Returns {'rotated', 0}, {'reused', revoked count}, {'unknown', 0},
-- {'mismatch', 0} (new pair of another family) or {'collision', 0}.
local idx, old = KEYS[1], KEYS[2]
local token_prefix, digest, family = ARGV[1], ARGV[2], ARGV[3]
local remember = tonumber(ARGV[4])
local now = now_ms()
prune(idx, now)
-- A live refresh token of the family named by its record is found by its
-- exact member; anything else (retired, expired, another family) by a scan.
local member = family .. 'r' .. digest
if not redis.call('ZSCORE', idx, member) then
  member = find(idx, digest)
  if not member then
    touch(idx)
    return {'unknown', 0}
  end
end
local own_family = family_of(member)
if kind_of(member) == 'u' then
  local revoked = revoke_family(idx, token_prefix, own_family)
  touch(idx)
  return {'reused', revoked}
end
local old_expiry = redis.call('PEXPIRETIME', old)
if old_expiry <= 0 then
  touch(idx)
  return {'unknown', 0}
end
if own_family ~= family then
  return {'mismatch', 0}
end
if any_exists(3) then
  return {'collision', 0}
end
redis.call('DEL', old)
redis.call('ZREM', idx, member)
-- The family's used tokens, ascending by score: the oldest first.
local used, newest = {}, 0
local used_prefix = own_family .. 'u'
local entries = redis.call('ZRANGE', idx, 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local m = entries[i]
  if starts_with(m, used_prefix) then
    table.insert(used, m)
    newest = tonumber(entries[i + 1])
  end
end
-- Scored by the retired token's expiry, but always after the family's
-- previous used tokens, so that trimming drops the oldest rotations.
local score = math.max(old_expiry, newest + 1)
redis.call('ZADD', idx, ms(score), own_family .. 'u' .. digest)
table.insert(used, own_family .. 'u' .. digest)
for i = 1, #used - remember do
  redis.call('ZREM', idx, used[i])
end
store(idx, 3, 5, now)
touch(idx)
return {'rotated', 0}
