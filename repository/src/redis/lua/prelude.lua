-- Shared by every script of the token store (prepended by scripts.rs).
--
-- Sessions (format 3, or 2 written before audiences, the session_*.lua scripts): one key per session
-- holding its record (codec.rs documents the header they slice), and a
-- per-subject index `sidx` of session ids scored by the session key's
-- expiry. The format-1 index below is only read and emptied now.
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

-- The big-endian unsigned integer of the 8 bytes of `s` at position `at`
-- (1-based), as a Lua number (exact below 2^53: millisecond timestamps).
local function be_u64(s, at)
  local n = 0
  for i = at, at + 7 do
    n = n * 256 + string.byte(s, i)
  end
  return n
end
