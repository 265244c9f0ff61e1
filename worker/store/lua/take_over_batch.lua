-- The results store's `take_over_batch` (worker/store/results.py).
-- KEYS: batch hash. ARGV: now (epoch s), lease seconds, sender id. A batch left `sending` by a worker whose lease
-- expired is taken over: a fresh lease and attempt for the caller, who is told whether the dead attempt may have
-- sent its request. `request` is "<attempt>:unsent" from the acquire on and "<attempt>:sent" from just before the
-- POST (_MARK_SENT); only an explicit "unsent" of the dead attempt proves nothing went out (a batch acquired by a
-- version that did not keep `request` counts as sent). Under one script, so of two workers finding the same dead
-- lease exactly one takes it over; the other finds it busy.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing', '0', '0'} end
if st ~= 'sending' then return {st == 'done' and 'done' or 'moved', '0', '0'} end
local now = tonumber(ARGV[1])
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if lease > now then return {'busy', tostring(lease - now), '0'} end
local dead = redis.call('HGET', KEYS[1], 'attempts') or '0'
local sent = '1'
if redis.call('HGET', KEYS[1], 'request') == dead .. ':unsent' then sent = '0' end
redis.call('HSET', KEYS[1], 'lease_until', tostring(now + tonumber(ARGV[2])), 'sender', ARGV[3])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'request', attempt .. ':unsent')
return {'taken over', tostring(attempt), sent}
