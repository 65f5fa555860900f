-- unlock.lua: release a lock only if this holder still owns it (compare-and-delete).
--
-- KEYS[1] redeem:lock:{CODE}  string  the holder's token
-- ARGV[1] the token this holder set
-- Returns 1 when the lock was this holder's and is now gone, else 0: a lock that
-- expired and was taken by someone else is left to them (the seed's plain DEL
-- would delete it).

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
