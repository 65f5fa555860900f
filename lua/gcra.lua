-- gcra.lua: a rate limiter shared by every service instance (generic cell rate algorithm).
--
-- KEYS[1] ratelimit:{NAME}  string  the theoretical arrival time of the next request, in ms
-- ARGV[1] now in ms, from the caller's clock
-- ARGV[2] emission interval in ms (the period divided by the limit)
-- ARGV[3] burst: how many requests may come at once (the limit per period)
--
-- Returns {1, 0} when the request may go now, or {0, retry_after_ms}. One key,
-- one script: instances cannot race, and a refused request changes nothing.

local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then
  tat = now
end
local allow_at = tat + interval - tonumber(ARGV[3]) * interval
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], tostring(next_tat), 'PX', math.ceil(next_tat - now) + 1)
return {1, 0}
