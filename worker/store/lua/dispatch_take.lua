-- The dispatcher's `take` (worker/store/dispatch.py, Dispatcher.take): the next batch a sender may send now.
-- ARGV: prefix, now (epoch s), lease (s), ticket id ('' for none), ticket lease (s), interactive streak, tenants to
-- look at at most, how far ahead a rate-limit turn may be taken (µs), a unique suffix for the grant's token, how long
-- a paused tenant stays parked before it is looked at again (s; `Dispatcher.wake` brings a resumed one back sooner).
-- First what is due: batches of senders that stopped renewing their lease go back to the front of their lane,
-- delayed batches whose time has come join their lane, and parked tenants whose wait is over are ready again. Then
-- the ready tenant with the lowest virtual time is looked at: paused (by an operator, or its ERP refused its
-- authorisation: `{p}:tenant:{t}`'s `paused_by`), paused by its ERP (Retry-After), at its cap of
-- requests in flight, or more than `ahead` before its next rate-limit turn, it is parked till then (a slot given
-- back wakes it sooner: dispatch_settle); else its batch goes (its interactive lane first, a bulk batch after
-- `streak` interactive ones while bulk waits), with an in-flight slot and its rate turn taken for it (the turn
-- may be up to `ahead` away: the sender waits that long before its request, so that the turns keep their pace
-- whatever a wake costs), and its virtual time moves on by 1/weight. Returns {'batch', id, tenant, lane, ready_at,
-- µs until its turn ('' when the tenant has no rate limit), token, reaped} or {'none', when something may go next (''
-- for never), reaped}, each followed by 1 when a buffer's flush is due (the sender does it before its next take; 0
-- else); reaped lists the batches taken back from senders that stopped, as 'id|tenant|sender'. The
-- token ('<batch id>#<suffix>') names this grant: the batch's `taken_by` and its in-flight slot, so that only its
-- holder settles or renews them (a sender that outlived its lease finds them another's).
-- include: dispatch_functions
-- include: rate_functions
local p, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local P = p .. ':dispatch'
local ready, parked, delayed, taken = P .. ':ready', P .. ':parked', P .. ':delayed', P .. ':taken'
if ARGV[4] ~= '' then redis.call('ZADD', P .. ':tickets', now + tonumber(ARGV[5]), ARGV[4]) end

local reaped = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', taken, '-inf', now, 'LIMIT', 0, 50)) do
  local bk = p .. ':batch:' .. id
  local st, till, t, lane, sender, holder = unpack(redis.call('HMGET', bk, 'state', 'lease_until', 'tenant', 'lane',
                                                               'sender', 'taken_by'))
  if st == 'sending' and tonumber(till or '0') > now then
    redis.call('ZADD', taken, till, id)  -- its own lease was renewed: its slot runs as long
    if t and holder then redis.call('ZADD', p .. ':inflight:' .. t, 'XX', till, holder) end
  else
    redis.call('ZREM', taken, id)
    if t and holder then redis.call('ZREM', p .. ':inflight:' .. t, holder) end
    redis.call('HDEL', bk, 'taken_by')
    if requeue(P, bk, id, st, t, lane, now, true) then
      reaped[#reaped + 1] = id .. '|' .. (t or '') .. '|' .. (sender or '')
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', delayed, id)
  local bk = p .. ':batch:' .. id
  local st, t, lane = unpack(redis.call('HMGET', bk, 'state', 'tenant', 'lane'))
  requeue(P, bk, id, st, t, lane, now, false)
end
for _, t in ipairs(redis.call('ZRANGEBYSCORE', parked, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', parked, t)
  redis.call('HDEL', tenant_key(P, t), 'waiting', 'waiting_until', 'holder')
  wake_tenant(P, t)
end

local flush_due = #redis.call('ZRANGEBYSCORE', P .. ':flushes', '-inf', now, 'LIMIT', 0, 1)
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local ahead = tonumber(ARGV[8])
for _ = 1, tonumber(ARGV[7]) do
  local first = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if #first == 0 then break end
  local t, vtime = first[1], tonumber(first[2])
  local th = tenant_key(P, t)
  local il, bl = lane_key(P, t, 'interactive'), lane_key(P, t, 'bulk')
  local ni, nb = redis.call('LLEN', il), redis.call('LLEN', bl)
  if ni + nb == 0 then
    redis.call('ZREM', ready, t)
    flushes_due(P, t, now)
    redis.call('DEL', th)
  else
    local cap, rate, weight, target, streak = unpack(redis.call('HMGET', th, 'cap', 'rate', 'weight', 'target', 'streak'))
    cap, rate, weight = tonumber(cap or '0'), tonumber(rate or '0'), tonumber(weight or '1')
    local inflight = p .. ':inflight:' .. t
    local rk = p .. ':rate:' .. (target or 'softone') .. ':' .. t
    local why, till, holder, turn_at = nil, 0, '', now_us
    local pause = tonumber(redis.call('GET', p .. ':pause:' .. t) or '0')
    if redis.call('HEXISTS', p .. ':tenant:' .. t, 'paused_by') == 1 then
      why, till = 'paused', now + tonumber(ARGV[10])  -- paused (worker/store/tenants.py): looked at again then
    elseif pause > now then
      why, till = 'pause', pause
    end
    if not why and cap > 0 then
      redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
      if redis.call('ZCARD', inflight) >= cap then
        local oldest = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
        why, till, holder = 'slot', tonumber(oldest[2]), string.match(oldest[1], '^(.*)#') or oldest[1]
      end
    end
    if not why and rate > 0 then
      turn_at = next_turn(rk, now_us)
      if turn_at > now_us + ahead then why, till = 'rate', now + (turn_at - now_us - ahead) / 1000000 end
    end
    if why then
      redis.call('ZREM', ready, t)
      redis.call('ZADD', parked, till, t)
      redis.call('HSET', th, 'waiting', why, 'waiting_until', tostring(till), 'holder', holder, 'vtime', tostring(vtime))
    else
      local lane, lk = 'interactive', il
      streak = tonumber(streak or '0')
      if ni == 0 or (nb > 0 and streak >= tonumber(ARGV[6])) then
        lane, lk, streak = 'bulk', bl, 0
      elseif nb > 0 then
        streak = streak + 1
      end
      local id = redis.call('LPOP', lk)
      if lane == 'interactive' and ni == 1 then flushes_due(P, t, now) end
      local bk = p .. ':batch:' .. id
      local st, size, ready_at = unpack(redis.call('HMGET', bk, 'state', 'size', 'ready_at'))
      redis.call('HINCRBY', th, 'docs:' .. lane, -tonumber(size or '0'))
      if ni + nb == 1 then
        redis.call('ZREM', ready, t)
        redis.call('DEL', th)
      end
      if st and st ~= 'done' then
        local token = id .. '#' .. ARGV[9]
        if cap > 0 then
          redis.call('ZADD', inflight, now + lease, token)
          redis.call('PEXPIRE', inflight, math.ceil(lease * 1000) + 1000)
        end
        local turn = ''
        if rate > 0 then
          reserve_turn(rk, turn_at, rate, now_us)
          turn = string.format('%.0f', turn_at - now_us)
        end
        redis.call('HSET', bk, 'queued_in', 'taken', 'taken_by', token)
        redis.call('ZADD', taken, now + lease, id)
        redis.call('SET', P .. ':clock', tostring(vtime))
        if ni + nb > 1 then
          redis.call('ZADD', ready, vtime + 1 / weight, t)
          redis.call('HSET', th, 'vtime', tostring(vtime + 1 / weight), 'streak', streak)
        end
        return {'batch', id, t, lane, ready_at or '', turn, token, reaped, flush_due}
      elseif st then
        redis.call('HDEL', bk, 'queued_in')
      end
    end
  end
end

local due = false
for _, z in ipairs({parked, delayed, taken, P .. ':flushes'}) do
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #first > 0 and (not due or tonumber(first[2]) < due) then due = tonumber(first[2]) end
end
return {'none', due and tostring(due) or '', reaped, flush_due}
