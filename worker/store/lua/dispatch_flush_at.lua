-- The dispatcher's `flush_at` (worker/store/dispatch.py): a tenant's coalescing buffer is to be flushed at `due`.
-- ARGV: prefix, buffer ("tenant|kind"), due (epoch s). Keeps the earliest time asked for. Returns 1 when this call
-- brought it forward (or asked first), else 0 (a flush is due at or before then already).
local flushes = ARGV[1] .. ':dispatch:flushes'
local due = tonumber(ARGV[3])
local asked = redis.call('ZSCORE', flushes, ARGV[2])
if asked and tonumber(asked) <= due then return 0 end
redis.call('ZADD', flushes, due, ARGV[2])
return 1
