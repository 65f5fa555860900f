-- room_admit.lua: take the next users out of the waiting room, each exactly once.
--
-- KEYS[1] coupon:waiting:{C}        zset  user -> arrival score
-- KEYS[2] coupon:room:{C}           hash  user -> state
-- KEYS[3] coupon:room-requests:{C}  hash  user -> request id
-- KEYS[4] coupon:admissions:{C}     list  recent batches 'at_ms:count', newest first
-- ARGV[1] how many to admit   ARGV[2] now in ms   ARGV[3] batches to remember
--
-- Returns {user, request id, score, ...} in arrival order. The users are
-- ADMITTED until room_settle.lua records their outcome; a crash in between
-- leaves them ADMITTED, where the admission job's recovery finds them.

local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local admitted = {}
for i = 1, #popped, 2 do
  local user = popped[i]
  redis.call('HSET', KEYS[2], user, 'ADMITTED')
  admitted[#admitted + 1] = user
  admitted[#admitted + 1] = redis.call('HGET', KEYS[3], user) or ''
  admitted[#admitted + 1] = popped[i + 1]
end
if #popped > 0 then
  redis.call('LPUSH', KEYS[4], ARGV[2] .. ':' .. (#popped / 2))
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[3]) - 1)
end
return admitted
