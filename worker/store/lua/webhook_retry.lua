-- Webhooks' `failed` (worker/store/webhooks.py, WebhookStore.failed).
-- KEYS: the due zset, the given-up zset, the delivery's hash. ARGV: delivery id, now, when it is due again ('' gives
-- it up), attempts made, the last error, the last HTTP status ('' for none), how long a given-up delivery is kept
-- (seconds), how many are kept at most, then metric increments (worker/store/counters.py, lua_args).
-- A delivery whose hash is gone was delivered meanwhile (by a sender that took it over after its lease): nothing
-- is recorded. Returns 1 when recorded, else 0.
-- include: apply_metrics
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'attempts', ARGV[4], 'last_error', ARGV[5], 'last_status', ARGV[6], 'last_attempt', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[3], 'failed_at', ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[7]))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[8]) + 1))
end
apply_metrics(ARGV, 9)
return 1
