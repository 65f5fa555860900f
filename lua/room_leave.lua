-- room_leave.lua: a waiting user gives up their place.
--
-- KEYS[1] coupon:waiting:{C}  zset  user -> arrival score
-- KEYS[2] coupon:room:{C}     hash  user -> state
-- ARGV[1] user id
--
-- Returns 1 if the user was waiting and has left, 0 if not waiting (already
-- admitted, told, or never there): an admission racing the leave wins cleanly.

if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], 'LEFT')
return 1
