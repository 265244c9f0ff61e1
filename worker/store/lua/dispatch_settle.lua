-- The dispatcher's `settle` (worker/store/dispatch.py): a sender is done with a batch it was given, or with its slot.
-- ARGV: prefix, now (epoch s), the grant's token ('<batch id>#<suffix>', from dispatch_take), tenant, how ('slot': the
-- ERP answered, give the in-flight slot back and keep the batch; 'done': the batch is settled, or no longer ours;
-- 'delay': the batch comes back at `due`), due (epoch s), what a delayed batch waits for (kept in the batch's
-- `delayed_for` for operators). Only the grant's holder moves the batch: one whose lease ran out (the batch taken
-- back, perhaps handed to another sender) finds another token there and changes nothing.
-- Returns 1 when work may go now that could not before (a tenant waiting for a slot, a batch due already), else 0.
-- include: dispatch_functions
local p, now, token, t, how = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local P = p .. ':dispatch'
local id = string.match(token, '^(.*)#')
if not id then return 0 end
local bk = p .. ':batch:' .. id
local woke = 0
if redis.call('ZREM', p .. ':inflight:' .. t, token) == 1 then woke = slot_freed(P, t) end
if how == 'slot' or redis.call('HGET', bk, 'taken_by') ~= token then return woke end
redis.call('ZREM', P .. ':taken', id)
redis.call('HDEL', bk, 'taken_by')
local st, lane = unpack(redis.call('HMGET', bk, 'state', 'lane'))
if how == 'delay' and st and st ~= 'done' then
  local due = tonumber(ARGV[6])
  if due <= now then
    enqueue_batch(P, bk, id, t, lane or 'bulk', now, false)
    return 1
  end
  redis.call('ZADD', P .. ':delayed', due, id)
  redis.call('HSET', bk, 'queued_in', 'delayed', 'delayed_for', ARGV[7])
elseif st then
  redis.call('HDEL', bk, 'queued_in')
end
return woke
