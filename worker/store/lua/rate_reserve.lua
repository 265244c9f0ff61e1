-- A tenant's rate limit: reserve the next paced turn (worker/store/ratelimit.py, RateLimiter.reserve).
-- KEYS: the stream's next-free-slot key. ARGV: interval (µs), longest wait the caller accepts (µs).
-- Returns {1, µs to wait before sending} (the slot is the caller's) or {0, µs until one could be had}.
-- Reads Redis's own clock (TIME), so workers whose clocks disagree share one timeline.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
if slot - now > max_wait then return {0, string.format('%.0f', slot - now - max_wait)} end
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval),
           'PX', math.ceil((slot + interval - now) / 1000) + 1000)
return {1, string.format('%.0f', slot - now)}
