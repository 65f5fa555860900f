-- warmup.lua: define a coupon event and load its stock, at most until it starts.
--
-- KEYS[1] coupon:info:{C}   hash    event definition
-- KEYS[2] event:active:{C}  string  event state: pending | active | ended
-- KEYS[3] coupon:stock:{C}  string  coupons left
-- KEYS[4] coupon:queue:{C}  stream  the issue queue, created with its consumer group
-- ARGV[1] initial stock
-- ARGV[2] consumer group name
-- ARGV[3..] field, value pairs of the event definition
--
-- Returns WARMED (first time), REWARMED (the event was still pending and
-- nothing was issued: its definition and stock are replaced) or STARTED (the
-- event is active or ended, or its queue holds entries even though its state
-- key is gone: nothing changes). A scheduler that runs the warm-up again
-- mid-event therefore never resets the stock, which is how the seed's plain
-- SET oversells.

local state = redis.call('GET', KEYS[2])
if state == 'active' or state == 'ended' or redis.call('XLEN', KEYS[4]) > 0 then
  return 'STARTED'
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SET', KEYS[2], 'pending')
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[4], ARGV[2], '0', 'MKSTREAM')
end
if state then
  return 'REWARMED'
end
return 'WARMED'
