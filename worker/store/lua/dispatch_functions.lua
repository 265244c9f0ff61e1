-- Shared functions (`-- include: dispatch_functions`) of the dispatcher's scripts (worker/store/dispatch.py).
-- P is the dispatcher's key prefix, "{p}:dispatch"; p the deployment's. A tenant's hash and lanes exist only while it
-- has batches queued: an idle tenant leaves no key.
local function tenant_key(P, t) return P .. ':tenant:' .. t end
local function lane_key(P, t, lane) return P .. ':lane:' .. t .. ':' .. lane end

-- A tenant with queued batches becomes ready, at its own virtual time or the clock's if that is later (a newcomer
-- goes next, a tenant that was away gets no credit for it), unless it is ready or parked already.
local function wake_tenant(P, t)
  if redis.call('ZSCORE', P .. ':ready', t) or redis.call('ZSCORE', P .. ':parked', t) then return end
  local clock = tonumber(redis.call('GET', P .. ':clock') or '0')
  local own = tonumber(redis.call('HGET', tenant_key(P, t), 'vtime') or '0')
  redis.call('ZADD', P .. ':ready', math.max(clock, own), t)
end

-- Queue a batch in its tenant's lane (at the front for one taken back from a sender that stopped), count its
-- documents, and give the tenant the limits the batch carries (written by dispatch_add from the tenants file).
local function enqueue_batch(P, bk, id, t, lane, now, front)
  redis.call(front and 'LPUSH' or 'RPUSH', lane_key(P, t, lane), id)
  local size, cap, rate, weight, target = unpack(redis.call('HMGET', bk, 'size', 'd_cap', 'd_rate', 'd_weight', 'target'))
  redis.call('HSET', bk, 'queued_in', 'lane', 'ready_at', now)
  redis.call('HDEL', bk, 'taken_by')  -- queued again: a grant of it from before holds nothing any more
  local th = tenant_key(P, t)
  redis.call('HINCRBY', th, 'docs:' .. lane, tonumber(size or '0'))
  redis.call('HSET', th, 'cap', cap or '0', 'rate', rate or '0', 'weight', weight or '1', 'target', target or 'softone')
  wake_tenant(P, t)
end

-- A batch back from a sender that stopped, or from its delay: queued in its lane again (at the front for one taken
-- back from a sender) unless it ended meanwhile, when it is in none of the dispatcher's places any more. True when
-- queued.
local function requeue(P, bk, id, st, t, lane, now, front)
  if st and st ~= 'done' then
    enqueue_batch(P, bk, id, t, lane or 'bulk', now, front)
    return true
  end
  if st then redis.call('HDEL', bk, 'queued_in') end
  return false
end

-- A tenant waiting for one of its in-flight slots is ready again (a slot was given back): 1, else 0.
local function slot_freed(P, t)
  local th = tenant_key(P, t)
  if redis.call('HGET', th, 'waiting') ~= 'slot' or not redis.call('ZSCORE', P .. ':parked', t) then return 0 end
  redis.call('ZREM', P .. ':parked', t)
  redis.call('HDEL', th, 'waiting', 'waiting_until', 'holder')
  wake_tenant(P, t)
  return 1
end

-- A tenant's interactive lane is empty: the flushes of its buffers that waited for that (dispatch_flushes) are due
-- now. Call before deleting its hash.
local function flushes_due(P, t, now)
  local th = tenant_key(P, t)
  for _, field in ipairs(redis.call('HKEYS', th)) do
    local kind = string.match(field, '^flush:(.*)$')
    if kind then redis.call('ZADD', P .. ':flushes', now, t .. '|' .. kind) end
  end
end
