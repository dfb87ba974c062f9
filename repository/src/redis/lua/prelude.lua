-- Shared by every script of the token store (prepended by scripts.rs).
--
-- A subject's index (a sorted set) has one member per token:
--   family (16 bytes) .. kind (1 byte: a = access, r = refresh,
--   u = already-rotated refresh) .. digest (32 bytes)
-- scored by the token's expiry in milliseconds (Redis clock). Every key a
-- script touches carries the subject's hash tag, so all of them live in the
-- slot of KEYS[1], also on Redis Cluster.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integral milliseconds as text: never exponent notation.
local function ms(n)
  return string.format('%.0f', n)
end

local function family_of(member) return string.sub(member, 1, 16) end
local function kind_of(member) return string.sub(member, 17, 17) end
local function digest_of(member) return string.sub(member, 18) end

-- Drop entries whose tokens have expired (a key with PX is dead once the
-- clock passes its expiry; the same instant removes its entry).
local function prune(idx, now)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. ms(now))
end

-- The index lives exactly as long as its longest-lived entry.
local function touch(idx)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', idx, last[2])
  end
end

-- Whether `member` starts with `prefix` (a plain search: no substring is
-- allocated, which matters in the scans below).
local function starts_with(member, prefix)
  return string.find(member, prefix, 1, true) == 1
end

-- The member whose digest is `digest`, or nil. A scan: only for tokens
-- whose family is unknown (a retired or foreign refresh token).
local function find(idx, digest)
  local length = 17 + #digest
  for _, member in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if #member == length and string.find(member, digest, 18, true) == 18 then
      return member
    end
  end
  return nil
end

-- Removes every entry for which matches(member) holds, deleting the tokens
-- of live ones; returns how many tokens were deleted.
local function revoke_where(idx, token_prefix, matches)
  local revoked = 0
  for _, member in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if matches(member) then
      if kind_of(member) ~= 'u' then
        revoked = revoked + redis.call('DEL', token_prefix .. digest_of(member))
      end
      redis.call('ZREM', idx, member)
    end
  end
  return revoked
end

local function revoke_family(idx, token_prefix, family)
  return revoke_where(idx, token_prefix, function(member)
    return family_of(member) == family
  end)
end

-- Whether any of KEYS[first..] exists (one EXISTS for all of them).
local function any_exists(first)
  return redis.call('EXISTS', unpack(KEYS, first)) > 0
end

-- Stores the tokens KEYS[first_key..], whose (member, ttl ms, value)
-- triplets start at ARGV[first_arg], and indexes them. Each key expires at
-- now + ttl (PXAT) and its entry is scored by that same instant, so the
-- entry and its key go together.
local function store(idx, first_key, first_arg, now)
  for i = first_key, #KEYS do
    local a = first_arg + (i - first_key) * 3
    local member, ttl, value = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
    local expiry = ms(now + ttl)
    redis.call('SET', KEYS[i], value, 'PXAT', expiry, 'NX')
    redis.call('ZADD', idx, expiry, member)
  end
end
