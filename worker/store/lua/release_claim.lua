-- The results store's `release_claim` (worker/store/results.py).
-- KEYS: dedup key. ARGV: expected claim value.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
