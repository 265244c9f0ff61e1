-- Shared functions (`-- include: rate_functions`) of a tenant's rate limit: rate_reserve.lua (a connector's turns,
-- worker/store/ratelimit.py) and dispatch_take.lua (the turn the dispatcher takes with a batch) pace the same key,
-- the tenant's next free turn in µs of Redis's clock (TIME), so that workers whose clocks disagree share one
-- timeline.

-- The tenant's next free turn: now, or later if a turn is reserved past now.
local function next_turn(key, now_us)
  return math.max(now_us, tonumber(redis.call('GET', key) or '0'))
end

-- Reserve the turn at `slot` (from next_turn): the next one is an interval later; the key outlives it by a second.
local function reserve_turn(key, slot, interval, now_us)
  redis.call('SET', key, string.format('%.0f', slot + interval),
             'PX', math.ceil((slot + interval - now_us) / 1000) + 1000)
end
