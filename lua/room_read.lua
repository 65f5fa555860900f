-- room_read.lua: what the room told each user of a batch, and the request it issued
-- with: the read a user makes when the room pushes news. A closing room pushes to
-- everyone at once, so their reads arrive together; a single read is a batch of one.
-- It only reads.
--
-- KEYS[1] coupon:room:{C}           hash    user -> state; ':closed' -> the reason, once closed
-- KEYS[2] coupon:room-requests:{C}  hash    user -> request id
-- KEYS[3] coupon:holders:{C}        hash    user -> coupons held
-- ARGV[i] user i
--
-- Returns {state_1, request_1, closed, held_1, state_2, ...}, four per user (nil where
-- there is none): the stored state and request id, why the room closed (read once,
-- repeated for each), and the coupons the user holds. The caller turns them into what
-- the user is told (flows/waiting_room.told).

local closed = redis.call('HGET', KEYS[1], ':closed')
local answers = {}
for i = 1, #ARGV do
  answers[#answers + 1] = redis.call('HGET', KEYS[1], ARGV[i])
  answers[#answers + 1] = redis.call('HGET', KEYS[2], ARGV[i])
  answers[#answers + 1] = closed
  answers[#answers + 1] = redis.call('HGET', KEYS[3], ARGV[i])
end
return answers
