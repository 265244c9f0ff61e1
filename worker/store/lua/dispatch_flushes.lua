-- The dispatcher's `claim_flushes` (worker/store/dispatch.py): buffers whose flush is due, claimed by a sender.
-- ARGV: prefix, now (epoch s), how long a claim holds (s), how many at most. Each claimed flush stays asked for at
-- now + hold (so that one whose sender died is flushed then, by another), until the flush ends (`flush_done`) or
-- asks again. A buffer whose tenant has interactive batches queued already is not flushed yet: its documents (a
-- buffer holds small jobs' documents and files' remainders) could not go before those anyway, and waiting lets more
-- of them share a batch (under load, fewer and fuller requests); the tenant's hash remembers it (`flush:<kind>`),
-- and dispatch_take makes it due the moment the tenant's interactive lane empties. Queued bulk batches do not hold
-- a flush back: the buffer's documents go before them.
-- Returns the buffers claimed ("tenant|kind") and the claim's time.
-- include: dispatch_functions
local P, now, hold = ARGV[1] .. ':dispatch', tonumber(ARGV[2]), tonumber(ARGV[3])
local flushes = P .. ':flushes'
local claimed = {}
for _, buffer in ipairs(redis.call('ZRANGEBYSCORE', flushes, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))) do
  redis.call('ZADD', flushes, now + hold, buffer)
  local t, kind = string.match(buffer, '^(.*)|([^|]*)$')
  if t and redis.call('LLEN', lane_key(P, t, 'interactive')) > 0 then
    redis.call('HSET', tenant_key(P, t), 'flush:' .. kind, '1')
  else
    claimed[#claimed + 1] = buffer
  end
end
return {claimed, tostring(now + hold)}
