-- The results store's `count_batch` (worker/store/results.py).
-- KEYS: batch hash. ARGV: metric increments (worker/store/counters.py, lua_args), applied unless the batch is done
-- already: a transaction repeated because its answer was lost does not count the batch twice.
-- include: apply_metrics
if redis.call('HGET', KEYS[1], 'state') == 'done' then return 0 end
apply_metrics(ARGV, 1)
return 1
