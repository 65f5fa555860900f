-- gcra.lua: a rate limiter shared by every service instance (generic cell rate algorithm),
-- for a batch of requests decided in their order (a single request is a batch of one).
--
-- KEYS[1] ratelimit:{NAME}  string  the theoretical arrival time of the next request, in ms
-- ARGV[1] emission interval in ms (the period divided by the limit)
-- ARGV[2] burst: how many requests may come at once (the limit per period)
-- ARGV[2+i] request i's time in ms, from the caller's clock
--
-- Returns {allowed_1, retry_after_ms_1, allowed_2, ...}: {1, 0} when request i may go
-- now, or {0, retry_after_ms}. One key, one script: instances cannot race, and a
-- refused request changes nothing. The key is read once and written once per batch,
-- with what the last request let through left it.

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored)
local written_at = nil
local answers = {}
for i = 3, #ARGV do
  local now = tonumber(ARGV[i])
  local current = tat or now
  if current < now then
    current = now
  end
  local allow_at = current + interval - burst * interval
  if now < allow_at then
    answers[#answers + 1] = 0
    answers[#answers + 1] = math.ceil(allow_at - now)
  else
    tat = current + interval
    written_at = now
    answers[#answers + 1] = 1
    answers[#answers + 1] = 0
  end
end
if written_at then
  redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - written_at) + 1)
end
return answers
