-- A tenant's rate limit: reserve the next paced turn (worker/store/ratelimit.py, RateLimiter.reserve).
-- KEYS: the stream's next-free-slot key. ARGV: interval (µs), longest wait the caller accepts (µs).
-- Returns {1, µs to wait before sending} (the slot is the caller's) or {0, µs until one could be had}.
-- include: rate_functions
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = next_turn(KEYS[1], now)
if slot - now > max_wait then return {0, string.format('%.0f', slot - now - max_wait)} end
reserve_turn(KEYS[1], slot, interval, now)
return {1, string.format('%.0f', slot - now)}
