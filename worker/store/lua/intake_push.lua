-- The intake queue's push (worker/store/intake.py, IntakeQueue.push): ranges of one tenant and lane.
-- KEYS: the tenant's lane list, the ready zset, the clock, the backlog hash.
-- ARGV: tenant, lane, documents in the ranges, then the items ("job_id|start|end|lane|tenant").
-- Queues the items at the end of the list and counts them in the backlog. A tenant that had nothing waiting
-- enters the ready zset at the current virtual time (the clock: that of the last range taken), so it goes
-- next; one already there keeps its place (NX). Returns the number of items queued.
local n = #ARGV - 3
if n < 1 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], 'NX', redis.call('GET', KEYS[3]) or '0', ARGV[1])
local field = ARGV[1] .. '|' .. ARGV[2]
redis.call('HINCRBY', KEYS[4], 'items', n)
redis.call('HINCRBY', KEYS[4], field .. '|items', n)
redis.call('HINCRBY', KEYS[4], field .. '|docs', ARGV[3])
return n
