-- The results store's `mark_created` (worker/store/results.py).
-- ARGV: dedup ttl, then (dedup key, value, known-Keys zset, Key) repeated: the duplicate index learns each
-- created document's Key, and the Key joins the tenant's known Keys (reconciliation's exclusions).
local known = {}
for i = 2, #ARGV, 4 do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ARGV[1])
  if ARGV[i + 2] ~= '' then
    redis.call('ZADD', ARGV[i + 2], ARGV[i + 3], ARGV[i + 3])
    known[ARGV[i + 2]] = true
  end
end
for zset in pairs(known) do redis.call('EXPIRE', zset, ARGV[1]) end
return 1
