-- The dispatcher's `renew` (worker/store/dispatch.py): a live sender's heartbeat for the batches it holds.
-- ARGV: prefix, now (epoch s), lease (s), sender id, then (grant token, tenant) pairs (dispatch_take's tokens). Each
-- batch's dispatch lease, its in-flight slot and, while this sender holds it `sending`, the batch's own lease run
-- `lease` seconds from now. A batch taken back meanwhile (its lease ran out: another token, or none) is not
-- renewed. Returns how many were.
local p, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local till = tostring(now + lease)
local renewed = 0
for i = 5, #ARGV, 2 do
  local token, t = ARGV[i], ARGV[i + 1]
  local id = string.match(token, '^(.*)#') or ''
  local bk = p .. ':batch:' .. id
  if id ~= '' and redis.call('HGET', bk, 'taken_by') == token and redis.call('ZSCORE', p .. ':dispatch:taken', id) then
    redis.call('ZADD', p .. ':dispatch:taken', till, id)
    renewed = renewed + 1
    local inflight = p .. ':inflight:' .. t
    if redis.call('ZSCORE', inflight, token) then
      redis.call('ZADD', inflight, till, token)
      redis.call('PEXPIRE', inflight, math.ceil(lease * 1000) + 1000)
    end
    local st, sender = unpack(redis.call('HMGET', bk, 'state', 'sender'))
    if st == 'sending' and sender == ARGV[4] then redis.call('HSET', bk, 'lease_until', till) end
  end
end
return renewed
