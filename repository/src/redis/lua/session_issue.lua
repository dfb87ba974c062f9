-- Issue a new session (format 4; 3 and 2 are still read), evicting the subject's soonest-expiring
-- sessions beyond the cap. O(1) but for the bounded evictions.
-- KEYS: session key, sessions index, generation
-- ARGV: expected generation ('' = do not check), session id (16 bytes),
--       session value, ttl ms, session cap, session key prefix of the
--       subject, most evictions in this call
-- Returns {'ok', {evicted session ids}}, {'superseded'} or {'collision'};
-- writes nothing unless 'ok'.
local key, idx, gen = KEYS[1], KEYS[2], KEYS[3]
if ARGV[1] ~= '' then
  local current = redis.call('GET', gen) or '0'
  if current ~= ARGV[1] then
    return {'superseded', {}}
  end
end
if redis.call('EXISTS', key) == 1 then
  return {'collision', {}}
end
local now = now_ms()
prune(idx, now)
local cap, budget = tonumber(ARGV[5]), tonumber(ARGV[7])
local evicted = {}
local held = redis.call('ZCARD', idx)
while held >= cap and budget > 0 do
  local oldest = redis.call('ZPOPMIN', idx)
  if not oldest[1] then
    break
  end
  redis.call('DEL', ARGV[6] .. oldest[1])
  table.insert(evicted, oldest[1])
  held = held - 1
  budget = budget - 1
end
local expiry = ms(now + tonumber(ARGV[4]))
redis.call('SET', key, ARGV[3], 'PXAT', expiry)
redis.call('ZADD', idx, expiry, ARGV[2])
touch(idx)
return {'ok', evicted}
