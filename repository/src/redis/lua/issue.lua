-- Issue tokens of one subject.
-- KEYS: index, generation, token keys...
-- ARGV: expected generation ('' = do not check), then a (member, ttl ms,
--       value) triplet per token key.
-- Returns 'ok', 'superseded' or 'collision'; writes nothing unless 'ok'.
local idx, gen = KEYS[1], KEYS[2]
if ARGV[1] ~= '' then
  local current = redis.call('GET', gen) or '0'
  if current ~= ARGV[1] then
    return 'superseded'
  end
end
if any_exists(3) then
  return 'collision'
end
local now = now_ms()
prune(idx, now)
store(idx, 3, 2, now)
touch(idx)
return 'ok'
