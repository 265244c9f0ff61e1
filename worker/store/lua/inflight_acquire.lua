-- A tenant's cap on requests in flight: one try to take a slot (worker/store/inflight.py, InflightLimiter.try_acquire).
-- KEYS: the tenant's zset. ARGV: now (epoch s), holder, limit (> 0), lease seconds, expiry slack (ms).
-- Sweeps expired leases, then refreshes the holder's lease or adds it if a slot is free. Returns {1, '0'} when
-- acquired (newly or by refreshing the holder's own lease), otherwise {0, seconds until the earliest lease ends}
-- (as a string: Lua numbers become integers on the way out).
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(first[2]) - now)}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local ms = math.ceil((tonumber(last[2]) - now) * 1000) + tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[1], string.format('%d', ms))
return {1, '0'}
