-- compensate.lua: give back the stock of a queue entry that will never be
-- persisted, tell its user, and move it to the dead-letter stream, exactly once.
--
-- KEYS[1] coupon:stock:{C}        string  coupons left
-- KEYS[2] coupon:holders:{C}      hash    user -> coupons held, user#n -> request
-- KEYS[3] coupon:queue:{C}        stream  the issue queue
-- KEYS[4] coupon:dead:{C}         stream  dead letters
-- KEYS[5] coupon:request:{C}:{R}  hash    the request's answer and status
-- ARGV[1] consumer group  ARGV[2] entry id  ARGV[3] user id ('' if unknown)
-- ARGV[4] ordinal (0 if unknown)  ARGV[5] request id ('' if unknown)  ARGV[6] reason
-- ARGV[7] lifetime of the final record in seconds  ARGV[8] status channel
-- ARGV[9] message to publish  ARGV[10] now in ms, from the caller's clock
-- ARGV[11] 1 to give the stock unit back, 0 for an entry that never took one
--          (a malformed entry the issue script did not write: only dead-lettered)
--
-- Returns COMPENSATED, or ALREADY when the entry was no longer pending (a
-- replay): the acknowledgement is the guard that makes it happen once.

if redis.call('XACK', KEYS[3], ARGV[1], ARGV[2]) == 0 then
  return 'ALREADY'
end
if ARGV[11] == '1' then
  redis.call('INCR', KEYS[1])
end
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[3] .. '#' .. ARGV[4])
  if redis.call('HINCRBY', KEYS[2], ARGV[3], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[3])
  end
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[5], 'status', 'FAILED', 'reason', ARGV[6])
  redis.call('EXPIRE', KEYS[5], ARGV[7])
  redis.call('PUBLISH', ARGV[8], ARGV[9])
end
redis.call('XADD', KEYS[4], '*', 'entry', ARGV[2], 'request', ARGV[5], 'user', ARGV[3],
           'reason', ARGV[6], 'at_ms', ARGV[10])
return 'COMPENSATED'
