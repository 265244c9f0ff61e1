-- The coalescing buffer's `push` (worker/store/buffer.py, CoalescingBuffer.push).
-- KEYS: buffer list, its bytes counter, the buffers set.
-- ARGV: prefix, "tenant|kind", ttl, now, then (job, position, external id, document JSON) repeated.
-- Pushes each position not assigned before (its job's `assigned` hash says "buffer" from now on) as an item
-- {t: pushed at, j: job, p: position, x: ExternalId, d: JSON}. Returns {pushed now, documents waiting, bytes waiting}.
local pushed = 0
for i = 5, #ARGV, 4 do
  local assigned = ARGV[1] .. ':job:' .. ARGV[i] .. ':assigned'
  if redis.call('HSETNX', assigned, ARGV[i + 1], 'buffer') == 1 then
    redis.call('EXPIRE', assigned, ARGV[3])
    redis.call('RPUSH', KEYS[1], cjson.encode({t = tonumber(ARGV[4]), j = ARGV[i], p = tonumber(ARGV[i + 1]),
                                                x = ARGV[i + 2], d = ARGV[i + 3]}))
    redis.call('INCRBY', KEYS[2], #ARGV[i + 3] + 1)
    pushed = pushed + 1
  end
end
redis.call('SADD', KEYS[3], ARGV[2])
return {pushed, redis.call('LLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
