-- room_settle.lua: tell admitted users their outcome, and close the room on sell-out.
--
-- KEYS[1] coupon:waiting:{C}  zset  user -> arrival score
-- KEYS[2] coupon:room:{C}     hash  user -> state
-- KEYS[3] coupon:holders:{C}  hash  user -> coupons held (see issue.lua)
-- ARGV[1] status channel   ARGV[2] 1 to close the room (sold out), else 0
-- ARGV[3..] user, outcome pairs
--
-- Returns how many waiting users were told their outcome by the closing (0 if
-- not closing). Closing drains the room at once: nobody waits for a coupon that
-- cannot come, and later arrivals are answered SOLD_OUT by room_join.lua. A
-- waiting user who already holds a coupon (their first request timed out at the
-- gateway after the issue script had decided) is told ISSUED, not SOLD_OUT.

for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('PUBLISH', ARGV[1], 'room ' .. ARGV[i] .. ' ' .. ARGV[i + 1])
end
if ARGV[2] ~= '1' then
  return 0
end
local waiting = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, user in ipairs(waiting) do
  local outcome = 'SOLD_OUT'
  if tonumber(redis.call('HGET', KEYS[3], user) or '0') > 0 then
    outcome = 'ISSUED'
  end
  redis.call('HSET', KEYS[2], user, outcome)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], ':closed', '1')
redis.call('PUBLISH', ARGV[1], 'room closed')
return #waiting
