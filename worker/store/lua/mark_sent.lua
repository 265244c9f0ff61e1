-- The results store's `mark_sent` (worker/store/results.py).
-- KEYS: batch hash. ARGV: now, lease seconds, attempt. The holder of attempt ARGV[3] is about to send: record it,
-- and restart the lease from now so that it covers the whole request. Refused (0) when that attempt no longer
-- holds the batch (its lease expired and another worker took it over): then nothing may be sent.
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' or redis.call('HGET', KEYS[1], 'request') ~= ARGV[3] .. ':unsent'
then
  return 0
end
redis.call('HSET', KEYS[1], 'request', ARGV[3] .. ':sent',
           'lease_until', tostring(tonumber(ARGV[1]) + tonumber(ARGV[2])))
return 1
