-- The coalescing buffer's `make_batch` (worker/store/buffer.py, CoalescingBuffer.make_batch).
-- KEYS: open-batches set. ARGV: prefix, batch id, ttl, tenant, kind, target, high water, now ISO, members JSON,
-- external ids JSON, body, then (job, position) repeated. Stores the documents as one batch, as the flush does, if
-- none of them was assigned before: returns {'stored', n}; {'taken', i, ...} (0-based indexes of those assigned
-- already: nothing written; make_batch tries again without them); {'exists'} (made by an earlier run).
-- The caller encodes members, ids and body: building a 60 KB body in Lua cost Redis about 0.4 ms per batch, its
-- busiest script in scenario A (docs/benchmarks.md), where Python joins the same strings in a few microseconds.
-- include: store_batch
local bk = ARGV[1] .. ':batch:' .. ARGV[2]
if redis.call('EXISTS', bk) == 1 then return {'exists'} end
local taken = {'taken'}
for i = 12, #ARGV, 2 do
  if redis.call('HEXISTS', ARGV[1] .. ':job:' .. ARGV[i] .. ':assigned', ARGV[i + 1]) == 1 then
    taken[#taken + 1] = (i - 12) / 2
  end
end
if #taken > 1 then return taken end
local expiring = {}
for i = 12, #ARGV, 2 do
  local assigned = ARGV[1] .. ':job:' .. ARGV[i] .. ':assigned'
  redis.call('HSET', assigned, ARGV[i + 1], ARGV[2])
  if not expiring[assigned] then
    redis.call('EXPIRE', assigned, ARGV[3])
    expiring[assigned] = true
  end
end
local size = (#ARGV - 11) / 2
store_batch(bk, KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[9], ARGV[10], ARGV[11], size, ARGV[7],
            ARGV[8])
return {'stored', size}
