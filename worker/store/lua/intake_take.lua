-- The intake queue's take (worker/store/intake.py, IntakeQueue.take).
-- KEYS: the ready zset, the holder's list, the clock, the backlog hash, the streak hash.
-- ARGV: the lane lists' key prefix ("{p}:intake:lane:"), max documents, ttl, the interactive items a tenant gets
--       in a row while its bulk ones wait, then (tenant, weight) pairs for the tenants whose weight is not 1.
-- Returns the holder's items: those it already held (a redelivered task), else items moved from the tenants'
-- lists into the holder's until about max documents (only the last item may pass it).
--
-- Which item: the tenant first in the ready zset (lowest virtual time; ties by name), its interactive list first,
-- unless it had `streak` interactive items in a row while its bulk list waited: then a bulk one. The first item
-- decides the take's lane: a tenant whose next item is of the other lane is passed over for the rest of this take
-- (it keeps its virtual time, so it goes first in the next), and a one-document job is never validated together
-- with a thousand-document chunk. Each item taken moves the clock to the tenant's virtual time, then advances that
-- by 1/weight. A tenant whose lists are empty leaves the zset and the hashes; with no tenant left, the clock,
-- backlog and streak keys go too.
--
-- Passed-over tenants stay at the head of the zset (their scores do not move, served tenants' only grow), so the
-- next candidate is always at rank `skipped`. A tenant's lists are read ahead a few items at a time and trimmed once
-- at the end, and its counts kept here meanwhile: a few commands per item, whatever the number of tenants.
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then return held end
local prefix, budget, streak_max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local weights = {}
for i = 5, #ARGV, 2 do weights[ARGV[i]] = tonumber(ARGV[i + 1]) end
local LANES, SLICE = {'interactive', 'bulk'}, 1000
local tenants, seen = {}, {}

local function tenant_state(name)
  local t = tenants[name]
  if t then return t end
  local streak = tonumber(redis.call('HGET', KEYS[5], name) or '0')
  t = {name = name, streak = streak, streak_was = streak, gone = false, lanes = {}}
  for _, lane in ipairs(LANES) do
    local key = prefix .. name .. ':' .. lane
    t.lanes[lane] = {key = key, left = redis.call('LLEN', key), window = {}, size = 2, next = 1, read = 0, taken = 0,
                     docs = 0}
  end
  tenants[name] = t
  seen[#seen + 1] = t
  return t
end

local function next_item(l)
  if l.next > #l.window then  -- read ahead 2, 4, ... 128 items: most tenants get one or two per take
    l.window = redis.call('LRANGE', l.key, l.read, l.read + l.size - 1)
    l.read = l.read + #l.window
    l.next = 1
    l.size = math.min(l.size * 2, 128)
  end
  local item = l.window[l.next]
  l.next = l.next + 1
  l.left = l.left - 1
  l.taken = l.taken + 1
  return item
end

local function leave(t)
  redis.call('ZREM', KEYS[1], t.name)
  t.gone = true
end

local docs, skipped, mode, clock = 0, 0, nil, nil
while docs < budget do
  local head = redis.call('ZRANGE', KEYS[1], skipped, skipped, 'WITHSCORES')
  if #head == 0 then break end
  local t = tenant_state(head[1])
  local interactive, bulk = t.lanes.interactive, t.lanes.bulk
  local lane = 'bulk'
  if interactive.left > 0 and not (bulk.left > 0 and t.streak >= streak_max) then lane = 'interactive' end
  if interactive.left + bulk.left == 0 then
    leave(t)  -- its lists were emptied from outside
  elseif mode ~= nil and lane ~= mode then
    skipped = skipped + 1
  else
    mode = lane
    local l = t.lanes[lane]
    local item = next_item(l)
    held[#held + 1] = item
    local s, e = string.match(item, '|(%d+)|(%d+)|%a+|[^|]*$')
    if not s then s, e = string.match(item, '|(%d+)|(%d+)$') end
    local size = (tonumber(e) or 0) - (tonumber(s) or 0)
    l.docs = l.docs + size
    docs = docs + size
    if lane == 'interactive' and bulk.left > 0 then t.streak = t.streak + 1 else t.streak = 0 end
    clock = head[2]
    if interactive.left + bulk.left == 0 then
      leave(t)
    else
      redis.call('ZINCRBY', KEYS[1], string.format('%.17g', 1 / (weights[t.name] or 1)), t.name)
    end
  end
end

for _, t in ipairs(seen) do
  for _, lane in ipairs(LANES) do
    local l, field = t.lanes[lane], t.name .. '|' .. lane
    if l.taken > 0 then
      redis.call('LTRIM', l.key, l.taken, -1)
      if l.left == 0 then
        redis.call('HDEL', KEYS[4], field .. '|items', field .. '|docs')
      else
        redis.call('HINCRBY', KEYS[4], field .. '|items', -l.taken)
        redis.call('HINCRBY', KEYS[4], field .. '|docs', -l.docs)
      end
    end
  end
  if t.gone or t.streak == 0 then
    if t.streak_was ~= 0 or t.gone then redis.call('HDEL', KEYS[5], t.name) end
  elseif t.streak ~= t.streak_was then
    redis.call('HSET', KEYS[5], t.name, t.streak)
  end
end
if #held > 0 then
  redis.call('HINCRBY', KEYS[4], 'items', -#held)
  redis.call('SET', KEYS[3], clock)
  for first = 1, #held, SLICE do
    redis.call('RPUSH', KEYS[2], unpack(held, first, math.min(first + SLICE - 1, #held)))
  end
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[3], KEYS[4], KEYS[5]) end
return held
