-- The dispatcher's `add` (worker/store/dispatch.py, Dispatcher.add): batches ready to send join their tenant's lanes.
-- ARGV: prefix, now (epoch s), the tenant's cap, rate interval (µs, 0: none), weight, verify (1: recovery), batch ids.
-- A batch that is done, gone, or placed already (in a lane, delayed, or taken by a sender: `queued_in`) is left
-- alone, so adding a batch twice queues it once; with verify, a placement is checked against the list or set it
-- names (recovery after a Redis that lost writes). A batch's lane is the one it has, else `interactive` when any of
-- its documents comes from a job whose lane is not `bulk`. Returns how many were queued.
-- include: dispatch_functions
local p, now = ARGV[1], ARGV[2]
local P = p .. ':dispatch'
local added = 0
for i = 7, #ARGV do
  local id = ARGV[i]
  local bk = p .. ':batch:' .. id
  local st, where, t, lane = unpack(redis.call('HMGET', bk, 'state', 'queued_in', 'tenant', 'lane'))
  if where and ARGV[6] == '1' then
    if where == 'lane' then
      if not redis.call('LPOS', lane_key(P, t, lane or 'bulk'), id) then where = false end
    elseif not redis.call('ZSCORE', P .. ':' .. where, id) then
      where = false
    end
  end
  if st and st ~= 'done' and not where then
    if not lane then
      lane = 'bulk'
      local seen = {}
      for _, member in ipairs(cjson.decode(redis.call('HGET', bk, 'members') or '[]')) do
        local job = tostring(member[1])
        if not seen[job] then
          seen[job] = true
          if redis.call('HGET', p .. ':job:' .. job, 'lane') ~= 'bulk' then lane = 'interactive'; break end
        end
      end
    end
    redis.call('HSET', bk, 'lane', lane, 'd_cap', ARGV[3], 'd_rate', ARGV[4], 'd_weight', ARGV[5])
    enqueue_batch(P, bk, id, t, lane, now, false)
    added = added + 1
  end
end
return added
