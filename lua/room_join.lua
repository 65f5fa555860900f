-- room_join.lua: put a user in the coupon's waiting room, at most once.
--
-- KEYS[1] coupon:waiting:{C}        zset    user -> arrival score
-- KEYS[2] coupon:room:{C}           hash    user -> WAITING | LEFT | outcome told; ':closed'
-- KEYS[3] coupon:room-requests:{C}  hash    user -> request id to issue with on admission
-- KEYS[4] coupon:info:{C}           hash    the event (starts_at_ms)
-- ARGV[1] user id  ARGV[2] request id  ARGV[3] now in ms (caller's clock)
-- ARGV[4] shuffle: 0 .. 999999, a random draw by the caller, used before the start only
--
-- Returns {state, position, size}
--   state     WAITING, or SOLD_OUT (the room is closed: nobody joins), UNKNOWN (no
--             such event), or the outcome a user was already told (they keep it)
--   position  rank + 1 while WAITING, else 0
-- Arrival scores are the caller's clock; equal scores fall back to the user id,
-- so the order is deterministic. A user already waiting keeps their place. Before
-- the start, arrivals land in a pre-queue below every on-time score, in the order
-- of their shuffle draw: refreshing early gives no edge.

local starts_at = redis.call('HGET', KEYS[4], 'starts_at_ms')
if not starts_at then
  return {'UNKNOWN', 0, 0}
end
if redis.call('HEXISTS', KEYS[2], ':closed') == 1 then
  return {'SOLD_OUT', 0, redis.call('ZCARD', KEYS[1])}
end
local state = redis.call('HGET', KEYS[2], ARGV[1])
if state and state ~= 'WAITING' and state ~= 'LEFT' then
  return {state, 0, redis.call('ZCARD', KEYS[1])}
end
if state ~= 'WAITING' then
  local score = tonumber(ARGV[3])
  if score < tonumber(starts_at) then
    score = tonumber(starts_at) - 1000000 + tonumber(ARGV[4])
  end
  redis.call('ZADD', KEYS[1], score, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], 'WAITING')
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
end
return {'WAITING', redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, redis.call('ZCARD', KEYS[1])}
