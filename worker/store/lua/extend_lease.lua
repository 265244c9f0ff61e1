-- The results store's `extend_lease` (worker/store/results.py).
-- KEYS: batch hash. ARGV: now, lease seconds, attempt. The holder of attempt ARGV[3] is still at work (a look-up
-- paging through a busy day can outlast a lease): restart its lease. Refused (0) when that attempt no longer holds
-- the batch.
local request = redis.call('HGET', KEYS[1], 'request') or ''
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' or string.sub(request, 1, #ARGV[3] + 1) ~= ARGV[3] .. ':' then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_until', tostring(tonumber(ARGV[1]) + tonumber(ARGV[2])))
return 1
