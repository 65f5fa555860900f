-- room_join.lua: put a user in the coupon's waiting room, at most once.
--
-- KEYS[1] coupon:waiting:{C}        zset    user -> arrival score
-- KEYS[2] coupon:room:{C}           hash    user -> WAITING | LEFT | ADMITTED | outcome told;
--                                           ':closed' -> the reason, once closed
-- KEYS[3] coupon:room-requests:{C}  hash    user -> request id; 'user#draw' -> pre-queue draw
-- KEYS[4] coupon:info:{C}           hash    the event (starts_at_ms, ends_at_ms)
-- KEYS[5] event:active:{C}          string  the event state
-- KEYS[6] coupon:stock:{C}          string  coupons left
-- KEYS[7] coupon:holders:{C}        hash    user -> coupons held
-- KEYS[8] coupon:request:{C}:{R}    hash    the request's record, if it was ever sent
-- ARGV[1] user id  ARGV[2] request id  ARGV[3] now in ms (caller's clock)
-- ARGV[4] shuffle: 0 .. 999999, a random draw by the caller, used before the start only
--
-- Returns {state, position, size}
--   state     WAITING (position = rank + 1); ADMITTED (being served now);
--             ISSUED / SOLD_OUT / DUPLICATE / NOT_ACTIVE: the answer, without joining
--             (a told outcome is kept; a sold-out or closed room answers ISSUED to a
--             user who holds a coupon, else SOLD_OUT or the reason it closed, also
--             to a user it closed on while they waited; an ended event NOT_ACTIVE);
--             UNKNOWN (no such event); CONFLICT (the request id is another user's)
-- Arrival scores are the caller's clock; equal scores fall back to the user id, so
-- the order is deterministic. A user already waiting keeps their place; one who
-- left and comes back goes to the back. Before the start, arrivals land in a
-- pre-queue below every on-time score, ordered by their first draw (kept, so
-- leaving and rejoining cannot reroll it): refreshing early gives no edge.

local info = redis.call('HMGET', KEYS[4], 'starts_at_ms', 'ends_at_ms')
if not info[1] then
  return {'UNKNOWN', 0, 0}
end
local size = redis.call('ZCARD', KEYS[1])
local owner = redis.call('HGET', KEYS[8], 'user')
if owner and owner ~= ARGV[1] then
  return {'CONFLICT', 0, size}
end
local state = redis.call('HGET', KEYS[2], ARGV[1])
local closed = redis.call('HGET', KEYS[2], ':closed')
if state == 'WAITING' and not closed then
  return {'WAITING', redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, size}
end
if state and state ~= 'LEFT' and state ~= 'WAITING' then
  return {state, 0, size}
end
local now = tonumber(ARGV[3])
local ends_at = tonumber(info[2])
if redis.call('GET', KEYS[5]) == 'ended' or (ends_at > 0 and now >= ends_at) then
  return {'NOT_ACTIVE', 0, size}
end
if closed or tonumber(redis.call('GET', KEYS[6]) or '0') <= 0 then
  if tonumber(redis.call('HGET', KEYS[7], ARGV[1]) or '0') > 0 then
    return {'ISSUED', 0, size}
  end
  return {closed or 'SOLD_OUT', 0, size}
end
local score = now
if now < tonumber(info[1]) then
  local draw = redis.call('HGET', KEYS[3], ARGV[1] .. '#draw')
  if not draw then
    draw = ARGV[4]
    redis.call('HSET', KEYS[3], ARGV[1] .. '#draw', draw)
  end
  score = tonumber(info[1]) - 1000000 + tonumber(draw)
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], 'WAITING')
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return {'WAITING', redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, size + 1}
