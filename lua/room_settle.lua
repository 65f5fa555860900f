-- room_settle.lua: tell admitted users their outcome, put back those who came too
-- early, and close the room when nothing more can be won.
--
-- KEYS[1] coupon:waiting:{C}  zset  user -> arrival score
-- KEYS[2] coupon:room:{C}     hash  user -> state
-- ARGV[1] room channel   ARGV[2] '' to stay open, or the reason to close: SOLD_OUT
--         (the stock is gone) or NOT_ACTIVE (the event has ended)
-- ARGV[3..] user, outcome, score triples; outcome REQUEUE puts the user back in line
--         at their score (admitted before the event started)
--
-- Returns how many users were still waiting when the room closed (0 if not
-- closing). Closing is O(1) for Redis's main thread, whatever the crowd: it marks
-- the room closed, UNLINKs the line (freed in the background) and publishes once.
-- A user still marked WAITING in a closed room has their answer: ISSUED if they
-- hold a coupon (their first request timed out at the gateway after the issue
-- script decided), else the reason; room_join.lua and the room's read flows
-- resolve it. (Telling each waiting user in a loop blocked Redis 0.36 s per
-- 100,000 waiters here.)

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
local waiting = redis.call('ZCARD', KEYS[1])
redis.call('UNLINK', KEYS[1])
redis.call('HSET', KEYS[2], ':closed', ARGV[2])
redis.call('PUBLISH', ARGV[1], 'room closed ' .. ARGV[2])
return waiting
