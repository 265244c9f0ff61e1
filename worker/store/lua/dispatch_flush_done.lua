-- The dispatcher's `flush_done` (worker/store/dispatch.py): a claimed flush ended with the buffer empty.
-- ARGV: prefix, buffer ("tenant|kind"), the claim's time. Forgets the request unless it was asked again since (then
-- its time differs from the claim's). Returns 1 when forgotten.
local flushes = ARGV[1] .. ':dispatch:flushes'
local asked = redis.call('ZSCORE', flushes, ARGV[2])
if not asked or math.abs(tonumber(asked) - tonumber(ARGV[3])) > 0.001 then return 0 end
redis.call('ZREM', flushes, ARGV[2])
return 1
