-- issue.lua: the hardened issue decision, taken and recorded atomically.
--
-- KEYS[1] coupon:info:{C}        hash    event definition (per_user_limit, starts_at_ms, ends_at_ms)
-- KEYS[2] event:active:{C}       string  event state: pending | active | ended
-- KEYS[3] coupon:stock:{C}       string  coupons left
-- KEYS[4] coupon:holders:{C}     hash    user -> coupons the user holds, and user#n -> request
--                                        for each ordinal n in use (freed again by compensation)
-- KEYS[5] coupon:queue:{C}       stream  the issue queue, one entry per issued coupon
-- KEYS[6] coupon:request:{C}:{R} hash    this request's answer and status
-- ARGV[1] request id   ARGV[2] user id   ARGV[3] coupon id
-- ARGV[4] now in ms, from the caller's clock (never Redis TIME: simulations stay deterministic)
-- ARGV[5] lifetime of the request record in seconds
--
-- Returns {outcome, remaining, ordinal}
--   outcome    ISSUED | DUPLICATE | SOLD_OUT | NOT_ACTIVE | UNKNOWN | CONFLICT
--   remaining  stock left after this request, -1 when the stock was not looked at
--   ordinal    for ISSUED, the lowest free ordinal of the user's coupons (1 .. per_user_limit),
--              else 0; the database's unique (user, coupon, ordinal) relies on it being free
-- A request id seen before returns its first answer and changes nothing; CONFLICT
-- means the id was first used by another user. NOT_ACTIVE, UNKNOWN and CONFLICT
-- change nothing, so a request sent too early can be sent again. An ISSUED
-- record never expires while its coupon is in flight: the consumer sets the
-- lifetime when it writes the final status. Replays are answered for as long
-- as the record lives (ARGV[5] once final): that is the idempotency window.

local prior = redis.call('HMGET', KEYS[6], 'outcome', 'remaining', 'ordinal', 'user')
if prior[1] then
  if prior[4] ~= ARGV[2] then
    return {'CONFLICT', -1, 0}
  end
  return {prior[1], tonumber(prior[2]), tonumber(prior[3])}
end

local info = redis.call('HMGET', KEYS[1], 'per_user_limit', 'starts_at_ms', 'ends_at_ms')
if not info[1] then
  return {'UNKNOWN', -1, 0}
end
local now = tonumber(ARGV[4])
local ends_at = tonumber(info[3])
if redis.call('GET', KEYS[2]) ~= 'active' or now < tonumber(info[2])
    or (ends_at > 0 and now >= ends_at) then
  return {'NOT_ACTIVE', -1, 0}
end

local outcome = 'DUPLICATE'
local remaining = tonumber(redis.call('GET', KEYS[3]) or '0')
local ordinal = 0
local limit = tonumber(info[1])
if tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') < limit then
  if remaining <= 0 then
    outcome = 'SOLD_OUT'
  else
    for n = 1, limit do
      if redis.call('HEXISTS', KEYS[4], ARGV[2] .. '#' .. n) == 0 then
        ordinal = n
        break
      end
    end
  end
end
if ordinal > 0 then
  -- Redis keeps the writes a failing script made before it failed: the XADD,
  -- the one write that can fail on a damaged key, goes first.
  redis.call('XADD', KEYS[5], '*', 'request', ARGV[1], 'user', ARGV[2], 'coupon', ARGV[3],
             'ordinal', ordinal, 'issued_ms', ARGV[4])
  outcome = 'ISSUED'
  remaining = redis.call('DECR', KEYS[3])
  redis.call('HSET', KEYS[4], ARGV[2] .. '#' .. ordinal, ARGV[1])
  redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
end

redis.call('HSET', KEYS[6], 'outcome', outcome, 'remaining', remaining, 'ordinal', ordinal,
           'user', ARGV[2], 'at_ms', ARGV[4])
if outcome == 'ISSUED' then
  redis.call('HSET', KEYS[6], 'status', 'PROCESSING')
else
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
return {outcome, remaining, ordinal}
