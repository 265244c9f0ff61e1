-- The dispatcher's `issue_tickets` (worker/store/dispatch.py): which of the offered send tickets to publish.
-- KEYS: the send queue's list (kombu's, on the same Redis). ARGV: prefix, now (epoch s), most tickets at once, ticket
-- ids offered. A ticket is a send_next message: it serves whatever tenant's batch is due (tickets name no batch).
-- Tickets are counted where they are: waiting in the send queue (its length: what a dead worker held is not there)
-- and running (dispatch_take registers a running ticket until a while after its last take). As many of the offered
-- ones are issued as there is room for, and only while some batch or buffer flush is queued or due. Returns those
-- issued.
local P, now = ARGV[1] .. ':dispatch', tonumber(ARGV[2])
local tickets = P .. ':tickets'
redis.call('ZREMRANGEBYSCORE', tickets, '-inf', now)
local room = tonumber(ARGV[3]) - redis.call('ZCARD', tickets) - redis.call('LLEN', KEYS[1])
if room <= 0 then return {} end
local work = redis.call('ZCARD', P .. ':ready') > 0
if not work then
  for _, z in ipairs({'parked', 'delayed', 'taken', 'flushes'}) do
    if #redis.call('ZRANGEBYSCORE', P .. ':' .. z, '-inf', now, 'LIMIT', 0, 1) > 0 then work = true; break end
  end
end
if not work then return {} end
local issued = {}
for i = 4, math.min(#ARGV, 3 + room) do issued[#issued + 1] = ARGV[i] end
return issued
