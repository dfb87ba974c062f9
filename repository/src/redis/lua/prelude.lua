-- Shared by every script of the token store (prepended by scripts.rs).
--
-- Sessions (format 4, or 3 and 2 written by earlier versions, the session_*.lua scripts): one key per session
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

-- The big-endian unsigned integer of the `n` bytes of `s` at position `at`
-- (1-based), as a Lua number (exact below 2^53: millisecond timestamps).
local function be_uint(s, at, n)
  local v = 0
  for i = at, at + n - 1 do
    v = v * 256 + string.byte(s, i)
  end
  return v
end

-- Where a session record keeps its fields (1-based; codec.rs documents the
-- formats): format 4 stores its three times in 6 bytes, formats 3 and 2 in
-- 8. `time`: bytes per time; `refresh`: the refresh token's digest (its
-- expiry follows it); `used`: the count of remembered rotated refresh
-- tokens (their digests follow it). nil for anything else.
local function session_layout(value)
  local version = value and string.byte(value, 1)
  if version == 4 then
    return {time = 6, refresh = 24, used = 52}
  elseif version == 3 or version == 2 then
    return {time = 8, refresh = 26, used = 58}
  end
  return nil
end

-- The session's refresh token expiry (0: it has none).
local function refresh_expiry(value, at)
  return be_uint(value, at.refresh + 16, at.time)
end
