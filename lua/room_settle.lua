-- room_settle.lua: tell admitted users their outcome, put back those who came too
-- early, and close the room when nothing more can be won.
--
-- KEYS[1] coupon:waiting:{C}  zset  user -> arrival score
-- KEYS[2] coupon:room:{C}     hash  user -> state
-- KEYS[3] coupon:holders:{C}  hash  user -> coupons held (see issue.lua)
-- ARGV[1] room channel   ARGV[2] '' to stay open, or the reason to close: SOLD_OUT
--         (the stock is gone) or NOT_ACTIVE (the event has ended)
-- ARGV[3..] user, outcome, score triples; outcome REQUEUE puts the user back in line
--         at their score (admitted before the event started)
--
-- Returns how many waiting users the closing told (0 if not closing). Closing
-- drains the room at once: a waiting user who already holds a coupon (their
-- first request timed out at the gateway after the issue script decided) is
-- told ISSUED; the others the reason. room_join.lua answers later arrivals.

for i = 3, #ARGV, 3 do
  if ARGV[i + 1] == 'REQUEUE' then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], 'WAITING')
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('PUBLISH', ARGV[1], 'room ' .. ARGV[i] .. ' ' .. ARGV[i + 1])
  end
end
if ARGV[2] == '' then
  return 0
end
local waiting = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, user in ipairs(waiting) do
  local outcome = ARGV[2]
  if tonumber(redis.call('HGET', KEYS[3], user) or '0') > 0 then
    outcome = 'ISSUED'
  end
  redis.call('HSET', KEYS[2], user, outcome)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], ':closed', ARGV[2])
redis.call('PUBLISH', ARGV[1], 'room closed ' .. ARGV[2])
return #waiting
