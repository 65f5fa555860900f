-- room_join.lua: put users in the coupon's waiting room, each at most once, for a batch
-- of joins taken in their order (a single join is a batch of one).
--
-- KEYS[1] coupon:waiting:{C}        zset    user -> arrival score
-- KEYS[2] coupon:room:{C}           hash    user -> WAITING | LEFT | ADMITTED | outcome told;
--                                           ':closed' -> the reason, once closed
-- KEYS[3] coupon:room-requests:{C}  hash    user -> request id; 'user#draw' -> pre-queue draw
-- KEYS[4] coupon:info:{C}           hash    the event (starts_at_ms, ends_at_ms)
-- KEYS[5] event:active:{C}          string  the event state
-- KEYS[6] coupon:stock:{C}          string  coupons left
-- KEYS[7] coupon:holders:{C}        hash    user -> coupons held
-- KEYS[7+i] coupon:request:{C}:{R_i} hash  join i's request record, if it was ever sent
-- ARGV[4i-3] join i's user id  ARGV[4i-2] its request id  ARGV[4i-1] now in ms (caller's
--   clock)  ARGV[4i] shuffle: 0 .. 999999, a random draw by the caller, used before the
--   start only
--
-- Returns {state_1, position_1, size_1, state_2, ...}, three per join:
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
-- What every join of the batch shares (the event, its state, the stock, whether the
-- room closed, the room's size) is read once and carried along.

local info = redis.call('HMGET', KEYS[4], 'starts_at_ms', 'ends_at_ms')
local size = nil
local closed = nil
local ended = nil
local stock = nil

local function join(record, user, request, at_ms, shuffle)
  if not info[1] then
    return 'UNKNOWN', 0, 0
  end
  if size == nil then
    size = redis.call('ZCARD', KEYS[1])
    closed = redis.call('HGET', KEYS[2], ':closed')
  end
  local owner = redis.call('HGET', record, 'user')
  if owner and owner ~= user then
    return 'CONFLICT', 0, size
  end
  local state = redis.call('HGET', KEYS[2], user)
  if state == 'WAITING' and not closed then
    return 'WAITING', redis.call('ZRANK', KEYS[1], user) + 1, size
  end
  if state and state ~= 'LEFT' and state ~= 'WAITING' then
    return state, 0, size
  end
  local now = tonumber(at_ms)
  local ends_at = tonumber(info[2])
  if ended == nil then
    ended = redis.call('GET', KEYS[5]) == 'ended'
  end
  if ended or (ends_at > 0 and now >= ends_at) then
    return 'NOT_ACTIVE', 0, size
  end
  if stock == nil and not closed then
    stock = tonumber(redis.call('GET', KEYS[6]) or '0')
  end
  if closed or stock <= 0 then
    if tonumber(redis.call('HGET', KEYS[7], user) or '0') > 0 then
      return 'ISSUED', 0, size
    end
    return closed or 'SOLD_OUT', 0, size
  end
  local score = now
  if now < tonumber(info[1]) then
    local draw = redis.call('HGET', KEYS[3], user .. '#draw')
    if not draw then
      draw = shuffle
      redis.call('HSET', KEYS[3], user .. '#draw', draw)
    end
    score = tonumber(info[1]) - 1000000 + tonumber(draw)
  end
  local before = size
  size = size + redis.call('ZADD', KEYS[1], score, user)
  redis.call('HSET', KEYS[2], user, 'WAITING')
  redis.call('HSET', KEYS[3], user, request)
  return 'WAITING', redis.call('ZRANK', KEYS[1], user) + 1, before + 1
end

local answers = {}
for i = 1, #KEYS - 7 do
  local state, position, joined = join(KEYS[7 + i], ARGV[4 * i - 3], ARGV[4 * i - 2],
                                       ARGV[4 * i - 1], ARGV[4 * i])
  answers[#answers + 1] = state
  answers[#answers + 1] = position
  answers[#answers + 1] = joined
end
return answers
