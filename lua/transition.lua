-- transition.lua: move an event to another state, only from the states allowed.
--
-- KEYS[1] coupon:info:{C}   hash    event definition (its existence means "warmed up")
-- KEYS[2] event:active:{C}  string  event state: pending | active | ended
-- ARGV[1] the target state
-- ARGV[2..] the states it may be entered from
--
-- Returns {verdict, state before}
--   verdict  CHANGED | UNCHANGED (already there) | REFUSED (not allowed from here) | UNKNOWN

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'UNKNOWN', ''}
end
local state = redis.call('GET', KEYS[2]) or ''
if state == ARGV[1] then
  return {'UNCHANGED', state}
end
for i = 2, #ARGV do
  if ARGV[i] == state then
    redis.call('SET', KEYS[2], ARGV[1])
    return {'CHANGED', state}
  end
end
return {'REFUSED', state}
