-- issue.lua: the hardened issue decision for a batch of requests, each taken and
-- recorded atomically, in the batch's order (a single request is a batch of one).
--
-- KEYS[1] coupon:info:{C}        hash    event definition (per_user_limit, starts_at_ms, ends_at_ms)
-- KEYS[2] event:active:{C}       string  event state: pending | active | ended
-- KEYS[3] coupon:stock:{C}       string  coupons left
-- KEYS[4] coupon:holders:{C}     hash    user -> coupons the user holds, and user#n -> request
--                                        for each ordinal n in use (freed again by compensation)
-- KEYS[5] coupon:queue:{C}       stream  the issue queue, one entry per issued coupon
-- KEYS[6] coupon:waiting:{C}     zset    the waiting room's line (only counted)
-- KEYS[6+i] coupon:request:{C}:{R_i}  hash  request i's answer and status
-- ARGV[1] coupon id   ARGV[2] lifetime of a request record in seconds
-- ARGV[4i-1], ARGV[4i], ARGV[4i+1], ARGV[4i+2]  request i's id, user id, the time it was
--   made in ms, from the caller's clock (never Redis TIME: simulations stay
--   deterministic), and '1' when it is to go behind anyone waiting in the room, else '0'
--
-- Returns {outcome_1, remaining_1, ordinal_1, outcome_2, ...}, three per request:
--   outcome    ISSUED | DUPLICATE | SOLD_OUT | NOT_ACTIVE | UNKNOWN | CONFLICT | WAITERS
--   remaining  stock left after this request, -1 when the stock was not looked at
--   ordinal    for ISSUED, the lowest free ordinal of the user's coupons (1 .. per_user_limit),
--              else 0; the database's unique (user, coupon, ordinal) relies on it being free
-- A request id seen before (in an earlier call or earlier in this batch) returns its
-- first answer and changes nothing; CONFLICT means the id was first used by another
-- user. NOT_ACTIVE, UNKNOWN and CONFLICT change nothing, so a request sent too early
-- can be sent again. WAITERS: the request was to go behind the room's line, and
-- someone waits in it; it is decided before anything else (replays included) and
-- changes nothing: the gateway sends the user to the back of the line. This is the
-- gateway's "others are waiting" check in the same call as the decision, so a press
-- costs one script call, and no one can join the line between the check and the
-- decision. An ISSUED record never expires while its coupon is in flight: the
-- consumer sets the lifetime when it writes the final status. Replays are answered for
-- as long as the record lives (ARGV[2] once final): that is the idempotency window.
-- What every request of the batch shares (the definition, the state, the stock, the
-- line's length) is read once; the stock is then carried along as the batch's own
-- decrements leave it (nothing here changes the line).

local info = redis.call('HMGET', KEYS[1], 'per_user_limit', 'starts_at_ms', 'ends_at_ms')
local active = redis.call('GET', KEYS[2]) == 'active'
local limit = tonumber(info[1])
local starts_at = tonumber(info[2])
local ends_at = tonumber(info[3])
local stock = nil
local waiting = nil
local coupon, lifetime = ARGV[1], ARGV[2]

local function decide(record, request, user, at_ms, behind)
  if behind == '1' then
    if waiting == nil then
      waiting = redis.call('ZCARD', KEYS[6])
    end
    if waiting > 0 then
      return 'WAITERS', -1, 0
    end
  end
  local prior = redis.call('HMGET', record, 'outcome', 'remaining', 'ordinal', 'user')
  if prior[1] then
    if prior[4] ~= user then
      return 'CONFLICT', -1, 0
    end
    return prior[1], tonumber(prior[2]), tonumber(prior[3])
  end
  if not info[1] then
    return 'UNKNOWN', -1, 0
  end
  local now = tonumber(at_ms)
  if not active or now < starts_at or (ends_at > 0 and now >= ends_at) then
    return 'NOT_ACTIVE', -1, 0
  end

  local outcome = 'DUPLICATE'
  if stock == nil then
    stock = tonumber(redis.call('GET', KEYS[3]) or '0')
  end
  local ordinal = 0
  if tonumber(redis.call('HGET', KEYS[4], user) or '0') < limit then
    if stock <= 0 then
      outcome = 'SOLD_OUT'
    else
      for n = 1, limit do
        if redis.call('HEXISTS', KEYS[4], user .. '#' .. n) == 0 then
          ordinal = n
          break
        end
      end
    end
  end
  if ordinal > 0 then
    -- Redis keeps the writes a failing script made before it failed: the XADD,
    -- the one write that can fail on a damaged key, goes first.
    redis.call('XADD', KEYS[5], '*', 'request', request, 'user', user, 'coupon', coupon,
               'ordinal', ordinal, 'issued_ms', at_ms)
    outcome = 'ISSUED'
    stock = redis.call('DECR', KEYS[3])
    redis.call('HSET', KEYS[4], user .. '#' .. ordinal, request)
    redis.call('HINCRBY', KEYS[4], user, 1)
  end

  if outcome == 'ISSUED' then
    redis.call('HSET', record, 'outcome', outcome, 'remaining', stock, 'ordinal', ordinal,
               'user', user, 'at_ms', at_ms, 'status', 'PROCESSING')
  else
    redis.call('HSET', record, 'outcome', outcome, 'remaining', stock, 'ordinal', ordinal,
               'user', user, 'at_ms', at_ms)
    redis.call('EXPIRE', record, lifetime)
  end
  return outcome, stock, ordinal
end

local answers = {}
for i = 1, #KEYS - 6 do
  local at = 4 * i - 1
  local outcome, remaining, ordinal = decide(KEYS[6 + i], ARGV[at], ARGV[at + 1],
                                             ARGV[at + 2], ARGV[at + 3])
  answers[#answers + 1] = outcome
  answers[#answers + 1] = remaining
  answers[#answers + 1] = ordinal
end
return answers
