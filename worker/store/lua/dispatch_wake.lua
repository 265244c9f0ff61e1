-- The dispatcher's `schedule_wake` (worker/store/dispatch.py): one delayed ticket for the moment something parked
-- or delayed may go. ARGV: prefix, now (epoch s), due (epoch s). Returns 1 when the caller is to publish it (no wake
-- is scheduled in the future at or before `due`), else 0. The mark lives until shortly after `due`, so a wake lost with a worker
-- is replaced by the next one asked for.
local key, now, due = ARGV[1] .. ':dispatch:wake', tonumber(ARGV[2]), tonumber(ARGV[3])
local scheduled = tonumber(redis.call('GET', key) or '0')
if scheduled > now and scheduled <= due then return 0 end
redis.call('SET', key, tostring(due), 'PX', math.ceil((math.max(due - now, 0) + 2) * 1000))
return 1
