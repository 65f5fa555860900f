-- seed_decrement.lua: the seed design's stock decrement, as written.
--
-- KEYS[1] coupon:stock:{C}  string  coupons left
-- Returns the stock left after taking one, or -1 when none was left.
-- It is atomic on its own, but the seed calls it between a separate duplicate
-- check and a separate mark, so two requests of one user can both get here.

local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock <= 0 then
  return -1
end
return redis.call('DECR', KEYS[1])
