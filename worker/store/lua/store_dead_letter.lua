-- The results store's `store_dead_letter` (worker/store/results.py).
-- KEYS: dead-letter hash, its index, the documents metric. ARGV: id, entry JSON, time, metric field. An id
-- stored for the first time counts as a `dead` document (a repeated transaction does not count it again).
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.pcall('HINCRBY', KEYS[3], ARGV[4], 1)
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
