-- finalize.lua: after the batch is committed to the database, make each
-- request's status final, acknowledge its queue entry and announce it, atomically.
--
-- KEYS[1]    coupon:queue:{C}        stream  the issue queue
-- KEYS[2..]  coupon:request:{C}:{R}  hash    one per entry, in the order of the entries in ARGV
-- ARGV[1] consumer group   ARGV[2] lifetime of the final record in seconds
-- ARGV[3] status channel
-- ARGV[4..] per entry, three values: entry id, coupon code, message to publish
--
-- Returns the number of entries acknowledged by this call (0 for a replay).
-- Status, acknowledgement and announcement cannot come apart: a consumer that
-- dies before this script leaves the entries pending, to be redelivered;
-- one that dies after it leaves nothing to do.

local acked = 0
for i = 2, #KEYS do
  local at = 4 + (i - 2) * 3
  redis.call('HSET', KEYS[i], 'status', 'COMPLETED', 'code', ARGV[at + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[at])
  redis.call('PUBLISH', ARGV[3], ARGV[at + 2])
end
return acked
