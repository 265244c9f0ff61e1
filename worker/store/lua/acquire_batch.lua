-- The results store's `acquire_batch` (worker/store/results.py).
-- KEYS: batch hash. ARGV: now (epoch s), lease seconds, sender id. Returns the outcome, the attempt or seconds to
-- wait, and the batch's fields as the call leaves them: one round trip where a send would otherwise read the batch
-- before and after acquiring it. The batch's `phase` (send or reconcile) is left alone: the holder of the lease
-- reads it in those fields.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing', '0', {}} end
local now = tonumber(ARGV[1])
local out = {'done', '0'}
if st == 'sending' then
  local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
  out = lease > now and {'busy', tostring(lease - now)} or {'expired', '0'}
elseif st ~= 'done' then
  redis.call('HSET', KEYS[1], 'state', 'sending', 'lease_until', tostring(now + tonumber(ARGV[2])), 'sender', ARGV[3])
  local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'request', attempt .. ':unsent')
  out = {'acquired', tostring(attempt)}
end
out[3] = redis.call('HGETALL', KEYS[1])
return out
